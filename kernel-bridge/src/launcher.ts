/**
 * Starting and supervising a local kernel process from a kernelspec.
 */
import { ChildProcess, spawn } from 'child_process';
import { randomBytes, randomUUID } from 'crypto';
import { EventEmitter } from 'events';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { createServer } from 'net';
import { tmpdir } from 'os';
import { join } from 'path';
import { KernelClient, KernelClientOptions, KernelGoneError, KernelInfo } from './client';
import { ConnectionInfo } from './wire';

export interface KernelSpec {
  name: string;
  /** Folder holding kernel.json; substituted for `{resource_dir}` in argv. */
  resourceDir: string;
  argv: string[];
  display_name: string;
  language: string;
  interrupt_mode?: 'signal' | 'message';
  env?: Record<string, string>;
  metadata?: Record<string, unknown>;
}

export function loadKernelSpec(resourceDir: string, name = resourceDir.split(/[\\/]/).pop() as string): KernelSpec {
  const raw = JSON.parse(readFileSync(join(resourceDir, 'kernel.json'), 'utf8'));
  if (!Array.isArray(raw.argv) || raw.argv.length === 0 || !raw.argv.every((a: unknown) => typeof a === 'string')) {
    throw new Error(`${join(resourceDir, 'kernel.json')}: argv must be a non-empty list of strings`);
  }
  return {
    name,
    resourceDir,
    argv: raw.argv,
    display_name: raw.display_name ?? name,
    language: raw.language ?? '',
    interrupt_mode: raw.interrupt_mode === 'message' ? 'message' : 'signal',
    env: raw.env,
    metadata: raw.metadata,
  };
}

/** Kernelspecs under `<dir>/<name>/kernel.json` for each dir (e.g. `<prefix>/share/jupyter/kernels`); earlier dirs win. */
export function findKernelSpecs(dirs: string[]): Record<string, KernelSpec> {
  const found: Record<string, KernelSpec> = {};
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir)) {
      const key = name.toLowerCase();
      if (found[key] || !existsSync(join(dir, name, 'kernel.json'))) continue;
      try {
        found[key] = loadKernelSpec(join(dir, name), key);
      } catch {
        // One broken kernelspec should not hide the others.
      }
    }
  }
  return found;
}

/** Ports the OS reports free on 127.0.0.1, all held at once so that no two are the same. */
export async function freePorts(count: number, ip = '127.0.0.1'): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, ip, () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export async function newConnectionInfo(ip = '127.0.0.1'): Promise<ConnectionInfo> {
  const [shell, iopub, stdin, control, hb] = await freePorts(5, ip);
  return {
    transport: 'tcp',
    ip,
    shell_port: shell,
    iopub_port: iopub,
    stdin_port: stdin,
    control_port: control,
    hb_port: hb,
    key: randomBytes(32).toString('hex'),
    signature_scheme: 'hmac-sha256',
  };
}

export interface KernelManagerOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Appended to the kernelspec's argv, as jupyter_client's extra_arguments are. */
  extraArguments?: string[];
  /** Loopback unless you mean to expose the kernel's unauthenticated-by-network ports. */
  ip?: string;
  startTimeoutMs?: number;
  /** How long shutdown waits for a clean exit before killing the process group. */
  shutdownTimeoutMs?: number;
  client?: KernelClientOptions;
  /** Receives the kernel's stdout/stderr; by default the last 64 KiB are kept for death reports. */
  onOutput?: (stream: 'stdout' | 'stderr', chunk: Buffer) => void;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Kernels run in their own process group; kill them with us so a crash leaks no Python processes. */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) killGroup(p, 'SIGKILL');
  });
}

function killGroup(p: ChildProcess, signal: NodeJS.Signals): void {
  if (p.pid === undefined || p.exitCode !== null || p.signalCode !== null) return;
  try {
    process.kill(-p.pid, signal);
  } catch {
    try {
      p.kill(signal);
    } catch {
      // already gone
    }
  }
}

/**
 * Events: `dead` (reason), `restarted`, `exit` (code, signal) for every process exit.
 */
export class KernelManager extends EventEmitter {
  readonly id = randomUUID();
  connection?: ConnectionInfo;
  client?: KernelClient;
  kernelInfo?: KernelInfo;
  private process?: ChildProcess;
  private dir?: string;
  private connectionFile?: string;
  private expectingExit = false;
  private outputTail: Buffer[] = [];
  private outputTailBytes = 0;
  private stopped = false;

  constructor(
    readonly spec: KernelSpec,
    private readonly options: KernelManagerOptions = {},
  ) {
    super();
  }

  get pid(): number | undefined {
    return this.process?.pid;
  }

  get alive(): boolean {
    return !!this.process && this.process.exitCode === null && this.process.signalCode === null;
  }

  /** The last output the kernel process wrote, for error reports. */
  get recentOutput(): string {
    return Buffer.concat(this.outputTail).toString('utf8');
  }

