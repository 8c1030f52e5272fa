import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { ICommandPalette, Notification } from '@jupyterlab/apputils';
import { EditorExtensionRegistry, IEditorExtensionRegistry } from '@jupyterlab/codemirror';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { schemaIssues } from '@oss-finetune/schema';

import { CommandHost, PanelArea, addCommands, showPanel } from './commands';
import { appliesTo, finetuneCellHighlighting } from './highlight/cellMagic';
import { FinetunePanel, PanelTarget } from './panel/panel';
import { DEFAULT_SETTINGS, ViewSettings, getSettings, updateSettings } from './settings';
import { setKernelFinder } from './training/stop';

export const PLUGIN_ID = 'oss-finetune:plugin';
export const HIGHLIGHT_EXTENSION = 'oss-finetune:cell-magic-yaml';

/** Reads the user's settings into the shared store the renderers follow. */
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

/**
 * The MIME renderers cannot see the application; this plugin hands them what they need from it
 * (the settings, the kernel behind an output for the Stop button) and adds the fine-tune panel,
 * its commands and the highlighting of %%oss_finetune cells.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'The GPT-OSS fine-tune panel, commands, cell highlighting, settings and kernel access for the views.',
  autoStart: true,
  optional: [ISettingRegistry, INotebookTracker, ICommandPalette, IEditorExtensionRegistry],
  activate: (
    app: JupyterFrontEnd,
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

    const panel = new FinetunePanel();
    const host = app as unknown as CommandHost;
    addCommands(host, panel, {
      area: () => getSettings().panelArea,
      notify: (text, kind) => void (kind === 'error' ? Notification.error(text, { autoClose: 8000 }) : Notification.info(text, { autoClose: 8000 })),
      palette,
    });

    if (notebooks) {
      setKernelFinder((node) => {
        const owner = notebooks.find((notebook) => notebook.node.contains(node)) ?? notebooks.currentWidget;
        return owner?.sessionContext.session?.kernel ?? null;
      });
      followNotebooks(notebooks, panel);
    }

    editorExtensions?.addExtension({
      name: HIGHLIGHT_EXTENSION,
      factory: (options) =>
        appliesTo(options)
          ? EditorExtensionRegistry.createImmutableExtension(finetuneCellHighlighting(options.model.sharedModel.getSource()))
          : null,
    });

    // The panel's side follows the setting; it is only placed once someone opens it.
    let area: PanelArea = getSettings().panelArea;
    const apply = (settings: ViewSettings) => {
      updateSettings(settings);
      if (settings.panelArea !== area) {
        area = settings.panelArea;
        if (panel.isAttached) showPanel(host, panel, area);
      }
    };
    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then((settings) => {
          const read = () => apply(readSettings(settings.composite as Partial<ViewSettings>));
          read();
          settings.changed.connect(read);
        })
        .catch((err) => console.warn('oss-finetune: settings could not be loaded, using defaults', err));
    }
  },
};

export default plugin;
