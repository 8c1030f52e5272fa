#!/usr/bin/env node
/**
 * oss-finetune run NOTEBOOK [-o OUT] [--param K=V ...] [--timeout S] [--allow-errors] [--kernel NAME] [--python PATH]
 * oss-finetune serve [--host H] [--port N] [--token T | --token-file F] [--allow-host NAME ...] [--kernel NAME] [--python PATH]
 */
import { existsSync, readFileSync, writeFileSync } from 'fs';
import { homedir } from 'os';
import { basename, delimiter, dirname, extname, join, resolve } from 'path';
import { Output } from './client';
import { findKernelSpecs, KernelSpec } from './launcher';
import { EXIT_CODES, runNotebook, RunEvent } from './runner';
import { parseNotebook, parseParam, ParamValue, serializeNotebook } from './runner/notebook';
import { KernelServer } from './server';
import { escapeControls } from './text';

const USAGE = `usage:
  oss-finetune run NOTEBOOK [-o OUT] [--param K=V ...] [--timeout S] [--allow-errors] [--kernel NAME] [--python PATH]
  oss-finetune serve [--host H] [--port N] [--token T | --token-file F] [--allow-host NAME ...] [--kernel NAME] [--python PATH]

run executes NOTEBOOK top to bottom on a fresh kernel and writes it with its outputs to OUT
(default: NOTEBOOK with .out.ipynb). Exit codes: 0 success, 1 cell error, 2 usage, 3 timeout, 4 kernel died.
--python PATH runs an ipykernel from that Python instead of an installed kernelspec.

serve runs a Jupyter-compatible kernel server on 127.0.0.1:8888 (--host, --port) that requires a token.
The token is the first of: --token T or --token-file F (the file's content, white space around it
trimmed; give one of the two), then the environment's OSS_FINETUNE_TOKEN, then the file named by
OSS_FINETUNE_TOKEN_FILE, else a random one, printed with the URL. The command line wins over the
environment. Prefer the environment or a file: other users of the machine can read --token from the
process list. A request must name the server in its Host header: localhost, a loopback address, the
--host address, or a NAME given with --allow-host (repeatable; * accepts any).`;

class UsageError extends Error {}

interface Args {
  command: string;
  positional: string[];
  out?: string;
  params: Record<string, ParamValue>;
  timeoutS?: number;
  allowErrors: boolean;
  kernel?: string;
  python?: string;
  host?: string;
  port?: number;
  token?: string;
  tokenFile?: string;
  allowHosts: string[];
}

export function parseArgs(argv: string[]): Args {
  const first = argv[0] ?? '';
  const args: Args = {
    command: first === '-h' || first === '--help' ? 'help' : first,
    positional: [],
    params: {},
    allowErrors: false,
    allowHosts: [],
  };
  const value = (i: number, flag: string) => {
    if (i >= argv.length) throw new UsageError(`${flag} needs a value`);
    return argv[i];
  };
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] =
      a.startsWith('--') && a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const next = () => inline ?? value(++i, flag);
    switch (flag) {
      case '-o':
      case '--output':
        args.out = next();
        break;
      case '-p':
      case '--param': {
        const [k, v] = parseParam(next());
        args.params[k] = v;
        break;
      }
      case '--timeout': {
        const t = Number(next());
        if (!(t > 0)) throw new UsageError('--timeout expects a positive number of seconds');
        args.timeoutS = t;
        break;
      }
      case '--allow-errors':
        args.allowErrors = true;
        break;
      case '--kernel':
        args.kernel = next();
        break;
      case '--python':
        args.python = next();
        break;
      case '--host':
        args.host = next();
        break;
      case '--port': {
        const p = Number(next());
        if (!Number.isInteger(p) || p < 0 || p > 65535) throw new UsageError('--port expects 0-65535');
        args.port = p;
        break;
      }
      case '--token':
        args.token = next();
        break;
      case '--token-file':
        args.tokenFile = next();
        break;
      case '--allow-host':
        args.allowHosts.push(next());
        break;
      case '-h':
      case '--help':
        args.command = 'help';
        break;
      default:
        if (a.startsWith('-')) throw new UsageError(`unknown option ${a}`);
        args.positional.push(a);
    }
  }
  return args;
}

/** Where Jupyter looks for kernelspecs, user dirs first. */
export function kernelSpecDirs(env: NodeJS.ProcessEnv = process.env): string[] {
  const dirs: string[] = [];
  for (const p of (env.JUPYTER_PATH ?? '').split(delimiter).filter(Boolean)) dirs.push(join(p, 'kernels'));
  dirs.push(join(env.JUPYTER_DATA_DIR ?? join(env.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'jupyter'), 'kernels'));
  if (env.VIRTUAL_ENV) dirs.push(join(env.VIRTUAL_ENV, 'share', 'jupyter', 'kernels'));
  dirs.push('/usr/local/share/jupyter/kernels', '/usr/share/jupyter/kernels');
  return dirs;
}

