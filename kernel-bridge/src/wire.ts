/**
 * The Jupyter messaging protocol (5.x) on the wire: frames, signatures, and one ZeroMQ socket wrapper
 * per channel.
 *
 * Frames of a message: [...routing identities, "<IDS|MSG>", signature, header, parent_header,
 * metadata, content, ...buffers]. The signature is the hex HMAC of the four JSON frames, in order.
 */
import { createHmac, randomUUID, timingSafeEqual } from 'crypto';
import * as zmq from 'zeromq';

export const DELIMITER = '<IDS|MSG>';
export const PROTOCOL_VERSION = '5.3';

export type Channel = 'shell' | 'control' | 'stdin' | 'iopub';

export interface MessageHeader {
  msg_id: string;
  session: string;
  username: string;
  date: string;
  msg_type: string;
  version: string;
  [key: string]: unknown;
}

export interface JupyterMessage<C = Record<string, unknown>> {
  header: MessageHeader;
  /** Empty object when the message answers nothing. */
  parent_header: Partial<MessageHeader>;
  metadata: Record<string, unknown>;
  content: C;
  buffers: Buffer[];
  /** Routing prefix as received; only meaningful on ROUTER sockets. */
  identities?: Buffer[];
  channel?: Channel;
}

export type DropReason = 'malformed' | 'unsigned' | 'badSignature' | 'replayed' | 'badJson';

export interface WireStats {
  received: number;
  sent: number;
  dropped: Record<DropReason, number>;
}

export function emptyStats(): WireStats {
  return { received: 0, sent: 0, dropped: { malformed: 0, unsigned: 0, badSignature: 0, replayed: 0, badJson: 0 } };
}

export type DecodeResult = { ok: true; message: JupyterMessage } | { ok: false; reason: DropReason };

export interface SessionOptions {
  /** Shared secret from the connection file. An empty key turns signing off (and accepts unsigned input). */
  key: string | Buffer;
  signatureScheme?: string;
  username?: string;
  session?: string;
  /**
   * How many signatures to remember for replay detection. Older ones are forgotten first, so memory
   * stays bounded; a replay of a message older than this window is not detected.
   */
  replayWindow?: number;
}

/**
 * Signs, verifies and (de)serialises messages for one client session. Replay memory is per session,
 * shared by all channels, because a captured message could be replayed onto any of them.
 */
export class Session {
  readonly id: string;
  readonly username: string;
  private readonly key: Buffer;
  private readonly digest: string;
  private readonly replayWindow: number;
  private readonly seen = new Set<string>();

  constructor(options: SessionOptions) {
    this.key = Buffer.isBuffer(options.key) ? options.key : Buffer.from(options.key, 'utf8');
    const scheme = options.signatureScheme ?? 'hmac-sha256';
    if (!scheme.startsWith('hmac-')) throw new Error(`unsupported signature scheme ${scheme}`);
    this.digest = scheme.slice('hmac-'.length);
    // Fail now, not on the first message, if Node does not know the digest.
    createHmac(this.digest, 'probe');
    this.id = options.session ?? randomUUID();
    this.username = options.username ?? 'kernel-bridge';
    this.replayWindow = Math.max(1, options.replayWindow ?? 65536);
  }

  get signing(): boolean {
    return this.key.length > 0;
  }

  sign(parts: Buffer[]): string {
    if (!this.signing) return '';
    const hmac = createHmac(this.digest, this.key);
    for (const p of parts) hmac.update(p);
    return hmac.digest('hex');
  }

  header(msgType: string, extra: Partial<MessageHeader> = {}): MessageHeader {
    return {
      msg_id: randomUUID(),
      session: this.id,
      username: this.username,
      date: new Date().toISOString(),
      msg_type: msgType,
      version: PROTOCOL_VERSION,
      ...extra,
    };
  }

  message<C>(
    msgType: string,
    content: C,
    options: { parent?: Partial<MessageHeader>; metadata?: Record<string, unknown>; buffers?: Buffer[]; channel?: Channel } = {},
  ): JupyterMessage<C> {
    return {
      header: this.header(msgType),
      parent_header: options.parent ?? {},
      metadata: options.metadata ?? {},
      content,
      buffers: options.buffers ?? [],
      channel: options.channel,
    };
  }

