import { Signal } from '@lumino/signaling';
import { schemaIssues } from '@oss-finetune/schema';

import { fakeKernel, flush, refusal, reply } from '../testing/kernel';
import { COMM_TARGET, CommRequestError, CommUnavailableError, FinetuneClient, FinetuneClients } from './client';

/** Keeps every comm the client creates, to check which ones it closed. */
function recording<K extends ReturnType<typeof fakeKernel>>(k: K): K & { comms: any[] } {
  const comms: any[] = [];
  const create = k.kernel.createComm.bind(k.kernel);
  k.kernel.createComm = (target: string) => {
    const comm = create(target);
    comms.push(comm);
    return comm;
  };
  return Object.assign(k, { comms });
}

describe('FinetuneClient', () => {
  it('sends requests the kernel accepts and resolves with the matching reply', async () => {
    const k = fakeKernel((req) => reply(req, req.op === 'list_runs' ? { runs: [{ run_id: 'run-1' }] } : { run_id: 'run-1' }));
    const client = new FinetuneClient(k.kernel);
    const [runs, stopped] = await Promise.all([client.request('list_runs'), client.request('stop')]);
    expect(runs.runs[0].run_id).toBe('run-1');
    expect(stopped.run_id).toBe('run-1');
    expect(k.targets).toEqual([COMM_TARGET]);
    expect(k.sent.map((m) => m.op)).toEqual(['list_runs', 'stop']);
    expect(new Set(k.sent.map((m) => m.request_id)).size).toBe(2);
    for (const message of k.sent) expect(schemaIssues('comm-message', message)).toEqual([]);
  });

  it('rejects with the path and rule of a refused request', async () => {
    const k = fakeKernel((req) => refusal(req, 'config.lora.r', 'must be >= 1'));
    const client = new FinetuneClient(k.kernel);
    const failure = client.request('set_config', { config: { lora: { r: 0 } } });
    await expect(failure).rejects.toBeInstanceOf(CommRequestError);
    await expect(failure).rejects.toMatchObject({ path: 'config.lora.r', rule: 'must be >= 1', message: 'config.lora.r: must be >= 1' });
  });

  it('hands training updates to listeners and not to pending requests', async () => {
    const k = fakeKernel((req, emit) => {
      emit({ op: 'training_update', request_id: req.request_id, ok: true, payload: { run_id: 'run-2', status: 'running' } });
      return reply(req, { started: true });
    });
    const client = new FinetuneClient(k.kernel);
    const updates: unknown[] = [];
    client.onTrainingUpdate((u) => updates.push(u));
    await expect(client.request('start_training', {})).resolves.toEqual({ started: true });
    await flush();
    expect(updates).toEqual([{ requestId: k.sent[0].request_id, payload: { run_id: 'run-2', status: 'running' }, error: undefined }]);
  });

  it('fails pending requests when the kernel closes the comm or never answers', async () => {
    const silent = fakeKernel(() => null);
    const client = new FinetuneClient(silent.kernel, { timeoutMs: 0 });
    const waiting = client.request('get_config');
    await flush();
    silent.closeComms();
    await expect(waiting).rejects.toThrow('closed');

    const slow = new FinetuneClient(fakeKernel(() => null).kernel, { timeoutMs: 5 });
    await expect(slow.request('get_config')).rejects.toThrow('did not answer get_config');
  });

  it('types each op: its own arguments, required ones included, and its result', async () => {
    const k = fakeKernel((req) => reply(req, { config: { lora: { r: 8 } }, defaults: {} }));
    const client = new FinetuneClient(k.kernel);
    const { config, defaults } = await client.request('set_config', { config: { lora: { r: 8 } }, replace: true });
    expect([config.lora?.r, defaults]).toEqual([8, {}]);
    // Checked by the compiler only: each line must fail to type-check, or this file does not compile.
    const mistakes = () => {
      // @ts-expect-error set_config cannot go without its config
      void client.request('set_config');
      // @ts-expect-error read_metrics takes a run_id, not a config
      void client.request('read_metrics', { config: {} });
      // @ts-expect-error stop takes no arguments
      void client.request('stop', { run_id: 'run-1' });
      // @ts-expect-error list_runs resolves with runs, not a config
      void client.request('list_runs').then((result) => result.config);
    };
    expect(typeof mistakes).toBe('function');
  });

  it('shares one client per kernel until the kernel goes away', () => {
    const k = fakeKernel(() => null);
    const clients = new FinetuneClients();
    const first = clients.clientFor(k.kernel);
    expect(clients.clientFor(k.kernel)).toBe(first);
    k.kernel.disposed.emit();
    expect(first.isClosed).toBe(true);
    expect(clients.clientFor(k.kernel)).not.toBe(first);
  });

  it("keeps the clients of one application apart from another's", () => {
    const k = fakeKernel(() => null);
    const mine = new FinetuneClients();
    expect(new FinetuneClients().clientFor(k.kernel)).not.toBe(mine.clientFor(k.kernel));
  });

  it('says the extension is not loaded when the kernel closes the open, and opens afresh once it is', async () => {
    let loaded = false;
    const k = fakeKernel((req) => reply(req, { runs: [] }), { hasTarget: () => loaded });
    const client = new FinetuneClient(k.kernel, { timeoutMs: 0 });
    const first = client.request('list_runs');
    await expect(first).rejects.toBeInstanceOf(CommUnavailableError);
    await expect(first).rejects.toMatchObject({ reason: 'no-target' });
    expect(k.sent).toEqual([]);
    loaded = true;
    await expect(client.request('list_runs')).resolves.toEqual({ runs: [] });
    expect(k.targets).toEqual([COMM_TARGET, COMM_TARGET]);
  });

  it('gives up on an open the kernel never completes, closes that comm and uses a new one next time', async () => {
    let hangs = true;
    const k = recording(fakeKernel((req) => reply(req, { runs: [] }), { openHangs: () => hangs }));
    const client = new FinetuneClient(k.kernel, { timeoutMs: 0, openTimeoutMs: 5 });
    await expect(client.request('list_runs')).rejects.toMatchObject({
      reason: 'open-timeout',
      message: expect.stringContaining('did not answer'),
    });
    expect(k.comms[0].close).toHaveBeenCalled();
    hangs = false;
    await expect(client.request('list_runs')).resolves.toEqual({ runs: [] });
    expect(k.comms).toHaveLength(2);
  });

  it('waits for a busy kernel instead of giving up on it, and gives up once the kernel is idle and still silent', async () => {
    let hangs = true;
    const k = recording(fakeKernel((req) => reply(req, { runs: [] }), { openHangs: () => hangs }));
    k.kernel.status = 'busy';
    k.kernel.statusChanged = new Signal<unknown, string>({});
    const client = new FinetuneClient(k.kernel, { timeoutMs: 0, openTimeoutMs: 5 });
    let outcome: unknown = 'pending';
    const first = client.request('list_runs').then(
      (value) => (outcome = value),
      (error) => (outcome = error),
    );
    // Many open timeouts pass while the kernel runs cells: the open is still waited for.
    await new Promise((resolve) => setTimeout(resolve, 40));
    expect(outcome).toBe('pending');
    // The moment of idle between two cells is no reason to give up either.
    k.kernel.status = 'idle';
    k.kernel.statusChanged.emit('idle');
    k.kernel.statusChanged.emit('busy');
    await new Promise((resolve) => setTimeout(resolve, 4));
    expect(outcome).toBe('pending');
    await first;
    expect(outcome).toMatchObject({ reason: 'open-timeout' });
    hangs = false;
    await expect(client.request('list_runs')).resolves.toEqual({ runs: [] });
  });

  it('fails at once when the kernel cannot route a message (a deleted subshell) and recovers on a fresh comm', async () => {
    let unroutable = true;
    const k = recording(
      fakeKernel((req) => reply(req, { runs: [{ run_id: 'run-1' }] }), { routeError: () => (unroutable ? 'UnknownSubshellError' : null) }),
    );
    const comms = k.comms;
    // No reply timeout: only the kernel's error reply can end the first request.
    const client = new FinetuneClient(k.kernel, { timeoutMs: 0 });
    const [a, b] = [client.request('list_runs'), client.request('get_config')];
    await expect(a).rejects.toMatchObject({ reason: 'unroutable', message: expect.stringContaining('UnknownSubshellError') });
    // A second request waiting on the same comm cannot be answered either.
    await expect(b).rejects.toBeInstanceOf(CommUnavailableError);
    expect(comms[0].close).toHaveBeenCalled();
    unroutable = false;
    await expect(client.request('list_runs')).resolves.toEqual({ runs: [{ run_id: 'run-1' }] });
    expect(comms).toHaveLength(2);
  });
});
