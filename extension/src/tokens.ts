import type { Kernel } from '@jupyterlab/services';
import { Token } from '@lumino/coreutils';
import type { ISignal } from '@lumino/signaling';

import type { ClientOptions, FinetuneClient } from './comm/client';
import type { ViewSettings } from './settings';

/** The `oss_finetune` comm client of each kernel, one per kernel for the whole application. */
export interface IFinetuneClients {
  /** The shared client of `kernel`, made on first use and forgotten with the kernel. */
  clientFor(kernel: Kernel.IKernelConnection, options?: ClientOptions): FinetuneClient;
}

export const IFinetuneClients = new Token<IFinetuneClients>(
  'oss-finetune:IFinetuneClients',
  'The oss_finetune comm client of each kernel, shared by the fine-tune panel, its commands and the Stop button of every training dashboard.',
);

/** The person's view settings (Settings > GPT-OSS fine-tune) as the renderers see them: read when they draw, followed while they live. */
export interface IViewSettings {
  readonly current: ViewSettings;
  readonly changed: ISignal<IViewSettings, ViewSettings>;
}

export const IViewSettings = new Token<IViewSettings>(
  'oss-finetune:IViewSettings',
  'The GPT-OSS fine-tune view settings, defaults until the setting registry has answered.',
);
