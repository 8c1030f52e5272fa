/**
 * The widgets' side of the `oss_finetune` comm (schema/comm-message.schema.json; each op's arguments
 * and result in schema/comm-operations.schema.json). Every request carries a fresh request_id and
 * resolves with the kernel's one reply to it; events of a run that a request started
 * (`training_update`) go to the listeners instead, and those of an export (`export_update`) to the
 * export that asked for it.
 *
 * One comm per kernel (FinetuneClients), shared by the panel, the commands and the dashboards' Stop
 * buttons, so a run started from the panel reports to every view of that kernel.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { CommError, CommMessage, CommReply, CommRequest, ExportDone, ExportStep, TrainingRunPayload } from '@oss-finetune/schema';

import type { IFinetuneClients } from '../tokens';

export const COMM_TARGET = 'oss_finetune';

export type RequestOp = CommRequest['op'];

/** The arguments an op's request carries besides op and request_id (schema/comm-operations.schema.json). */
export type RequestArguments<Op extends RequestOp> = Omit<Extract<CommRequest, { op: Op }>, 'op' | 'request_id'>;

/** What a successful reply to an op carries in `result`. */
export type RequestResult<Op extends RequestOp> = Extract<CommReply, { op: Op; ok: true }>['result'];

/**
 * The arguments as `request` takes them: none for an op without arguments, optional where the op has
 * no required one, required where it has (set_config's config, read_metrics' run_id).
 */
type ArgumentList<Op extends RequestOp> = [keyof RequestArguments<Op>] extends [never]
  ? [args?: Record<string, never>]
  : Partial<RequestArguments<Op>> extends RequestArguments<Op>
    ? [args?: RequestArguments<Op>]
    : [args: RequestArguments<Op>];

/** A reply with ok: false; `path` says where, e.g. `config.lora.r`. */
export class CommRequestError extends Error {
  constructor(
    readonly op: string,
    readonly path: string,
    readonly rule: string,
  ) {
    super(path && path !== '(root)' ? `${path}: ${rule}` : rule);
    this.name = 'CommRequestError';
  }
}

/**
 * The comm itself failed, as opposed to a request the kernel refused: the extension is not loaded in
 * the kernel, the kernel did not answer the open in time, or it could not route a message (JupyterLab
 * 4.6 sends comm messages on a kernel subshell, which can be gone by the time a message arrives).
 * The comm is discarded; the next request opens a fresh one, so trying again can succeed.
 */
export class CommUnavailableError extends Error {
  constructor(
    readonly reason: 'no-target' | 'open-timeout' | 'no-answer' | 'unroutable' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'CommUnavailableError';
  }
}

export interface TrainingUpdate {
  /** The request_id of the start_training that began the run, or `run:<run_id>` for a run this client did not start. */
  requestId: string;
  payload?: TrainingRunPayload;
  error?: CommError;
}

type UpdateListener = (update: TrainingUpdate) => void;

export interface ExportListeners {
  /** The kernel took the export on; `folder` is where it writes, as the kernel resolved it. */
  onStarted?: (folder: string) => void;
  /** A step in one line: something done on the way, the files being written, then checked. */
  onStep?: (step: ExportStep) => void;
}

interface RunningExport extends ExportListeners {
  resolve: (done: ExportDone) => void;
  reject: (error: Error) => void;
}

interface Pending {
  op: RequestOp;
  comm: Kernel.IComm;
  resolve: (result: RequestResult<RequestOp>) => void;
  reject: (error: Error) => void;
  cancelTimer: (() => void) | null;
}

export interface ClientOptions {
  /** How long a reply may take before the request fails; a busy kernel answers late. */
  timeoutMs?: number;
  /**
   * How long the kernel may take to answer the comm's open. Without a bound a lost open would leave
   * every later request waiting on it.
   */
  openTimeoutMs?: number;
}

/** The part of a kernel future the client watches: the shell reply to a comm message. */
interface ReplyWatcher {
  onReply?: (msg: { content?: { status?: string; ename?: string; evalue?: string } }) => void;
}

