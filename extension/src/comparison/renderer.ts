import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { RUNS_MIME, RunsComparisonPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { checkPayload, renderProblems } from '../common/payload';
import { OverlayBackend, plotlyOverlay } from './overlay';
import { RunsView } from './view';

export class RunsRenderer extends Widget implements IRenderMime.IRenderer {
  private view: RunsView | null = null;

  constructor(private readonly backend: OverlayBackend) {
    super();
    this.addClass('ossft-renderer');
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const checked = checkPayload<RunsComparisonPayload>('runs-comparison', model.data[RUNS_MIME]);
    if (!checked.ok) {
      this.view = null;
      renderProblems(this.node, 'comparison of runs', checked.problems);
      return;
    }
    try {
      this.view = new RunsView(this.backend);
      this.node.replaceChildren(this.view.node);
      this.view.update(checked.value);
    } catch (err) {
      this.view = null;
      renderProblems(this.node, 'comparison of runs', [`could not be drawn: ${String(err)}`]);
    }
  }

  protected onAfterAttach(): void {
    this.view?.resize();
  }

  protected onAfterShow(): void {
    this.view?.resize();
  }
}

/** The factory of the runs view (application/vnd.oss-finetune.runs+json). */
export function runsRendererFactory(backend: OverlayBackend = plotlyOverlay): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [RUNS_MIME],
    // Below JupyterLab's text/html (50): every bundle from the kernel also carries an HTML copy.
    defaultRank: 40,
    createRenderer: () => new RunsRenderer(backend),
  };
}
