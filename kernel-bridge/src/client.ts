/**
 * A kernel client on top of the wire: requests with replies, executions as async streams of outputs,
 * stdin, comms, and kernel status.
 */
import { EventEmitter } from 'events';
import { randomUUID } from 'crypto';
import type { LanguageInfo } from './runner/notebook';
import { Channel, ChannelSet, ConnectionInfo, DropReason, Heartbeat, JupyterMessage, Session, WireStats } from './wire';

export type MimeBundle = Record<string, unknown>;

export type Output =
  | { output_type: 'stream'; name: 'stdout' | 'stderr'; text: string }
  | { output_type: 'display_data'; data: MimeBundle; metadata: Record<string, unknown>; transient?: { display_id?: string } }
  | { output_type: 'update_display_data'; data: MimeBundle; metadata: Record<string, unknown>; transient: { display_id: string } }
  | {
      output_type: 'execute_result';
      execution_count: number | null;
      data: MimeBundle;
      metadata: Record<string, unknown>;
      transient?: { display_id?: string };
    }
  | { output_type: 'error'; ename: string; evalue: string; traceback: string[] }
  | { output_type: 'clear_output'; wait: boolean };

export interface ExecuteReply {
  status: 'ok' | 'error' | 'aborted';
  execution_count: number | null;
  ename?: string;
  evalue?: string;
  traceback?: string[];
  [key: string]: unknown;
}

export type KernelStatus = 'unknown' | 'starting' | 'idle' | 'busy' | 'restarting' | 'dead';

/** kernel_info_reply's content: what the runner and the tests read of it; the rest is kept as it is. */
export interface KernelInfo {
  protocol_version?: string;
  implementation?: string;
  language_info?: LanguageInfo;
  [key: string]: unknown;
}

// The content of each IOPub message the client handles, by msg_type (messaging spec 5.x). The kernel's
// messages are not validated: a field it leaves out reads as undefined, and is passed on as such.
interface StatusContent {
  execution_state: KernelStatus;
}
interface ExecuteInputContent {
  execution_count?: number;
}
interface StreamContent {
  name: 'stdout' | 'stderr';
  text: string;
}
interface DisplayContent {
  data?: MimeBundle;
  metadata?: Record<string, unknown>;
  transient?: { display_id?: string };
}
interface ExecuteResultContent extends DisplayContent {
  execution_count?: number | null;
}
interface ErrorContent {
  ename: string;
  evalue: string;
  traceback?: string[];
}
interface ClearOutputContent {
  wait?: boolean;
}
interface CommContent {
  comm_id: string;
  target_name: string;
  data: unknown;
}

/** A message's content read as its msg_type's shape. */
function contentOf<C>(msg: JupyterMessage): C {
  return msg.content as C;
}

/** Raised into pending work when the kernel dies, is restarted, or the client is closed. */
export class KernelGoneError extends Error {
  constructor(
    readonly reason: 'dead' | 'restarted' | 'closed',
    detail?: string,
  ) {
    super(detail ? `kernel ${reason}: ${detail}` : `kernel ${reason}`);
    this.name = 'KernelGoneError';
  }
}

export type InputHandler = (prompt: string, password: boolean) => string | Promise<string>;

export interface ExecuteOptions {
  silent?: boolean;
  storeHistory?: boolean;
  userExpressions?: Record<string, string>;
  stopOnError?: boolean;
  /** Answers `input()` / `getpass()` in the kernel; without it the kernel is told stdin is not allowed. */
  onInput?: InputHandler;
  /** Extra per-message metadata (e.g. cellId, deletedCells) passed through to the kernel. */
  metadata?: Record<string, unknown>;
}

