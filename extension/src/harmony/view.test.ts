import { HARMONY_MIME } from '@oss-finetune/schema';

import { DEFAULT_SETTINGS, ViewSettings, ViewSettingsStore } from '../settings';
import { contractFixture, makePayload, makeStream, mimeModel } from '../testing/fixtures';
import { HarmonyRenderer } from './renderer';
import { HarmonyView } from './view';

function view(count: number, settings: Partial<ViewSettings> = {}, extra: Parameters<typeof makePayload>[1] = {}) {
  const copied: string[] = [];
  const v = new HarmonyView(makePayload(count, extra), {
    settings: { ...DEFAULT_SETTINGS, ...settings },
    clipboard: async (text) => {
      copied.push(text);
    },
    maxHeight: 240,
  });
  document.body.appendChild(v.node);
  v.attach();
  return { v, copied, pane: () => v.panes[0] };
}

function chips(root: ParentNode): HTMLElement[] {
  return Array.from(root.querySelectorAll<HTMLElement>('.ossft-pane .ossft-chip'));
}

function toggle(root: ParentNode, selector: string): void {
  const box = root.querySelector<HTMLInputElement>(`${selector} input`)!;
  box.checked = !box.checked;
  box.dispatchEvent(new Event('change'));
}

afterEach(() => document.body.replaceChildren());

