import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { DATASET_MIME, DatasetSummaryPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { checkPayload, renderProblems } from '../common/payload';
import { renderSummary, summaryProblems } from './summary';

export class DatasetRenderer extends Widget implements IRenderMime.IRenderer {
  constructor() {
    super();
    this.addClass('ossft-renderer');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const checked = checkPayload<DatasetSummaryPayload>('dataset-summary', model.data[DATASET_MIME]);
    if (!checked.ok) {
      renderProblems(this.node, 'data set summary', checked.problems);
      return;
    }
    const problems = summaryProblems(checked.value);
    if (problems.length) {
      renderProblems(this.node, 'data set summary', problems);
      return;
    }
    try {
      this.node.replaceChildren(renderSummary(checked.value));
    } catch (err) {
      renderProblems(this.node, 'data set summary', [`could not be drawn: ${String(err)}`]);
    }
  }
}

export const datasetRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [DATASET_MIME],
  // Below JupyterLab's text/html (50): every bundle from the kernel also carries an HTML copy.
  defaultRank: 40,
  createRenderer: () => new DatasetRenderer(),
};
