import type { HarmonyChannel } from './harmony/model';

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

type Listener = (settings: ViewSettings) => void;

// The settings plugin and the MIME renderers are separate entry points of one bundle, so a module
// singleton is the bridge between them: renderers read it when they open and follow later changes.
let current: ViewSettings = { ...DEFAULT_SETTINGS };
const listeners = new Set<Listener>();

export function getSettings(): ViewSettings {
  return current;
}

export function updateSettings(partial: Partial<ViewSettings>): void {
  current = { ...current, ...partial };
  for (const listener of [...listeners]) listener(current);
}

/** Returns the function that stops listening. */
export function onSettingsChanged(listener: Listener): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}
