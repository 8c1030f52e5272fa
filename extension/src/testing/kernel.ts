import { Signal } from '@lumino/signaling';

/** A stand-in for the kernel's side of the oss_finetune comm: `answer` plays comm.py's handle(). */
export type Answer = (request: Record<string, any>, emit: (message: Record<string, any>) => void) => Record<string, any> | null;

export interface FakeKernel {
  kernel: any;
  /** Every message the widget sent, in order. */
  sent: Record<string, any>[];
  /** Sends a message from the kernel on every open comm (a training_update, say). */
  emit: (message: Record<string, any>) => void;
  /** Closes the kernel's side of every open comm. */
  closeComms: () => void;
  targets: string[];
  /** Sends an IOPub message from the kernel, e.g. the idle status that ends a cell's execution. */
  iopub: (message: Record<string, any>) => void;
}

/** How the fake kernel's side of the comm misbehaves; each is asked at the moment it matters. */
export interface FakeKernelOptions {
  /** Whether the comm target is registered (`%load_ext oss_finetune` has run); true by default. */
  hasTarget?: () => boolean;
  /** Whether the kernel never reports a comm_open as done (a lost open). */
  openHangs?: () => boolean;
  /** An error name to answer a comm message with instead of handling it, as for a deleted subshell. */
  routeError?: () => string | null;
}

/** Replies like comm.py: ok with a result, or the error the answer throws. */
export function reply(request: Record<string, any>, result: Record<string, any>): Record<string, any> {
  return { op: request.op, request_id: request.request_id, ok: true, result };
}

export function refusal(request: Record<string, any>, path: string, message: string): Record<string, any> {
  return { op: request.op, request_id: request.request_id, ok: false, error: { path, message } };
}

export function fakeKernel(answer: Answer, options: FakeKernelOptions = {}): FakeKernel {
  const sent: Record<string, any>[] = [];
  const iopubMessage = new Signal<any, Record<string, any>>({});
  const comms: any[] = [];
  const targets: string[] = [];
  const deliver = (comm: any, data: Record<string, any>) => {
    // The kernel answers later than the send returns, as over a real socket.
    setTimeout(() => comm.onMsg?.({ content: { comm_id: comm.commId, data } }), 0);
  };
  const kernel = {
    id: `kernel-${Math.random().toString(36).slice(2)}`,
    disposed: new Signal<any, void>({}),
    iopubMessage,
    createComm(target: string) {
      targets.push(target);
      const comm: any = {
        commId: `comm-${comms.length}`,
        isDisposed: false,
        onMsg: null,
        onClose: null,
        open: jest.fn(() => {
          if (options.openHangs?.()) return { done: new Promise(() => undefined) };
          if (options.hasTarget && !options.hasTarget()) {
            // Like ipykernel: a comm_close for an unknown target, then the idle that ends the open.
            return {
              done: new Promise<void>((resolve) =>
                setTimeout(() => {
                  comm.isDisposed = true;
                  comm.onClose?.({ content: { comm_id: comm.commId, data: {} } });
                  resolve();
                }, 0),
              ),
            };
          }
          return { done: Promise.resolve() };
        }),
        close: jest.fn(() => {
          comm.isDisposed = true;
          return { done: Promise.resolve() };
        }),
        send: jest.fn((data: Record<string, any>) => {
          if (comm.isDisposed) throw new Error('Cannot send');
          const future: Record<string, any> = { done: Promise.resolve() };
          const ename = options.routeError?.();
          if (ename) {
            // The shell reply the kernel sends when it cannot route a message; it is never handled.
            setTimeout(() => future.onReply?.({ content: { status: 'error', ename, evalue: 'sub-1' } }), 0);
            return future;
          }
          sent.push(data);
          const answered = answer(data, (message) => deliver(comm, message));
          if (answered) deliver(comm, answered);
          return future;
        }),
      };
      comms.push(comm);
      return comm;
    },
  };
  return {
    kernel,
    sent,
    targets,
    iopub: (message) => iopubMessage.emit(message),
    emit: (message) => comms.filter((c) => !c.isDisposed).forEach((c) => deliver(c, message)),
    closeComms: () =>
      comms.forEach((c) => {
        c.isDisposed = true;
        c.onClose?.({ content: { comm_id: c.commId, data: {} } });
      }),
  };
}

/** Lets queued replies arrive. */
export function flush(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0)).then(() => new Promise((resolve) => setTimeout(resolve, 0)));
}