describe('HarmonyView virtualization', () => {
  it('creates DOM only for the visible lines of 300,000 tokens', () => {
    const { pane } = view(300_000);
    const p = pane();
    // 240px / 24px lines = 10 visible lines + 6 overscan below; each line holds at most ~100 chips.
    expect(p.lineCount).toBeGreaterThan(10_000);
    const drawn = p.node.querySelectorAll('.ossft-line').length;
    expect(drawn).toBeLessThanOrEqual(10 + 6 + 1);
    expect(p.renderedChips).toBeGreaterThan(0);
    expect(p.renderedChips).toBeLessThan(1000);
  });

  it('draws the lines at the scroll position after a jump', () => {
    const { pane } = view(100_000);
    const p = pane();
    p.node.scrollTop = 24 * 3000;
    p.node.dispatchEvent(new Event('scroll'));
    const first = Number(p.node.querySelector<HTMLElement>('.ossft-chip')!.dataset.i);
    expect(first).toBeGreaterThan(1000);
    expect(p.node.querySelectorAll('.ossft-line').length).toBeLessThanOrEqual(10 + 12 + 1);
  });

  it('reuses the chip elements across jumps and shows what a fresh render shows', () => {
    const { v, pane } = view(100_000, {}, { loss: true });
    const p = pane();
    toggle(v.node, '.ossft-heatmap-toggle');
    const before = new Set(chips(p.node));
    const jump = (top: number) => {
      p.node.scrollTop = top;
      p.node.dispatchEvent(new Event('scroll'));
    };
    // Down by screens, a small step, back up and to a far place: every order of reuse.
    for (const top of [240, 480, 720, 744, 600, 24 * 2000, 24 * 1000, 0]) jump(top);
    // Pin a token (it becomes the keyboard's too), so a named chip gets recycled, then turn the
    // heatmap off again while far away.
    chips(p.node)[3].dispatchEvent(new MouseEvent('click', { bubbles: true }));
    jump(24 * 4000);
    toggle(v.node, '.ossft-heatmap-toggle');
    jump(24 * 3000);

    const reused = chips(p.node);
    expect(reused.filter((c) => before.has(c)).length).toBeGreaterThan(reused.length / 2);
    expect(reused.some((c) => c.id || c.hasAttribute('aria-label') || c.style.getPropertyValue('--ossft-heat'))).toBe(false);
    // A pane built from scratch with the same state at the same place draws the same chips.
    const fresh = view(100_000, {}, { loss: true });
    const q = fresh.pane();
    chips(q.node)[3].dispatchEvent(new MouseEvent('click', { bubbles: true }));
    q.node.scrollTop = 24 * 3000;
    q.node.dispatchEvent(new Event('scroll'));
    expect(q.pinnedToken).toBe(p.pinnedToken);
    const shape = (c: HTMLElement) => [
      c.className,
      c.dataset.i,
      c.textContent,
      c.getAttribute('style') ?? '',
      c.id,
      c.getAttribute('aria-label') ?? '',
    ];
    expect(reused.map(shape)).toEqual(chips(q.node).map(shape));
    // And back where the pinned chip is, it carries its name again.
    jump(0);
    const pinned = chips(p.node).find((c) => c.dataset.i === String(p.pinnedToken))!;
    expect(pinned.classList).toContain('ossft-pinned');
    expect(pinned.getAttribute('aria-selected')).toBe('true');
    expect(p.node.getAttribute('aria-activedescendant')).toBe(pinned.id);
    jump(24 * 3000);
    const lines = (root: HTMLElement) =>
      Array.from(root.querySelectorAll<HTMLElement>('.ossft-line')).map((line) =>
        Array.from(line.children)
          .map((c) => (c as HTMLElement).dataset.i)
          .join(','),
      );
    expect(lines(p.node)).toEqual(lines(q.node));
  });

  it('keeps the DOM bounded over many jumps', () => {
    const { pane } = view(100_000);
    const p = pane();
    const counts: number[] = [];
    for (let j = 1; j <= 60; j++) {
      p.node.scrollTop = (j % 7) * 24 * 500 + j * 24;
      p.node.dispatchEvent(new Event('scroll'));
      counts.push(p.node.querySelectorAll('*').length);
    }
    expect(Math.max(...counts)).toBeLessThan(2 * Math.min(...counts));
    expect(p.node.querySelectorAll('.ossft-line').length).toBeLessThanOrEqual(10 + 12 + 1);
  });

  it('updates the card when a scroll puts another token under the resting pointer', () => {
    const { v, pane } = view(100_000);
    const p = pane();
    const detail = v.node.querySelector('.ossft-detail')!;
    const under = chips(p.node)[0];
    under.dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    expect(detail.textContent).toContain('token 1 ');
    p.node.scrollTop = 24 * 3000;
    p.node.dispatchEvent(new Event('scroll'));
    // Either the same element now holds another token and the card follows it, or it left the view.
    if (under.isConnected) expect(detail.textContent).toContain(`token ${Number(under.dataset.i) + 1} `);
    expect(detail.textContent).not.toContain('token 1 ');
  });

  it('gives the spacer the height of every line', () => {
    const { pane } = view(5000);
    const p = pane();
    const spacer = p.node.querySelector<HTMLElement>('.ossft-spacer')!;
    expect(spacer.style.height).toBe(`${p.lineCount * 24 + 16}px`);
  });
});

describe('HarmonyView colours and marks', () => {
  it('colours chips by channel for assistant tokens and by role otherwise', () => {
    const { v } = view(28);
    const all = chips(v.node);
    expect(all.length).toBe(28);
    expect(all[0].classList).toContain('ossft-k-system');
    expect(all[8].classList).toContain('ossft-k-user');
    expect(all[17].classList).toContain('ossft-k-analysis');
    expect(all[25].classList).toContain('ossft-k-final');
  });

  it('styles special tokens apart and shows whitespace', () => {
    const { v } = view(28);
    const all = chips(v.node);
    expect(all[0].classList).toContain('ossft-part-special');
    expect(all[0].textContent).toBe('<|start|>');
    expect(all[9].textContent).toBe('·le');
    expect(all[19].textContent).toBe('⏎');
    expect(all[3].textContent).toBe('Reasoning:·low⏎');
  });

  it('uses the palette from the settings', () => {
    const { v } = view(5, { palette: 'tol-bright' });
    expect(v.node.classList).toContain('ossft-palette-tol-bright');
    v.applySettings({ ...DEFAULT_SETTINGS, palette: 'okabe-ito' });
    expect(v.node.classList).toContain('ossft-palette-okabe-ito');
    expect(v.node.classList).not.toContain('ossft-palette-tol-bright');
  });
});

