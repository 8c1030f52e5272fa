import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { TRAINING_MIME, TrainingRunPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { checkPayload, renderProblems } from '../common/payload';
import type { IFinetuneClients } from '../tokens';
import { ChartBackend, plotlyCharts } from './charts';
import { StopHandler, TrainingDashboard } from './dashboard';
import { KernelFinder, stopHandler } from './stop';

export class TrainingRenderer extends Widget implements IRenderMime.IRenderer {
  private dashboard: TrainingDashboard | null = null;

  /** `stop` is what the dashboard's Stop button does. */
  constructor(
    private readonly backend: ChartBackend,
    private readonly stop: StopHandler,
  ) {
    super();
    this.addClass('ossft-renderer');
  }

  get trainingDashboard(): TrainingDashboard | null {
    return this.dashboard;
  }

  // JupyterLab calls this again on the same renderer for every display update of the run, so the
  // dashboard is kept and updated rather than rebuilt (charts keep their zoom, the Stop state stays).
  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const checked = checkPayload<TrainingRunPayload>('training-run', model.data[TRAINING_MIME]);
    if (!checked.ok) {
      this.dashboard = null;
      renderProblems(this.node, 'training run', checked.problems);
      return;
    }
    try {
      if (!this.dashboard) {
        this.dashboard = new TrainingDashboard(this.backend, this.stop);
        this.node.replaceChildren(this.dashboard.node);
      }
      this.dashboard.update(checked.value);
    } catch (err) {
      this.dashboard = null;
      renderProblems(this.node, 'training run', [`could not be drawn: ${String(err)}`]);
    }
  }

  protected onAfterAttach(): void {
    // Notebook windowing detaches outputs that scroll away; plotly needs its size again on return.
    this.dashboard?.resize();
  }

  protected onResize(): void {
    this.dashboard?.resize();
  }

  protected onAfterShow(): void {
    // A notebook in a background tab during Run All draws its outputs at no size.
    this.dashboard?.resize();
  }
}

/**
 * The factory of the training dashboard. Its Stop button stops the run in the kernel `findKernel`
 * names for the output, over that kernel's client from `clients`.
 */
export function trainingRendererFactory(findKernel: KernelFinder, clients: IFinetuneClients): IRenderMime.IRendererFactory {
  const stop = stopHandler(findKernel, clients);
  return {
    safe: true,
    mimeTypes: [TRAINING_MIME],
    // Below JupyterLab's text/html (50): every bundle from the kernel also carries an HTML copy.
    defaultRank: 40,
    createRenderer: () => new TrainingRenderer(plotlyCharts, stop),
  };
}