/** Minimal async queue: producers push, a single consumer iterates. */
class AsyncQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiter?: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void };
  private ended = false;
  private error: unknown;
  private iterated = false;

  push(item: T): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w.resolve({ value: item, done: false });
    } else this.items.push(item);
  }

  end(error?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    if (this.waiter && this.items.length === 0) {
      const w = this.waiter;
      this.waiter = undefined;
      if (error) w.reject(error);
      else w.resolve({ value: undefined, done: true });
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    if (this.iterated) throw new Error('outputs of an execution can be iterated only once');
    this.iterated = true;
    return {
      next: () => {
        if (this.items.length) return Promise.resolve({ value: this.items.shift() as T, done: false });
        if (this.ended) return this.error ? Promise.reject(this.error) : Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => (this.waiter = { resolve, reject }));
      },
    };
  }
}

/**
 * One `execute_request`. Iterate it for outputs, in kernel order; the iteration ends when both the
 * execute_reply and the IOPub `idle` for this request have arrived, and throws KernelGoneError if
 * the kernel goes away first.
 */
export class Execution implements AsyncIterable<Output> {
  readonly outputs: Output[] = [];
  /** Resolves when the execution is complete (reply + idle), with the execute_reply content. */
  readonly done: Promise<ExecuteReply>;
  executionCount: number | null = null;
  private replyContent?: ExecuteReply;
  private idle = false;
  private queue = new AsyncQueue<Output>();
  private settle!: { resolve: (r: ExecuteReply) => void; reject: (e: unknown) => void };

  constructor(
    readonly msgId: string,
    readonly code: string,
    readonly onInput?: InputHandler,
  ) {
    this.done = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // Callers that only iterate must not trigger an unhandled rejection on `done`.
    this.done.catch(() => undefined);
  }

  get finished(): boolean {
    return this.idle && this.replyContent !== undefined;
  }

  /** @internal */
  _output(out: Output): void {
    this.outputs.push(out);
    this.queue.push(out);
  }

  /** @internal */
  _reply(content: ExecuteReply): void {
    this.replyContent = content;
    if (content.execution_count != null) this.executionCount = content.execution_count;
    this.maybeFinish();
  }

  /** @internal */
  _idle(): void {
    this.idle = true;
    this.maybeFinish();
  }

  /** @internal */
  _fail(error: Error): void {
    this.queue.end(error);
    this.settle.reject(error);
  }

  private maybeFinish(): void {
    if (!this.finished) return;
    this.queue.end();
    this.settle.resolve(this.replyContent as ExecuteReply);
  }

  [Symbol.asyncIterator](): AsyncIterator<Output> {
    return this.queue[Symbol.asyncIterator]();
  }
}

export type CommMsgHandler = (data: unknown, msg: JupyterMessage) => void;

export class Comm {
  onMsg?: CommMsgHandler;
  onClose?: CommMsgHandler;
  private isClosed = false;

  constructor(
    private readonly client: KernelClient,
    readonly commId: string,
    readonly targetName: string,
  ) {}

  get closed(): boolean {
    return this.isClosed;
  }

  /** Sends comm_msg on shell; returns the msg_id, which kernel-side replies use as parent. */
  send(data: unknown, metadata: Record<string, unknown> = {}, buffers: Buffer[] = []): Promise<string> {
    if (this.isClosed) return Promise.reject(new Error(`comm ${this.commId} is closed`));
    return this.client._sendShell('comm_msg', { comm_id: this.commId, data }, metadata, buffers);
  }

  async close(data: unknown = {}): Promise<void> {
    if (this.isClosed) return;
    this._closed();
    await this.client._sendShell('comm_close', { comm_id: this.commId, data });
  }

  /** @internal */
  _closed(): void {
    this.isClosed = true;
    this.client._forgetComm(this.commId);
  }
}

export type CommTargetHandler = (comm: Comm, data: unknown, msg: JupyterMessage) => void;

export interface KernelClientOptions {
  session?: Session;
  /** Heartbeat settings; `false` to rely on process exit alone (e.g. in tests that stop the kernel). */
  heartbeat?: { intervalMs?: number; timeoutMs?: number } | false;
}