/**
 * A timer for `ms` that, when it runs out while the kernel is busy or was busy since it was armed,
 * waits for as long again instead of firing: a kernel running cells (Run All, a training cell)
 * answers a comm only after them, and a late answer is not a lost one. It fires once the kernel has
 * been idle for a whole `ms`. Returns the function that cancels it.
 */
function patientTimer(kernel: Kernel.IKernelConnection, ms: number, fire: () => void): () => void {
  let timer: ReturnType<typeof setTimeout> | null = null;
  // Between two cells of a Run All the kernel is idle for a moment; the timer may well wake then.
  let busySince = false;
  const onStatus = (_: unknown, status: Kernel.Status) => {
    if (status === 'busy') busySince = true;
  };
  kernel.statusChanged?.connect(onStatus);
  const stop = () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
    kernel.statusChanged?.disconnect(onStatus);
  };
  const arm = () => {
    busySince = false;
    timer = setTimeout(() => {
      if ((kernel.status === 'busy' || busySince) && !kernel.isDisposed) arm();
      else {
        stop();
        fire();
      }
    }, ms);
  };
  arm();
  return stop;
}

let counter = 0;
function nextRequestId(op: string): string {
  counter += 1;
  return `${op}-${Date.now().toString(36)}-${counter}`;
}

export class FinetuneClient {
  private comm: Kernel.IComm | null = null;
  private opening: Promise<Kernel.IComm> | null = null;
  private readonly pending = new Map<string, Pending>();
  private readonly listeners = new Set<UpdateListener>();
  private readonly exports = new Map<string, RunningExport>();
  private readonly timeoutMs: number;
  private readonly openTimeoutMs: number;
  private closed = false;