describe('HarmonyView controls', () => {
  it('filters by channel', () => {
    const { v } = view(56);
    toggle(v.node, '.ossft-ch-none');
    toggle(v.node, '.ossft-ch-analysis');
    const shown = chips(v.node);
    expect(shown.length).toBe(14);
    expect(shown.every((c) => c.classList.contains('ossft-k-final'))).toBe(true);
  });

  it('starts with the channels from the settings', () => {
    const { v } = view(28, { channels: ['analysis'] });
    expect(chips(v.node).length).toBe(9);
  });

  it('toggles the loss-mask overlay', () => {
    const { v } = view(28);
    expect(chips(v.node).filter((c) => c.classList.contains('ossft-masked')).length).toBe(21);
    toggle(v.node, '.ossft-mask-toggle');
    expect(chips(v.node).filter((c) => c.classList.contains('ossft-masked')).length).toBe(0);
  });

  it('draws the loss heatmap only when the payload has loss', () => {
    const without = view(28).v;
    expect(without.node.querySelector<HTMLInputElement>('.ossft-heatmap-toggle input')!.disabled).toBe(true);
    const { v } = view(28, {}, { loss: true });
    toggle(v.node, '.ossft-heatmap-toggle');
    const hot = chips(v.node).filter((c) => c.classList.contains('ossft-heat'));
    expect(hot.length).toBe(7);
    expect(hot.every((c) => c.style.getPropertyValue('--ossft-heat').startsWith('#'))).toBe(true);
  });

  it('shows a token on hover and pins it on click', () => {
    const { v } = view(28, {}, { loss: true });
    const all = chips(v.node);
    const detail = v.node.querySelector('.ossft-detail')!;
    all[17].dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    expect(detail.textContent).toContain('id 5');
    expect(detail.textContent).toContain('channel analysis');
    expect(detail.textContent).toContain('role assistant');
    expect(detail.textContent).toContain('loss 3.500');

    all[25].dispatchEvent(new MouseEvent('click', { bubbles: true }));
    expect(v.panes[0].pinnedToken).toBe(25);
    expect(chips(v.node)[25].classList).toContain('ossft-pinned');
    // Hovering elsewhere keeps the pinned token in the card.
    chips(v.node)[0].dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    expect(detail.textContent).toContain('id 8');
    chips(v.node)[25].dispatchEvent(new MouseEvent('click', { bubbles: true }));
    expect(v.panes[0].pinnedToken).toBeNull();
  });

  it('is reachable and usable from the keyboard', () => {
    const { v } = view(28);
    const pane = v.node.querySelector<HTMLElement>('.ossft-pane')!;
    expect(pane.tabIndex).toBe(0);
    expect(pane.getAttribute('role')).toBe('listbox');
    expect(pane.getAttribute('aria-label')).toContain('28 Harmony tokens');
    pane.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight', bubbles: true }));
    pane.dispatchEvent(new KeyboardEvent('keydown', { key: 'ArrowRight', bubbles: true }));
    const active = document.getElementById(pane.getAttribute('aria-activedescendant')!)!;
    expect(active.dataset.i).toBe('2');
    expect(active.getAttribute('aria-label')).toContain('id 200008');
    pane.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
    expect(v.panes[0].pinnedToken).toBe(2);
    pane.dispatchEvent(new KeyboardEvent('keydown', { key: 'Escape', bubbles: true }));
    expect(v.panes[0].pinnedToken).toBeNull();
    pane.dispatchEvent(new KeyboardEvent('keydown', { key: 'End', bubbles: true }));
    expect(document.getElementById(pane.getAttribute('aria-activedescendant')!)!.dataset.i).toBe('27');
    for (const control of v.node.querySelectorAll('input, select, button')) {
      const named = control.getAttribute('aria-label') || control.closest('label')?.textContent || control.textContent;
      expect(named).toBeTruthy();
    }
  });

  it('copies the shown tokens as text and as ids', async () => {
    const { v, copied } = view(28, { channels: ['final'] });
    v.node.querySelector<HTMLButtonElement>('.ossft-copy-text')!.click();
    v.node.querySelector<HTMLButtonElement>('.ossft-copy-ids')!.click();
    await new Promise((r) => setTimeout(r, 0));
    expect(copied[0]).toBe('<|start|><|channel|>final<|message|>Salut !<|return|>');
    expect(copied[1]).toBe('[200006, 200005, 17196, 200008, 8, 9, 200002]');
  });

  it('shows before and after side by side and as a diff', () => {
    const after = makeStream(28, { label: 'with adapter', texts: { 25: 'Coucou' } });
    after.ids[25] = 99;
    const { v } = view(28, {}, { label: 'base model', compare: after });
    const select = v.node.querySelector<HTMLSelectElement>('.ossft-compare')!;
    expect(select.hidden).toBe(false);
    select.value = 'side-by-side';
    select.dispatchEvent(new Event('change'));
    expect(v.panes.length).toBe(2);
    const labels = Array.from(v.node.querySelectorAll('.ossft-column-label')).map((n) => n.textContent);
    expect(labels[0]).toContain('base model');
    expect(labels[1]).toContain('with adapter');
    select.value = 'diff';
    select.dispatchEvent(new Event('change'));
    expect(v.panes.length).toBe(1);
    expect(
      chips(v.node)
        .filter((c) => c.classList.contains('ossft-removed'))
        .map((c) => c.textContent),
    ).toEqual(['Salut']);
    expect(
      chips(v.node)
        .filter((c) => c.classList.contains('ossft-added'))
        .map((c) => c.textContent),
    ).toEqual(['Coucou']);
  });
});