export function pythonKernelSpec(python: string, name = 'python3'): KernelSpec {
  return {
    name,
    resourceDir: dirname(python),
    argv: [python, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
    display_name: `Python (${python})`,
    language: 'python',
    interrupt_mode: 'signal',
  };
}

/**
 * A kernelspec installed inside a venv says plain "python"; run that venv's interpreter rather than
 * whatever "python" is first on PATH.
 */
function pinInterpreter(spec: KernelSpec): KernelSpec {
  const prefix = resolve(spec.resourceDir, '..', '..', '..', '..');
  const local = join(prefix, 'bin', 'python');
  if ((spec.argv[0] === 'python' || spec.argv[0] === 'python3') && existsSync(local))
    return { ...spec, argv: [local, ...spec.argv.slice(1)] };
  return spec;
}

export function resolveKernelSpecs(args: Args, preferred?: string): { specs: Record<string, KernelSpec>; chosen: string } {
  if (args.python) {
    const spec = pythonKernelSpec(args.python, args.kernel ?? preferred ?? 'python3');
    return { specs: { [spec.name]: spec }, chosen: spec.name };
  }
  const specs = Object.fromEntries(Object.entries(findKernelSpecs(kernelSpecDirs())).map(([k, s]) => [k, pinInterpreter(s)]));
  const wanted = (args.kernel ?? preferred ?? 'python3').toLowerCase();
  if (specs[wanted]) return { specs, chosen: wanted };
  if (args.kernel) throw new UsageError(`no kernelspec named ${args.kernel}; installed: ${Object.keys(specs).join(', ') || 'none'}`);
  // No installed spec: an ipykernel from the python3 on PATH, the same fallback Jupyter uses for its native kernel.
  const fallback = pythonKernelSpec('python3', wanted);
  return { specs: { ...specs, [wanted]: fallback }, chosen: wanted };
}

function firstLine(o: Output): string | undefined {
  if (o.output_type === 'update_display_data' || o.output_type === 'display_data') {
    const text = o.data['text/plain'];
    if (typeof text === 'string') return text.split('\n')[0];
  }
  return undefined;
}

export function progressPrinter(stream: Pick<NodeJS.WriteStream, 'isTTY' | 'columns' | 'write'>): (e: RunEvent) => void {
  const tty = stream.isTTY;
  let live = false;
  let started = Date.now();
  const clearLive = () => {
    if (live && tty) stream.write('\r\x1b[2K');
    live = false;
  };
  return (e) => {
    if (e.type === 'start') stream.write(`kernel ${escapeControls(e.kernel)}: ${e.total} code cell(s)\n`);
    else if (e.type === 'cell-start') {
      started = Date.now();
      const preview = e.source.split('\n').find((l) => l.trim()) ?? '';
      stream.write(`[${e.ordinal}/${e.total}] cell ${e.index + 1}: ${escapeControls(preview).slice(0, 60)}\n`);
    } else if (e.type === 'output') {
      // The live line: a display updated in place (e.g. training progress) rewrites one terminal line.
      // The notebook's text is shown escaped: raw, a control character in it would drive the terminal.
      const first = firstLine(e.output);
      if (first === undefined) return;
      const line = escapeControls(first);
      const elapsed = ((Date.now() - started) / 1000).toFixed(1);
      if (tty) {
        stream.write(`\r\x1b[2K    ${elapsed}s ${line.slice(0, (stream.columns ?? 100) - 12)}`);
        live = true;
      } else if (e.output.output_type === 'update_display_data') stream.write(`    ${elapsed}s ${line}\n`);
    } else if (e.type === 'cell-end') {
      clearLive();
      stream.write(`[${e.ordinal}/${e.total}] ${e.ok ? 'done' : 'FAILED'} in ${(e.elapsedMs / 1000).toFixed(1)}s\n`);
    }
  };
}

async function run(args: Args): Promise<number> {
  const [path] = args.positional;
  if (!path || args.positional.length > 1) throw new UsageError('run needs exactly one NOTEBOOK');
  let nb;
  try {
    nb = parseNotebook(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`cannot read ${path}: ${(e as Error).message}`);
  }
  const { specs, chosen } = resolveKernelSpecs(args, nb.metadata?.kernelspec?.name);
  const out = args.out ?? join(dirname(path), `${basename(path, extname(path))}.out.ipynb`);
  const result = await runNotebook(nb, {
    spec: specs[chosen],
    cwd: dirname(resolve(path)),
    timeoutS: args.timeoutS,
    allowErrors: args.allowErrors,
    params: args.params,
    onEvent: progressPrinter(process.stderr),
  });
  writeFileSync(out, serializeNotebook(result.notebook));
  // Tracebacks keep their colours and line breaks; anything else in them (the error's own text can be
  // anything) is escaped, as in the progress lines.
  if (result.failure && result.failure.traceback.length)
    process.stderr.write(`\n${escapeControls(result.failure.traceback.join('\n'), { keep: '\n', colours: true })}\n`);
  process.stderr.write(
    `\n${result.status === 'ok' ? 'ok' : 'stopped'}: ${escapeControls(result.message)} (${(result.elapsedMs / 1000).toFixed(1)}s); wrote ${out}\n`,
  );
  return result.exitCode;
}

/** Where serve's token came from; `generated` when none was given and the server made a random one. */
export type TokenSource = '--token' | '--token-file' | 'OSS_FINETUNE_TOKEN' | 'OSS_FINETUNE_TOKEN_FILE' | 'generated';

function readTokenFile(path: string, via: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read the token file ${path} (${via}): ${(e as Error).message}`);
  }
  const token = text.trim();
  if (!token) throw new UsageError(`the token file ${path} (${via}) is empty`);
  return token;
}

/**
 * serve's token, as Jupyter picks one (its JUPYTER_TOKEN and JUPYTER_TOKEN_FILE): the command line
 * (--token or --token-file) first, then OSS_FINETUNE_TOKEN, then the file OSS_FINETUNE_TOKEN_FILE
 * names; none of them leaves it to the server to make a random one. A source that is given but empty
 * is an error rather than an open server or a silent fallback.
 */
export function resolveToken(
  args: Pick<Args, 'token' | 'tokenFile'>,
  env: NodeJS.ProcessEnv = process.env,
): { token?: string; source: TokenSource } {
  if (args.token !== undefined && args.tokenFile !== undefined) throw new UsageError('give --token or --token-file, not both');
  if (args.token !== undefined) {
    if (!args.token) throw new UsageError('--token is empty; leave it out for a random token');
    return { token: args.token, source: '--token' };
  }
  if (args.tokenFile !== undefined) return { token: readTokenFile(args.tokenFile, '--token-file'), source: '--token-file' };
  if (env.OSS_FINETUNE_TOKEN !== undefined) {
    if (!env.OSS_FINETUNE_TOKEN) throw new UsageError('OSS_FINETUNE_TOKEN is set but empty; unset it for a random token');
    return { token: env.OSS_FINETUNE_TOKEN, source: 'OSS_FINETUNE_TOKEN' };
  }
  if (env.OSS_FINETUNE_TOKEN_FILE !== undefined)
    return { token: readTokenFile(env.OSS_FINETUNE_TOKEN_FILE, 'OSS_FINETUNE_TOKEN_FILE'), source: 'OSS_FINETUNE_TOKEN_FILE' };
  return { source: 'generated' };
}

async function serve(args: Args): Promise<number> {
  const { token, source } = resolveToken(args);
  const { specs, chosen } = resolveKernelSpecs(args);
  const server = new KernelServer({
    kernelspecs: specs,
    defaultKernelName: chosen,
    host: args.host,
    port: args.port ?? 8888,
    token,
    allowedHosts: args.allowHosts,
  });
  const url = await server.listen();
  // A token the person chose is theirs to know; printing it would put it in logs and scrollback. Only
  // a random one is shown, as Jupyter does.
  const shown = source === 'generated' ? server.token : `... (the token from ${source})`;
  process.stdout.write(`serving kernels (${Object.keys(specs).join(', ')}) at ${url}?token=${shown}\n`);
  await new Promise<void>((resolveStop) => {
    const stop = () => resolveStop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await server.close();
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const args = parseArgs(argv);
    if (args.command === 'run') return await run(args);
    if (args.command === 'serve') return await serve(args);
    if (args.command === 'help') {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    throw new UsageError(args.command ? `unknown command ${args.command}` : 'missing command');
  } catch (e) {
    // parseParam reports bad --param values with plain Errors raised while parsing arguments.
    if (e instanceof UsageError || (e instanceof Error && /--param/.test(e.message))) {
      process.stderr.write(`${e.message}\n${USAGE}\n`);
      return EXIT_CODES.usage;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`${(e as Error).stack ?? e}\n`);
      process.exit(EXIT_CODES.dead);
    },
  );
}
