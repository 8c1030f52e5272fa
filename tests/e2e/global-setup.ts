/**
 * Starts one real JupyterLab server from the project's venv for the whole run, and returns the
 * teardown that stops it. Tests find it through the E2E_* environment variables set here (Playwright
 * hands the global set-up's environment to its workers).
 */
import { ChildProcess, execFileSync, spawn } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

const REPO = path.resolve(__dirname, '..', '..');
const VENV_BIN = path.join(REPO, '.venv', 'bin');
const PYTHON = path.join(VENV_BIN, 'python');
const JUPYTER = path.join(VENV_BIN, 'jupyter');
const RUNTIME = path.join(__dirname, '.runtime');
const BUILT_EXTENSION = path.join(REPO, 'python', 'oss_finetune', 'labextension');
const KERNEL_NAME = 'oss-finetune';

function log(message: string): void {
  process.stdout.write(`[e2e setup] ${message}\n`);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

function python(code: string, env: NodeJS.ProcessEnv = process.env): string {
  return execFileSync(PYTHON, ['-c', code], { env, encoding: 'utf8' }).trim();
}

/** The set-up script installs the kernelspec; doing it here too lets the suite run on its own. */
function ensureKernelspec(): void {
  const found = python(
    [
      'from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel',
      'try:',
      `    print(KernelSpecManager().get_kernel_spec(${JSON.stringify(KERNEL_NAME)}).argv[0])`,
      'except NoSuchKernel:',
      '    print("")',
    ].join('\n'),
  );
  // Another checkout of the project may have registered the same name with its own interpreter.
  if (found && path.resolve(found) === path.resolve(PYTHON)) {
    log(`kernelspec ${KERNEL_NAME} -> ${found}`);
    return;
  }
  log(`installing kernelspec ${KERNEL_NAME} (${found ? `it ran ${found}` : 'missing'})`);
  // The same kernelspec as the set-up script's: the magics are registered as the kernel starts.
  execFileSync(PYTHON, ['-m', 'oss_finetune', 'kernel', '--user', '--name', KERNEL_NAME], { stdio: 'inherit' });
}

/** `load` names the content-hashed remoteEntry file, so two builds with equal `load` are the same build. */
function remoteEntry(dir: string): string | undefined {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
    return pkg?.jupyterlab?._build?.load;
  } catch {
    return undefined;
  }
}

/**
 * Returns extra JUPYTER_PATH entries for the server: none when the venv already serves the current
 * build of the extension; otherwise a folder whose labextensions/oss-finetune links to the build,
 * because JUPYTER_PATH comes first in JupyterLab's search and the first match of a name wins.
 */
function extensionOverride(): string[] {
  const built = remoteEntry(BUILT_EXTENSION);
  if (!built) {
    throw new Error(
      `the labextension is not built (${path.relative(REPO, BUILT_EXTENSION)}/package.json missing): ` +
        'run `npm run build:python-assets` at the repository root',
    );
  }
  const dirs: string[] = JSON.parse(
    python('import json; from jupyter_core.paths import jupyter_path; print(json.dumps(jupyter_path("labextensions")))'),
  );
  const installed = dirs.map((dir) => path.join(dir, 'oss-finetune')).find((dir) => fs.existsSync(path.join(dir, 'package.json')));
  if (installed && remoteEntry(installed) === built) {
    log(`extension served from ${installed}`);
    return [];
  }
  const reason = installed ? `installed copy at ${installed} is not the current build` : 'not installed in the venv';
  const jupyterPath = path.join(RUNTIME, 'jupyter-path');
  fs.mkdirSync(path.join(jupyterPath, 'labextensions'), { recursive: true });
  fs.symlinkSync(BUILT_EXTENSION, path.join(jupyterPath, 'labextensions', 'oss-finetune'), 'dir');
  log(`extension ${reason}; serving the build through a JUPYTER_PATH link instead`);
  return [jupyterPath];
}

/** Settings that keep the page quiet: no news prompt or update check needing the network. */
function writeUserSettings(dir: string): void {
  const file = path.join(dir, '@jupyterlab', 'apputils-extension', 'notification.jupyterlab-settings');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ fetchNews: 'false', checkForUpdates: false }));
}