  /** Spawns the kernel and resolves with a ready client. */
  async start(): Promise<KernelClient> {
    if (this.client) throw new Error('kernel already started');
    installExitHook();
    this.connection = { ...(await newConnectionInfo(this.options.ip)), kernel_name: this.spec.name };
    this.dir = mkdtempSync(join(tmpdir(), 'kernel-bridge-'));
    this.connectionFile = join(this.dir, `kernel-${this.id}.json`);
    writeFileSync(this.connectionFile, JSON.stringify(this.connection, null, 2), { mode: 0o600 });
    this.client = new KernelClient(this.connection, this.options.client);
    this.client.on('dead', (reason: string) => this.onClientDead(reason));
    try {
      this.spawnProcess();
      this.kernelInfo = await this.client.waitForReady({ timeoutMs: this.options.startTimeoutMs ?? 60000 });
    } catch (e) {
      await this.shutdown({ now: true });
      const tail = this.recentOutput.trim();
      throw new Error(`kernel ${this.spec.name} failed to start: ${(e as Error).message}${tail ? `\n${tail}` : ''}`);
    }
    return this.client;
  }

  private spawnProcess(): void {
    const argv = [
      ...this.spec.argv.map((a) =>
        a.replace(/\{connection_file\}/g, this.connectionFile as string).replace(/\{resource_dir\}/g, this.spec.resourceDir),
      ),
      ...(this.options.extraArguments ?? []),
    ];
    // ipykernel watches JPY_PARENT_PID and exits when that process is gone, so a runner killed with
    // SIGKILL (no exit handler runs) does not leave its kernel behind.
    const env = { ...process.env, ...(this.spec.env ?? {}), JPY_PARENT_PID: String(process.pid), ...(this.options.env ?? {}) };
    // A process group of its own: Ctrl-C in our terminal must not interrupt the kernel behind our back,
    // and signals we send reach the kernel's children too.
    const child = spawn(argv[0], argv.slice(1), { cwd: this.options.cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    this.process = child;
    live.add(child);
    this.expectingExit = false;
    const collect = (stream: 'stdout' | 'stderr') => (chunk: Buffer) => {
      this.options.onOutput?.(stream, chunk);
      this.outputTail.push(chunk);
      this.outputTailBytes += chunk.length;
      while (this.outputTailBytes > 65536 && this.outputTail.length > 1) this.outputTailBytes -= (this.outputTail.shift() as Buffer).length;
    };
    child.stdout?.on('data', collect('stdout'));
    child.stderr?.on('data', collect('stderr'));
    child.on('error', (err) => {
      live.delete(child);
      if (this.process === child) this.client?.markGone(new KernelGoneError('dead', `could not start ${argv[0]}: ${err.message}`));
    });
    child.on('exit', (code, signal) => {
      live.delete(child);
      this.emit('exit', code, signal);
      if (this.process !== child || this.expectingExit) return;
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      this.client?.markGone(new KernelGoneError('dead', `process ${how}`));
    });
  }

  private onClientDead(reason: string): void {
    // Heartbeat death of a still-running process (e.g. wedged): make it certain, then report once.
    if (this.process && this.alive) {
      this.expectingExit = true;
      killGroup(this.process, 'SIGKILL');
    }
    this.emit('dead', reason);
  }

  /** Interrupts the running execution as the kernelspec asks: SIGINT or a control message. */
  async interrupt(): Promise<void> {
    if (this.spec.interrupt_mode === 'message') {
      if (!this.client) throw new Error('kernel not started');
      await this.client.interruptViaMessage();
      return;
    }
    if (!this.process || !this.alive) throw new Error('kernel is not running');
    killGroup(this.process, 'SIGINT');
  }

  /**
   * Stops the process and starts a new one on the same ports and key, so connected sockets (and
   * browser clients relayed through them) carry on. Pending executions fail with `restarted`.
   */
  async restart(): Promise<KernelClient> {
    const client = this.client;
    if (!client) throw new Error('kernel not started');
    const wasBusy = client.status === 'busy';
    client.markGone(new KernelGoneError('restarted'));
    await this.stopProcess(true, false, wasBusy);
    this.spawnProcess();
    this.kernelInfo = await client.waitForReady({ timeoutMs: this.options.startTimeoutMs ?? 60000 });
    this.emit('restarted');
    return client;
  }

  private async stopProcess(restart: boolean, now = false, busy = this.client?.status === 'busy'): Promise<void> {
    const child = this.process;
    if (!child || !this.alive) return;
    this.expectingExit = true;
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    if (!now && this.client) {
      // A kernel stuck in user code cannot act on shutdown_request until that code returns; interrupting
      // first turns a shutdown timeout plus SIGKILL into a clean exit.
      if (busy) {
        if (this.spec.interrupt_mode === 'message') this.client.interruptViaMessage().catch(() => undefined);
        else killGroup(child, 'SIGINT');
      }
      const msg = this.client.session.message('shutdown_request', { restart });
      this.client.channels.send('control', msg).catch(() => undefined);
      const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.options.shutdownTimeoutMs ?? 5000).unref());
      if ((await Promise.race([exited, timeout])) !== 'timeout') {
        // The kernel exits on its own; its children (if any) go with the group.
        killGroup(child, 'SIGKILL');
        return;
      }
    }
    killGroup(child, 'SIGKILL');
    await exited;
  }

  /** Asks the kernel to exit, kills its process group if it will not, and releases everything. */
  async shutdown(options: { now?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopProcess(false, options.now);
    await this.client?.close();
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
  }
}
