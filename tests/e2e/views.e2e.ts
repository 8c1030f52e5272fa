/**
 * How the views hold up in a real notebook: the training dashboard keeps its charts' size after a Run
 * All and when the side panel takes part of the width (plotly, resized in a box sized by its
 * content, used to shrink to 0 px); a before/after payload opens side by side with its generated text
 * unmasked; hovering a token highlights it and its counterpart in the other column.
 */
import { Locator, Page } from '@playwright/test';
import { MIME, displayCell, expect, fixture, openNotebook, output, runAll, test, writeNotebook } from './lab';

const training = fixture('training-run', 'running');
const beforeAfter = fixture('harmony-tokens', 'chat-before-after');

// A run re-sent after each step under one display id, as the trainer does, with a learning rate small
// enough that SI prefixes would label its axis in µ.
const LIVE_RUN = [
  'import json, time',
  'from IPython.display import display, update_display',
  `payload = json.loads(${JSON.stringify(JSON.stringify(training))})`,
  'payload["metrics"] = []',
  'for step in range(1, 5):',
  '    payload["step"] = step',
  '    payload["metrics"].append({"step": step, "loss": 1.6 - step / 10, "lr": 2e-5 * step, "grad_norm": 0.5, "tokens_per_second": 900 + step})',
  '    bundle = {"application/vnd.oss-finetune.training+json": payload, "text/plain": "training fallback"}',
  '    (display if step == 1 else update_display)(bundle, raw=True, display_id="run")',
  '    time.sleep(0.2)',
].join('\n');

// Enough output after the run that Run All ends with the dashboard scrolled out of view.
const FILLER = 'print("\\n".join(f"line {i}" for i in range(120)))';

interface ChartBox {
  metric: string;
  plot: { width: number; height: number };
  svg: { width: number; height: number } | null;
}

/** The size of each shown chart's box and of the plot plotly drew in it. */
function chartBoxes(view: Locator): Promise<ChartBox[]> {
  return view.locator('.ossft-chart:not([hidden])').evaluateAll((charts) =>
    charts.map((chart) => {
      const plot = chart.querySelector('.ossft-chart-plot')!.getBoundingClientRect();
      const svg = chart.querySelector('.ossft-chart-plot .main-svg')?.getBoundingClientRect();
      return {
        metric: [...chart.classList].find((c) => c.startsWith('ossft-chart-') && c !== 'ossft-chart')!,
        plot: { width: Math.round(plot.width), height: Math.round(plot.height) },
        svg: svg ? { width: Math.round(svg.width), height: Math.round(svg.height) } : null,
      };
    }),
  );
}

/** Every chart is drawn by plotly at the full size of its box, and that box is not flat. */
async function expectChartsFillTheirBoxes(view: Locator): Promise<void> {
  await expect
    .poll(
      async () => {
        const boxes = await chartBoxes(view);
        return (
          boxes.length === 4 &&
          boxes.every((b) => b.svg && b.plot.height >= 100 && Math.abs(b.svg.width - b.plot.width) <= 2 && b.svg.height === b.plot.height)
        );
      },
      { message: 'four plotly charts, each as wide and as high as its box, at least 100 px high' },
    )
    .toBe(true);
}

async function openPanel(page: Page): Promise<void> {
  await page.evaluate(() => (window as any).jupyterapp.commands.execute('oss-finetune:open-panel'));
  await expect(page.locator('#oss-finetune-panel')).toBeVisible();
}

test('the training dashboard keeps its charts full size after Run All and when the side panel opens', async ({ page, lab }) => {
  await writeNotebook(lab, 'dashboard-size.ipynb', [LIVE_RUN, FILLER]);
  await openNotebook(page, lab, 'dashboard-size.ipynb');
  await runAll(page);

  const view = output(page, 'training');
  await expect(view.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '4');
  await view.scrollIntoViewIfNeeded();
  await expectChartsFillTheirBoxes(view);
  // The whole dashboard shows in the notebook, not in a small box that scrolls.
  const area = await view.evaluate((node) => {
    const outputs = node.closest('.jp-Cell-outputArea') as HTMLElement;
    return { height: node.getBoundingClientRect().height, scrolls: outputs.scrollHeight > outputs.clientHeight + 1 };
  });
  expect(area.height).toBeGreaterThan(400);
  expect(area.scrolls).toBe(false);
  // The learning rate reads 2e-5, not 20µ.
  const ticks = await view.locator('.ossft-chart-lr .ytick text').allTextContents();
  expect(ticks.length).toBeGreaterThan(1);
  expect(ticks.join(' ')).not.toMatch(/[µμ]/);
  expect(ticks.some((t) => /\de[−-]\d/.test(t))).toBe(true);

  const wide = (await chartBoxes(view))[0].plot.width;
  await openPanel(page);
  await view.scrollIntoViewIfNeeded();
  // The notebook is narrower now (the charts go from two columns to one): each chart follows its box
  // instead of collapsing.
  await expect.poll(async () => (await chartBoxes(view))[0].plot.width).not.toBe(wide);
  await expectChartsFillTheirBoxes(view);
});

test('a generated before/after opens side by side without the loss mask, and hovering a token highlights it and its counterpart', async ({
  page,
  lab,
}) => {
  await writeNotebook(lab, 'before-after.ipynb', [displayCell(MIME.harmony, beforeAfter, 'before/after fallback')]);
  await openNotebook(page, lab, 'before-after.ipynb');
  await runAll(page);

  const view = output(page, 'harmony');
  await expect(view.getByRole('combobox', { name: 'Compare before and after' })).toHaveValue('side-by-side');
  const columns = view.locator('.ossft-column');
  await expect(columns).toHaveCount(2);
  await expect(columns.nth(0).locator('.ossft-column-label')).toHaveText(/^base model/);
  await expect(columns.nth(1).locator('.ossft-column-label')).toHaveText(/^with adapter/);
  await expect(view.getByRole('checkbox', { name: 'loss mask' })).not.toBeChecked();
  await expect(view.locator('[role=option].ossft-masked')).toHaveCount(0);

  // A prompt token: the same token in the other column lights up with it.
  const left = columns.nth(0).locator('[role=option][data-i="3"]');
  await left.hover();
  await expect(left).toHaveClass(/ossft-hover/);
  await expect(columns.nth(1).locator('[role=option][data-i="3"]')).toHaveClass(/ossft-hover/);
  await expect(left).toHaveAttribute('title', /id 17196/);
  // A token only the adapter wrote has no counterpart: it is highlighted alone.
  const only = columns.nth(1).locator('[role=option][data-i="12"]');
  await only.hover();
  await expect(only).toHaveClass(/ossft-hover/);
  await expect(view.locator('.ossft-hover')).toHaveCount(1);
});
