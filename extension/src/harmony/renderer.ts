import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { HARMONY_MIME, HarmonyTokensPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { checkPayload, renderProblems } from '../common/payload';
import { getSettings, onSettingsChanged } from '../settings';
import { Clipboard, HarmonyView } from './view';

export class HarmonyRenderer extends Widget implements IRenderMime.IRenderer {
  private view: HarmonyView | null = null;
  private readonly stopFollowing: () => void;

  constructor(private readonly clipboard?: Clipboard) {
    super();
    this.addClass('ossft-renderer');
    this.stopFollowing = onSettingsChanged((settings) => this.view?.applySettings(settings));
  }

  get harmonyView(): HarmonyView | null {
    return this.view;
  }

  async renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    this.view?.dispose();
    this.view = null;
    const checked = checkPayload<HarmonyTokensPayload>('harmony-tokens', model.data[HARMONY_MIME]);
    if (!checked.ok) {
      renderProblems(this.node, 'Harmony token view', checked.problems);
      return;
    }
    const problems = HarmonyView.problems(checked.value);
    if (problems.length) {
      renderProblems(this.node, 'Harmony token view', problems);
      return;
    }
    try {
      this.view = new HarmonyView(checked.value, { settings: getSettings(), clipboard: this.clipboard });
      this.node.replaceChildren(this.view.node);
      if (this.isAttached) this.view.attach();
    } catch (err) {
      renderProblems(this.node, 'Harmony token view', [`could not be drawn: ${String(err)}`]);
    }
  }

  protected onAfterAttach(): void {
    this.view?.attach();
  }

  protected onBeforeDetach(): void {
    // Notebook windowing detaches outputs that scroll away and attaches them again on return.
    this.view?.detach();
  }

  dispose(): void {
    if (this.isDisposed) return;
    this.stopFollowing();
    this.view?.dispose();
    this.view = null;
    super.dispose();
  }
}

export const harmonyRendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [HARMONY_MIME],
  // Below JupyterLab's text/html (50): every bundle from the kernel also carries an HTML copy.
  defaultRank: 40,
  createRenderer: () => new HarmonyRenderer(),
};
