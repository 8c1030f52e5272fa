import { existsSync, readFileSync, statSync } from 'fs';
import { Execution, KernelClient, KernelGoneError, Output } from './client';
import { findKernelSpecs, freePorts, KernelManager, loadKernelSpec, newConnectionInfo } from './launcher';
import { collect, makeKernelSpec, streamText, TempKernelSpec, until } from './test-helpers';

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Iterates an execution until `predicate` matches an output, leaving the rest for later. */
async function waitForOutput(it: AsyncIterator<Output>, predicate: (o: Output) => boolean, seen: Output[]): Promise<void> {
  for (;;) {
    const r = await it.next();
    if (r.done) throw new Error('execution ended before the expected output');
    seen.push(r.value);
    if (predicate(r.value)) return;
  }
}

/**
 * Interrupts, and again every few seconds while the execution runs: a SIGINT that lands in the
 * instant between ipykernel's request handling and user code is ignored by ipykernel by design,
 * and the test should then retry rather than sit out the whole sleep.
 */
async function interruptUntilDone(manager: KernelManager, exec: Execution): Promise<number> {
  let sent = 0;
  let done = false;
  exec.done.then(
    () => (done = true),
    () => (done = true),
  );
  while (!done) {
    await manager.interrupt();
    sent += 1;
    for (let i = 0; i < 50 && !done; i++) await new Promise((r) => setTimeout(r, 100));
  }
  return sent;
}

async function drain(it: AsyncIterator<Output>, seen: Output[]): Promise<void> {
  for (let r = await it.next(); !r.done; r = await it.next()) seen.push(r.value);
}

describe('connection set-up', () => {
  it('picks distinct free loopback ports and a fresh random key', async () => {
    const a = await newConnectionInfo();
    const b = await newConnectionInfo();
    const ports = [a.shell_port, a.iopub_port, a.stdin_port, a.control_port, a.hb_port];
    expect(new Set(ports).size).toBe(5);
    expect(a.ip).toBe('127.0.0.1');
    expect(a.key).toMatch(/^[0-9a-f]{64}$/);
    expect(a.key).not.toBe(b.key);
    expect((await freePorts(3)).every((p) => p > 0)).toBe(true);
  });

  it('finds kernelspecs and reads their interrupt mode', () => {
    const tmp = makeKernelSpec({ name: 'Py-Msg', interruptMode: 'message' });
    try {
      const specs = findKernelSpecs([tmp.kernelsDir, '/nonexistent']);
      expect(Object.keys(specs)).toEqual(['py-msg']);
      expect(specs['py-msg'].interrupt_mode).toBe('message');
      expect(specs['py-msg'].argv).toContain('{connection_file}');
      expect(() => loadKernelSpec(tmp.kernelsDir)).toThrow();
    } finally {
      tmp.cleanup();
    }
  });
});

describe('KernelManager with a real ipykernel', () => {
  let tmp: TempKernelSpec;
  let manager: KernelManager;
  let client: KernelClient;
  const dead: string[] = [];

  beforeAll(async () => {
    tmp = makeKernelSpec();
    manager = new KernelManager(tmp.spec);
    manager.on('dead', (reason: string) => dead.push(reason));
    client = await manager.start();
  });

  afterAll(async () => {
    await manager?.shutdown();
    tmp?.cleanup();
  });

  it('writes a private connection file on loopback that the kernel uses', () => {
    const file = (manager as unknown as { connectionFile: string }).connectionFile;
    const info = JSON.parse(readFileSync(file, 'utf8'));
    expect(info).toEqual(expect.objectContaining({ ip: '127.0.0.1', transport: 'tcp', signature_scheme: 'hmac-sha256' }));
    expect(info.key).toBe(manager.connection?.key);
    if (process.platform !== 'win32') {
      expect(statSync(file).mode & 0o077).toBe(0);
    }
  });

  it('interrupts a running time.sleep with SIGINT, and the kernel carries on', async () => {
    const exec = client.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\nprint('woke')");
    const it = exec[Symbol.asyncIterator]();
    const seen: Output[] = [];
    await waitForOutput(it, (o) => o.output_type === 'stream', seen);
    await Promise.all([interruptUntilDone(manager, exec), drain(it, seen)]);
    const reply = await exec.done;
    expect(reply.status).toBe('error');
    expect(reply.ename).toBe('KeyboardInterrupt');
    expect(seen.find((o) => o.output_type === 'error')).toMatchObject({ ename: 'KeyboardInterrupt' });
    expect(streamText(seen)).not.toContain('woke');
    expect(streamText(await collect(client.execute('print(1 + 1)')))).toBe('2\n');
  });

  it('restarts: pending work fails with "restarted", state is gone, the same client works again', async () => {
    await collect(client.execute('survivor = 1'));
    const pidBefore = manager.pid as number;
    const running = client.execute('import time; time.sleep(60)');
    await until(() => client.status === 'busy', 'busy');
    const restarted = new Promise<void>((r) => manager.once('restarted', () => r()));
    await manager.restart();
    await restarted;
    await expect(running.done).rejects.toMatchObject({ reason: 'restarted' });
    expect(manager.pid).not.toBe(pidBefore);
    expect(processExists(pidBefore)).toBe(false);
    const outs = await collect(client.execute("print('survivor' in dir())"));
    expect(streamText(outs)).toBe('False\n');
    expect(dead).toEqual([]);
  });

  it('reports the kernel dying mid-run (os._exit) to the running execution and to listeners', async () => {
    const exec = client.execute("import os, time\nprint('about to die', flush=True)\ntime.sleep(0.3)\nos._exit(3)");
    const it = exec[Symbol.asyncIterator]();
    const seen: Output[] = [];
    await waitForOutput(it, (o) => o.output_type === 'stream', seen);
    let caught: unknown;
    try {
      await drain(it, seen);
    } catch (e) {
      caught = e;
    }
    expect(caught).toBeInstanceOf(KernelGoneError);
    expect((caught as KernelGoneError).reason).toBe('dead');
    expect((caught as Error).message).toMatch(/exited with code 3/);
    await expect(exec.done).rejects.toBeInstanceOf(KernelGoneError);
    expect(streamText(seen)).toBe('about to die\n');
    await until(() => dead.length === 1, 'dead event');
    expect(dead[0]).toMatch(/exited with code 3/);
    expect(client.status).toBe('dead');
    expect(manager.alive).toBe(false);
    // New work fails at once rather than hanging.
    await expect(client.execute('1').done).rejects.toMatchObject({ reason: 'dead' });
  });
});

