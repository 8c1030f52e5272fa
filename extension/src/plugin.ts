import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { schemaIssues } from '@oss-finetune/schema';

import { FinetuneClients } from './comm/client';
import { CommandHost, PanelArea, addCommands, showPanel } from './commands';
import { appliesTo, finetuneCellHighlighting } from './highlight/cellMagic';
import { FinetunePanel, PanelTarget } from './panel/panel';
import { DEFAULT_SETTINGS, ViewSettings, ViewSettingsStore } from './settings';
import { IFinetuneClients, IViewSettings } from './tokens';
import { plotlyCharts } from './training/charts';

export const PLUGIN_ID = 'oss-finetune:plugin';
export const HIGHLIGHT_EXTENSION = 'oss-finetune:cell-magic-yaml';

export const CLIENTS_PLUGIN_ID = 'oss-finetune:clients';

/** Reads the user's settings, filling what they did not set with the defaults. */
export function readSettings(composite: Partial<ViewSettings> | undefined): ViewSettings {
  return { ...DEFAULT_SETTINGS, ...(composite ?? {}) };
}

function targetOf(notebook: NotebookPanel | null): PanelTarget | null {
  if (!notebook) return null;
  return { label: notebook.title.label || notebook.context.path, kernel: notebook.sessionContext.session?.kernel ?? null };
}

/** Keeps the panel on the notebook in front and on that notebook's current kernel. */
export function followNotebooks(notebooks: INotebookTracker, panel: FinetunePanel): void {
  const follow = () => void panel.setTarget(targetOf(notebooks.currentWidget));
  notebooks.currentChanged.connect(follow);
  const watch = (notebook: NotebookPanel) =>
    notebook.sessionContext.kernelChanged.connect(() => {
      if (notebooks.currentWidget === notebook) follow();
    });
  notebooks.forEach(watch);
  notebooks.widgetAdded.connect((_, notebook) => watch(notebook));
  follow();
}

/** The comm client of each kernel, for the panel, the commands and the dashboards' Stop buttons. */
export const clientsPlugin: JupyterFrontEndPlugin<IFinetuneClients> = {
  id: CLIENTS_PLUGIN_ID,
  description: 'The oss_finetune comm client of each kernel.',
  autoStart: true,
  provides: IFinetuneClients,
  activate: () => new FinetuneClients(),
};

/**
 * Reads the settings, which it provides to the renderers (IViewSettings), and adds the fine-tune panel,
 * its commands and the highlighting of %%oss_finetune cells.
 */
const plugin: JupyterFrontEndPlugin<IViewSettings> = {
  id: PLUGIN_ID,
  description: 'The GPT-OSS fine-tune panel, commands, cell highlighting and settings.',
  autoStart: true,
  requires: [IFinetuneClients],
  optional: [ISettingRegistry, INotebookTracker, ICommandPalette, IEditorExtensionRegistry],
  provides: IViewSettings,
  activate: (
    app: JupyterFrontEnd,
    clients: IFinetuneClients,
    registry: ISettingRegistry | null,
    notebooks: INotebookTracker | null,
    palette: ICommandPalette | null,
    editorExtensions: IEditorExtensionRegistry | null,
  ) => {
    // Compiling a schema's validator costs about 100 ms; do it while the page is idle rather than
    // when the first token view or the panel opens.
    const warm = () => {
      for (const name of ['harmony-tokens', 'training-run', 'dataset-summary', 'finetune-config'] as const) schemaIssues(name, {});
    };
    if (typeof requestIdleCallback === 'function') requestIdleCallback(warm);
    else setTimeout(warm, 0);

    const settings = new ViewSettingsStore();
    const panel = new FinetunePanel({ clients, charts: plotlyCharts });
    const host = app as unknown as CommandHost;
    addCommands(host, panel, {
      area: () => settings.current.panelArea,
      notify: (text, kind) =>
        void (kind === 'error' ? Notification.error(text, { autoClose: 8000 }) : Notification.info(text, { autoClose: 8000 })),
      palette,
    });

    if (notebooks) followNotebooks(notebooks, panel);

    editorExtensions?.addExtension({
      name: HIGHLIGHT_EXTENSION,
      factory: (options) =>
        appliesTo(options)
          ? EditorExtensionRegistry.createImmutableExtension(finetuneCellHighlighting(options.model.sharedModel.getSource()))
          : null,
    });

    // The panel's side follows the setting; it is only placed once someone opens it.
    let area: PanelArea = settings.current.panelArea;
    const apply = (next: ViewSettings) => {
      settings.update(next);
      if (next.panelArea !== area) {
        area = next.panelArea;
        if (panel.isAttached) showPanel(host, panel, area);
      }
    };
    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then((stored) => {
          const read = () => apply(readSettings(stored.composite as Partial<ViewSettings>));
          read();
          stored.changed.connect(read);
        })
        .catch((err) => console.warn('oss-finetune: settings could not be loaded, using defaults', err));
    }
    return settings;
  },
};

export default plugin;