interface Pending {
  resolve: (m: JupyterMessage) => void;
  reject: (e: unknown) => void;
}

/**
 * Events: `iopub` (every IOPub message), `message` (every authenticated message on any channel),
 * `status` (KernelStatus), `dead` (reason string), `drop` (reason, channel).
 */
export class KernelClient extends EventEmitter {
  readonly channels: ChannelSet;
  status: KernelStatus = 'unknown';
  private readonly executions = new Map<string, Execution>();
  private readonly pending = new Map<string, Pending>();
  private readonly comms = new Map<string, Comm>();
  private readonly commTargets = new Map<string, CommTargetHandler>();
  private heartbeat?: Heartbeat;
  private gone?: KernelGoneError;

  constructor(
    readonly connection: ConnectionInfo,
    private readonly options: KernelClientOptions = {},
  ) {
    super();
    this.channels = new ChannelSet(connection, {
      session: options.session,
      onMessage: (m) => this.dispatch(m),
      onDrop: (reason: DropReason, channel: Channel) => this.emit('drop', reason, channel),
    });
  }

  get session(): Session {
    return this.channels.session;
  }

  get stats(): WireStats {
    return this.channels.stats;
  }

  /**
   * Resolves with kernel_info_reply content once the kernel has answered on shell *and* reported idle
   * on IOPub for one of our kernel_info requests; the latter proves the subscription is live, so no
   * output of the first execution is lost. Requests are repeated every retryMs until both happen.
   */
  async waitForReady(options: { timeoutMs?: number; retryMs?: number } = {}): Promise<KernelInfo> {
    const deadline = Date.now() + (options.timeoutMs ?? 60000);
    const retryMs = options.retryMs ?? 500;
    let heard = false;
    const asked: string[] = [];
    // Idle for one of our own requests, not just any IOPub traffic: it proves the subscription
    // carries messages parented to this session end to end.
    const onIopub = (m: JupyterMessage) => {
      if (m.header.msg_type === 'status' && m.content.execution_state === 'idle' && asked.includes(m.parent_header.msg_id as string))
        heard = true;
    };
    this.on('iopub', onIopub);
    let info: KernelInfo | undefined;
    try {
      while (!(info && heard)) {
        if (this.gone) throw this.gone;
        if (Date.now() > deadline) throw new Error('timed out waiting for kernel_info_reply');
        const { id, reply } = this.requestWithId('shell', 'kernel_info_request', {});
        asked.push(id);
        reply.then(
          (m) => (info = m.content),
          () => undefined,
        );
        await new Promise<void>((resolve) => {
          const finish = () => {
            clearTimeout(timer);
            this.off('iopub', check);
            resolve();
          };
          const check = () => {
            if ((info && heard) || this.gone) finish();
          };
          const timer = setTimeout(finish, retryMs);
          reply.then(check, finish);
          this.on('iopub', check);
        });
      }
      this.startHeartbeat();
      return info;
    } finally {
      this.off('iopub', onIopub);
      for (const id of asked) this.pending.delete(id);
    }
  }

  private startHeartbeat(): void {
    if (this.options.heartbeat === false) return;
    if (this.heartbeat) {
      this.heartbeat.reset();
      return;
    }
    this.heartbeat = new Heartbeat(this.connection, {
      ...(this.options.heartbeat ?? {}),
      onDead: () => this.markGone(new KernelGoneError('dead', 'no heartbeat')),
    });
  }

  /** Sends a request and resolves with the reply message. */
  request(channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>): Promise<JupyterMessage> {
    return this.requestWithId(channel, msgType, content).reply;
  }

  private requestWithId(channel: 'shell' | 'control', msgType: string, content: Record<string, unknown>) {
    const msg = this.session.message(msgType, content);
    const id = msg.header.msg_id;
    const reply = new Promise<JupyterMessage>((resolve, reject) => {
      if (this.gone) return reject(this.gone);
      this.pending.set(id, { resolve, reject });
      this.channels.send(channel, msg).catch(reject);
    });
    return { id, reply };
  }

