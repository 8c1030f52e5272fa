import { KernelClient, KernelGoneError, Output } from './client';
import { KernelManager } from './launcher';
import { collect, makeKernelSpec, streamText, TempKernelSpec, until } from './test-helpers';

let tmp: TempKernelSpec;
let manager: KernelManager;
let client: KernelClient;

beforeAll(async () => {
  tmp = makeKernelSpec();
  manager = new KernelManager(tmp.spec);
  client = await manager.start();
});

afterAll(async () => {
  await manager?.shutdown();
  tmp?.cleanup();
});

const types = (outs: Output[]) => outs.map((o) => o.output_type);

describe('KernelClient against ipykernel', () => {
  it('reports kernel_info from the start', async () => {
    expect(manager.kernelInfo?.protocol_version).toMatch(/^5\./);
    expect(manager.kernelInfo?.language_info?.name).toBe('python');
    await until(() => client.status === 'idle', 'idle status');
  });

  it('streams stdout, stderr, displays, display updates, clear_output and the result, in order', async () => {
    const exec = client.execute(
      [
        'import sys',
        'from IPython.display import display, update_display, clear_output',
        "print('out 1')",
        "print('err 1', file=sys.stderr)",
        "display({'text/plain': 'v1', 'text/html': '<b>v1</b>'}, raw=True, display_id='d1')",
        "update_display({'text/plain': 'v2'}, raw=True, display_id='d1')",
        'clear_output(wait=True)',
        '6 * 7',
      ].join('\n'),
    );
    const outs = await collect(exec);
    const reply = await exec.done;
    expect(reply.status).toBe('ok');
    expect(exec.finished).toBe(true);
    // Streams may be flushed late, so check the non-stream order separately.
    expect(types(outs).filter((t) => t !== 'stream')).toEqual(['display_data', 'update_display_data', 'clear_output', 'execute_result']);
    expect(streamText(outs, 'stdout')).toBe('out 1\n');
    expect(streamText(outs, 'stderr')).toBe('err 1\n');
    const display = outs.find((o) => o.output_type === 'display_data');
    expect(display).toMatchObject({ data: { 'text/plain': 'v1', 'text/html': '<b>v1</b>' }, transient: { display_id: 'd1' } });
    expect(outs.find((o) => o.output_type === 'update_display_data')).toMatchObject({
      data: { 'text/plain': 'v2' },
      transient: { display_id: 'd1' },
    });
    expect(outs.find((o) => o.output_type === 'clear_output')).toEqual({ output_type: 'clear_output', wait: true });
    const result = outs.find((o) => o.output_type === 'execute_result');
    expect(result).toMatchObject({ data: { 'text/plain': '42' }, execution_count: reply.execution_count });
    expect(exec.executionCount).toBe(reply.execution_count);
  });

  it('reports errors as an output and in the reply', async () => {
    const exec = client.execute('1/0');
    const outs = await collect(exec);
    const reply = await exec.done;
    expect(reply.status).toBe('error');
    expect(reply.ename).toBe('ZeroDivisionError');
    expect(outs).toHaveLength(1);
    expect(outs[0]).toMatchObject({ output_type: 'error', ename: 'ZeroDivisionError' });
    expect((outs[0] as { traceback: string[] }).traceback.length).toBeGreaterThan(0);
  });

  it('keeps outputs of queued executions apart', async () => {
    const execs = [0, 1, 2].map((i) => client.execute(`import time; time.sleep(0.05); print('run ${i}')`));
    const results = await Promise.all(execs.map((e) => collect(e)));
    expect(results.map((o) => streamText(o))).toEqual(['run 0\n', 'run 1\n', 'run 2\n']);
  });

  it('drops forged and unsigned IOPub messages and rejects a replay, counting each', async () => {
    const before = { ...client.stats.dropped };
    // The kernel itself puts bad traffic on the real IOPub socket, parented to this request, so the
    // frames travel the same path as genuine output.
    const exec = client.execute(
      [
        'k = get_ipython().kernel',
        'parent = get_ipython().parent_header',
        'def emit(text, sig=None):',
        "    frames = k.session.serialize(k.session.msg('stream', {'name': 'stdout', 'text': text}, parent=parent))",
        '    if sig is not None:',
        '        frames[1] = sig',
        '    k.iopub_socket.send_multipart(frames)',
        '    return frames',
        "emit('forged\\n', b'0' * 64)",
        "emit('unsigned\\n', b'')",
        "frames = emit('genuine\\n')",
        'k.iopub_socket.send_multipart(frames)',
      ].join('\n'),
    );
    const outs = await collect(exec);
    expect((await exec.done).status).toBe('ok');
    expect(streamText(outs)).toBe('genuine\n');
    const after = client.stats.dropped;
    expect(after.badSignature - before.badSignature).toBe(1);
    expect(after.unsigned - before.unsigned).toBe(1);
    expect(after.replayed - before.replayed).toBe(1);
    // The client is still healthy.
    expect(streamText(await collect(client.execute("print('still here')")))).toBe('still here\n');
  });

  it('answers input() and getpass() through the stdin callback', async () => {
    const prompts: Array<[string, boolean]> = [];
    const exec = client.execute("import getpass\nname = input('name? ')\npw = getpass.getpass('pw? ')\nprint('hello', name, len(pw))", {
      onInput: async (prompt, password) => {
        prompts.push([prompt, password]);
        return password ? 'secret' : 'ada';
      },
    });
    const outs = await collect(exec);
    expect((await exec.done).status).toBe('ok');
    expect(prompts).toEqual([
      ['name? ', false],
      ['pw? ', true],
    ]);
    expect(streamText(outs)).toContain('hello ada 6\n');
  });

  it('tells the kernel stdin is not allowed when no callback is given', async () => {
    const exec = client.execute("input('x')");
    const outs = await collect(exec);
    expect((await exec.done).status).toBe('error');
    expect(outs.find((o) => o.output_type === 'error')).toMatchObject({ ename: 'StdinNotImplementedError' });
  });

  it('opens a comm to a kernel target, exchanges messages, and closes it', async () => {
    const setup = client.execute(
      [
        'closed = []',
        'def _target(comm, open_msg):',
        '    @comm.on_msg',
        '    def _(msg):',
        "        comm.send({'echo': msg['content']['data']}, buffers=msg['buffers'])",
        '    @comm.on_close',
        '    def _(msg):',
        "        closed.append(msg['content']['data'])",
        "    comm.send({'opened': open_msg['content']['data']})",
        "get_ipython().kernel.comm_manager.register_target('kb-echo', _target)",
      ].join('\n'),
    );
    expect((await setup.done).status).toBe('ok');
    const got: Array<{ data: any; buffers: number }> = [];
    const comm = await client.openComm('kb-echo', { hello: 1 });
    comm.onMsg = (data, msg) => got.push({ data, buffers: msg.buffers.length });
    await until(() => got.length === 1, 'comm open acknowledgement');
    expect(got[0].data).toEqual({ opened: { hello: 1 } });
    await comm.send({ x: 2 }, {}, [Buffer.from([9, 9])]);
    await until(() => got.length === 2, 'comm echo');
    expect(got[1]).toEqual({ data: { echo: { x: 2 } }, buffers: 1 });
    await comm.close({ bye: true });
    expect(comm.closed).toBe(true);
    await expect(comm.send({})).rejects.toThrow(/closed/);
    const check = client.execute('print(closed)');
    expect(streamText(await collect(check))).toBe("[{'bye': True}]\n");
  });

  it('receives comms the kernel opens, their messages and their close', async () => {
    const events: string[] = [];
    client.registerCommTarget('kb-front', (comm, data) => {
      events.push(`open ${JSON.stringify(data)}`);
      comm.onMsg = (d) => events.push(`msg ${JSON.stringify(d)}`);
      comm.onClose = () => events.push('close');
    });
    const exec = client.execute(
      "from comm import create_comm\nc = create_comm(target_name='kb-front', data={'a': 1})\nc.send({'b': 2})\nc.close()",
    );
    await collect(exec);
    await until(() => events.length === 3, 'comm events');
    expect(events).toEqual(['open {"a":1}', 'msg {"b":2}', 'close']);
  });

  it('answers plain requests such as complete_request', async () => {
    const reply = await client.request('shell', 'complete_request', { code: 'import o', cursor_pos: 8 });
    expect(reply.header.msg_type).toBe('complete_reply');
    expect(reply.content.matches).toContain('os');
  });

  it('counts no dropped messages from the genuine kernel beyond the injected ones', () => {
    expect(client.stats.dropped).toEqual({ malformed: 0, unsigned: 1, badSignature: 1, replayed: 1, badJson: 0 });
    expect(client.stats.received).toBeGreaterThan(20);
  });
});

describe('KernelClient after close', () => {
  it('fails new work with KernelGoneError', async () => {
    const other = new KernelManager(tmp.spec);
    const c = await other.start();
    await other.shutdown();
    const exec = c.execute('1');
    await expect(exec.done).rejects.toBeInstanceOf(KernelGoneError);
    await expect(collect(exec)).rejects.toThrow(/closed/);
  });
});