describe('KernelManager: interrupt by message, heartbeat death, clean shutdown', () => {
  it('interrupts through a control interrupt_request when interrupt_mode is "message"', async () => {
    const tmp = makeKernelSpec({ interruptMode: 'message' });
    const manager = new KernelManager(tmp.spec);
    try {
      const client = await manager.start();
      const exec = client.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(60)");
      const it = exec[Symbol.asyncIterator]();
      await waitForOutput(it, (o) => o.output_type === 'stream', []);
      // Make sure no signal is involved: a SIGINT sent by us would be a test of the other path.
      const kill = jest.spyOn(process, 'kill');
      await interruptUntilDone(manager, exec);
      expect(kill).not.toHaveBeenCalled();
      kill.mockRestore();
      const reply = await exec.done;
      expect(reply.ename).toBe('KeyboardInterrupt');
    } finally {
      await manager.shutdown();
      tmp.cleanup();
    }
  });

  it('declares a frozen kernel dead by heartbeat, kills it, and leaves no process behind', async () => {
    const tmp = makeKernelSpec();
    const manager = new KernelManager(tmp.spec, { client: { heartbeat: { intervalMs: 200, timeoutMs: 2000 } } });
    try {
      const client = await manager.start();
      const pid = manager.pid as number;
      const dead = new Promise<string>((r) => manager.once('dead', r));
      const exec = client.execute('import time; time.sleep(60)');
      await until(() => client.status === 'busy', 'busy');
      // SIGSTOP freezes every thread, the heartbeat echo included; the process itself stays alive.
      process.kill(pid, 'SIGSTOP');
      expect(await dead).toMatch(/heartbeat/);
      await expect(exec.done).rejects.toMatchObject({ reason: 'dead' });
      await until(() => !processExists(pid), 'the frozen kernel to be killed');
    } finally {
      await manager.shutdown();
      tmp.cleanup();
    }
  });

  it('starts the kernel watching this process, so it exits if we are killed without a chance to stop it', async () => {
    const tmp = makeKernelSpec();
    const manager = new KernelManager(tmp.spec);
    try {
      const client = await manager.start();
      const code =
        'import os; from ipykernel.kernelapp import IPKernelApp\n' +
        "print(os.environ['JPY_PARENT_PID'], type(IPKernelApp.instance().poller).__name__)";
      const text = streamText(await collect(client.execute(code)));
      expect(text.trim()).toBe(`${process.pid} ParentPollerUnix`);
    } finally {
      await manager.shutdown();
      tmp.cleanup();
    }
  });

  it('shuts down cleanly: process gone, connection file removed, shutdown is idempotent', async () => {
    const tmp = makeKernelSpec();
    const manager = new KernelManager(tmp.spec);
    await manager.start();
    const pid = manager.pid as number;
    const file = (manager as unknown as { connectionFile: string }).connectionFile;
    expect(existsSync(file)).toBe(true);
    await manager.shutdown();
    await manager.shutdown();
    expect(processExists(pid)).toBe(false);
    expect(existsSync(file)).toBe(false);
    tmp.cleanup();
  });

  it("fails to start with the kernel's own error output when the command is broken", async () => {
    const tmp = makeKernelSpec();
    const spec = { ...tmp.spec, argv: [tmp.spec.argv[0], '-c', "import sys; sys.stderr.write('no kernel here\\n'); sys.exit(5)"] };
    const manager = new KernelManager(spec, { startTimeoutMs: 20000 });
    await expect(manager.start()).rejects.toThrow(/no kernel here/);
    tmp.cleanup();
  });
});
