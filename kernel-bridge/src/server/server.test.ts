import { KernelManager as LabKernelManager, KernelMessage, ServerConnection } from '@jupyterlab/services';
import WebSocket from 'ws';
import { makeKernelSpec, rawRequest, TempKernelSpec, until, upgradeHead } from '../test-helpers';
import { request as httpRequest } from 'http';
import { networkInterfaces } from 'os';
import { KernelServer, MAX_CLIENT_MESSAGE_BYTES } from './server';
import { decodeJson, decodeV1, encodeJson, encodeV1, V1_PROTOCOL, WsMessage } from './ws-protocol';
import { randomUUID } from 'crypto';

let tmp: TempKernelSpec;
let server: KernelServer;
let base: string;

beforeAll(async () => {
  tmp = makeKernelSpec({ name: 'python3' });
  server = new KernelServer({ kernelspecs: { python3: tmp.spec } });
  base = await server.listen();
});

afterAll(async () => {
  await server?.close();
  tmp?.cleanup();
});

type Json = any;

/** A REST request with a Host header of our choosing (fetch would not send one). */
function withHost(url: string, host: string | undefined, token = server.token): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { Authorization: `token ${token}` };
    const req = httpRequest(url, { headers, setHost: false }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    if (host !== undefined) req.setHeader('Host', host);
    req.on('error', reject);
    req.end();
  });
}

async function json(res: Promise<Response>): Promise<Json> {
  return (await res).json();
}

async function api(path: string, init: RequestInit = {}, token: string | null = server.token): Promise<Response> {
  const headers = new Headers(init.headers);
  if (token !== null) headers.set('Authorization', `token ${token}`);
  return fetch(new URL(path, base), { ...init, headers });
}

function wsMessage(channel: string, msgType: string, content: Record<string, unknown>, session = 'raw-client'): WsMessage {
  return {
    channel,
    header: { msg_id: randomUUID(), msg_type: msgType, session, username: 'test', date: new Date().toISOString(), version: '5.3' },
    parent_header: {},
    metadata: {},
    content,
    buffers: [],
  };
}

