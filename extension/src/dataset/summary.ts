import type { DatasetSummaryPayload } from '@oss-finetune/schema';

import { el } from '../common/dom';
import { formatNumber } from '../common/payload';

const SVG = 'http://www.w3.org/2000/svg';

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

/** The schema does not tie the histogram's counts to its edges; this does. */
export function summaryProblems(payload: DatasetSummaryPayload): string[] {
  const { edges, counts } = payload.token_lengths;
  const problems: string[] = [];
  if (counts.length !== edges.length - 1) {
    problems.push(`token_lengths.counts: has ${counts.length} bins but edges describe ${edges.length - 1}`);
  }
  if (payload.tokens_trained > payload.tokens_total) {
    problems.push('tokens_trained: is larger than tokens_total');
  }
  return problems;
}

/**
 * A histogram of token lengths as SVG bars; bins past max_seq_length are drawn in the
 * "over the limit" colour so that the cut is visible.
 */
function histogram(payload: DatasetSummaryPayload): SVGSVGElement {
  const { edges, counts } = payload.token_lengths;
  const W = 420;
  const H = 160;
  const pad = { l: 36, r: 8, t: 8, b: 28 };
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'ossft-histogram', role: 'img' });
  const max = Math.max(1, ...counts);
  const x0 = edges[0];
  const x1 = edges[edges.length - 1];
  const span = x1 - x0 || 1;
  const sx = (x: number) => pad.l + ((x - x0) / span) * (W - pad.l - pad.r);
  const sy = (c: number) => H - pad.b - (c / max) * (H - pad.t - pad.b);
  counts.forEach((count, i) => {
    const left = sx(edges[i]);
    const right = sx(edges[i + 1]);
    const over = edges[i + 1] > payload.max_seq_length;
    const bar = svg('rect', {
      x: left.toFixed(1),
      y: sy(count).toFixed(1),
      width: Math.max(0.5, right - left - 1).toFixed(1),
      height: (H - pad.b - sy(count)).toFixed(1),
      class: over ? 'ossft-bar ossft-bar-over' : 'ossft-bar',
    });
    const title = svg('title', {});
    title.textContent = `${edges[i]}–${edges[i + 1]} tokens: ${count} rows`;
    bar.appendChild(title);
    root.appendChild(bar);
  });
  if (payload.max_seq_length >= x0 && payload.max_seq_length <= x1) {
    const x = sx(payload.max_seq_length).toFixed(1);
    root.appendChild(svg('line', { x1: x, x2: x, y1: pad.t, y2: H - pad.b, class: 'ossft-limit' }));
  }
  const labels: [number, number, string, string][] = [
    [pad.l, H - 8, String(x0), 'start'],
    [W - pad.r, H - 8, `${x1} tokens`, 'end'],
    [pad.l - 4, pad.t + 8, String(max), 'end'],
  ];
  for (const [x, y, text, anchor] of labels) {
    const t = svg('text', { x, y, 'text-anchor': anchor, class: 'ossft-axis-label' });
    t.textContent = text;
    root.appendChild(t);
  }
  const total = counts.reduce((a, b) => a + b, 0);
  root.setAttribute('aria-label', `Token length histogram: ${counts.length} bins, ${total} rows, limit ${payload.max_seq_length} tokens`);
  return root;
}

export function renderSummary(payload: DatasetSummaryPayload): HTMLDivElement {
  const root = el('div', 'ossft-dataset');
  root.appendChild(el('div', 'ossft-title', `Data set: ${payload.source}${payload.format ? ` (${payload.format})` : ''}`));

  const facts = el('dl', 'ossft-facts');
  const fraction = payload.tokens_total > 0 ? payload.tokens_trained / payload.tokens_total : 0;
  const rows = payload.rows_read !== undefined ? `${payload.rows} of ${payload.rows_read} read` : String(payload.rows);
  const lengths = payload.token_lengths;
  const entries: [string, string, string][] = [
    ['rows', 'Rows', rows],
    ['lengths', 'Token length', `min ${lengths.min ?? '–'} · mean ${formatNumber(lengths.mean ?? null, 3)} · max ${lengths.max ?? '–'}`],
    [
      'over-limit',
      `Over ${payload.max_seq_length} tokens`,
      `${payload.over_limit.rows} rows, ${payload.over_limit.action === 'drop' ? 'dropped' : 'truncated'}`,
    ],
    [
      'trained',
      'Tokens trained',
      `${payload.tokens_trained.toLocaleString('en')} of ${payload.tokens_total.toLocaleString('en')} (${(fraction * 100).toFixed(1)}%)${payload.loss_mask ? ` · loss mask: ${payload.loss_mask}` : ''}`,
    ],
  ];
  for (const [key, term, value] of entries) {
    facts.append(el('dt', undefined, term), el('dd', `ossft-fact-${key}`, value));
  }
  root.appendChild(facts);

  const meter = el('div', 'ossft-trained-meter');
  meter.setAttribute('role', 'meter');
  meter.setAttribute('aria-label', 'Fraction of tokens trained');
  meter.setAttribute('aria-valuemin', '0');
  meter.setAttribute('aria-valuemax', '100');
  meter.setAttribute('aria-valuenow', (fraction * 100).toFixed(1));
  const fill = el('div', 'ossft-trained-fill');
  fill.style.width = `${(fraction * 100).toFixed(1)}%`;
  meter.appendChild(fill);
  root.appendChild(meter);

  const panels = el('div', 'ossft-dataset-panels');
  const histo = el('figure', 'ossft-figure');
  histo.appendChild(histogram(payload));
  histo.appendChild(el('figcaption', undefined, 'Rows by token length; bars past the dashed line are over max_seq_length.'));
  panels.appendChild(histo);

  const languages = el('table', 'ossft-languages');
  const caption = el('caption', undefined, 'Reasoning languages');
  languages.appendChild(caption);
  const sorted = Object.entries(payload.languages).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  const most = Math.max(1, ...sorted.map(([, n]) => n));
  const body = el('tbody');
  for (const [language, count] of sorted) {
    const row = el('tr');
    const bar = el('div', 'ossft-lang-bar');
    bar.style.width = `${((count / most) * 100).toFixed(1)}%`;
    const barCell = el('td', 'ossft-lang-bar-cell');
    barCell.appendChild(bar);
    row.append(el('th', undefined, language), el('td', 'ossft-lang-count', String(count)), barCell);
    body.appendChild(row);
  }
  if (sorted.length === 0) {
    const row = el('tr');
    row.appendChild(el('td', undefined, 'no language column'));
    body.appendChild(row);
  }
  languages.appendChild(body);
  panels.appendChild(languages);
  root.appendChild(panels);

  if (payload.skipped_rows?.length) {
    const skipped = el('details', 'ossft-skipped');
    skipped.appendChild(el('summary', undefined, `${payload.skipped_rows.length} bad rows skipped`));
    const list = el('ul');
    for (const row of payload.skipped_rows.slice(0, 50)) {
      list.appendChild(el('li', undefined, `row ${row.row}${row.field ? ` (${row.field})` : ''}: ${row.error}`));
    }
    skipped.appendChild(list);
    root.appendChild(skipped);
  }
  return root;
}
