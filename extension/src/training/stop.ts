/**
 * The one place that talks to the kernel about a run. The kernel registers the comm target
 * `oss_finetune`; a stop request opens a comm on it and sends `{op: "stop", run_id}`. The kernel
 * then stops after the current step, saves a checkpoint and sends a last display update with status
 * "stopped", which is what the dashboard shows; the reply on the comm only says it was heard.
 */
import type { Kernel } from '@jupyterlab/services';

export const COMM_TARGET = 'oss_finetune';

/** Finds the kernel behind the notebook holding an output node; set by the plugin. */
export type KernelFinder = (node: HTMLElement) => Kernel.IKernelConnection | null | undefined;

let finder: KernelFinder | null = null;

export function setKernelFinder(next: KernelFinder | null): void {
  finder = next;
}

export interface StopRequest {
  op: 'stop';
  run_id: string;
}

export async function requestStop(runId: string, node: HTMLElement): Promise<void> {
  const kernel = finder?.(node);
  if (!kernel) {
    throw new Error('no running kernel is connected to this notebook; interrupt the kernel to stop the run');
  }
  const comm = kernel.createComm(COMM_TARGET);
  const message: StopRequest = { op: 'stop', run_id: runId };
  await comm.open({}).done;
  await comm.send(message as unknown as Parameters<typeof comm.send>[0]).done;
}
