/**
 * A small Jupyter Server stand-in: the kernels REST API and the kernel WebSocket channels, enough for
 * @jupyterlab/services' KernelManager and KernelConnection to work unchanged.
 */
import { createHash, randomBytes, timingSafeEqual } from 'crypto';
import { createServer, IncomingMessage, Server, ServerResponse } from 'http';
import { AddressInfo, isIPv6, Socket } from 'net';
import { networkInterfaces } from 'os';
import WebSocket, { WebSocketServer } from 'ws';
import { KernelManager, KernelManagerOptions, KernelSpec } from '../launcher';
import { ChannelSet, JupyterMessage, Session } from '../wire';
import { decode, encode, V1_PROTOCOL, WsMessage, WsProtocol } from './ws-protocol';

export interface KernelServerOptions {
  kernelspecs: Record<string, KernelSpec>;
  defaultKernelName?: string;
  /** Loopback by default: a kernel runs arbitrary code for whoever reaches it. */
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  /** Random when not given; an empty token is refused, as the server would be open to anyone. */
  token?: string;
  /** Origins allowed besides the server's own host; `*` allows any. Requests without Origin are not browsers and pass. */
  allowedOrigins?: string[];
  /**
   * Host header names accepted besides loopback names (localhost, 127.0.0.0/8, ::1) and the address
   * the server listens on (every local interface address when that is 0.0.0.0 or ::); `*` accepts
   * any. A request naming another host is refused with 403: a page whose DNS name was rebound to this
   * machine sends its own name, and without this check would reach the kernels as a same-origin page.
   */
  allowedHosts?: string[];
  /** Offer the binary v1 WebSocket subprotocol (default true); false forces the legacy JSON encoding. */
  v1Protocol?: boolean;
  manager?: KernelManagerOptions;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

const CHANNELS = new Set(['shell', 'control', 'stdin']);

/**
 * The largest WebSocket message a client may send: 64 MiB. ws holds a whole message in memory before
 * handing it on, so this bounds what one connection can make the server allocate (at the former
 * 1 GiB, a few connections could exhaust the process and take every kernel with it). Client messages
 * are requests to the kernel (code, comm messages, stdin replies, widget state and its buffers) and
 * come nowhere near it; outputs flow the other way and are not limited by it.
 */
export const MAX_CLIENT_MESSAGE_BYTES = 64 * 1024 * 1024;

/** A request target in origin form, its path split into percent-decoded segments. */
export interface RequestTarget {
  /** Decoded path segments, trailing empty ones dropped: `/api/kernels/` is ['api', 'kernels']. */
  segments: string[];
  query: URLSearchParams;
}

// RFC 3986 path characters: unreserved, sub-delims, ':' and '@', percent escapes; segments after '/'.
const PATH = /^(?:\/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*)+$/;

/**
 * Parses `req.url`. Anything but `/path?query` with a well-formed path (a bracket, a broken or
 * non-UTF-8 percent escape, an absolute URL) is a 400, thrown as an HttpError for the caller to send.
 */
export function parseTarget(raw: string | undefined): RequestTarget {
  const target = raw ?? '';
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  if (!PATH.test(path)) throw new HttpError(400, 'malformed request path');
  let segments: string[];
  try {
    segments = path.slice(1).split('/').map(decodeURIComponent);
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the request path');
  }
  while (segments.length > 0 && segments[segments.length - 1] === '') segments.pop();
  return { segments, query: new URLSearchParams(q < 0 ? '' : target.slice(q + 1)) };
}

/**
 * The host name of a Host header (or an allowedHosts entry) as a browser writes it: lower case, IPv4
 * as four decimals, IPv6 in brackets and shortest form, no trailing dot; undefined if it is not one.
 */
export function canonicalHost(value: string): string | undefined {
  // Only host and port characters: '@', '/' and the like would make URL read a different host.
  if (!/^[A-Za-z0-9.\-_:[\]]+$/.test(value)) return undefined;
  try {
    return new URL(`http://${value}`).hostname.replace(/\.$/, '');
  } catch {
    return undefined;
  }
}

function isLoopbackHost(host: string): boolean {
  return (
    host === 'localhost' ||
    /^127\.\d+\.\d+\.\d+$/.test(host) ||
    host === '[::1]' ||
    // ::ffff:127.x.y.z, an IPv4 loopback address in IPv6 form
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(host)
  );
}

const WILDCARD_BINDS = new Set(['0.0.0.0', '[::]']);

/** One browser (or other) WebSocket on one kernel, with ZeroMQ sockets of its own, as Jupyter Server does. */
class Connection {
  readonly channels: ChannelSet;
  private ready = false;
  private backlog: Array<{ data: Buffer; isBinary: boolean }> = [];
  dropped = 0;

