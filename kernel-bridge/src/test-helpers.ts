/**
 * Shared set-up for tests that drive a real ipykernel.
 */
import { ChildProcess, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'fs';
import { connect } from 'net';
import { tmpdir } from 'os';
import { join, resolve } from 'path';
import { KernelSpec, loadKernelSpec } from './launcher';

export const repoRoot = resolve(__dirname, '..', '..');

/** The project's Python: OSS_FINETUNE_PYTHON, else the repo's .venv. Fails loudly, never skips. */
export function findPython(): string {
  const fromEnv = process.env.OSS_FINETUNE_PYTHON;
  if (fromEnv) {
    if (!existsSync(fromEnv)) throw new Error(`OSS_FINETUNE_PYTHON=${fromEnv} does not exist`);
    return fromEnv;
  }
  const candidates = [join(repoRoot, '.venv', 'bin', 'python'), join(repoRoot, '.venv', 'Scripts', 'python.exe')];
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(
      `No Python venv with ipykernel at ${join(repoRoot, '.venv')}. Run \`npm test\` from the repository root ` +
        '(it creates the venv), or set OSS_FINETUNE_PYTHON to a Python that has ipykernel.',
    );
  }
  return found;
}

export interface TempKernelSpec {
  spec: KernelSpec;
  /** The kernels/ folder that holds the spec, for kernelspec discovery. */
  kernelsDir: string;
  cleanup(): void;
}

/** A kernelspec written to a temp dir, pointing at the project's Python. */
export function makeKernelSpec(options: { name?: string; interruptMode?: 'signal' | 'message' } = {}): TempKernelSpec {
  const name = options.name ?? 'python3-test';
  const root = mkdtempSync(join(tmpdir(), 'kb-spec-'));
  const kernelsDir = join(root, 'kernels');
  const dir = join(kernelsDir, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'kernel.json'),
    JSON.stringify({
      argv: [findPython(), '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
      display_name: `Python (${name})`,
      language: 'python',
      interrupt_mode: options.interruptMode ?? 'signal',
      // Keeps ipykernel's debugger warning about frozen modules out of captured stderr.
      env: { PYDEVD_DISABLE_FILE_VALIDATION: '1' },
    }),
  );
  return { spec: loadKernelSpec(dir, name), kernelsDir, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

export function streamText(outputs: Array<{ output_type: string; name?: string; text?: string }>, name = 'stdout'): string {
  return outputs
    .filter((o) => o.output_type === 'stream' && o.name === name)
    .map((o) => o.text)
    .join('');
}

/** Resolves when `predicate` holds, polling; rejects after `timeoutMs` with `what` in the message. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 20000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Sends `head` (request line and headers, no blank line) on a raw socket and resolves with the
 * status code of the answer: what a browser's `new WebSocket(...)` or a hand-made request can send,
 * without a client library normalising the path first.
 */
export function rawRequest(url: string, head: string): Promise<number> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let data = '';
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(data);
      if (m) {
        resolve(Number(m[1]));
        socket.destroy();
      }
    });
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`no status line in ${JSON.stringify(data)}`)));
    socket.write(`${head}\r\n\r\n`);
  });
}

/** The head of a WebSocket upgrade request for `target` (a raw request target) with that Host header. */
export const upgradeHead = (target: string, host: string): string =>
  [
    `GET ${target} HTTP/1.1`,
    `Host: ${host}`,
    'Upgrade: websocket',
    'Connection: Upgrade',
    'Sec-WebSocket-Version: 13',
    `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}`,
  ].join('\r\n');

/**
 * Runs `oss-finetune ARGS` in a child process from the TypeScript sources (each file transpiled as it
 * is loaded), so a test sees what the installed command does, exit included, without a build.
 */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const program = `
const ts = require(${JSON.stringify(require.resolve('typescript'))});
const fs = require('fs');
const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true };
require.extensions['.ts'] = (m, file) =>
  m._compile(ts.transpileModule(fs.readFileSync(file, 'utf8'), { fileName: file, compilerOptions }).outputText, file);
require(${JSON.stringify(join(__dirname, 'cli.ts'))}).main(process.argv.slice(1)).then(
  (code) => process.exit(code),
  (e) => { process.stderr.write(String(e && e.stack || e) + '\\n'); process.exit(4); },
);`;
  return spawn(process.execPath, ['-e', program, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}