  constructor(
    readonly kernel: Kernel.IKernelConnection,
    options: ClientOptions = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? 60_000;
    this.openTimeoutMs = options.openTimeoutMs ?? 10_000;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Sends one request and resolves with its reply's result, or rejects with the kernel's error. */
  request<Op extends RequestOp>(op: Op, ...[args]: ArgumentList<Op>): Promise<RequestResult<Op>> {
    return this.send(op, args, nextRequestId(op));
  }

  /**
   * Writes the fine-tune in a serving format and has the kernel check it (the `export` op). Resolves
   * with the result once the files are written and checked; rejects with the kernel's refusal, with
   * the error that ended the export (a check that failed names the first differing token), or when
   * the connection is lost before the end.
   */
  exportModel(args: RequestArguments<'export'>, listeners: ExportListeners = {}): Promise<ExportDone> {
    const requestId = nextRequestId('export');
    return new Promise<ExportDone>((resolve, reject) => {
      // A restart ends the kernel's export thread without a word on the comm.
      const onStatus = (_: unknown, status: Kernel.Status) => {
        if (status !== 'restarting' && status !== 'autorestarting' && status !== 'dead') return;
        this.exports.delete(requestId);
        end();
        reject(new CommUnavailableError('closed', `the kernel ${status === 'dead' ? 'died' : 'restarted'} before the export was done`));
      };
      const end = () => this.kernel.statusChanged?.disconnect(onStatus);
      this.kernel.statusChanged?.connect(onStatus);
      // Registered before the request goes: its first steps can arrive before its reply.
      this.exports.set(requestId, {
        ...listeners,
        resolve: (done) => {
          end();
          resolve(done);
        },
        reject: (error) => {
          end();
          reject(error);
        },
      });
      this.send('export', args, requestId).then(
        (started) => this.exports.get(requestId)?.onStarted?.(started.folder),
        (error: Error) => this.exports.get(requestId)?.reject(error),
      );
    }).finally(() => this.exports.delete(requestId));
  }

  private async send<Op extends RequestOp>(op: Op, args: unknown, requestId: string): Promise<RequestResult<Op>> {
    if (this.closed) throw new Error('the connection to the kernel was closed');
    const comm = await this.open();
    const message = { ...(args as object), op, request_id: requestId } as CommRequest;
    const reply = new Promise<RequestResult<Op>>((resolve, reject) => {
      const cancelTimer =
        this.timeoutMs > 0
          ? patientTimer(this.kernel, this.timeoutMs, () => {
              // Every op is answered at once by a working comm, so silence from an idle kernel means
              // this comm is lost: the next request starts from a fresh one.
              this.discard(
                comm,
                new CommUnavailableError('no-answer', `the kernel did not answer ${op} within ${Math.round(this.timeoutMs / 1000)} s`),
              );
            })
          : null;
      this.pending.set(requestId, { op, comm, resolve: resolve as Pending['resolve'], reject, cancelTimer });
    });
    try {
      const future = comm.send(message as unknown as Parameters<Kernel.IComm['send']>[0]) as unknown as ReplyWatcher | undefined;
      // A comm message has no reply of its own; the kernel sends one only when it could not handle
      // the message at all (UnknownSubshellError when the comm's subshell was deleted). Its answer
      // would never come, so fail now instead of at the timeout, and drop the comm.
      if (future && typeof future === 'object') {
        future.onReply = (msg) => {
          const content = msg?.content;
          if (content?.status !== 'error') return;
          const what = [content.ename, content.evalue].filter(Boolean).join(': ') || 'an error';
          this.discard(
            comm,
            new CommUnavailableError('unroutable', `the kernel could not deliver ${op} to the oss_finetune extension (${what})`),
          );
        };
      }
    } catch (error) {
      this.discard(comm, new CommUnavailableError('closed', `could not send ${op}: ${(error as Error)?.message ?? error}`));
    }
    return reply;
  }

  /** Follows the runs this kernel reports over the comm; returns the function that stops following. */
  onTrainingUpdate(listener: UpdateListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  dispose(): void {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error('the connection to the kernel was closed'));
    this.listeners.clear();
    const comm = this.comm;
    this.comm = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        // The kernel may already be gone; nothing is left to tell it.
      }
    }
  }

  private open(): Promise<Kernel.IComm> {
    // A kernel restart disposes its comms without a close message; open a new one then.
    if (this.comm?.isDisposed) {
      this.comm = null;
      this.opening = null;
      this.failAll(new Error('the kernel restarted before it answered'));
    }
    if (this.comm) return Promise.resolve(this.comm);
    if (!this.opening) {
      const opening = this.openComm();
      this.opening = opening;
      opening.catch(() => {
        if (this.opening === opening) this.opening = null;
      });
    }
    return this.opening;
  }

  private async openComm(): Promise<Kernel.IComm> {
    const comm = this.kernel.createComm(COMM_TARGET);
    let closedByKernel = false;
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => this.receive(msg.content.data as unknown);
    comm.onClose = () => {
      closedByKernel = true;
      if (this.comm !== comm) return;
      this.comm = null;
      this.opening = null;
      this.failAll(new CommUnavailableError('closed', 'the kernel closed the oss_finetune connection'));
    };
    let cancelTimer: (() => void) | null = null;
    const timedOut = new Promise<'timeout'>((resolve) => {
      if (this.openTimeoutMs > 0) cancelTimer = patientTimer(this.kernel, this.openTimeoutMs, () => resolve('timeout'));
    });
    let outcome: unknown;
    try {
      outcome = await Promise.race([comm.open({}).done, timedOut]);
    } catch (error) {
      this.discard(comm);
      throw new CommUnavailableError('closed', `could not open the oss_finetune connection: ${(error as Error)?.message ?? error}`);
    } finally {
      (cancelTimer as (() => void) | null)?.();
    }
    if (outcome === 'timeout') {
      this.discard(comm);
      throw new CommUnavailableError('open-timeout', `the kernel did not answer within ${Math.round(this.openTimeoutMs / 1000)} s`);
    }
    // The kernel closes a comm whose target it does not know before it reports the open as done.
    if (closedByKernel || comm.isDisposed) {
      throw new CommUnavailableError('no-target', 'the oss_finetune extension is not loaded in the kernel');
    }
    if (this.closed) {
      this.discard(comm);
      throw new Error('the connection to the kernel was closed');
    }
    this.comm = comm;
    return comm;
  }

  /**
   * Stops using a comm that failed and tells the kernel to forget it. It is closed before any new
   * comm is opened: JupyterLab keeps one subshell per comm target, and closing an old comm after a
   * new one exists could release the new comm's subshell. Requests still waiting on it fail with
   * `error`, since their answers cannot come any more.
   */
  private discard(comm: Kernel.IComm, error?: Error): void {
    if (this.comm === comm) {
      this.comm = null;
      this.opening = null;
    }
    if (error) {
      for (const [id, waiting] of [...this.pending]) if (waiting.comm === comm) this.settle(id)?.reject(error);
      // Their events would come on this comm, which no longer listens.
      this.failExports(error);
    }
    comm.onClose = () => undefined;
    comm.onMsg = () => undefined;
    if (comm.isDisposed || this.kernel.isDisposed) return;
    try {
      comm.close();
    } catch {
      // The kernel may already be gone; nothing is left to tell it.
    }
  }

  private receive(data: unknown): void {
    if (!data || typeof data !== 'object') return;
    // Read as the envelope the kernel sends (comm-message), without trusting the shape any further.
    const message = data as CommMessage;
    if (message.op === 'training_update') {
      const update: TrainingUpdate = {
        requestId: message.request_id,
        payload: message.payload as TrainingRunPayload | undefined,
        error: message.error,
      };
      for (const listener of [...this.listeners]) listener(update);
      return;
    }
    if (message.op === 'export_update') {
      this.onExportUpdate(message);
      return;
    }
    const waiting = this.settle(message.request_id);
    if (!waiting) return;
    if (message.ok) waiting.resolve((message.result ?? {}) as RequestResult<RequestOp>);
    else {
      const error = message.error ?? { path: '(root)', message: 'the kernel refused the request' };
      waiting.reject(new CommRequestError(waiting.op, error.path, error.message));
    }
  }

  private settle(requestId: string): Pending | undefined {
    const waiting = this.pending.get(requestId);
    if (!waiting) return undefined;
    this.pending.delete(requestId);
    waiting.cancelTimer?.();
    return waiting;
  }

  private onExportUpdate(message: CommMessage): void {
    const running = this.exports.get(message.request_id);
    if (!running) return;
    const step = message.payload as ExportStep | ExportDone | undefined;
    if (!message.ok || !step) {
      this.exports.delete(message.request_id);
      const error = message.error ?? { path: '(root)', message: 'the export failed' };
      running.reject(new CommRequestError('export', error.path, error.message));
    } else if (step.stage === 'done') {
      this.exports.delete(message.request_id);
      running.resolve(step);
    } else {
      running.onStep?.(step);
    }
  }

  private failExports(error: Error): void {
    for (const [id, running] of [...this.exports]) {
      this.exports.delete(id);
      running.reject(error);
    }
  }

  private failAll(error: Error): void {
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(error);
    this.failExports(error);
  }
}

/**
 * The shared client of each kernel, made on first use and forgotten with the kernel; provided to the
 * application as IFinetuneClients, so the panel, the commands and every dashboard's Stop button talk to
 * a kernel over one comm.
 */
export class FinetuneClients implements IFinetuneClients {
  private readonly clients = new WeakMap<Kernel.IKernelConnection, FinetuneClient>();

  clientFor(kernel: Kernel.IKernelConnection, options?: ClientOptions): FinetuneClient {
    let client = this.clients.get(kernel);
    if (!client || client.isClosed) {
      const made = new FinetuneClient(kernel, options);
      client = made;
      this.clients.set(kernel, made);
      kernel.disposed?.connect(() => made.dispose());
    }
    return client;
  }
}