  constructor(
    readonly kernel: ServedKernel,
    readonly ws: WebSocket,
    readonly protocol: WsProtocol,
  ) {
    const info = kernel.manager.connection;
    if (!info) throw new Error('kernel has no connection');
    // A random identity per connection: two tabs with the same session_id must not collide on the
    // kernel's ROUTER sockets.
    this.channels = new ChannelSet(info, {
      session: new Session({ key: info.key, signatureScheme: info.signature_scheme }),
      onMessage: (m) => this.fromKernel(m),
    });
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (this.ready) this.fromClient(data, isBinary);
      else this.backlog.push({ data, isBinary });
    });
    ws.on('close', () => void this.close());
    ws.on('error', () => void this.close());
  }

  /**
   * kernel_info on control until IOPub reports idle for it: IOPub subscriptions take effect
   * asynchronously, and output published before that would be lost to this client. Control rather
   * than shell so a busy kernel still answers.
   */
  async nudge(timeoutMs = 10000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let done = false;
    const listener = (m: JupyterMessage) => {
      if (
        m.header.msg_type === 'status' &&
        m.content.execution_state === 'idle' &&
        this.kernel.nudges.has(m.parent_header.msg_id as string)
      )
        done = true;
    };
    this.kernel.nudgeListeners.add(listener);
    try {
      while (!done && Date.now() < deadline && this.ws.readyState === WebSocket.OPEN) {
        const msg = this.channels.session.message('kernel_info_request', {});
        this.kernel.nudges.add(msg.header.msg_id);
        await this.channels.send('control', msg).catch(() => undefined);
        const until = Date.now() + 300;
        while (!done && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      }
    } finally {
      this.kernel.nudgeListeners.delete(listener);
    }
    this.ready = true;
    for (const { data, isBinary } of this.backlog.splice(0)) this.fromClient(data, isBinary);
  }

  private fromKernel(m: JupyterMessage): void {
    const parentId = m.parent_header?.msg_id as string | undefined;
    if (parentId && this.kernel.nudges.has(parentId)) {
      for (const l of this.kernel.nudgeListeners) l(m);
      return;
    }
    this.kernel.touch();
    this.sendToClient({
      channel: m.channel as string,
      header: m.header,
      parent_header: m.parent_header,
      metadata: m.metadata,
      content: m.content,
      buffers: m.buffers,
    });
  }

  sendToClient(msg: WsMessage): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    const data = encode(this.protocol, msg);
    this.ws.send(data, { binary: typeof data !== 'string' });
  }

  private fromClient(data: Buffer, isBinary: boolean): void {
    let msg: WsMessage;
    try {
      msg = decode(this.protocol, Buffer.isBuffer(data) ? data : Buffer.from(data as ArrayBuffer), isBinary);
      if (!CHANNELS.has(msg.channel)) throw new Error(`no channel ${msg.channel}`);
      if (typeof msg.header.msg_id !== 'string' || typeof msg.header.msg_type !== 'string') throw new Error('bad header');
    } catch {
      // A broken frame from one client is dropped; the connection and the kernel carry on.
      this.dropped += 1;
      return;
    }
    this.kernel.touch();
    this.channels
      .send(msg.channel as 'shell' | 'control' | 'stdin', {
        header: msg.header as JupyterMessage['header'],
        parent_header: msg.parent_header,
        metadata: msg.metadata,
        content: msg.content,
        buffers: msg.buffers,
      })
      .catch(() => undefined);
  }

  private closed = false;
  async close(code?: number): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.kernel.connections.delete(this);
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code ?? 1000);
    await this.channels.close();
  }
}

