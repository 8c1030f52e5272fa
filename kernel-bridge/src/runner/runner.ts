/**
 * Headless "Run All": executes a notebook's code cells in order on a fresh kernel and writes the
 * outputs back the way nbclient does (with stream coalescing on).
 */
import { KernelClient, KernelGoneError, Output } from '../client';
import { KernelManager, KernelSpec } from '../launcher';
import { hasTag, injectParameters, NbCell, NbOutput, Notebook, ParamValue, sourceText } from './notebook';

export type RunStatus = 'ok' | 'error' | 'timeout' | 'dead';

/** Process exit codes of `oss-finetune run`, one per way a run can end. */
export const EXIT_CODES = { ok: 0, error: 1, usage: 2, timeout: 3, dead: 4 } as const;

export type RunEvent =
  | { type: 'start'; total: number; kernel: string }
  | { type: 'cell-start'; index: number; ordinal: number; total: number; source: string }
  | { type: 'output'; index: number; output: Output }
  | { type: 'cell-end'; index: number; ordinal: number; total: number; elapsedMs: number; ok: boolean };

export interface RunOptions {
  spec: KernelSpec;
  /** Working directory of the kernel; usually the notebook's folder. */
  cwd?: string;
  /** Per-cell limit in seconds; on expiry the kernel is interrupted and the run stops. */
  timeoutS?: number;
  /** Go on after a cell error (cells tagged `raises-exception` always may fail). */
  allowErrors?: boolean;
  params?: Record<string, ParamValue>;
  onEvent?: (e: RunEvent) => void;
  /** How long an interrupted cell may take to stop before the kernel is killed. */
  interruptGraceMs?: number;
  env?: Record<string, string>;
  /**
   * IPython's history database for the kernel, as nbclient's `ipython_hist_file`: `:memory:` (the
   * default) keeps notebooks run side by side off one shared SQLite file and headless runs out of the
   * user's history; null leaves the kernel's own setting.
   */
  ipythonHistFile?: string | null;
}

/**
 * The arguments the runner adds to a kernel's command line. The history option is IPython's, so it
 * goes only to kernels that are IPython (an ipykernel argv, or a name jupyter_client treats as one)
 * and only when the kernelspec does not set it already.
 */
export function runnerKernelArguments(spec: KernelSpec, ipythonHistFile: string | null = ':memory:'): string[] {
  const isIPython = spec.argv.some((a) => /\bipykernel/.test(a)) || ['python', 'python2', 'python3'].includes(spec.name);
  const setAlready = spec.argv.some((a) => a.startsWith('--HistoryManager.hist_file'));
  return isIPython && ipythonHistFile && !setAlready ? [`--HistoryManager.hist_file=${ipythonHistFile}`] : [];
}

export interface CellFailure {
  index: number;
  ename: string;
  evalue: string;
  traceback: string[];
}

export interface RunResult {
  notebook: Notebook;
  status: RunStatus;
  exitCode: number;
  failure?: CellFailure;
  /** One line for humans: what ended the run and in which cell. */
  message: string;
  cellsExecuted: number;
  elapsedMs: number;
}

function toNbOutput(o: Output): NbOutput | undefined {
  switch (o.output_type) {
    case 'stream':
      return { output_type: 'stream', name: o.name, text: o.text };
    case 'display_data':
      return { output_type: 'display_data', data: o.data, metadata: o.metadata };
    case 'execute_result':
      return { output_type: 'execute_result', data: o.data, metadata: o.metadata, execution_count: o.execution_count };
    case 'error':
      return { output_type: 'error', ename: o.ename, evalue: o.evalue, traceback: o.traceback };
    default:
      return undefined;
  }
}

const displayIdOf = (o: Output): string | undefined =>
  'transient' in o && o.transient && typeof o.transient.display_id === 'string' ? o.transient.display_id : undefined;

/**
 * Within each line, drops everything up to the last carriage return that has more text after it on
 * that line (what a terminal would show). Done line by line: the equivalent one-regex form
 * backtracks quadratically on long lines without a carriage return.
 */
export function applyCarriageReturns(text: string): string {
  if (!text.includes('\r')) return text;
  return text
    .split('\n')
    .map((line) => {
      if (line.length < 2) return line;
      const k = line.lastIndexOf('\r', line.length - 2);
      return k < 0 ? line : line.slice(k + 1);
    })
    .join('\n');
}

/**
 * Merges streams of the same name into the first of them, drops text overwritten by a carriage
 * return, and puts stdout before an adjacent stderr (their relative order is not guaranteed anyway).
 */
export function coalesceStreams(outputs: NbOutput[]): NbOutput[] {
  const merged: NbOutput[] = [];
  const byName = new Map<string, NbOutput>();
  for (const o of outputs) {
    if (o.output_type !== 'stream') {
      merged.push(o);
      continue;
    }
    const first = byName.get(o.name as string);
    if (first) first.text = (first.text as string) + (o.text as string);
    else {
      const copy = { ...o };
      byName.set(o.name as string, copy);
      merged.push(copy);
    }
  }
  for (const o of byName.values()) o.text = applyCarriageReturns(o.text as string);
  for (let i = 0; i + 1 < merged.length; i++) {
    const a = merged[i];
    const b = merged[i + 1];
    if (a.output_type === 'stream' && a.name === 'stderr' && b.output_type === 'stream' && b.name === 'stdout') {
      merged[i] = b;
      merged[i + 1] = a;
    }
  }
  return merged;
}

