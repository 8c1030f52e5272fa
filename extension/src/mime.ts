import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { datasetRendererFactory } from './dataset/renderer';
import { harmonyRendererFactory } from './harmony/renderer';
import { trainingRendererFactory } from './training/renderer';

/** The three MIME renderers, registered by JupyterLab's mime extension loader. */
const extensions: IRenderMime.IExtension[] = [
  { id: 'oss-finetune:harmony', description: 'Renders the harmony payload.', rendererFactory: harmonyRendererFactory, rank: 40, dataType: 'json' },
  { id: 'oss-finetune:training', description: 'Renders the training payload.', rendererFactory: trainingRendererFactory, rank: 40, dataType: 'json' },
  { id: 'oss-finetune:dataset', description: 'Renders the dataset payload.', rendererFactory: datasetRendererFactory, rank: 40, dataType: 'json' },
];

export default extensions;
