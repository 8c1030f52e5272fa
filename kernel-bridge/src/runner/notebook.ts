/**
 * The parts of nbformat 4 the runner reads and writes, and papermill-style parameter injection.
 */
import { randomBytes } from 'crypto';

export type MultilineString = string | string[];

export interface NbOutput {
  output_type: string;
  [key: string]: unknown;
}

/** What the runner reads of a cell's metadata; the rest is kept as it is. */
export interface NbCellMetadata {
  tags?: string[];
  [key: string]: unknown;
}

export interface NbCell {
  cell_type: 'code' | 'markdown' | 'raw';
  id?: string;
  source: MultilineString;
  metadata: NbCellMetadata;
  outputs?: NbOutput[];
  execution_count?: number | null;
  attachments?: unknown;
}

/** The language a kernel reports in kernel_info_reply, written into the notebook's metadata. */
export interface LanguageInfo {
  name?: string;
  version?: string;
  [key: string]: unknown;
}

/** What the runner reads of a notebook's metadata; the rest is kept as it is. */
export interface NbMetadata {
  kernelspec?: { name?: string; display_name?: string; language?: string; [key: string]: unknown };
  language_info?: LanguageInfo;
  [key: string]: unknown;
}

export interface Notebook {
  nbformat: number;
  nbformat_minor: number;
  metadata: NbMetadata;
  cells: NbCell[];
}

export function sourceText(source: MultilineString): string {
  return Array.isArray(source) ? source.join('') : source;
}

/** nbformat's on-disk style: multiline strings as lists of lines, each keeping its newline. */
export function splitLines(text: string): string[] {
  const lines = text.match(/[^\n]*\n|[^\n]+$/g);
  return lines ?? [];
}

export function parseNotebook(text: string): Notebook {
  const nb = JSON.parse(text);
  if (typeof nb !== 'object' || nb === null || !Array.isArray(nb.cells)) throw new Error('not a notebook: no cells');
  if (nb.nbformat !== 4) throw new Error(`nbformat ${nb.nbformat} is not supported; convert the notebook to nbformat 4`);
  return nb as Notebook;
}

const MIME_JSON = /^application\/(.+\+)?json$/;

/** Serialises like nbformat.write: multiline strings split into lines, one-space indent, sorted keys. */
export function serializeNotebook(nb: Notebook): string {
  const splitMime = (data: Record<string, unknown>) => {
    const out: Record<string, unknown> = {};
    for (const [mime, value] of Object.entries(data)) {
      // JSON payloads stay structured; text-like ones are stored as line lists.
      out[mime] = typeof value === 'string' && !MIME_JSON.test(mime) ? splitLines(value) : value;
    }
    return out;
  };
  const cells = nb.cells.map((cell) => {
    const c: Record<string, unknown> = { ...cell, source: splitLines(sourceText(cell.source)) };
    if (cell.outputs) {
      c.outputs = cell.outputs.map((o) => {
        const out: Record<string, unknown> = { ...o };
        if (typeof out.text === 'string') out.text = splitLines(out.text);
        if (out.data && typeof out.data === 'object') out.data = splitMime(out.data as Record<string, unknown>);
        return out;
      });
    }
    return c;
  });
  return `${JSON.stringify(sortKeys({ ...nb, cells }), null, 1)}\n`;
}

function sortKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v as object).sort()) out[k] = sortKeys((v as Record<string, unknown>)[k]);
    return out;
  }
  return v;
}

/** `{ python }` is a literal passed through as written (how numbers from the command line keep 1.0 a float). */
export type ParamValue = string | number | boolean | null | { python: string };

/** Typed like papermill's -p: True/False/None, integers and floats, anything else a string. */
export function parseParam(raw: string): [string, ParamValue] {
  const at = raw.indexOf('=');
  if (at <= 0) throw new Error(`--param expects KEY=VALUE, got ${JSON.stringify(raw)}`);
  const key = raw.slice(0, at).trim();
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new Error(`--param name ${JSON.stringify(key)} is not a Python identifier`);
  const value = raw.slice(at + 1);
  if (value === 'True' || value === 'true') return [key, true];
  if (value === 'False' || value === 'false') return [key, false];
  if (value === 'None' || value === 'null') return [key, null];
  if (/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(value)) return [key, { python: value }];
  return [key, value];
}

export function pythonLiteral(v: ParamValue): string {
  if (v === null) return 'None';
  if (v === true) return 'True';
  if (v === false) return 'False';
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`parameter value ${v} has no Python literal`);
    return String(v);
  }
  if (typeof v === 'object') return v.python;
  // A JSON string literal is a valid Python str literal (same escapes for quotes, backslashes, \uXXXX).
  return JSON.stringify(v);
}

const hasTag = (cell: NbCell, tag: string) => Array.isArray(cell.metadata?.tags) && cell.metadata.tags.includes(tag);

/**
 * Inserts a cell tagged `injected-parameters` right after the cell tagged `parameters` (or at the top
 * when there is none), replacing an injected cell left by an earlier run, as papermill does.
 */
export function injectParameters(nb: Notebook, params: Record<string, ParamValue>): Notebook {
  if (Object.keys(params).length === 0) return nb;
  const cells = nb.cells.filter((c) => !hasTag(c, 'injected-parameters'));
  const at = cells.findIndex((c) => hasTag(c, 'parameters'));
  const source = ['# Parameters', ...Object.entries(params).map(([k, v]) => `${k} = ${pythonLiteral(v)}`)].join('\n') + '\n';
  const cell: NbCell = {
    cell_type: 'code',
    id: randomBytes(4).toString('hex'),
    metadata: { tags: ['injected-parameters'] },
    source,
    outputs: [],
    execution_count: null,
  };
  cells.splice(at + 1, 0, cell);
  return { ...nb, cells };
}

export { hasTag };