async function waitForServer(url: string, token: string, child: ChildProcess, logFile: string): Promise<void> {
  let exited: string | undefined;
  child.once('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
  // Bounded so that a server that never answers fails the run with its log instead of hanging it.
  const deadline = Date.now() + 90_000;
  while (Date.now() < deadline) {
    if (exited) break;
    try {
      const response = await fetch(`${url}api/status`, { headers: { Authorization: `token ${token}` } });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-40).join('\n') : '';
  throw new Error(`JupyterLab did not start (${exited ?? 'no answer from /api/status'}):\n${tail}`);
}

async function stop(child: ChildProcess, url: string, token: string): Promise<void> {
  // Kernels run in their own sessions, so they are shut down through the API, not by signal.
  try {
    const headers = { Authorization: `token ${token}` };
    const kernels = (await (await fetch(`${url}api/kernels`, { headers })).json()) as { id: string }[];
    await Promise.all(kernels.map((k) => fetch(`${url}api/kernels/${k.id}`, { method: 'DELETE', headers })));
  } catch {
    // the server is already gone
  }
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  process.kill(-child.pid!, 'SIGTERM');
  const killer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // already gone
    }
  }, 10_000);
  await exited;
  clearTimeout(killer);
}

export default async function globalSetup(): Promise<() => Promise<void>> {
  if (!fs.existsSync(JUPYTER)) {
    throw new Error('no JupyterLab in .venv: run `npm run setup` at the repository root');
  }
  fs.rmSync(RUNTIME, { recursive: true, force: true });
  fs.mkdirSync(RUNTIME, { recursive: true });

  ensureKernelspec();
  const extraJupyterPath = extensionOverride();

  const rootDir = fs.mkdtempSync(path.join(os.tmpdir(), 'oss-finetune-e2e-'));
  const settingsDir = path.join(RUNTIME, 'user-settings');
  writeUserSettings(settingsDir);
  const port = await freePort();
  const token = randomBytes(24).toString('hex');
  const url = `http://127.0.0.1:${port}/`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    JUPYTER_RUNTIME_DIR: path.join(RUNTIME, 'jupyter-runtime'),
    // A workspace left by an earlier run would reopen its tabs; settings must not leak from the user's.
    JUPYTERLAB_WORKSPACES_DIR: path.join(RUNTIME, 'workspaces'),
    JUPYTERLAB_SETTINGS_DIR: settingsDir,
    JUPYTER_PATH: [...extraJupyterPath, process.env.JUPYTER_PATH].filter(Boolean).join(path.delimiter),
    PYTHONUNBUFFERED: '1',
  };
  const logFile = path.join(RUNTIME, 'jupyterlab.log');
  const out = fs.openSync(logFile, 'w');
  const child = spawn(
    JUPYTER,
    [
      'lab',
      '--no-browser',
      '--ip=127.0.0.1',
      `--port=${port}`,
      '--ServerApp.port_retries=0',
      `--IdentityProvider.token=${token}`,
      `--ServerApp.root_dir=${rootDir}`,
      '--ServerApp.allow_root=True',
      // Lets tests drive JupyterLab through its command registry instead of guessing at menus.
      '--LabApp.expose_app_in_browser=True',
      '--LabApp.news_url=None',
      '--LabApp.extension_manager=readonly',
    ],
    // Its own process group, so the teardown can signal the server and anything it forked.
    { cwd: rootDir, env, detached: true, stdio: ['ignore', out, out] },
  );
  fs.closeSync(out);
  try {
    await waitForServer(url, token, child, logFile);
  } catch (error) {
    await stop(child, url, token);
    throw error;
  }
  log(`JupyterLab at ${url} (log: ${path.relative(REPO, logFile)})`);

  process.env.E2E_LAB_URL = url;
  process.env.E2E_LAB_TOKEN = token;
  process.env.E2E_REPO = REPO;
  // What kernels write (run folders) is checked on disk, where the contents API cannot reach: it
  // routes any path ending in /checkpoints to its own checkpoint API.
  process.env.E2E_ROOT_DIR = rootDir;

  return async () => {
    await stop(child, url, token);
    fs.rmSync(rootDir, { recursive: true, force: true });
  };
}