/** A raw WebSocket client that records decoded messages. */
async function rawClient(kernelId: string, protocol: 'v1' | 'json') {
  const url = `${base.replace('http', 'ws')}api/kernels/${kernelId}/channels?session_id=${randomUUID()}&token=${server.token}`;
  const ws = new WebSocket(url, protocol === 'v1' ? [V1_PROTOCOL] : []);
  const got: WsMessage[] = [];
  ws.on('message', (data: Buffer, isBinary: boolean) => got.push(protocol === 'v1' ? decodeV1(data) : decodeJson(data, isBinary)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  expect(ws.protocol).toBe(protocol === 'v1' ? V1_PROTOCOL : '');
  const send = (m: WsMessage) => ws.send(protocol === 'v1' ? encodeV1(m) : encodeJson(m));
  return { ws, got, send };
}

describe('ws-protocol encodings', () => {
  const msg: WsMessage = {
    ...wsMessage('iopub', 'comm_msg', { data: { a: 'é' } }),
    buffers: [Buffer.from([1, 2]), Buffer.alloc(0), Buffer.from('xyz')],
  };
  it('round-trips v1 with buffers', () => {
    expect(decodeV1(encodeV1(msg))).toEqual(msg);
  });
  it('round-trips legacy JSON, text without buffers and binary with', () => {
    const plain = { ...msg, buffers: [] };
    const text = encodeJson(plain);
    expect(typeof text).toBe('string');
    expect(decodeJson(Buffer.from(text as string), false)).toEqual(plain);
    const bin = encodeJson(msg);
    expect(Buffer.isBuffer(bin)).toBe(true);
    expect(decodeJson(bin as Buffer, true)).toEqual(msg);
  });
  it('rejects truncated and inconsistent frames', () => {
    const v1 = encodeV1(msg);
    expect(() => decodeV1(v1.subarray(0, 20))).toThrow();
    const bad = Buffer.from(v1);
    bad.writeBigUInt64LE(BigInt(1e9), 16);
    expect(() => decodeV1(bad)).toThrow();
    expect(() => decodeJson(Buffer.from('{nope'), false)).toThrow();
  });
});

describe('KernelServer REST', () => {
  it('binds to loopback by default', () => {
    expect(new URL(base).hostname).toBe('127.0.0.1');
  });

  it('answers 401 without a token or with a wrong one, on REST and on the WebSocket', async () => {
    expect((await api('api/kernels', {}, null)).status).toBe(401);
    expect((await api('api/kernels', {}, 'wrong')).status).toBe(401);
    expect((await api(`api/kernels?token=${server.token}`, {}, null)).status).toBe(200);
    const ws = new WebSocket(`${base.replace('http', 'ws')}api/kernels/x/channels`);
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(401);
  });

  it('refuses a foreign Origin and accepts its own', async () => {
    expect((await api('api/kernels', { headers: { Origin: 'http://evil.example' } })).status).toBe(403);
    expect((await api('api/kernels', { headers: { Origin: base.replace(/\/$/, '') } })).status).toBe(200);
  });

  it('lists kernelspecs without leaking argv', async () => {
    const body: Json = await (await api('api/kernelspecs')).json();
    expect(body.default).toBe('python3');
    expect(body.kernelspecs.python3.spec).toMatchObject({ display_name: 'Python (python3)', language: 'python', argv: [] });
  });

  it('answers 400 to a body that is not JSON and 404 to an unknown kernel name or id', async () => {
    expect((await api('api/kernels', { method: 'POST', body: '{"name": ' })).status).toBe(400);
    expect((await api('api/kernels', { method: 'POST', body: '[1]' })).status).toBe(400);
    expect((await api('api/kernels', { method: 'POST', body: JSON.stringify({ name: 'nope' }) })).status).toBe(404);
    expect((await api('api/kernels/does-not-exist')).status).toBe(404);
    expect(server.kernelCount).toBe(0);
  });

  it('creates, lists, gets, interrupts, restarts and deletes a kernel', async () => {
    const created = await api('api/kernels', { method: 'POST', body: JSON.stringify({ name: 'python3' }) });
    expect(created.status).toBe(201);
    const model: Json = await created.json();
    expect(model).toMatchObject({ name: 'python3', connections: 0 });
    expect(created.headers.get('location')).toBe(`/api/kernels/${model.id}`);
    expect((await json(api('api/kernels'))).map((k: { id: string }) => k.id)).toEqual([model.id]);
    expect((await json(api(`api/kernels/${model.id}`))).id).toBe(model.id);
    expect((await api(`api/kernels/${model.id}/interrupt`, { method: 'POST' })).status).toBe(204);
    const restarted = await api(`api/kernels/${model.id}/restart`, { method: 'POST' });
    expect(restarted.status).toBe(200);
    expect((await json(Promise.resolve(restarted))).id).toBe(model.id);
    expect((await api(`api/kernels/${model.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`api/kernels/${model.id}`)).status).toBe(404);
    expect(server.kernelCount).toBe(0);
  });
});

describe('KernelServer channels', () => {
  let kernelId: string;
  beforeAll(async () => {
    kernelId = (await json(api('api/kernels', { method: 'POST', body: '{}' }))).id;
  });
  afterAll(async () => {
    await api(`api/kernels/${kernelId}`, { method: 'DELETE' });
  });

  it('relays to several clients: IOPub to all, the reply only to the requester (JSON and v1 mixed)', async () => {
    const a = await rawClient(kernelId, 'json');
    const b = await rawClient(kernelId, 'v1');
    try {
      expect((await json(api(`api/kernels/${kernelId}`))).connections).toBe(2);
      const req = wsMessage('shell', 'execute_request', {
        code: "print('to everyone')",
        silent: false,
        store_history: true,
        user_expressions: {},
        allow_stdin: false,
      });
      a.send(req);
      const isReply = (m: WsMessage) => m.header.msg_type === 'execute_reply' && m.parent_header.msg_id === req.header.msg_id;
      const isIdle = (m: WsMessage) =>
        m.header.msg_type === 'status' && m.content.execution_state === 'idle' && m.parent_header.msg_id === req.header.msg_id;
      await until(() => a.got.some(isReply) && a.got.some(isIdle) && b.got.some(isIdle), 'reply and idle');
      for (const c of [a, b]) {
        const stream = c.got.find((m) => m.header.msg_type === 'stream' && m.parent_header.msg_id === req.header.msg_id);
        expect(stream?.content.text).toBe('to everyone\n');
        expect(stream?.channel).toBe('iopub');
      }
      expect(b.got.some(isReply)).toBe(false);
      // The server's own readiness probes are invisible to clients.
      expect([...a.got, ...b.got].some((m) => m.header.msg_type === 'kernel_info_reply')).toBe(false);
    } finally {
      a.ws.close();
      b.ws.close();
    }
  });

  it('drops malformed frames and frames for unknown channels without closing the connection', async () => {
    const c = await rawClient(kernelId, 'json');
    try {
      c.ws.send('{not json');
      c.ws.send(JSON.stringify({ ...wsMessage('iopub', 'execute_request', { code: '1' }) }));
      const req = wsMessage('shell', 'kernel_info_request', {});
      c.send(req);
      await until(
        () => c.got.some((m) => m.parent_header.msg_id === req.header.msg_id && m.header.msg_type === 'kernel_info_reply'),
        'reply after junk',
      );
    } finally {
      c.ws.close();
    }
  });

  it('refuses a WebSocket from a foreign Origin', async () => {
    const ws = new WebSocket(`${base.replace('http', 'ws')}api/kernels/${kernelId}/channels?token=${server.token}`, {
      origin: 'http://evil.example',
    });
    const status = await new Promise<number>((resolve) => ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    expect(status).toBe(403);
  });
});

describe('KernelServer request hygiene', () => {
  let kernelId: string;
  let hostPort: string;
  beforeAll(async () => {
    kernelId = (await json(api('api/kernels', { method: 'POST', body: '{}' }))).id;
    hostPort = new URL(base).host;
  });
  afterAll(async () => {
    await api(`api/kernels/${kernelId}`, { method: 'DELETE' });
  });

  async function stillAnswers(c: Awaited<ReturnType<typeof rawClient>>) {
    const req = wsMessage('shell', 'kernel_info_request', {});
    c.send(req);
    await until(
      () => c.got.some((m) => m.parent_header.msg_id === req.header.msg_id && m.header.msg_type === 'kernel_info_reply'),
      'kernel_info_reply on the existing connection',
    );
  }

  it('answers 400 to a WebSocket upgrade to a malformed path, and the server and its kernels go on', async () => {
    const c = await rawClient(kernelId, 'json');
    try {
      for (const target of [
        '//[',
        '/%E0%A4%A',
        `/api/kernels/%E0%A4%A/channels?token=${server.token}`,
        `/api/kernels/%/channels?token=${server.token}`,
        `/api/kernels/${kernelId}/%ff?token=${server.token}`,
        `//[::1/api/kernels/${kernelId}/channels?token=${server.token}`,
        `http://127.0.0.1/api/kernels/${kernelId}/channels?token=${server.token}`,
      ])
        expect([target, await rawRequest(base, upgradeHead(target, hostPort))]).toEqual([target, 400]);
      await stillAnswers(c);
      expect((await json(api(`api/kernels/${kernelId}`))).connections).toBe(1);
      const again = await rawClient(kernelId, 'v1');
      again.ws.close();
    } finally {
      c.ws.close();
    }
  });

  it('answers 400 to a REST request with a malformed path', async () => {
    for (const target of ['//[', '/api/kernels/%E0%A4%A', '/api/kernels/%zz/interrupt'])
      expect([
        target,
        await rawRequest(base, `GET ${target} HTTP/1.1\r\nHost: ${hostPort}\r\nAuthorization: token ${server.token}`),
      ]).toEqual([target, 400]);
    expect((await api('api/kernels')).status).toBe(200);
  });

  it('accepts loopback names in Host and refuses others (DNS rebinding), on REST and on the WebSocket', async () => {
    const port = new URL(base).port;
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, 'localhost', `127.1.2.3:${port}`, `[::1]:${port}`])
      expect([host, await withHost(`${base}api/kernels`, host)]).toEqual([host, 200]);
    for (const host of [
      `evil.example:${port}`,
      `127.0.0.1.evil.example:${port}`,
      `localhost.evil.example`,
      `10.0.0.1:${port}`,
      `[::2]:${port}`,
    ])
      expect([host, await withHost(`${base}api/kernels`, host)]).toEqual([host, 403]);
    expect(await withHost(`${base}api/kernels`, undefined)).toBe(400);
    const target = `/api/kernels/${kernelId}/channels?token=${server.token}`;
    expect(await rawRequest(base, upgradeHead(target, `evil.example:${port}`))).toBe(403);
    expect(await rawRequest(base, upgradeHead(target, `localhost:${port}`))).toBe(101);
  });

  it('accepts the names it is told to, or any with *', async () => {
    for (const [allowedHosts, host, status] of [
      [['lab.example.org'], 'lab.example.org:443', 200],
      [['lab.example.org'], 'LAB.example.org', 200],
      [['lab.example.org:8443', 'fe80::1'], 'lab.example.org', 200],
      [['lab.example.org:8443', 'fe80::1'], '[fe80::1]:8443', 200],
      [['lab.example.org'], 'other.example.org', 403],
      [['lab.example.org'], 'localhost', 200],
      [['*'], 'anything.example', 200],
    ] as const) {
      const srv = new KernelServer({ kernelspecs: { python3: tmp.spec }, allowedHosts: [...allowedHosts] });
      const url = await srv.listen();
      try {
        expect([allowedHosts, host, await withHost(`${url}api/kernels`, host, srv.token)]).toEqual([allowedHosts, host, status]);
      } finally {
        await srv.close();
      }
    }
  });

  it('listening on every interface, accepts the addresses of this machine', async () => {
    const srv = new KernelServer({ kernelspecs: { python3: tmp.spec }, host: '0.0.0.0' });
    await srv.listen();
    const port = new URL(srv.url).port;
    const url = `http://127.0.0.1:${port}/api/kernels`;
    try {
      const addresses = Object.values(networkInterfaces())
        .flatMap((list) => list ?? [])
        .filter((i) => i.family === 'IPv4')
        .map((i) => i.address);
      for (const address of addresses) expect([address, await withHost(url, `${address}:${port}`, srv.token)]).toEqual([address, 200]);
      expect(await withHost(url, `evil.example:${port}`, srv.token)).toBe(403);
    } finally {
      await srv.close();
    }
  });

  it(`closes a connection whose client sends a message over ${MAX_CLIENT_MESSAGE_BYTES} bytes (1009), and the kernel goes on`, async () => {
    expect(MAX_CLIENT_MESSAGE_BYTES).toBe(64 * 1024 * 1024);
    const big = await rawClient(kernelId, 'json');
    const closed = new Promise<number>((resolve) => big.ws.on('close', (code) => resolve(code)));
    big.ws.send(Buffer.alloc(MAX_CLIENT_MESSAGE_BYTES + 1, 0x20));
    expect(await closed).toBe(1009);
    const c = await rawClient(kernelId, 'json');
    try {
      await stillAnswers(c);
    } finally {
      c.ws.close();
    }
  });
});