  kernelInfo(): Promise<KernelInfo> {
    return this.request('shell', 'kernel_info_request', {}).then((m) => m.content as KernelInfo);
  }

  /** Starts an execution; see Execution for completion rules. */
  execute(code: string, options: ExecuteOptions = {}): Execution {
    const msg = this.session.message(
      'execute_request',
      {
        code,
        silent: options.silent ?? false,
        store_history: options.storeHistory ?? !(options.silent ?? false),
        user_expressions: options.userExpressions ?? {},
        allow_stdin: options.onInput !== undefined,
        stop_on_error: options.stopOnError ?? true,
      },
      { metadata: options.metadata },
    );
    const exec = new Execution(msg.header.msg_id, code, options.onInput);
    if (this.gone) {
      exec._fail(this.gone);
      return exec;
    }
    this.executions.set(exec.msgId, exec);
    exec.done.then(
      () => this.executions.delete(exec.msgId),
      () => this.executions.delete(exec.msgId),
    );
    this.channels.send('shell', msg).catch((e) => exec._fail(e));
    return exec;
  }

  /** interrupt_request on control, for kernels whose interrupt_mode is "message". */
  interruptViaMessage(): Promise<JupyterMessage> {
    return this.request('control', 'interrupt_request', {});
  }

  registerCommTarget(name: string, handler: CommTargetHandler): void {
    this.commTargets.set(name, handler);
  }

  /** Opens a comm to a target registered in the kernel. */
  async openComm(targetName: string, data: unknown = {}, metadata: Record<string, unknown> = {}, buffers: Buffer[] = []): Promise<Comm> {
    const comm = new Comm(this, randomUUID().replace(/-/g, ''), targetName);
    this.comms.set(comm.commId, comm);
    await this._sendShell('comm_open', { comm_id: comm.commId, target_name: targetName, data }, metadata, buffers);
    return comm;
  }

  /** @internal */
  async _sendShell(
    msgType: string,
    content: Record<string, unknown>,
    metadata: Record<string, unknown> = {},
    buffers: Buffer[] = [],
  ): Promise<string> {
    if (this.gone) throw this.gone;
    const msg = this.session.message(msgType, content, { metadata, buffers });
    await this.channels.send('shell', msg);
    return msg.header.msg_id;
  }

  /** @internal */
  _forgetComm(id: string): void {
    this.comms.delete(id);
  }

  /**
   * Fails all pending work. `dead` is final for this client; `restarted` leaves the client usable
   * once the new kernel answers waitForReady.
   */
  markGone(error: KernelGoneError): void {
    if (this.gone?.reason === 'dead' || this.gone?.reason === 'closed') return;
    const final = error.reason !== 'restarted';
    if (final) this.gone = error;
    for (const exec of this.executions.values()) exec._fail(error);
    this.executions.clear();
    for (const p of this.pending.values()) p.reject(error);
    this.pending.clear();
    for (const comm of [...this.comms.values()]) {
      comm._closed();
      comm.onClose?.({}, {} as JupyterMessage);
    }
    if (error.reason === 'dead') {
      this.setStatus('dead');
      this.emit('dead', error.message);
    } else if (error.reason === 'restarted') {
      this.setStatus('restarting');
    }
  }

  async close(): Promise<void> {
    this.markGone(new KernelGoneError('closed'));
    await this.heartbeat?.stop();
    await this.channels.close();
  }

  private setStatus(status: KernelStatus): void {
    if (this.status === status) return;
    this.status = status;
    this.emit('status', status);
  }

