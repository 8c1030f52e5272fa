// The bench page: the extension's Harmony view (from extension/lib) against one span per token.
import { schemaIssues } from '@oss-finetune/schema';
import { HarmonyView } from '../../extension/lib/harmony/view.js';
import { DEFAULT_SETTINGS } from '../../extension/lib/settings.js';

const EXCHANGE = [
  [200006, '<|start|>', 'user', 'none', 'special', false],
  [1428, 'user', 'user', 'none', 'header', false],
  [200008, '<|message|>', 'user', 'none', 'special', false],
  [2, 'Combien', 'user', 'none', 'content', false],
  [3, ' font', 'user', 'none', 'content', false],
  [4, ' 2+2 ?', 'user', 'none', 'content', false],
  [200007, '<|end|>', 'user', 'none', 'special', false],
  [200006, '<|start|>', 'assistant', 'analysis', 'special', false],
  [173781, 'assistant', 'assistant', 'analysis', 'header', false],
  [200005, '<|channel|>', 'assistant', 'analysis', 'special', false],
  [35644, 'analysis', 'assistant', 'analysis', 'header', false],
  [200008, '<|message|>', 'assistant', 'analysis', 'special', false],
  [5, 'On', 'assistant', 'analysis', 'content', true],
  [6, ' additionne', 'assistant', 'analysis', 'content', true],
  [7, ' deux', 'assistant', 'analysis', 'content', true],
  [8, ' et', 'assistant', 'analysis', 'content', true],
  [9, ' deux', 'assistant', 'analysis', 'content', true],
  [10, '.\n', 'assistant', 'analysis', 'content', true],
  [200007, '<|end|>', 'assistant', 'analysis', 'special', true],
  [200006, '<|start|>', 'assistant', 'final', 'special', false],
  [200005, '<|channel|>', 'assistant', 'final', 'special', false],
  [17196, 'final', 'assistant', 'final', 'header', false],
  [200008, '<|message|>', 'assistant', 'final', 'special', false],
  [11, 'Quatre', 'assistant', 'final', 'content', true],
  [12, '.', 'assistant', 'final', 'content', true],
  [200002, '<|return|>', 'assistant', 'final', 'special', true],
];

function payload(n) {
  const t = { ids: [], text: [], message: [], role: [], channel: [], part: [], trained: [], loss: [] };
  for (let i = 0; i < n; i++) {
    const [id, text, role, channel, part, trained] = EXCHANGE[i % EXCHANGE.length];
    t.ids.push(id); t.text.push(text); t.message.push(Math.floor(i / 8)); t.role.push(role);
    t.channel.push(channel); t.part.push(part); t.trained.push(trained); t.loss.push(trained ? (i % 7) / 3 : null);
  }
  return { version: 1, title: `${n} tokens`, conversations: [{ messages: [], tokens: t }] };
}

const frame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));
// After the frame callback the browser paints; the next task runs after that paint.
const painted = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

let current = null;

window.bench = {
  async render(kind, n) {
    const data = payload(n);
    const host = document.getElementById('host');
    await frame();
    const t0 = performance.now();
    let validateMs = 0;
    if (kind === 'virtual') {
      const v0 = performance.now();
      const issues = schemaIssues('harmony-tokens', data);
      validateMs = performance.now() - v0;
      if (issues.length) throw new Error(JSON.stringify(issues[0]));
      const view = new HarmonyView(data, { settings: DEFAULT_SETTINGS });
      host.replaceChildren(view.node);
      view.attach();
      current = { scroller: view.panes[0].node, pane: view.panes[0] };
    } else {
      const box = document.createElement('div');
      box.className = 'naive';
      const t = data.conversations[0].tokens;
      for (let i = 0; i < n; i++) {
        const span = document.createElement('span');
        span.className = `ossft-chip ossft-k-${t.channel[i] !== 'none' ? t.channel[i] : t.role[i]} ossft-part-${t.part[i]}${t.trained[i] ? '' : ' ossft-masked'}`;
        span.title = `id ${t.ids[i]} · ${t.role[i]} · ${t.channel[i]}`;
        span.textContent = t.text[i].replace(/\n/g, '⏎').replace(/ /g, '·');
        box.appendChild(span);
        if (t.text[i].endsWith('\n')) box.appendChild(document.createElement('br'));
      }
      host.replaceChildren(box);
      current = { scroller: box, pane: null };
    }
    await painted();
    const firstPaintMs = performance.now() - t0;
    return { firstPaintMs, validateMs, domNodes: document.getElementsByTagName('*').length };
  },

  /** Mean time of two frames with nothing to do: the floor of the per-jump figure below. */
  async idleFrames(count) {
    let total = 0;
    for (let j = 0; j < count; j++) {
      await frame();
      const f0 = performance.now();
      await frame();
      await frame();
      total += performance.now() - f0;
    }
    return total / count;
  },

  /**
   * Jumps one screen at a time, each from inside a frame's animation callbacks as a scroll event
   * would be. `sync` is the JavaScript, style and layout of the jump; `frame` adds the paint and
   * commit of the frame that shows it (the main thread's whole share of the jump); `twoFrame` is
   * the time from the jump to the second frame after it: 33 ms at 60 Hz, as for idle frames, when
   * neither the main thread nor raster makes a frame late.
   */
  async jumps(count) {
    const { scroller, pane } = current;
    const screen = scroller.clientHeight;
    const sync = [];
    const work = [];
    const frames = [];
    await frame();
    for (let j = 0; j < count; j++) {
      await frame();
      const t0 = performance.now();
      scroller.scrollTop += screen;
      if (pane) pane.render();
      void scroller.firstElementChild?.offsetHeight;
      sync.push(performance.now() - t0);
      // A task queued now runs once this frame's paint and commit are done.
      await new Promise((resolve) => setTimeout(resolve, 0));
      work.push(performance.now() - t0);
      await frame();
      await frame();
      frames.push(performance.now() - t0);
    }
    const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
    const p95 = (a) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.ceil(a.length * 0.95) - 1)];
    return {
      syncMs: mean(sync),
      p95SyncMs: p95(sync),
      maxSyncMs: Math.max(...sync),
      frameMs: mean(work),
      p95FrameMs: p95(work),
      maxFrameMs: Math.max(...work),
      twoFrameMs: mean(frames),
      screenPx: screen,
    };
  },
};