describe('@jupyterlab/services against KernelServer', () => {
  beforeAll(() => {
    // services logs every socket it opens; keep the test output readable.
    jest.spyOn(console, 'debug').mockImplementation(() => undefined);
    jest.spyOn(console, 'warn').mockImplementation(() => undefined);
  });
  afterAll(() => jest.restoreAllMocks());

  async function runWithServices(srv: KernelServer, url: string) {
    const serverSettings = ServerConnection.makeSettings({
      baseUrl: url,
      wsUrl: url.replace('http', 'ws'),
      token: srv.token,
      appendToken: true,
    });
    const manager = new LabKernelManager({ serverSettings });
    await manager.ready;
    const kernel = await manager.startNew({ name: 'python3' });
    try {
      await kernel.info;
      const outputs: string[] = [];
      const future = kernel.requestExecute({
        code: "from IPython.display import display\nprint('hello from services')\ndisplay({'text/plain': 'shown'}, raw=True)\n6 * 7",
      });
      future.onIOPub = (msg) => {
        if (KernelMessage.isStreamMsg(msg)) outputs.push(`stream:${msg.content.text}`);
        if (KernelMessage.isDisplayDataMsg(msg)) outputs.push(`display:${msg.content.data['text/plain']}`);
        if (KernelMessage.isExecuteResultMsg(msg)) outputs.push(`result:${msg.content.data['text/plain']}`);
      };
      const reply = await future.done;
      expect(reply.content.status).toBe('ok');
      expect(outputs).toEqual(['stream:hello from services\n', 'display:shown', 'result:42']);
      return kernel.connectionStatus;
    } finally {
      await kernel.shutdown();
      manager.dispose();
    }
  }

  it('KernelManager and KernelConnection work unchanged over the v1 subprotocol', async () => {
    expect(await runWithServices(server, base)).toBe('connected');
    expect(server.kernelCount).toBe(0);
  });

  it('and over the legacy JSON encoding', async () => {
    const jsonOnly = new KernelServer({ kernelspecs: { python3: tmp.spec }, v1Protocol: false });
    const url = await jsonOnly.listen();
    try {
      expect(await runWithServices(jsonOnly, url)).toBe('connected');
    } finally {
      await jsonOnly.close();
    }
  });
});