  /** Frames for a message; a header that already carries a msg_id (e.g. relayed from a browser) is kept. */
  encode(
    msg: Pick<JupyterMessage, 'header' | 'parent_header' | 'metadata' | 'content'> & { buffers?: ArrayBufferView[]; identities?: Buffer[] },
  ): Buffer[] {
    const json = [msg.header, msg.parent_header ?? {}, msg.metadata ?? {}, msg.content ?? {}].map((part) =>
      Buffer.from(JSON.stringify(part), 'utf8'),
    );
    const buffers = (msg.buffers ?? []).map((b) => Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    return [...(msg.identities ?? []), Buffer.from(DELIMITER), Buffer.from(this.sign(json)), ...json, ...buffers];
  }

  /**
   * Parses and authenticates frames. Never throws: anything wrong yields a reason, so a hostile or
   * broken peer cannot take a read loop down.
   */
  decode(frames: Buffer[]): DecodeResult {
    const at = frames.findIndex((f) => f.length === DELIMITER.length && f.toString('latin1') === DELIMITER);
    if (at < 0 || frames.length - at - 1 < 5) return { ok: false, reason: 'malformed' };
    const signature = frames[at + 1];
    const json = frames.slice(at + 2, at + 6);
    if (this.signing) {
      if (signature.length === 0) return { ok: false, reason: 'unsigned' };
      const expected = Buffer.from(this.sign(json), 'latin1');
      // timingSafeEqual needs equal lengths; a length mismatch reveals only the public digest size.
      if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
        return { ok: false, reason: 'badSignature' };
      }
      const sig = signature.toString('latin1');
      if (this.seen.has(sig)) return { ok: false, reason: 'replayed' };
      this.remember(sig);
    }
    let parsed: unknown[];
    try {
      parsed = json.map((f) => JSON.parse(f.toString('utf8')));
    } catch {
      return { ok: false, reason: 'badJson' };
    }
    const [header, parent, metadata, content] = parsed;
    if (!isObject(header) || typeof header.msg_type !== 'string' || typeof header.msg_id !== 'string') {
      return { ok: false, reason: 'malformed' };
    }
    return {
      ok: true,
      message: {
        header: header as MessageHeader,
        parent_header: isObject(parent) ? parent : {},
        metadata: isObject(metadata) ? metadata : {},
        content: isObject(content) ? content : {},
        buffers: frames.slice(at + 6),
        identities: frames.slice(0, at),
      },
    };
  }

  private remember(sig: string): void {
    this.seen.add(sig);
    if (this.seen.size > this.replayWindow) {
      // Sets iterate in insertion order, so this forgets the oldest signature.
      const oldest = this.seen.values().next().value as string;
      this.seen.delete(oldest);
    }
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export type ZmqSocket = zmq.Dealer | zmq.Subscriber | zmq.Router | zmq.Publisher;

export interface WireSocketOptions {
  onMessage: (msg: JupyterMessage) => void;
  onDrop?: (reason: DropReason, channel: Channel) => void;
  stats?: WireStats;
}

/**
 * One ZeroMQ socket with exactly one read loop and one send queue: zeromq v6 rejects a second
 * concurrent receive or a second blocked send on the same socket.
 */
export class WireSocket {
  readonly stats: WireStats;
  private tail: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly loop: Promise<void>;

  constructor(
    readonly channel: Channel,
    readonly socket: ZmqSocket,
    readonly session: Session,
    private readonly options: WireSocketOptions,
  ) {
    this.stats = options.stats ?? emptyStats();
    this.loop = this.readLoop();
  }

  private async readLoop(): Promise<void> {
    const socket = this.socket as zmq.Dealer;
    while (!this.closed) {
      let frames: Buffer[];
      try {
        frames = await socket.receive();
      } catch {
        // Closing the socket ends a pending receive with an error; anything else on a closed socket
        // is equally final.
        if (this.closed || socket.closed) return;
        continue;
      }
      const result = this.session.decode(frames);
      if (!result.ok) {
        this.stats.dropped[result.reason] += 1;
        this.options.onDrop?.(result.reason, this.channel);
        continue;
      }
      this.stats.received += 1;
      result.message.channel = this.channel;
      try {
        this.options.onMessage(result.message);
      } catch {
        // A listener's bug must not stop the channel.
      }
    }
  }

  /** Queues a message; resolves once ZeroMQ has accepted it. */
  send(msg: Parameters<Session['encode']>[0]): Promise<void> {
    return this.sendFrames(this.session.encode(msg));
  }

  /** Queues raw frames as they are (used by tests to inject forged traffic, and by relays). */
  sendFrames(frames: Buffer[]): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`${this.channel} socket is closed`));
    const next = this.tail.then(() => (this.socket as zmq.Dealer).send(frames));
    this.tail = next.then(
      () => {
        this.stats.sent += 1;
      },
      () => undefined,
    );
    return next;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.socket.linger = 0;
    this.socket.close();
    await this.loop;
  }
}