describe('HarmonyView before and after', () => {
  function beforeAfter(origin?: 'data' | 'generation') {
    const after = makeStream(28, { label: 'with adapter', texts: { 25: 'Coucou' } });
    after.ids[25] = 99;
    const payload = makePayload(28, { label: 'base model', compare: after });
    if (origin) payload.conversations[0].origin = origin;
    const v = new HarmonyView(payload, { settings: DEFAULT_SETTINGS, maxHeight: 240 });
    document.body.appendChild(v.node);
    v.attach();
    return v;
  }

  it('opens side by side, base on the left and the adapter on the right', () => {
    const v = beforeAfter();
    expect(v.node.querySelector<HTMLSelectElement>('.ossft-compare')!.value).toBe('side-by-side');
    expect(v.panes.length).toBe(2);
    const labels = Array.from(v.node.querySelectorAll('.ossft-column-label')).map((n) => n.textContent);
    expect(labels[0]).toMatch(/^base model/);
    expect(labels[1]).toMatch(/^with adapter/);
  });

  it('keeps the loss mask for a training row but opens generated text without it', () => {
    const row = beforeAfter('data');
    expect(chips(row.node).some((c) => c.classList.contains('ossft-masked'))).toBe(true);
    document.body.replaceChildren();
    const generated = beforeAfter('generation');
    expect(chips(generated.node).some((c) => c.classList.contains('ossft-masked'))).toBe(false);
    expect(generated.node.querySelector<HTMLInputElement>('.ossft-mask-toggle input')!.checked).toBe(false);
    expect(generated.node.querySelector<HTMLElement>('.ossft-legend-masked')!.hidden).toBe(true);
    // The toggle still shows the mask on request.
    toggle(generated.node, '.ossft-mask-toggle');
    expect(chips(generated.node).some((c) => c.classList.contains('ossft-masked'))).toBe(true);
  });

  it('highlights the hovered token and its counterpart in the other column', () => {
    const v = beforeAfter('generation');
    const [left, right] = v.panes;
    const chipOf = (pane: typeof left, i: number) => pane.node.querySelector<HTMLElement>(`.ossft-chip[data-i="${i}"]`)!;
    chipOf(left, 9).dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    expect(chipOf(left, 9).classList).toContain('ossft-hover');
    expect(chipOf(left, 9).title).toContain('id 3');
    // Nothing generated is trained, so the card does not call it masked.
    expect(chipOf(left, 9).title).not.toContain('trained');
    expect(chipOf(right, 9).classList).toContain('ossft-hover');
    expect(v.node.querySelectorAll('.ossft-hover').length).toBe(2);
    // A token only one answer has is highlighted alone.
    chipOf(right, 25).dispatchEvent(new MouseEvent('mouseover', { bubbles: true }));
    expect(chipOf(right, 25).classList).toContain('ossft-hover');
    expect(left.highlightedToken).toBeNull();
    right.node.querySelector('.ossft-window')!.dispatchEvent(new MouseEvent('mouseleave'));
    expect(v.node.querySelectorAll('.ossft-hover').length).toBe(0);
  });
});

