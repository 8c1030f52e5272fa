import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { kernelSpecDirs, main, parseArgs, progressPrinter } from './cli';
import { EXIT_CODES } from './runner';
import { findPython } from './test-helpers';
import { isControl } from './text';

let work: string;
let stderr: string[];

beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'kb-cli-'));
  for (const name of ['errors', 'params'])
    copyFileSync(join(__dirname, 'runner', 'fixtures', `${name}.ipynb`), join(work, `${name}.ipynb`));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));
beforeEach(() => {
  stderr = [];
  jest.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr.push(String(chunk));
    return true;
  });
});
afterEach(() => jest.restoreAllMocks());

describe('oss-finetune CLI', () => {
  it('runs a notebook with parameters, shows progress, writes OUT and exits 0', async () => {
    const out = join(work, 'params-run.ipynb');
    const code = await main([
      'run',
      join(work, 'params.ipynb'),
      '-o',
      out,
      '--param',
      'steps=3',
      '--param=name=cli',
      '--python',
      findPython(),
    ]);
    expect(code).toBe(EXIT_CODES.ok);
    const nb = JSON.parse(readFileSync(out, 'utf8'));
    expect(nb.cells[2].outputs[0].text).toEqual(['0.001 3 cli False float\n']);
    expect(nb.cells[2].execution_count).toBe(3);
    const log = stderr.join('');
    expect(log).toMatch(/\[1\/3\] cell 1/);
    expect(log).toMatch(/\[3\/3\] done in/);
  });

  it('exits 1 on a cell error, naming the cell and printing the traceback; default OUT beside the input', async () => {
    const code = await main(['run', join(work, 'errors.ipynb'), '--python', findPython()]);
    expect(code).toBe(EXIT_CODES.error);
    const log = stderr.join('');
    expect(log).toMatch(/cell 3 raised ValueError: bad value/);
    expect(log).toContain('ValueError');
    const nb = JSON.parse(readFileSync(join(work, 'errors.out.ipynb'), 'utf8'));
    expect(nb.cells[2].outputs[0].ename).toBe('ValueError');
  });

  it('exits 2 on usage errors', async () => {
    expect(await main(['run'])).toBe(EXIT_CODES.usage);
    expect(await main(['run', 'a.ipynb', '--timeout', 'soon'])).toBe(EXIT_CODES.usage);
    expect(await main(['run', join(work, 'missing.ipynb')])).toBe(EXIT_CODES.usage);
    expect(await main(['fly'])).toBe(EXIT_CODES.usage);
  });

  it('parses flags in both spellings', () => {
    const a = parseArgs(['run', 'nb.ipynb', '--timeout=5', '--allow-errors', '-p', 'lr=0.1', '--kernel', 'k']);
    expect(a).toMatchObject({
      command: 'run',
      positional: ['nb.ipynb'],
      timeoutS: 5,
      allowErrors: true,
      kernel: 'k',
      params: { lr: { python: '0.1' } },
    });
  });

  it('looks for kernelspecs where Jupyter does, JUPYTER_PATH first', () => {
    const dirs = kernelSpecDirs({ JUPYTER_PATH: '/a', HOME: '/h', XDG_DATA_HOME: '/x' });
    expect(dirs[0]).toBe(join('/a', 'kernels'));
    expect(dirs[1]).toBe(join('/x', 'jupyter', 'kernels'));
  });
});

describe('the progress display', () => {
  const hostile = 'step 3 \x1b]0;owned\x07\x1b[2J\u202eevil\u2066 \x9b\x7f\r end';
  const printed = (isTTY: boolean) => {
    const written: string[] = [];
    const print = progressPrinter({ isTTY, columns: 200, write: (chunk: string) => written.push(chunk) > 0 });
    print({ type: 'start', total: 1, kernel: 'python3\x1b[2J' });
    print({ type: 'cell-start', index: 0, ordinal: 1, total: 1, source: `print("\x1b]0;t\x07")` });
    for (const output_type of ['display_data', 'update_display_data'] as const)
      print({
        type: 'output',
        index: 0,
        output: { output_type, data: { 'text/plain': `${hostile}\nsecond line` }, metadata: {}, transient: {} },
      });
    print({ type: 'cell-end', index: 0, ordinal: 1, total: 1, elapsedMs: 5, ok: true });
    return written.join('');
  };
  // Control characters other than line ends, once the printer's own line redraw (carriage return,
  // erase line) is taken out.
  const controls = (text: string) => [...text.split('\r\x1b[2K').join('')].filter((ch) => ch !== '\n' && isControl(ch.charCodeAt(0)));

  it.each([true, false])('shows control characters and bidi overrides from the notebook escaped (tty: %p)', (isTTY) => {
    const text = printed(isTTY);
    expect(controls(text)).toEqual([]);
    expect(text).toContain('step 3 \\x1b]0;owned\\x07\\x1b[2J\\u202eevil\\u2066 \\x9b\\x7f\\r end');
    expect(text).toContain('kernel python3\\x1b[2J: 1 code cell(s)');
    expect(text).not.toContain('second line');
  });
});
