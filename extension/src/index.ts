import type { JupyterFrontEndPlugin } from '@jupyterlab/application';

import plugin, { clientsPlugin } from './plugin';
import { rendererPlugins } from './renderers';

/** Everything the extension adds to JupyterLab; package.json's jupyterlab.extension points here. */
const plugins: JupyterFrontEndPlugin<unknown>[] = [clientsPlugin, plugin, ...rendererPlugins];

export default plugins;
export { plugin, clientsPlugin };
export { IFinetuneClients, IViewSettings } from './tokens';
export { rendererPlugins, harmonyExtension, trainingExtension, datasetExtension, runsExtension, notebookKernelFinder } from './renderers';
export { ViewSettingsStore, DEFAULT_SETTINGS } from './settings';
export type { ViewSettings } from './settings';
export { HarmonyRenderer, harmonyRendererFactory } from './harmony/renderer';
export { HarmonyView } from './harmony/view';
export { TokenPane } from './harmony/pane';
export { TrainingRenderer, trainingRendererFactory } from './training/renderer';
export { TrainingDashboard } from './training/dashboard';
export { svgCharts, plotlyCharts } from './training/charts';
export { DatasetRenderer, datasetRendererFactory } from './dataset/renderer';
export { RunsRenderer, runsRendererFactory } from './comparison/renderer';
export { RunsView } from './comparison/view';
export { svgOverlay, plotlyOverlay } from './comparison/overlay';
export { stopHandler, COMM_TARGET } from './training/stop';
export type { KernelFinder } from './training/stop';
export { FinetunePanel } from './panel/panel';
export { ConfigForm, fieldSpecs, schemaDefaults } from './panel/form';
export { FinetuneClient, FinetuneClients, CommRequestError } from './comm/client';
export type { RequestArguments, RequestOp, RequestResult } from './comm/client';
export { CommandIDs } from './commands';
export { finetuneCellHighlighting, isFinetuneCell } from './highlight/cellMagic';
