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
}

/** Replies like comm.py: ok with a result, or the error the answer throws. */
export function reply(request: Record<string, any>, result: Record<string, any>): Record<string, any> {
  return { op: request.op, request_id: request.request_id, ok: true, result };
}

export function refusal(request: Record<string, any>, path: string, message: string): Record<string, any> {
  return { op: request.op, request_id: request.request_id, ok: false, error: { path, message } };
}

export function fakeKernel(answer: Answer): FakeKernel {
  const sent: Record<string, any>[] = [];
  const comms: any[] = [];
  const targets: string[] = [];
  const deliver = (comm: any, data: Record<string, any>) => {
    // The kernel answers later than the send returns, as over a real socket.
    setTimeout(() => comm.onMsg?.({ content: { comm_id: comm.commId, data } }), 0);
  };
  const kernel = {
    id: `kernel-${Math.random().toString(36).slice(2)}`,
    disposed: new Signal<any, void>({}),
    createComm(target: string) {
      targets.push(target);
      const comm: any = {
        commId: `comm-${comms.length}`,
        isDisposed: false,
        onMsg: null,
        onClose: null,
        open: jest.fn(() => ({ done: Promise.resolve() })),
        close: jest.fn(() => {
          comm.isDisposed = true;
          return { done: Promise.resolve() };
        }),
        send: jest.fn((data: Record<string, any>) => {
          sent.push(data);
          const answered = answer(data, (message) => deliver(comm, message));
          if (answered) deliver(comm, answered);
          return { done: Promise.resolve() };
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
