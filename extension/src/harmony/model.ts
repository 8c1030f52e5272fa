import type { Channel, HarmonyTokenStream, Part, Role } from '@oss-finetune/schema';

export type HarmonyChannel = Channel;
export const CHANNELS: HarmonyChannel[] = ['analysis', 'commentary', 'final', 'none'];
export const ROLES: Role[] = ['system', 'developer', 'user', 'assistant', 'tool'];

export type Change = 'same' | 'added' | 'removed';

/**
 * One row of tokens as the pane draws it. A plain stream and a before/after diff both look like
 * this, so the virtualized pane has a single code path.
 */
export interface TokenSource {
  readonly length: number;
  readonly hasLoss: boolean;
  id(i: number): number;
  text(i: number): string;
  role(i: number): Role;
  channel(i: number): HarmonyChannel;
  part(i: number): Part;
  trained(i: number): boolean;
  loss(i: number): number | null;
  change(i: number): Change;
  /** Position in the stream the token came from, for the hover card. */
  origin(i: number): number;
}

export class StreamSource implements TokenSource {
  readonly length: number;
  readonly hasLoss: boolean;
  constructor(readonly stream: HarmonyTokenStream) {
    this.length = stream.ids.length;
    this.hasLoss = Array.isArray(stream.loss) && stream.loss.some((v) => typeof v === 'number');
  }
  id(i: number) {
    return this.stream.ids[i];
  }
  text(i: number) {
    return this.stream.text[i];
  }
  role(i: number) {
    return this.stream.role[i];
  }
  channel(i: number) {
    return this.stream.channel[i];
  }
  part(i: number) {
    return this.stream.part[i];
  }
  trained(i: number) {
    return this.stream.trained[i];
  }
  loss(i: number) {
    return this.stream.loss?.[i] ?? null;
  }
  change(): Change {
    return 'same';
  }
  origin(i: number) {
    return i;
  }
}

/** The schema cannot say that the parallel arrays have one length; this does. */
export function streamProblems(stream: HarmonyTokenStream, where: string): string[] {
  const n = stream.ids.length;
  const problems: string[] = [];
  for (const key of ['text', 'message', 'role', 'channel', 'part', 'trained', 'loss', 'logprob'] as const) {
    const values = stream[key] as unknown[] | undefined;
    if (values !== undefined && values.length !== n) {
      problems.push(`${where}.${key}: has ${values.length} entries but ids has ${n}`);
    }
  }
  return problems;
}

/**
 * What a chip shows. Whitespace is made visible because the loss mask and the tokenizer's splits
 * are exactly where a stray space or newline matters.
 */
export function displayText(text: string): string {
  if (text === '') return '∅';
  return text.replace(/\n/g, '⏎').replace(/\r/g, '␍').replace(/\t/g, '⇥').replace(/ /g, '·');
}

export function endsLine(text: string): boolean {
  return text.endsWith('\n');
}

/**
 * Width in monospace columns of a token's chip text; East Asian wide characters and emoji take two.
 * Works on the raw text: the whitespace marks of displayText take one column each, like what they
 * replace, so no display string is built for the 300,000 tokens a layout may cover.
 */
export function columns(text: string): number {
  if (text === '') return 1;
  let width = 0;
  for (let i = 0; i < text.length; i++) {
    const cp = text.charCodeAt(i);
    if (cp < 0x1100) width += 1;
    else if (cp >= 0xd800 && cp <= 0xdbff) {
      // A surrogate pair: astral characters are mostly emoji, drawn two columns wide.
      width += 2;
      i++;
    } else {
      width +=
        cp <= 0x115f ||
        (cp >= 0x2e80 && cp <= 0xa4cf) ||
        (cp >= 0xac00 && cp <= 0xd7a3) ||
        (cp >= 0xf900 && cp <= 0xfaff) ||
        (cp >= 0xff00 && cp <= 0xff60)
          ? 2
          : 1;
    }
  }
  return width;
}