export interface ConnectionInfo {
  transport: 'tcp' | 'ipc';
  ip: string;
  shell_port: number;
  iopub_port: number;
  stdin_port: number;
  control_port: number;
  hb_port: number;
  key: string;
  signature_scheme: string;
  kernel_name?: string;
}

export function endpoint(info: ConnectionInfo, port: number): string {
  return info.transport === 'ipc' ? `ipc://${info.ip}-${port}` : `tcp://${info.ip}:${port}`;
}

export interface ChannelSetOptions {
  session?: Session;
  onMessage: (msg: JupyterMessage) => void;
  onDrop?: (reason: DropReason, channel: Channel) => void;
}

/**
 * The four message channels of one client connection. Shell, control and stdin share the session id
 * as ZeroMQ identity because the kernel addresses stdin requests to the identity of the shell request
 * that asked for input.
 */
export class ChannelSet {
  readonly session: Session;
  readonly stats = emptyStats();
  readonly sockets: Record<Channel, WireSocket>;

  constructor(
    readonly info: ConnectionInfo,
    options: ChannelSetOptions,
  ) {
    this.session = options.session ?? new Session({ key: info.key, signatureScheme: info.signature_scheme });
    const common = { onMessage: options.onMessage, onDrop: options.onDrop, stats: this.stats };
    const dealer = (port: number) => {
      const s = new zmq.Dealer({ routingId: this.session.id, linger: 0 });
      s.connect(endpoint(info, port));
      return s;
    };
    const iopub = new zmq.Subscriber({ linger: 0 });
    // Subscribing before anything is sent on shell: messages published before the subscription
    // reaches the kernel are lost, which is why readiness waits for IOPub to speak.
    iopub.subscribe();
    iopub.connect(endpoint(info, info.iopub_port));
    this.sockets = {
      iopub: new WireSocket('iopub', iopub, this.session, common),
      shell: new WireSocket('shell', dealer(info.shell_port), this.session, common),
      control: new WireSocket('control', dealer(info.control_port), this.session, common),
      stdin: new WireSocket('stdin', dealer(info.stdin_port), this.session, common),
    };
  }

  send(channel: Exclude<Channel, 'iopub'>, msg: Parameters<Session['encode']>[0]): Promise<void> {
    return this.sockets[channel].send(msg);
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.sockets).map((s) => s.close()));
  }
}

/**
 * Heartbeat: the kernel echoes whatever it receives. A DEALER rather than the usual REQ, so that a
 * lost ping does not wedge the socket in REQ's strict send/receive alternation.
 */
export class Heartbeat {
  private socket: zmq.Dealer;
  private timer?: NodeJS.Timeout;
  private lastPong = Date.now();
  private stopped = false;
  private readonly loop: Promise<void>;

  constructor(
    info: ConnectionInfo,
    private readonly options: { intervalMs?: number; timeoutMs?: number; onDead: () => void },
  ) {
    this.socket = new zmq.Dealer({ linger: 0, sendTimeout: 0 });
    this.socket.connect(endpoint(info, info.hb_port));
    this.loop = this.readLoop();
    const interval = options.intervalMs ?? 1000;
    this.timer = setInterval(() => this.tick(), interval);
    this.timer.unref();
  }

  /** Forget past silence, e.g. after a restart during which the kernel could not answer. */
  reset(): void {
    this.lastPong = Date.now();
  }

  private tick(): void {
    if (this.stopped) return;
    if (Date.now() - this.lastPong > (this.options.timeoutMs ?? 10000)) {
      void this.stop();
      this.options.onDead();
      return;
    }
    // With sendTimeout 0 a full queue rejects immediately instead of leaving a blocked send behind.
    this.socket.send('ping').catch(() => undefined);
  }

  private async readLoop(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.socket.receive();
        this.lastPong = Date.now();
      } catch {
        if (this.stopped || this.socket.closed) return;
      }
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.socket.close();
    await this.loop;
  }
}