export async function runNotebook(input: Notebook, options: RunOptions): Promise<RunResult> {
  const started = Date.now();
  const nb: Notebook = injectParameters(JSON.parse(JSON.stringify(input)), options.params ?? {});
  const runnable = (c: NbCell) => c.cell_type === 'code' && sourceText(c.source).trim() !== '' && !hasTag(c, 'skip-execution');
  const total = nb.cells.filter(runnable).length;
  const manager = new KernelManager(options.spec, {
    cwd: options.cwd,
    env: options.env,
    extraArguments: runnerKernelArguments(options.spec, options.ipythonHistFile === undefined ? ':memory:' : options.ipythonHistFile),
  });
  // Output objects by display_id, across cells, so a later update rewrites them in place.
  const displays = new Map<string, Set<NbOutput>>();
  let ordinal = 0;
  const finish = (status: RunStatus, message: string, failure?: CellFailure): RunResult => ({
    notebook: nb,
    status,
    exitCode: EXIT_CODES[status],
    failure,
    message,
    cellsExecuted: ordinal,
    elapsedMs: Date.now() - started,
  });

  let client: KernelClient;
  try {
    client = await manager.start();
  } catch (e) {
    await manager.shutdown();
    return finish('dead', (e as Error).message);
  }
  options.onEvent?.({ type: 'start', total, kernel: options.spec.name });
  try {
    if (manager.kernelInfo?.language_info) nb.metadata.language_info = manager.kernelInfo.language_info;
    for (let index = 0; index < nb.cells.length; index++) {
      const cell = nb.cells[index];
      if (!runnable(cell)) continue;
      ordinal += 1;
      const source = sourceText(cell.source);
      const cellStart = Date.now();
      options.onEvent?.({ type: 'cell-start', index, ordinal, total, source });
      const allowsErrors = !!options.allowErrors || hasTag(cell, 'raises-exception');
      let outs: NbOutput[] = [];
      let clearPending = false;
      let timedOut = false;
      let killTimer: NodeJS.Timeout | undefined;
      const exec = client.execute(source, { stopOnError: !allowsErrors });
      const timer =
        options.timeoutS !== undefined
          ? setTimeout(() => {
              timedOut = true;
              manager.interrupt().catch(() => undefined);
              // A cell that ignores KeyboardInterrupt (or is stuck in C code) gets the kernel killed.
              killTimer = setTimeout(() => void manager.shutdown({ now: true }), options.interruptGraceMs ?? 10000);
            }, options.timeoutS * 1000)
          : undefined;
      let gone: KernelGoneError | undefined;
      try {
        for await (const o of exec) {
          options.onEvent?.({ type: 'output', index, output: o });
          const id = displayIdOf(o);
          if (id && (o.output_type === 'display_data' || o.output_type === 'execute_result' || o.output_type === 'update_display_data')) {
            for (const target of displays.get(id) ?? []) {
              target.data = o.data;
              target.metadata = o.metadata;
            }
          }
          if (o.output_type === 'clear_output') {
            if (o.wait) clearPending = true;
            else outs = [];
            continue;
          }
          const out = toNbOutput(o);
          if (!out) continue;
          if (clearPending) {
            outs = [];
            clearPending = false;
          }
          if (id) {
            if (!displays.has(id)) displays.set(id, new Set());
            displays.get(id)?.add(out);
          }
          outs.push(out);
        }
      } catch (e) {
        if (!(e instanceof KernelGoneError)) throw e;
        gone = e;
      } finally {
        if (timer) clearTimeout(timer);
        if (killTimer) clearTimeout(killTimer);
      }
      cell.outputs = coalesceStreams(outs);
      cell.execution_count = ordinal;
      const elapsedMs = Date.now() - cellStart;
      if (gone) {
        options.onEvent?.({ type: 'cell-end', index, ordinal, total, elapsedMs, ok: false });
        if (timedOut)
          return finish('timeout', `cell ${index + 1} timed out after ${options.timeoutS} s and the kernel had to be killed`, {
            index,
            ename: 'Timeout',
            evalue: '',
            traceback: [],
          });
        return finish('dead', `the kernel died while running cell ${index + 1}: ${gone.message}`, {
          index,
          ename: 'DeadKernel',
          evalue: gone.message,
          traceback: [],
        });
      }
      const reply = await exec.done;
      const ok = reply.status === 'ok';
      options.onEvent?.({ type: 'cell-end', index, ordinal, total, elapsedMs, ok });
      if (timedOut) {
        return finish('timeout', `cell ${index + 1} timed out after ${options.timeoutS} s and was interrupted`, {
          index,
          ename: reply.ename ?? 'Timeout',
          evalue: reply.evalue ?? '',
          traceback: reply.traceback ?? [],
        });
      }
      if (!ok && !allowsErrors) {
        const failure = { index, ename: reply.ename ?? 'Error', evalue: reply.evalue ?? '', traceback: reply.traceback ?? [] };
        return finish('error', `cell ${index + 1} raised ${failure.ename}: ${failure.evalue}`, failure);
      }
    }
    return finish('ok', `ran ${ordinal} cell(s)`);
  } finally {
    await manager.shutdown();
  }
}
