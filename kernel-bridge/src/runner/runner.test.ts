import { execFileSync } from 'child_process';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { findPython, makeKernelSpec, TempKernelSpec } from '../test-helpers';
import { applyCarriageReturns, coalesceStreams, EXIT_CODES, runNotebook, RunEvent, runnerKernelArguments } from './runner';
import { injectParameters, Notebook, parseNotebook, parseParam, pythonLiteral, serializeNotebook, splitLines } from './notebook';

const fixtures = join(__dirname, 'fixtures');
const compared = ['streams', 'display', 'rich', 'errors', 'long', 'history'];
let tmp: TempKernelSpec;
let work: string;
let refDir: string;

const load = (name: string) => parseNotebook(readFileSync(join(fixtures, `${name}.ipynb`), 'utf8'));

/** Strips what legitimately differs between two runs: timings and per-process temp paths. */
function normalize(nb: Notebook): unknown {
  const copy = JSON.parse(serializeNotebook(nb)) as Notebook;
  // The Python patch version may differ between the stored reference and this machine's venv.
  if (copy.metadata.language_info) delete copy.metadata.language_info.version;
  for (const cell of copy.cells) {
    delete cell.metadata.execution;
    for (const out of cell.outputs ?? []) {
      if (Array.isArray(out.traceback))
        out.traceback = (out.traceback as string[]).map((l) => l.replace(/ipykernel_\d+\/\d+\.py/g, 'ipykernel/cell.py'));
    }
  }
  return copy;
}

beforeAll(() => {
  tmp = makeKernelSpec();
  work = mkdtempSync(join(tmpdir(), 'kb-runner-'));
  // nbclient is the reference. Its outputs are kept in fixtures/nbclient/ because nbclient takes
  // minutes on the long-output fixture; KB_NBCLIENT_LIVE=1 re-runs it instead (and is how those files
  // are made: python nbclient_reference.py fixtures/nbclient /tmp fixtures/NAME.ipynb).
  refDir = join(fixtures, 'nbclient');
  if (process.env.KB_NBCLIENT_LIVE === '1') {
    refDir = work;
    execFileSync(
      findPython(),
      [join(__dirname, 'nbclient_reference.py'), work, work, ...compared.map((n) => join(fixtures, `${n}.ipynb`))],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
        env: { ...process.env, PYDEVD_DISABLE_FILE_VALIDATION: '1' },
      },
    );
  }
}, 600000);

