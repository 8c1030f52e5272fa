/**
 * The four MIME renderers. A mime extension is sugar over a plugin that calls rendermime.addFactory
 * (@jupyterlab/application's mimerenderers.ts), and it cannot hand its renderers anything; so each of
 * ours is that plugin written out, under the id its mime extension had, and builds its renderers with
 * what they need from the application, as markdownviewer-extension registers its own.
 */
import type { JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';
import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { datasetRendererFactory } from './dataset/renderer';
import { harmonyRendererFactory } from './harmony/renderer';
import { runsRendererFactory } from './comparison/renderer';
import { IFinetuneClients, IViewSettings } from './tokens';
import { trainingRendererFactory } from './training/renderer';
import type { KernelFinder } from './training/stop';

// Below JupyterLab's text/html (50), as each factory's defaultRank says: every bundle from the kernel
// also carries an HTML copy.
const RANK = 40;

export function harmonyExtension(settings: IViewSettings): IRenderMime.IExtension {
  return {
    id: 'oss-finetune:harmony',
    description: 'Renders the harmony payload.',
    rendererFactory: harmonyRendererFactory(settings),
    rank: RANK,
    dataType: 'json',
  };
}

export function trainingExtension(findKernel: KernelFinder, clients: IFinetuneClients): IRenderMime.IExtension {
  return {
    id: 'oss-finetune:training',
    description: 'Renders the training payload.',
    rendererFactory: trainingRendererFactory(findKernel, clients),
    rank: RANK,
    dataType: 'json',
  };
}

export function datasetExtension(): IRenderMime.IExtension {
  return {
    id: 'oss-finetune:dataset',
    description: 'Renders the dataset payload.',
    rendererFactory: datasetRendererFactory,
    rank: RANK,
    dataType: 'json',
  };
}

export function runsExtension(): IRenderMime.IExtension {
  return {
    id: 'oss-finetune:runs',
    description: 'Renders the runs comparison payload.',
    rendererFactory: runsRendererFactory(),
    rank: RANK,
    dataType: 'json',
  };
}

/** The kernel of the notebook holding an output node (else of the notebook in front); none without notebooks. */
export function notebookKernelFinder(notebooks: INotebookTracker | null): KernelFinder {
  if (!notebooks) return () => null;
  return (node) => {
    const owner = notebooks.find((notebook) => notebook.node.contains(node)) ?? notebooks.currentWidget;
    return owner?.sessionContext.session?.kernel ?? null;
  };
}

/** What createRendermimePlugin's activation does with a mime extension (it has no document widget). */
function addRenderer(rendermime: IRenderMimeRegistry, extension: IRenderMime.IExtension): void {
  rendermime.addFactory(extension.rendererFactory, extension.rank);
}

/** The Harmony token view, drawn with the person's view settings and following their palette. */
export const harmonyRendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'oss-finetune:harmony',
  description: 'Renders the harmony payload.',
  autoStart: true,
  requires: [IRenderMimeRegistry, IViewSettings],
  activate: (_app, rendermime: IRenderMimeRegistry, settings: IViewSettings) => addRenderer(rendermime, harmonyExtension(settings)),
};

/** The training dashboard, whose Stop button reaches the output's kernel over its shared comm client. */
export const trainingRendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'oss-finetune:training',
  description: 'Renders the training payload.',
  autoStart: true,
  requires: [IRenderMimeRegistry, IFinetuneClients],
  optional: [INotebookTracker],
  activate: (_app, rendermime: IRenderMimeRegistry, clients: IFinetuneClients, notebooks: INotebookTracker | null) =>
    addRenderer(rendermime, trainingExtension(notebookKernelFinder(notebooks), clients)),
};

/** The data set summary; it needs nothing from the application. */
export const datasetRendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'oss-finetune:dataset',
  description: 'Renders the dataset payload.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (_app, rendermime: IRenderMimeRegistry) => addRenderer(rendermime, datasetExtension()),
};

/** Runs side by side (%oss_finetune runs); like the data set summary, it needs nothing from the application. */
export const runsRendererPlugin: JupyterFrontEndPlugin<void> = {
  id: 'oss-finetune:runs',
  description: 'Renders the runs comparison payload.',
  autoStart: true,
  requires: [IRenderMimeRegistry],
  activate: (_app, rendermime: IRenderMimeRegistry) => addRenderer(rendermime, runsExtension()),
};

export const rendererPlugins = [harmonyRendererPlugin, trainingRendererPlugin, datasetRendererPlugin, runsRendererPlugin];
