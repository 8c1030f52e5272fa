/**
 * A long Harmony row in real JupyterLab and Chromium: the view draws only the lines in view and
 * reuses their elements as it scrolls, so after a jump or a wheel scroll the chips must still show
 * the tokens of that place, in order, and the hover card must follow the token under the pointer.
 */
import { Locator, Page } from '@playwright/test';
import { MIME, expect, openNotebook, output, runAll, test, writeNotebook } from './lab';

const TOKENS = 30_000;

// Token i reads w<i>, so a chip's text tells which token it shows; every 9th ends its line.
const CELL = String.raw`
from IPython.display import display
N = ${TOKENS}
channels = ["none", "analysis", "final"]
tokens = {k: [] for k in ("ids", "text", "message", "role", "channel", "part", "trained")}
for i in range(N):
    channel = channels[(i // 50) % 3]
    tokens["ids"].append(1000 + i)
    tokens["text"].append(f"w{i}\n" if i % 9 == 8 else f"w{i}")
    tokens["message"].append(i // 50)
    tokens["role"].append("user" if channel == "none" else "assistant")
    tokens["channel"].append(channel)
    tokens["part"].append("content")
    tokens["trained"].append(channel != "none")
payload = {"version": 1, "title": "long row", "conversations": [{"messages": [], "tokens": tokens}]}
display({"${MIME.harmony}": payload, "text/plain": "long row"}, raw=True)
`;

/** The token index of every drawn chip, in document order. */
function drawn(pane: Locator): Promise<number[]> {
  return pane.locator('[role=option]').evaluateAll((chips) => chips.map((c) => Number((c as HTMLElement).dataset.i)));
}

async function expectContiguous(pane: Locator): Promise<number[]> {
  const ids = await drawn(pane);
  expect(ids.length).toBeGreaterThan(50);
  ids.forEach((i, k) => {
    if (k > 0) expect(i, `chip ${k} follows chip ${k - 1}`).toBe(ids[k - 1] + 1);
  });
  const texts = await pane.locator('[role=option]').allTextContents();
  expect(texts).toEqual(ids.map((i) => (i % 9 === 8 ? `w${i}⏎` : `w${i}`)));
  return ids;
}

/** The token of the chip at a point of the page, as the browser hit-tests it. */
function tokenAt(page: Page, x: number, y: number): Promise<number | null> {
  return page.evaluate(
    ([px, py]) => {
      const chip = document.elementFromPoint(px, py)?.closest('.ossft-chip') as HTMLElement | null;
      return chip?.dataset.i === undefined ? null : Number(chip.dataset.i);
    },
    [x, y],
  );
}

test('a long Harmony row shows the right tokens after jumps and wheel scrolls, and the card follows the pointer', async ({ page, lab }) => {
  await writeNotebook(lab, 'harmony-scroll.ipynb', [CELL]);
  await openNotebook(page, lab, 'harmony-scroll.ipynb');
  await runAll(page);
  const view = output(page, 'harmony');
  const pane = view.locator('.ossft-pane');
  await expect(pane).toBeVisible();
  await expect(pane).toHaveAttribute('aria-label', new RegExp(`${TOKENS} Harmony tokens`));
  expect((await expectContiguous(pane))[0]).toBe(0);
  const firstChip = await pane.locator('[role=option]').first().elementHandle();

  // Jumps by a screen and far away, as the scroll bar does.
  for (const where of [0.5, 0.5 + 1e-3, 0.9, 0.1]) {
    await pane.evaluate((node, f) => {
      node.scrollTop = Math.round((node.scrollHeight - node.clientHeight) * f);
    }, where);
    await expect
      .poll(async () => (await drawn(pane))[0], { message: `the lines at ${where} of the row are drawn` })
      .toBeGreaterThan(TOKENS * where - 2_000);
    const ids = await expectContiguous(pane);
    expect(ids[ids.length - 1]).toBeLessThan(TOKENS * where + 2_000);
  }
  // The first chip ever drawn is still in use, showing another token: elements are reused.
  expect(await firstChip!.evaluate((c) => c.isConnected && (c as HTMLElement).dataset.i !== '0')).toBe(true);

  // The pointer rests on the first chip of a line in the middle of the pane; the card names it.
  const box = (await pane.boundingBox())!;
  const middle = await pane.locator('[role=option]').evaluateAll(
    (chips, centre) => {
      let best = { x: 0, y: 0, d: Infinity };
      for (const c of chips) {
        const r = c.getBoundingClientRect();
        const d = Math.abs(r.top + r.height / 2 - centre);
        if (d < best.d) best = { x: r.left + 4, y: r.top + r.height / 2, d };
      }
      return best;
    },
    box.y + box.height / 2,
  );
  const { x, y } = middle;
  await page.mouse.move(x, y);
  const detail = view.locator('.ossft-detail');
  const cardNamesTokenUnderPointer = async () => {
    const token = await tokenAt(page, x, y);
    return token !== null && ((await detail.textContent()) ?? '').includes(`token ${token + 1} ·`);
  };
  await expect.poll(cardNamesTokenUnderPointer).toBe(true);
  // Wheel scrolls of whole lines move other tokens under the resting pointer; the card follows.
  for (let turn = 0; turn < 3; turn++) {
    const was = await tokenAt(page, x, y);
    await page.mouse.wheel(0, 240);
    await expect.poll(() => tokenAt(page, x, y), { message: 'another token is under the pointer' }).not.toBe(was);
    await expect.poll(cardNamesTokenUnderPointer, { message: 'the card names the token under the pointer' }).toBe(true);
    await expectContiguous(pane);
  }
  // A jump by whole lines puts another token into the very chip element under the resting pointer
  // (the elements are reused in place); the card must follow it all the same.
  for (const lines of [300, -120]) {
    const was = await tokenAt(page, x, y);
    await pane.evaluate((node, by) => {
      node.scrollTop += by;
    }, lines * 24);
    await expect.poll(() => tokenAt(page, x, y), { message: 'another token is under the pointer' }).not.toBe(was);
    await expect.poll(cardNamesTokenUnderPointer, { message: 'the card names the token under the pointer after a jump' }).toBe(true);
  }
});