describe('HarmonyView safety', () => {
  it('shows HTML in token text as literal text', () => {
    const nasty = ['<script>alert(1)</script>', '<img src=x onerror=alert(1)>', '&amp;', '<b>bold</b>'];
    const { v } = view(4, {}, { texts: Object.fromEntries(nasty.map((t, i) => [i, t])) });
    const all = chips(v.node);
    expect(all.map((c) => c.textContent)).toEqual(['<script>alert(1)</script>', '<img·src=x·onerror=alert(1)>', '&amp;', '<b>bold</b>']);
    expect(v.node.querySelector('script, img, b')).toBeNull();
    expect(all.every((c) => c.children.length === 0)).toBe(true);
  });
});

describe('HarmonyRenderer', () => {
  it('renders the contract fixture with a compare stream', async () => {
    const renderer = new HarmonyRenderer(new ViewSettingsStore());
    await renderer.renderModel(mimeModel(HARMONY_MIME, contractFixture('harmony-tokens', 'valid', 'before-after')));
    expect(renderer.node.querySelector('.ossft-invalid')).toBeNull();
    // One token in each stream, side by side.
    expect(renderer.node.querySelectorAll('.ossft-column .ossft-chip[data-i]').length).toBe(2);
  });

  it('renders the contract fixture of a generated before/after without the loss mask', async () => {
    const renderer = new HarmonyRenderer(new ViewSettingsStore());
    await renderer.renderModel(mimeModel(HARMONY_MIME, contractFixture('harmony-tokens', 'valid', 'chat-before-after')));
    expect(renderer.node.querySelectorAll('.ossft-column').length).toBe(2);
    expect(renderer.node.querySelectorAll('.ossft-chip[data-i]').length).toBe(25);
    expect(renderer.node.querySelector('.ossft-pane .ossft-masked')).toBeNull();
  });

  it('shows the schema error instead of throwing', async () => {
    const renderer = new HarmonyRenderer(new ViewSettingsStore());
    await renderer.renderModel(mimeModel(HARMONY_MIME, { version: 1, conversations: [{ messages: [] }] }));
    const box = renderer.node.querySelector('.ossft-invalid')!;
    expect(box.textContent).toContain('conversations[0].tokens: is required');
  });

  it('shows parallel arrays of different lengths as an error', async () => {
    const payload = makePayload(5);
    payload.conversations[0].tokens.text.pop();
    const renderer = new HarmonyRenderer(new ViewSettingsStore());
    await renderer.renderModel(mimeModel(HARMONY_MIME, payload));
    expect(renderer.node.querySelector('.ossft-invalid')!.textContent).toContain(
      'conversations[0].tokens.text: has 4 entries but ids has 5',
    );
  });

  it('survives payloads that are not objects at all', async () => {
    const renderer = new HarmonyRenderer(new ViewSettingsStore());
    for (const data of [null, 'text', 42, [], { version: 2 }]) {
      await expect(renderer.renderModel(mimeModel(HARMONY_MIME, data))).resolves.toBeUndefined();
      expect(renderer.node.querySelector('.ossft-invalid')).not.toBeNull();
    }
  });
});
