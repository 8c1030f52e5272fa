import type { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { HARMONY_MIME, HarmonyTokensPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { checkPayload, renderProblems } from '../common/payload';
import type { ViewSettings } from '../settings';
import type { IViewSettings } from '../tokens';
import { Clipboard, HarmonyView } from './view';

export class HarmonyRenderer extends Widget implements IRenderMime.IRenderer {
  private view: HarmonyView | null = null;

  /** `settings` are read when a payload is drawn; a change of palette reaches the drawn view too. */
  constructor(
    private readonly settings: IViewSettings,
    private readonly clipboard?: Clipboard,
  ) {
    super();
    this.addClass('ossft-renderer');
    settings.changed.connect(this.onSettingsChanged, this);
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
      this.view = new HarmonyView(checked.value, { settings: this.settings.current, clipboard: this.clipboard });
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
    this.settings.changed.disconnect(this.onSettingsChanged, this);
    this.view?.dispose();
    this.view = null;
    super.dispose();
  }

  private onSettingsChanged(_: IViewSettings, settings: ViewSettings): void {
    this.view?.applySettings(settings);
  }
}

/** The factory of the Harmony token view; every renderer it makes follows `settings`. */
export function harmonyRendererFactory(settings: IViewSettings): IRenderMime.IRendererFactory {
  return {
    safe: true,
    mimeTypes: [HARMONY_MIME],
    // Below JupyterLab's text/html (50): every bundle from the kernel also carries an HTML copy.
    defaultRank: 40,
    createRenderer: () => new HarmonyRenderer(settings),
  };
}