/** The colour a chip takes: the channel for assistant output, the role for everything else. */
export function colourKey(role: Role, channel: HarmonyChannel): string {
  return channel !== 'none' ? channel : role;
}

/** One step of a diff: a token both streams share, or one only before or only after has. */
interface DiffEntry {
  change: Change;
  /** Position in the before stream, -1 for a token only after has. */
  before: number;
  /** Position in the after stream, -1 for a token only before has. */
  after: number;
}

/**
 * Diff two streams by token id: common prefix and suffix first (the usual case: one prompt, two
 * answers), then a longest-common-subsequence table for the middle while it stays small, and a plain
 * replace when it does not.
 */
function diffEntries(before: TokenSource, after: TokenSource, maxCells: number): DiffEntry[] {
  const entries: DiffEntry[] = [];
  const same = (b: number, a: number) => entries.push({ change: 'same', before: b, after: a });
  const removed = (b: number) => entries.push({ change: 'removed', before: b, after: -1 });
  const added = (a: number) => entries.push({ change: 'added', before: -1, after: a });
  let start = 0;
  while (start < before.length && start < after.length && before.id(start) === after.id(start)) start++;
  let endB = before.length;
  let endA = after.length;
  while (endB > start && endA > start && before.id(endB - 1) === after.id(endA - 1)) {
    endB--;
    endA--;
  }
  for (let i = 0; i < start; i++) same(i, i);
  const n = endB - start;
  const m = endA - start;
  if (n * m <= maxCells && n > 0 && m > 0) {
    const width = m + 1;
    const table = new Uint32Array((n + 1) * (m + 1));
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        table[i * width + j] =
          before.id(start + i) === after.id(start + j)
            ? table[(i + 1) * width + j + 1] + 1
            : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n && j < m) {
      if (before.id(start + i) === after.id(start + j)) {
        same(start + i++, start + j++);
      } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
        removed(start + i++);
      } else {
        added(start + j++);
      }
    }
    while (i < n) removed(start + i++);
    while (j < m) added(start + j++);
  } else {
    for (let i = start; i < endB; i++) removed(i);
    for (let j = start; j < endA; j++) added(j);
  }
  for (let j = endA; j < after.length; j++) same(endB + j - endA, j);
  return entries;
}

/** The before/after diff as one stream: shared tokens once, the others marked added or removed. */
export function diffSources(before: TokenSource, after: TokenSource, maxCells = 4_000_000): TokenSource {
  const entries = diffEntries(before, after, maxCells).map((e) =>
    e.after >= 0 ? { from: after, index: e.after, change: e.change } : { from: before, index: e.before, change: e.change },
  );
  return {
    length: entries.length,
    hasLoss: before.hasLoss || after.hasLoss,
    id: (k) => entries[k].from.id(entries[k].index),
    text: (k) => entries[k].from.text(entries[k].index),
    role: (k) => entries[k].from.role(entries[k].index),
    channel: (k) => entries[k].from.channel(entries[k].index),
    part: (k) => entries[k].from.part(entries[k].index),
    trained: (k) => entries[k].from.trained(entries[k].index),
    loss: (k) => entries[k].from.loss(entries[k].index),
    change: (k) => entries[k].change,
    origin: (k) => entries[k].index,
  };
}

/**
 * Which token of one stream is the same token in the other (-1 where none is): the pairs the diff
 * keeps, so a shared prompt lines up and so does text both answers have after they part.
 */
export interface Alignment {
  toAfter: Int32Array;
  toBefore: Int32Array;
}

export function alignSources(before: TokenSource, after: TokenSource, maxCells = 4_000_000): Alignment {
  const toAfter = new Int32Array(before.length).fill(-1);
  const toBefore = new Int32Array(after.length).fill(-1);
  for (const e of diffEntries(before, after, maxCells)) {
    if (e.change !== 'same') continue;
    toAfter[e.before] = e.after;
    toBefore[e.after] = e.before;
  }
  return { toAfter, toBefore };
}