  private dispatch(msg: JupyterMessage): void {
    this.emit('message', msg);
    const parentId = msg.parent_header?.msg_id;
    if (msg.channel === 'iopub') {
      this.onIopub(msg, parentId);
      this.emit('iopub', msg);
      return;
    }
    if (msg.channel === 'stdin') {
      if (msg.header.msg_type === 'input_request') void this.onInputRequest(msg, parentId);
      return;
    }
    // shell / control replies
    if (!parentId) return;
    const exec = this.executions.get(parentId);
    if (exec && msg.header.msg_type === 'execute_reply') exec._reply(msg.content as ExecuteReply);
    const p = this.pending.get(parentId);
    if (p) {
      this.pending.delete(parentId);
      p.resolve(msg);
    }
  }

  private onIopub(msg: JupyterMessage, parentId: string | undefined): void {
    const type = msg.header.msg_type;
    if (type === 'status') {
      const { execution_state } = contentOf<Partial<StatusContent>>(msg);
      if (execution_state) this.setStatus(execution_state);
    }
    if (type === 'comm_open' || type === 'comm_msg' || type === 'comm_close') {
      this.onComm(type, msg);
      return;
    }
    const exec = parentId ? this.executions.get(parentId) : undefined;
    if (!exec) return;
    switch (type) {
      case 'status':
        if (contentOf<Partial<StatusContent>>(msg).execution_state === 'idle') exec._idle();
        break;
      case 'execute_input': {
        const c = contentOf<ExecuteInputContent>(msg);
        if (typeof c.execution_count === 'number') exec.executionCount = c.execution_count;
        break;
      }
      case 'stream': {
        const c = contentOf<StreamContent>(msg);
        exec._output({ output_type: 'stream', name: c.name, text: c.text });
        break;
      }
      case 'display_data':
      case 'update_display_data': {
        const c = contentOf<DisplayContent>(msg);
        exec._output({ output_type: type, data: c.data ?? {}, metadata: c.metadata ?? {}, transient: c.transient ?? {} } as Output);
        break;
      }
      case 'execute_result': {
        const c = contentOf<ExecuteResultContent>(msg);
        exec._output({
          output_type: 'execute_result',
          execution_count: c.execution_count ?? null,
          data: c.data ?? {},
          metadata: c.metadata ?? {},
          ...(c.transient ? { transient: c.transient } : {}),
        });
        break;
      }
      case 'error': {
        const c = contentOf<ErrorContent>(msg);
        exec._output({ output_type: 'error', ename: c.ename, evalue: c.evalue, traceback: c.traceback ?? [] });
        break;
      }
      case 'clear_output':
        exec._output({ output_type: 'clear_output', wait: !!contentOf<ClearOutputContent>(msg).wait });
        break;
    }
  }

  private onComm(type: string, msg: JupyterMessage): void {
    const c = contentOf<CommContent>(msg);
    if (type === 'comm_open') {
      const handler = this.commTargets.get(c.target_name);
      if (!handler) {
        // Tell the kernel nobody listens, as Jupyter frontends do, so its side does not leak.
        this._sendShell('comm_close', { comm_id: c.comm_id, data: {} }).catch(() => undefined);
        return;
      }
      const comm = new Comm(this, c.comm_id, c.target_name);
      this.comms.set(comm.commId, comm);
      handler(comm, c.data, msg);
      return;
    }
    const comm = this.comms.get(c.comm_id);
    if (!comm) return;
    if (type === 'comm_msg') comm.onMsg?.(c.data, msg);
    else {
      comm._closed();
      comm.onClose?.(c.data, msg);
    }
  }

  private async onInputRequest(msg: JupyterMessage, parentId: string | undefined): Promise<void> {
    const exec = parentId ? this.executions.get(parentId) : undefined;
    let value = '';
    try {
      if (exec?.onInput) value = await exec.onInput(String(msg.content.prompt ?? ''), !!msg.content.password);
    } catch {
      // A failing handler answers empty rather than leaving the kernel blocked in input() forever.
    }
    if (this.gone) return;
    const reply = this.session.message('input_reply', { value }, { parent: msg.header });
    await this.channels.send('stdin', reply).catch(() => undefined);
  }
}
