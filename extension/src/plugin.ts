import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { schemaIssues } from '@oss-finetune/schema';

import { DEFAULT_SETTINGS, ViewSettings, updateSettings } from './settings';
import { setKernelFinder } from './training/stop';

export const PLUGIN_ID = 'oss-finetune:plugin';

/** Reads the user's settings into the shared store the renderers follow. */
export function readSettings(composite: Partial<ViewSettings> | undefined): ViewSettings {
  return { ...DEFAULT_SETTINGS, ...(composite ?? {}) };
}

/**
 * The MIME renderers cannot see the application; this plugin hands them what they need from it:
 * the settings, and the kernel of the notebook an output belongs to (for the Stop button).
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description: 'Settings and kernel access for the GPT-OSS fine-tune views.',
  autoStart: true,
  optional: [ISettingRegistry, INotebookTracker],
  activate: (_app: JupyterFrontEnd, registry: ISettingRegistry | null, notebooks: INotebookTracker | null) => {
    // Compiling a schema's validator costs about 100 ms; do it while the page is idle rather than
    // when the first token view opens.
    const warm = () => {
      for (const name of ['harmony-tokens', 'training-run', 'dataset-summary'] as const) schemaIssues(name, {});
    };
    if (typeof requestIdleCallback === 'function') requestIdleCallback(warm);
    else setTimeout(warm, 0);
    if (notebooks) {
      setKernelFinder((node) => {
        const owner = notebooks.find((panel) => panel.node.contains(node)) ?? notebooks.currentWidget;
        return owner?.sessionContext.session?.kernel ?? null;
      });
    }
    if (registry) {
      registry
        .load(PLUGIN_ID)
        .then((settings) => {
          const apply = () => updateSettings(readSettings(settings.composite as Partial<ViewSettings>));
          apply();
          settings.changed.connect(apply);
        })
        .catch((err) => console.warn('oss-finetune: settings could not be loaded, using defaults', err));
    }
  },
};

export default plugin;
