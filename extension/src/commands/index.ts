/**
 * The palette commands and the icon of the fine-tune panel. They act on the notebook the panel
 * follows, so "Start training" from the palette trains with what the panel shows.
 */
import type { CommandRegistry } from '@lumino/commands';
import type { Widget } from '@lumino/widgets';
import { LabIcon } from '@jupyterlab/ui-components';

import type { FinetunePanel } from '../panel/panel';

export const CommandIDs = {
  openPanel: 'oss-finetune:open-panel',
  startTraining: 'oss-finetune:start-training',
  stopTraining: 'oss-finetune:stop-training',
  showStatus: 'oss-finetune:show-status',
} as const;

export const PALETTE_CATEGORY = 'GPT-OSS fine-tune';

// Three sliders: the settings of a run. Drawn for this project; jp-icon3 follows the theme.
const ICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
  '<rect x="4" y="3" width="2" height="18" rx="1"/><rect x="11" y="3" width="2" height="18" rx="1"/>' +
  '<rect x="18" y="3" width="2" height="18" rx="1"/><rect x="2" y="13" width="6" height="4" rx="1.5"/>' +
  '<rect x="9" y="6" width="6" height="4" rx="1.5"/><rect x="16" y="15" width="6" height="4" rx="1.5"/></g></svg>';

export const finetuneIcon = new LabIcon({ name: 'oss-finetune:panel', svgstr: ICON_SVG });

export type PanelArea = 'left' | 'right';

/** What the commands need from the application, so tests can hand in a small stand-in. */
export interface CommandHost {
  commands: CommandRegistry;
  shell: {
    add(widget: Widget, area: PanelArea, options?: { rank?: number }): void;
    activateById(id: string): void;
  };
}

export interface CommandOptions {
  /** Which side the panel opens on (setting `panelArea`). */
  area: () => PanelArea;
  /** Tells the person something short: a status, a refusal. */
  notify: (text: string, kind: 'info' | 'error') => void;
  palette?: { addItem(options: { command: string; category: string }): unknown } | null;
}

const placed = new WeakMap<FinetunePanel, PanelArea>();

/** Puts the panel in its side area (moving it there if the setting changed) and shows it. */
export function showPanel(host: CommandHost, panel: FinetunePanel, area: PanelArea): void {
  if (!panel.isAttached || placed.get(panel) !== area) {
    host.shell.add(panel, area, { rank: 900 });
    placed.set(panel, area);
  }
  host.shell.activateById(panel.id);
}

export function addCommands(host: CommandHost, panel: FinetunePanel, options: CommandOptions): void {
  const { commands } = host;
  panel.title.icon = finetuneIcon;

  commands.addCommand(CommandIDs.openPanel, {
    label: 'Open the GPT-OSS fine-tune panel',
    caption: 'Model, data, LoRA adapter and training settings of this notebook’s kernel',
    icon: finetuneIcon,
    execute: () => showPanel(host, panel, options.area()),
  });

  commands.addCommand(CommandIDs.startTraining, {
    label: 'Start fine-tuning with the panel’s settings',
    isEnabled: () => panel.currentTarget?.kernel != null,
    execute: async () => {
      const started = await panel.startTraining();
      // The panel says why it did not start; show it where that reason is.
      if (!started) showPanel(host, panel, options.area());
      return started;
    },
  });

  commands.addCommand(CommandIDs.stopTraining, {
    label: 'Stop fine-tuning (after this step, with a checkpoint)',
    isEnabled: () => panel.currentTarget?.kernel != null,
    execute: async () => {
      const runId = await panel.stopTraining();
      options.notify(
        runId ? `Stopping ${runId} after this step; a checkpoint will be saved.` : 'No run is training in this notebook’s kernel.',
        'info',
      );
      return runId;
    },
  });

  commands.addCommand(CommandIDs.showStatus, {
    label: 'Show the fine-tune status',
    execute: async () => {
      if (panel.currentTarget?.kernel) await panel.refreshRuns();
      const text = panel.statusText();
      options.notify(text, 'info');
      return text;
    },
  });

  for (const command of Object.values(CommandIDs)) options.palette?.addItem({ command, category: PALETTE_CATEGORY });
}
