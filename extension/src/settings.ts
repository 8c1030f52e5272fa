import { ISignal, Signal } from '@lumino/signaling';

import type { HarmonyChannel } from './harmony/model';
import type { IViewSettings } from './tokens';

export type PaletteName = 'okabe-ito' | 'tol-bright';

/** What a person chose in Settings > GPT-OSS fine-tune; see schema/plugin.json. The renderers and the panel share it. */
export interface ViewSettings {
  channels: HarmonyChannel[];
  showLossMask: boolean;
  showLossHeatmap: boolean;
  palette: PaletteName;
  lineHeight: number;
  /** The side the fine-tune panel opens on. */
  panelArea: 'left' | 'right';
}

export const DEFAULT_SETTINGS: ViewSettings = {
  channels: ['analysis', 'commentary', 'final', 'none'],
  showLossMask: true,
  showLossHeatmap: false,
  palette: 'okabe-ito',
  lineHeight: 24,
  panelArea: 'right',
};

/**
 * The settings the plugin read from the setting registry; it provides them as IViewSettings. Until the
 * registry answers (or where there is none) they are the defaults.
 */
export class ViewSettingsStore implements IViewSettings {
  private value: ViewSettings;
  private readonly changedSignal = new Signal<IViewSettings, ViewSettings>(this);

  constructor(initial: Partial<ViewSettings> = {}) {
    this.value = { ...DEFAULT_SETTINGS, ...initial };
  }

  get current(): ViewSettings {
    return this.value;
  }

  get changed(): ISignal<IViewSettings, ViewSettings> {
    return this.changedSignal;
  }

  update(partial: Partial<ViewSettings>): void {
    this.value = { ...this.value, ...partial };
    this.changedSignal.emit(this.value);
  }
}