afterAll(() => {
  tmp?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('runNotebook equals nbclient', () => {
  it.each(compared)('%s.ipynb', async (name) => {
    const result = await runNotebook(load(name), { spec: tmp.spec, cwd: work });
    const reference = parseNotebook(readFileSync(join(refDir, `${name}.ipynb`), 'utf8'));
    expect(normalize(result.notebook)).toEqual(normalize(reference));
  });
});

describe('runNotebook behaviour', () => {
  it("keeps IPython's history in memory, as nbclient does (Check History in Memory)", async () => {
    const result = await runNotebook(load('history'), { spec: tmp.spec, cwd: work });
    expect(result.status).toBe('ok');
    expect(result.notebook.cells[1].outputs).toEqual([{ output_type: 'stream', name: 'stdout', text: ':memory:\n' }]);
  });

  it('gives the history option to IPython kernels only, and not twice', () => {
    const flag = '--HistoryManager.hist_file=:memory:';
    expect(runnerKernelArguments(tmp.spec)).toEqual([flag]);
    expect(runnerKernelArguments({ ...tmp.spec, name: 'python3', argv: ['/opt/py/bin/python', '-m', 'some_wrapper'] })).toEqual([flag]);
    expect(runnerKernelArguments({ ...tmp.spec, name: 'julia-1.10', argv: ['julia', '-i', '{connection_file}'] })).toEqual([]);
    expect(runnerKernelArguments({ ...tmp.spec, argv: [...tmp.spec.argv, '--HistoryManager.hist_file=/tmp/h.sqlite'] })).toEqual([]);
    expect(runnerKernelArguments(tmp.spec, null)).toEqual([]);
  });

  it('stops at the first error, naming the cell, with the traceback', async () => {
    const result = await runNotebook(load('errors'), { spec: tmp.spec, cwd: work });
    expect(result.status).toBe('error');
    expect(result.exitCode).toBe(EXIT_CODES.error);
    expect(result.failure).toMatchObject({ index: 2, ename: 'ValueError', evalue: 'bad value' });
    expect(result.failure?.traceback.join('\n')).toContain('bad value');
    expect(result.message).toMatch(/cell 3 raised ValueError: bad value/);
    expect(result.notebook.cells[3].outputs).toEqual([]);
    expect(result.notebook.cells[3].execution_count).toBeNull();
  });

  it('goes on after errors with allowErrors', async () => {
    const result = await runNotebook(load('errors'), { spec: tmp.spec, cwd: work, allowErrors: true });
    expect(result.status).toBe('ok');
    expect(result.notebook.cells[3].outputs).toEqual([{ output_type: 'stream', name: 'stdout', text: 'never runs\n' }]);
    expect(result.notebook.cells.map((c) => c.execution_count)).toEqual([1, 2, 3, 4]);
  });

  it('injects parameters after the parameters cell, typed like papermill', async () => {
    const params = Object.fromEntries(['lr=2e-4', 'steps=60', 'name=French run', 'flag=True'].map(parseParam));
    const result = await runNotebook(load('params'), { spec: tmp.spec, cwd: work, params });
    expect(result.status).toBe('ok');
    const cells = result.notebook.cells;
    expect(cells[1].metadata.tags).toEqual(['injected-parameters']);
    expect(cells[1].source).toBe('# Parameters\nlr = 2e-4\nsteps = 60\nname = "French run"\nflag = True\n');
    expect(cells[2].outputs).toEqual([{ output_type: 'stream', name: 'stdout', text: '0.0002 60 French run True float\n' }]);
  });

  it('interrupts a cell that exceeds the timeout and reports it', async () => {
    const nb: Notebook = {
      ...load('params'),
      cells: [
        {
          cell_type: 'code',
          metadata: {},
          source: "print('start', flush=True)\nimport time\ntime.sleep(60)",
          outputs: [],
          execution_count: null,
        },
      ],
    };
    const result = await runNotebook(nb, { spec: tmp.spec, cwd: work, timeoutS: 1 });
    expect(result.status).toBe('timeout');
    expect(result.exitCode).toBe(EXIT_CODES.timeout);
    expect(result.failure).toMatchObject({ index: 0, ename: 'KeyboardInterrupt' });
    expect(result.notebook.cells[0].outputs?.[0]).toEqual({ output_type: 'stream', name: 'stdout', text: 'start\n' });
  });

  it('reports kernel death with the cell that was running', async () => {
    const nb: Notebook = {
      ...load('params'),
      cells: [
        { cell_type: 'code', metadata: {}, source: "print('ok')", outputs: [], execution_count: null },
        {
          cell_type: 'code',
          metadata: {},
          source: "import os\nprint('dying', flush=True)\nos._exit(1)",
          outputs: [],
          execution_count: null,
        },
        { cell_type: 'code', metadata: {}, source: "print('unreached')", outputs: [], execution_count: null },
      ],
    };
    const events: RunEvent[] = [];
    const result = await runNotebook(nb, { spec: tmp.spec, cwd: work, onEvent: (e) => events.push(e) });
    expect(result.status).toBe('dead');
    expect(result.exitCode).toBe(EXIT_CODES.dead);
    expect(result.failure?.index).toBe(1);
    expect(result.message).toMatch(/died while running cell 2/);
    expect(events.filter((e) => e.type === 'cell-start').map((e) => (e as { ordinal: number }).ordinal)).toEqual([1, 2]);
  });
});

describe('notebook helpers', () => {
  it('coalesces streams and applies carriage returns like nbclient', () => {
    const outs = coalesceStreams([
      { output_type: 'stream', name: 'stderr', text: 'e1\n' },
      { output_type: 'stream', name: 'stdout', text: 'a\rb' },
      { output_type: 'display_data', data: {}, metadata: {} },
      { output_type: 'stream', name: 'stdout', text: '\rc\n' },
    ]);
    expect(outs).toEqual([
      { output_type: 'stream', name: 'stdout', text: 'c\n' },
      { output_type: 'stream', name: 'stderr', text: 'e1\n' },
      { output_type: 'display_data', data: {}, metadata: {} },
    ]);
  });

  it('applies carriage returns exactly like the regex nbclient uses, in linear time', () => {
    const alphabet = ['a', 'b', '\r', '\n'];
    let seed = 7;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
    for (let i = 0; i < 2000; i++) {
      const s = Array.from({ length: Math.floor(rand() * 12) }, () => alphabet[Math.floor(rand() * 4)]).join('');
      expect(applyCarriageReturns(s)).toBe(s.replace(/[^\n]*\r(?=[^\n])/g, ''));
    }
    // A megabyte-long line with a late carriage return: the regex form would take minutes.
    expect(applyCarriageReturns('x'.repeat(1_000_000) + '\rdone')).toBe('done');
  });

  it('parses parameters and writes Python literals', () => {
    expect(parseParam('a=1.0')).toEqual(['a', { python: '1.0' }]);
    expect(parseParam('b=None')).toEqual(['b', null]);
    expect(parseParam('c=x=y')).toEqual(['c', 'x=y']);
    expect(() => parseParam('novalue')).toThrow();
    expect(() => parseParam('1x=2')).toThrow();
    expect(pythonLiteral('quote " and \\ back')).toBe('"quote \\" and \\\\ back"');
  });

  it('replaces an earlier injected cell instead of stacking them', () => {
    const once = injectParameters(load('params'), { steps: 1 });
    const twice = injectParameters(once, { steps: 2 });
    expect(twice.cells).toHaveLength(3);
    expect(twice.cells[1].source).toBe('# Parameters\nsteps = 2\n');
  });

  it('splits text into lines the way nbformat stores it', () => {
    expect(splitLines('a\nb\n')).toEqual(['a\n', 'b\n']);
    expect(splitLines('a\nb')).toEqual(['a\n', 'b']);
    expect(splitLines('')).toEqual([]);
  });
});
