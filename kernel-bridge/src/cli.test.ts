import { randomUUID } from 'crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import WebSocket from 'ws';
import { kernelSpecDirs, main, parseArgs, progressPrinter, resolveToken } from './cli';
import { EXIT_CODES } from './runner';
import { findPython, rawRequest, spawnCli, until, upgradeHead } from './test-helpers';
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
    const data = { 'text/plain': `${hostile}\nsecond line` };
    print({ type: 'output', index: 0, output: { output_type: 'display_data', data, metadata: {} } });
    print({ type: 'output', index: 0, output: { output_type: 'update_display_data', data, metadata: {}, transient: { display_id: 'p' } } });
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

describe("serve's token", () => {
  const file = (name: string, text: string) => {
    const path = join(work, name);
    writeFileSync(path, text, { mode: 0o600 });
    return path;
  };

  it('comes from --token, --token-file, OSS_FINETUNE_TOKEN, OSS_FINETUNE_TOKEN_FILE, in that order', () => {
    const tokenFile = file('token', '  from-file\n');
    const envFile = file('env-token', 'from-env-file\n');
    const env = { OSS_FINETUNE_TOKEN: 'from-env', OSS_FINETUNE_TOKEN_FILE: envFile };
    expect(resolveToken(parseArgs(['serve', '--token', 'from-flag']), env)).toEqual({ token: 'from-flag', source: '--token' });
    expect(resolveToken(parseArgs(['serve', '--token-file', tokenFile]), env)).toEqual({ token: 'from-file', source: '--token-file' });
    expect(resolveToken(parseArgs(['serve']), env)).toEqual({ token: 'from-env', source: 'OSS_FINETUNE_TOKEN' });
    expect(resolveToken(parseArgs(['serve']), { OSS_FINETUNE_TOKEN_FILE: envFile })).toEqual({
      token: 'from-env-file',
      source: 'OSS_FINETUNE_TOKEN_FILE',
    });
    expect(resolveToken(parseArgs(['serve']), {})).toEqual({ source: 'generated' });
  });

  it('refuses both flags at once, an empty source and an unreadable file (exit 2)', async () => {
    const empty = file('empty-token', ' \n');
    const env = { OSS_FINETUNE_TOKEN: '' };
    expect(() => resolveToken(parseArgs(['serve', '--token', 'a', '--token-file', empty]), {})).toThrow('not both');
    expect(() => resolveToken(parseArgs(['serve', '--token=']), {})).toThrow('--token is empty');
    expect(() => resolveToken(parseArgs(['serve', '--token-file', empty]), {})).toThrow('is empty');
    expect(() => resolveToken(parseArgs(['serve', '--token-file', join(work, 'missing')]), {})).toThrow('cannot read the token file');
    expect(() => resolveToken(parseArgs(['serve']), env)).toThrow('OSS_FINETUNE_TOKEN is set but empty');
    expect(await main(['serve', '--token-file', empty])).toBe(EXIT_CODES.usage);
    expect(stderr.join('')).toMatch(/is empty[\s\S]*OSS_FINETUNE_TOKEN_FILE/);
  });

  it('says in --help which source wins', async () => {
    const out: string[] = [];
    jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => out.push(String(chunk)) > 0);
    expect(await main(['serve', '--help'])).toBe(0);
    const help = out.join('');
    for (const name of ['--token-file', 'OSS_FINETUNE_TOKEN', 'OSS_FINETUNE_TOKEN_FILE', '--allow-host']) expect(help).toContain(name);
    expect(help).toMatch(/command line wins over the\s+environment/);
  });

  it('parses --allow-host as often as given', () => {
    expect(parseArgs(['serve', '--allow-host', 'a.example', '--allow-host=b.example']).allowHosts).toEqual(['a.example', 'b.example']);
  });
});

describe('oss-finetune serve, as a process', () => {
  it('survives malformed WebSocket upgrades (400) with its kernels and connections working, and takes the token from the environment', async () => {
    const token = `env-${randomUUID()}`;
    const child = spawnCli(['serve', '--port', '0', '--python', findPython()], {
      ...process.env,
      OSS_FINETUNE_TOKEN: token,
      PYDEVD_DISABLE_FILE_VALIDATION: '1',
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d) => (out += d));
    child.stderr?.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let ws: WebSocket | undefined;
    try {
      await until(() => /\?token=/.test(out) || child.exitCode !== null, 'serve to print its URL', 30000);
      const m = /at (http:\/\/\S+?)\?token=(.*)$/m.exec(out);
      expect([m?.[2], err]).toEqual(['... (the token from OSS_FINETUNE_TOKEN)', '']);
      expect(out).not.toContain(token);
      const base = m![1];
      const auth = { Authorization: `token ${token}` };
      const created = await fetch(`${base}api/kernels`, { method: 'POST', headers: auth, body: '{}' });
      expect(created.status).toBe(201);
      const id = ((await created.json()) as { id: string }).id;

      const replies: string[] = [];
      ws = new WebSocket(`${base.replace('http', 'ws')}api/kernels/${id}/channels?token=${token}`);
      ws.on('message', (data: Buffer) => replies.push(JSON.parse(data.toString()).parent_header.msg_id));
      await new Promise((resolve, reject) => ws!.once('open', resolve).once('error', reject));
      const ask = async () => {
        const msgId = randomUUID();
        const header = {
          msg_id: msgId,
          msg_type: 'kernel_info_request',
          session: 's',
          username: 'u',
          date: new Date().toISOString(),
          version: '5.3',
        };
        ws!.send(JSON.stringify({ channel: 'shell', header, parent_header: {}, metadata: {}, content: {}, buffers: [] }));
        await until(() => replies.includes(msgId), 'kernel_info_reply');
      };
      await ask();

      const host = new URL(base).host;
      for (const target of ['//[', '/%E0%A4%A', `/api/kernels/%E0%A4%A/channels?token=${token}`])
        expect([target, await rawRequest(base, upgradeHead(target, host))]).toEqual([target, 400]);
      expect(await rawRequest(base, upgradeHead(`/api/kernels/${id}/channels?token=${token}`, 'rebound.example'))).toBe(403);

      expect(child.exitCode).toBeNull();
      await ask();
      const listed = await fetch(`${base}api/kernels`, { headers: auth });
      expect(((await listed.json()) as Array<{ id: string; connections: number }>).map((k) => [k.id, k.connections])).toEqual([[id, 1]]);
    } finally {
      ws?.close();
      child.kill('SIGTERM');
    }
    // Still running when asked to stop, it shuts its kernels down and exits cleanly.
    expect(await exited).toBe(0);
  }, 60000);
});
