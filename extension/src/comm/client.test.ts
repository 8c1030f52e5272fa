import { schemaIssues } from '@oss-finetune/schema';

import { fakeKernel, flush, refusal, reply } from '../testing/kernel';
import { COMM_TARGET, CommRequestError, FinetuneClient, clientFor } from './client';

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

  it('shares one client per kernel until the kernel goes away', () => {
    const k = fakeKernel(() => null);
    const first = clientFor(k.kernel);
    expect(clientFor(k.kernel)).toBe(first);
    k.kernel.disposed.emit();
    expect(first.isClosed).toBe(true);
    expect(clientFor(k.kernel)).not.toBe(first);
  });
});