class ServedKernel {
  readonly connections = new Set<Connection>();
  /** msg_ids of our own readiness probes, whose replies and status messages no client should see. */
  readonly nudges = new Set<string>();
  readonly nudgeListeners = new Set<(m: JupyterMessage) => void>();
  lastActivity = new Date();

  constructor(readonly manager: KernelManager) {
    manager.on('dead', () => this.broadcastStatus('dead'));
  }

  get id(): string {
    return this.manager.id;
  }

  touch(): void {
    this.lastActivity = new Date();
  }

  model() {
    const status = this.manager.client?.status ?? 'starting';
    return {
      id: this.id,
      name: this.manager.spec.name,
      last_activity: this.lastActivity.toISOString(),
      execution_state: status === 'unknown' ? 'starting' : status,
      connections: this.connections.size,
    };
  }

  /** Status messages the server itself originates, as Jupyter Server does for restarts and deaths. */
  broadcastStatus(state: string): void {
    const session = this.manager.client?.session ?? new Session({ key: '' });
    const msg = session.message('status', { execution_state: state });
    for (const c of this.connections) c.sendToClient({ channel: 'iopub', ...msg, parent_header: {}, buffers: [] });
  }
}

function sameDigest(a: string, b: string): boolean {
  // Hash first so the comparison is constant-time regardless of the presented token's length.
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class KernelServer {
  readonly token: string;
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly kernels = new Map<string, ServedKernel>();
  private readonly sockets = new Set<Socket>();
  private address?: AddressInfo;

  constructor(private readonly options: KernelServerOptions) {
    if (options.token === '') throw new Error('an empty token would let anyone run code; leave it out for a random one');
    this.token = options.token ?? randomBytes(24).toString('hex');
    this.http = createServer((req, res) => {
      this.handle(req, res).catch(() => res.destroy());
    });
    this.http.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    const offerV1 = options.v1Protocol ?? true;
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: MAX_CLIENT_MESSAGE_BYTES,
      handleProtocols: (protocols) => (offerV1 && protocols.has(V1_PROTOCOL) ? V1_PROTOCOL : false),
    });
    this.http.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      // Whatever a client sends, an upgrade request must never throw out of this listener: an
      // exception here is uncaught and would end the process with every kernel in it.
      socket.on('error', () => socket.destroy());
      try {
        this.upgrade(req, socket, head);
      } catch (e) {
        const status = e instanceof HttpError ? e.status : 500;
        refuseUpgrade(socket, status);
      }
    });
  }

  async listen(): Promise<string> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port ?? 0, this.options.host ?? '127.0.0.1', () => resolve());
    });
    this.address = this.http.address() as AddressInfo;
    this.acceptedHosts = this.hostsToAccept();
    return this.url;
  }

  private acceptedHosts = new Set<string>();

  private hostsToAccept(): Set<string> {
    const hosts = new Set<string>();
    const add = (h: string | undefined) => {
      const c = h === undefined ? undefined : canonicalHost(isIPv6(h) ? `[${h}]` : h);
      if (c) hosts.add(c);
    };
    for (const h of this.options.allowedHosts ?? []) if (h !== '*') add(h);
    add(this.options.host ?? '127.0.0.1');
    if ([...hosts].some((h) => WILDCARD_BINDS.has(h)) || this.options.host === '') {
      // Listening everywhere: the addresses of this machine's interfaces are the names it is reached by.
      for (const list of Object.values(networkInterfaces())) for (const i of list ?? []) add(i.address.split('%')[0]);
    }
    return hosts;
  }

  /** undefined when the Host header names this server; otherwise the refusal to send. */
  private hostRefusal(req: IncomingMessage): HttpError | undefined {
    const header = req.headers.host;
    if (!header) return new HttpError(400, 'a Host header is required');
    if (this.options.allowedHosts?.includes('*')) return undefined;
    const host = canonicalHost(header);
    if (host && (isLoopbackHost(host) || this.acceptedHosts.has(host))) return undefined;
    return new HttpError(403, `host ${host ?? JSON.stringify(header)} is not allowed (allowedHosts adds names)`);
  }

  /** Base URL, e.g. http://127.0.0.1:8888/ */
  get url(): string {
    if (!this.address) throw new Error('not listening');
    const host = this.address.family === 'IPv6' ? `[${this.address.address}]` : this.address.address;
    return `http://${host}:${this.address.port}/`;
  }

  get kernelCount(): number {
    return this.kernels.size;
  }

  async close(): Promise<void> {
    await Promise.all([...this.kernels.values()].map((k) => this.deleteKernel(k.id)));
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      for (const s of this.sockets) s.destroy();
    });
  }

  private authorized(req: IncomingMessage, target: RequestTarget): boolean {
    const auth = req.headers.authorization ?? '';
    const m = /^(?:token|bearer)\s+(.+)$/i.exec(auth.trim());
    const presented = m ? m[1] : target.query.get('token');
    return presented !== null && sameDigest(presented, this.token);
  }

  private originAllowed(req: IncomingMessage): boolean {
    const origin = req.headers.origin;
    if (!origin) return true;
    const allowed = this.options.allowedOrigins ?? [];
    if (allowed.includes('*') || allowed.includes(origin)) return true;
    try {
      return new URL(origin).host === req.headers.host;
    } catch {
      return false;
    }
  }

  private upgrade(req: IncomingMessage, socket: Socket, head: Buffer): void {
    const refuse = (status: number) => refuseUpgrade(socket, status);
    const target = parseTarget(req.url);
    const refusal = this.hostRefusal(req);
    if (refusal) return refuse(refusal.status);
    const [api, kernels, id, channels, ...rest] = target.segments;
    if (api !== 'api' || kernels !== 'kernels' || !id || channels !== 'channels' || rest.length) return refuse(404);
    if (!this.authorized(req, target)) return refuse(401);
    if (!this.originAllowed(req)) return refuse(403);
    const kernel = this.kernels.get(id);
    if (!kernel || !kernel.manager.alive) return refuse(404);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      const protocol: WsProtocol = ws.protocol === V1_PROTOCOL ? 'v1' : 'json';
      let conn: Connection;
      try {
        conn = new Connection(kernel, ws, protocol);
      } catch {
        ws.close(1011);
        return;
      }
      kernel.connections.add(conn);
      void conn.nudge();
    });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const target = parseTarget(req.url);
      const refusal = this.hostRefusal(req);
      if (refusal) throw refusal;
      if (!this.originAllowed(req)) throw new HttpError(403, 'origin not allowed');
      if (!this.authorized(req, target)) throw new HttpError(401, 'a valid token is required');
      const { status, body, headers } = await this.route(req, target);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...(headers ?? {}) });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    } catch (e) {
      const status = e instanceof HttpError ? e.status : 500;
      const message = e instanceof Error ? e.message : String(e);
      if (!res.headersSent) res.writeHead(status, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ message, reason: null }));
    }
  }

  private async route(
    req: IncomingMessage,
    target: RequestTarget,
  ): Promise<{ status: number; body?: unknown; headers?: Record<string, string> }> {
    const method = req.method ?? 'GET';
    const [api, collection, id, action, ...rest] = target.segments;
    const n = target.segments.length;
    if (api !== 'api') throw new HttpError(404, 'not found');
    if (n === 1 && method === 'GET') return { status: 200, body: { version: '2.0.0' } };
    if (n === 2 && collection === 'kernelspecs' && method === 'GET') return { status: 200, body: this.kernelspecsModel() };
    if (n === 2 && collection === 'kernels') {
      if (method === 'GET') return { status: 200, body: [...this.kernels.values()].map((k) => k.model()) };
      if (method === 'POST') {
        const body = await readJson(req);
        const name = (body.name as string | undefined) ?? this.defaultName();
        const spec = this.options.kernelspecs[name];
        if (!spec) throw new HttpError(404, `no such kernel ${name}`);
        const kernel = await this.startKernel(spec, typeof body.path === 'string' ? body.path : undefined);
        return { status: 201, body: kernel.model(), headers: { Location: `/api/kernels/${kernel.id}` } };
      }
      throw new HttpError(405, 'method not allowed');
    }
    if (collection !== 'kernels' || !id || rest.length || (action !== undefined && !['interrupt', 'restart', 'channels'].includes(action)))
      throw new HttpError(404, 'not found');
    const kernel = this.kernels.get(id);
    if (!kernel) throw new HttpError(404, `no such kernel ${id}`);
    if (!action) {
      if (method === 'GET') return { status: 200, body: kernel.model() };
      if (method === 'DELETE') {
        await this.deleteKernel(kernel.id);
        return { status: 204 };
      }
      throw new HttpError(405, 'method not allowed');
    }
    if (action === 'channels') throw new HttpError(400, 'channels needs a WebSocket upgrade');
    if (method !== 'POST') throw new HttpError(405, 'method not allowed');
    if (action === 'interrupt') {
      await kernel.manager.interrupt();
      return { status: 204 };
    }
    kernel.broadcastStatus('restarting');
    await kernel.manager.restart();
    kernel.touch();
    return { status: 200, body: kernel.model() };
  }

  private defaultName(): string {
    return this.options.defaultKernelName ?? Object.keys(this.options.kernelspecs)[0];
  }

  private kernelspecsModel() {
    const kernelspecs: Record<string, unknown> = {};
    for (const [name, spec] of Object.entries(this.options.kernelspecs)) {
      kernelspecs[name] = {
        name,
        // argv and env stay private: they can reveal local paths and secrets and no client needs them.
        spec: {
          argv: [],
          display_name: spec.display_name,
          language: spec.language,
          interrupt_mode: spec.interrupt_mode ?? 'signal',
          metadata: spec.metadata ?? {},
          env: {},
        },
        resources: {},
      };
    }
    return { default: this.defaultName(), kernelspecs };
  }

  private async startKernel(spec: KernelSpec, _path?: string): Promise<ServedKernel> {
    const manager = new KernelManager(spec, this.options.manager);
    await manager.start();
    const kernel = new ServedKernel(manager);
    this.kernels.set(kernel.id, kernel);
    return kernel;
  }

  private async deleteKernel(id: string): Promise<void> {
    const kernel = this.kernels.get(id);
    if (!kernel) return;
    this.kernels.delete(id);
    await Promise.all([...kernel.connections].map((c) => c.close(1000)));
    await kernel.manager.shutdown();
  }
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > 1 << 20) throw new HttpError(413, 'request body too large');
    chunks.push(chunk as Buffer);
  }
  const text = Buffer.concat(chunks).toString('utf8').trim();
  if (!text) return {};
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'request body must be a JSON object');
  return body as Record<string, unknown>;
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  500: 'Internal Server Error',
};

/** Answers an upgrade request that will not become a WebSocket, and closes its socket. */
function refuseUpgrade(socket: Socket, status: number): void {
  if (socket.destroyed) return;
  socket.end(`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
}
