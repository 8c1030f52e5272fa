import { TokenSource, columns } from './model';

/** Per-token facts the layout needs, computed once per stream and reused on every relayout. */
export interface Measures {
  /** Monospace columns of each chip's visible text. */
  cols: Uint16Array;
  /** 1 where the token ends with a newline, so the next token starts a new line. */
  breaks: Uint8Array;
}

export function measure(source: TokenSource): Measures {
  const cols = new Uint16Array(source.length);
  const breaks = new Uint8Array(source.length);
  for (let i = 0; i < source.length; i++) {
    const text = source.text(i);
    cols[i] = Math.min(65535, columns(text));
    breaks[i] = text.charCodeAt(text.length - 1) === 10 ? 1 : 0;
  }
  return { cols, breaks };
}

export interface Geometry {
  /** Width of the text area in px. */
  width: number;
  /** Width of one monospace column in px. */
  charWidth: number;
  /** Padding, border and margin a chip adds to its text, in px. */
  chipExtra: number;
}

/**
 * Fixed-height lines: `order` lists the tokens shown, in order, and line k holds
 * order[lineStarts[k]] .. order[lineStarts[k + 1] - 1]. Only this table is built for all tokens;
 * the DOM exists only for the lines on screen.
 */
export interface Layout {
  order: Int32Array;
  lineStarts: Int32Array;
  lineCount: number;
}

export function layoutLines(source: TokenSource, measures: Measures, shown: (i: number) => boolean, geometry: Geometry): Layout {
  const order = new Int32Array(source.length);
  let count = 0;
  for (let i = 0; i < source.length; i++) if (shown(i)) order[count++] = i;

  const starts: number[] = [0];
  let used = 0;
  const width = Math.max(geometry.width, geometry.charWidth * 8);
  for (let k = 0; k < count; k++) {
    const i = order[k];
    const chip = measures.cols[i] * geometry.charWidth + geometry.chipExtra;
    if (used > 0 && used + chip > width) {
      starts.push(k);
      used = 0;
    }
    used += chip;
    if (measures.breaks[i] && k + 1 < count) {
      starts.push(k + 1);
      used = 0;
    }
  }
  if (count === 0) starts.length = 0;
  starts.push(count);
  return { order: order.subarray(0, count), lineStarts: Int32Array.from(starts), lineCount: starts.length - 1 };
}

/** Index of the line holding position k of `order` (binary search over line starts). */
export function lineOf(layout: Layout, k: number): number {
  let lo = 0;
  let hi = layout.lineCount - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (layout.lineStarts[mid] <= k) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}
