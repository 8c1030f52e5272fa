/**
 * The dashboard's Stop button. The kernel stops after the current step, saves a checkpoint and sends
 * a last display update with status "stopped", which is what the dashboard shows; the reply on the
 * comm only says the request was heard.
 */
import type { Kernel } from '@jupyterlab/services';

import { COMM_TARGET } from '../comm/client';
import type { IFinetuneClients } from '../tokens';
import type { StopHandler } from './dashboard';

export { COMM_TARGET };

/** Finds the kernel behind the notebook holding an output node; the training renderer's plugin makes it from the notebook tracker. */
export type KernelFinder = (node: HTMLElement) => Kernel.IKernelConnection | null | undefined;

/**
 * What Stop does for the output at `node`: asks the kernel `findKernel` names for it to stop its run:
 * an interrupt while a cell is running (the run of `%oss_finetune train`), else the comm's stop op
 * over that kernel's shared client (a run started from the panel trains in the background). The
 * kernel runs one training at a time, so the stop op names none; `runId` is the run the person saw,
 * kept for the error message.
 */
export function stopHandler(findKernel: KernelFinder, clients: IFinetuneClients): StopHandler {
  return async (runId, node) => {
    const kernel = findKernel(node);
    if (!kernel) {
      throw new Error('no running kernel is connected to this notebook; interrupt the kernel to stop the run');
    }
    if (kernel.status === 'busy') {
      // A run started from a cell holds the kernel's shell channel until the cell ends, so a comm
      // message would wait behind it. The trainer takes an interrupt as a graceful stop: it finishes the
      // step, writes a checkpoint and reports "stopped".
      try {
        await kernel.interrupt();
      } catch (error) {
        throw new Error(`could not stop ${runId}: the kernel refused the interrupt (${(error as Error).message})`);
      }
      return;
    }
    try {
      await clients.clientFor(kernel).request('stop');
    } catch (error) {
      throw new Error(`could not stop ${runId}: ${(error as Error).message}`);
    }
  };
}
