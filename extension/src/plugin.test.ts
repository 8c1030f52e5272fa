import { DATASET_MIME, HARMONY_MIME, RUNS_MIME, TRAINING_MIME } from '@oss-finetune/schema';
import { CommandRegistry } from '@lumino/commands';
import { Signal } from '@lumino/signaling';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IRenderMimeRegistry } from '@jupyterlab/rendermime';

import { FinetuneClients } from './comm/client';
import { CommandIDs } from './commands';
import plugins from './index';
import plugin, { HIGHLIGHT_EXTENSION, clientsPlugin, readSettings } from './plugin';
import {
  datasetExtension,
  datasetRendererPlugin,
  harmonyExtension,
  harmonyRendererPlugin,
  rendererPlugins,
  runsExtension,
  runsRendererPlugin,
  trainingExtension,
  trainingRendererPlugin,
} from './renderers';
import { DEFAULT_SETTINGS, ViewSettingsStore } from './settings';
import { HarmonyRenderer } from './harmony/renderer';
import { makePayload, mimeModel } from './testing/fixtures';
import { IFinetuneClients, IViewSettings } from './tokens';
import packageJson from '../package.json';
import settingsSchema from '../schema/plugin.json';

/** schema/plugin.json as the setting registry reads it: any property by its name. */
const pluginSchema = settingsSchema as {
  properties: Record<string, { default?: unknown; enum?: unknown[] }>;
  'jupyter.lab.toolbars': { Notebook: unknown[] };
};

// The dashboards the training plugin's factory makes load plotly; jsdom has no canvas for it. Without
// it they keep their SVG charts, as in a browser where plotly fails to load.
jest.mock('plotly.js-dist-min', () => {
  throw new Error('plotly is not loaded in these tests');
});

const mimeExtensions = [
  harmonyExtension(new ViewSettingsStore()),
  trainingExtension(() => null, new FinetuneClients()),
  datasetExtension(),
  runsExtension(),
];

/** A stand-in for the application with what activation touches. */
function application() {
  return { commands: new CommandRegistry(), shell: { add: jest.fn(), activateById: jest.fn() } };
}

/** Collects the renderer factories a plugin adds, with their ranks. */
function rendermimeRegistry() {
  return { addFactory: jest.fn() };
}

/** The factory a renderer plugin adds, activated with `services` after the registry. */
function factoryOf(rendererPlugin: (typeof rendererPlugins)[number], ...services: unknown[]) {
  const rendermime = rendermimeRegistry();
  (rendererPlugin.activate as (...args: unknown[]) => void)(application(), rendermime, ...services);
  expect(rendermime.addFactory).toHaveBeenCalledTimes(1);
  const [factory, rank] = rendermime.addFactory.mock.calls[0];
  return { factory, rank };
}

describe('registration', () => {
  it('registers one safe renderer per MIME type', () => {
    const types = mimeExtensions.flatMap((e) => e.rendererFactory.mimeTypes);
    expect(types.sort()).toEqual([DATASET_MIME, HARMONY_MIME, TRAINING_MIME, RUNS_MIME].sort());
    expect(mimeExtensions.every((e) => e.rendererFactory.safe && e.dataType === 'json')).toBe(true);
  });

  it('has the plugin id its settings schema is stored under', () => {
    expect(plugin.id).toBe('oss-finetune:plugin');
    expect(plugin.autoStart).toBe(true);
  });

  it('adds each renderer from a plugin under its mime extension id, handed what it needs', () => {
    expect(plugins).toEqual([clientsPlugin, plugin, ...rendererPlugins]);
    expect((packageJson.jupyterlab as Record<string, unknown>).mimeExtension).toBeUndefined();
    for (const [rendererPlugin, extension] of [
      [harmonyRendererPlugin, mimeExtensions[0]],
      [trainingRendererPlugin, mimeExtensions[1]],
      [datasetRendererPlugin, mimeExtensions[2]],
      [runsRendererPlugin, mimeExtensions[3]],
    ] as const) {
      expect([rendererPlugin.id, rendererPlugin.description, rendererPlugin.autoStart]).toEqual([
        extension.id,
        extension.description,
        true,
      ]);
    }
    expect(harmonyRendererPlugin.requires).toEqual([IRenderMimeRegistry, IViewSettings]);
    expect(trainingRendererPlugin.requires).toEqual([IRenderMimeRegistry, IFinetuneClients]);
    expect(trainingRendererPlugin.optional).toEqual([INotebookTracker]);
    expect(datasetRendererPlugin.requires).toEqual([IRenderMimeRegistry]);
    expect(runsRendererPlugin.requires).toEqual([IRenderMimeRegistry]);

    const added = [
      factoryOf(harmonyRendererPlugin, new ViewSettingsStore()),
      factoryOf(trainingRendererPlugin, new FinetuneClients(), null),
      factoryOf(datasetRendererPlugin),
      factoryOf(runsRendererPlugin),
    ];
    expect(added.map(({ factory, rank }) => [factory.mimeTypes, factory.safe, rank])).toEqual([
      [[HARMONY_MIME], true, 40],
      [[TRAINING_MIME], true, 40],
      [[DATASET_MIME], true, 40],
      [[RUNS_MIME], true, 40],
    ]);
  });

  it('provides the comm clients from a plugin of their own and the settings from the main one', () => {
    expect(clientsPlugin.provides).toBe(IFinetuneClients);
    expect(clientsPlugin.activate(application() as any)).toBeInstanceOf(FinetuneClients);
    expect(plugin.requires).toEqual([IFinetuneClients]);
    expect(plugin.provides).toBe(IViewSettings);
  });
});

describe('activation', () => {
  it('adds the commands, the palette items and the %%oss_finetune highlighting', () => {
    const commands = new CommandRegistry();
    const shell = { add: jest.fn(), activateById: jest.fn() };
    const palette = { addItem: jest.fn() };
    const editorExtensions = { addExtension: jest.fn() };
    void plugin.activate({ commands, shell } as any, new FinetuneClients(), null, null, palette, editorExtensions);
    expect(Object.values(CommandIDs).every((id) => commands.hasCommand(id))).toBe(true);
    expect(palette.addItem).toHaveBeenCalledTimes(4);
    const [factory] = editorExtensions.addExtension.mock.calls[0];
    expect(factory.name).toBe(HIGHLIGHT_EXTENSION);
    expect(
      factory.factory({
        inline: true,
        model: { mimeType: 'text/x-ipython', sharedModel: { getSource: () => '%%oss_finetune\nlora: {}' } },
      }),
    ).not.toBeNull();
    expect(factory.factory({ inline: true, model: { mimeType: 'text/x-ipythongfm' } })).toBeNull();
    void commands.execute(CommandIDs.openPanel);
    expect(shell.add).toHaveBeenCalledWith(expect.objectContaining({ id: 'oss-finetune-panel' }), 'right', expect.any(Object));
  });

  it('hands the Stop button no kernel where there are no notebooks, and says so', async () => {
    const { factory } = factoryOf(trainingRendererPlugin, new FinetuneClients(), null);
    const renderer = factory.createRenderer({});
    await renderer.renderModel(
      mimeModel(TRAINING_MIME, { version: 1, run_id: 'run-1', status: 'running', step: 1, max_steps: 2, metrics: [] }),
    );
    renderer.node.querySelector('.ossft-stop').click();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(renderer.node.querySelector('.ossft-stop-note').textContent).toContain('no running kernel');
  });
});

describe('settings', () => {
  it('fills what the user did not set with the defaults', () => {
    expect(readSettings({ palette: 'tol-bright' })).toEqual({ ...DEFAULT_SETTINGS, palette: 'tol-bright' });
    expect(readSettings(undefined)).toEqual(DEFAULT_SETTINGS);
  });

  it('reaches open Harmony views when changed', async () => {
    const settings = new ViewSettingsStore();
    const renderer = new HarmonyRenderer(settings);
    await renderer.renderModel(mimeModel(HARMONY_MIME, makePayload(10)));
    settings.update({ palette: 'tol-bright' });
    expect(settings.current.palette).toBe('tol-bright');
    expect(renderer.node.querySelector('.ossft-harmony')!.classList).toContain('ossft-palette-tol-bright');
    renderer.dispose();
  });

  it('go from the setting registry to the renderers of the Harmony plugin', async () => {
    const stored = { composite: {} as Record<string, unknown>, changed: new Signal<unknown, void>({}) };
    const registry = { load: jest.fn(async () => stored) };
    const settings = plugin.activate(application() as any, new FinetuneClients(), registry, null, null, null) as IViewSettings;
    expect(registry.load).toHaveBeenCalledWith('oss-finetune:plugin');
    const renderer = factoryOf(harmonyRendererPlugin, settings).factory.createRenderer({}) as HarmonyRenderer;
    await renderer.renderModel(mimeModel(HARMONY_MIME, makePayload(10)));
    expect(renderer.node.querySelector('.ossft-harmony')!.classList).toContain('ossft-palette-okabe-ito');
    stored.composite = { palette: 'tol-bright' };
    stored.changed.emit();
    expect(settings.current.palette).toBe('tol-bright');
    expect(renderer.node.querySelector('.ossft-harmony')!.classList).toContain('ossft-palette-tol-bright');
    renderer.dispose();
  });

  it('declares the notebook toolbar button for the open-panel command', () => {
    const schema = pluginSchema;
    expect(schema['jupyter.lab.toolbars'].Notebook).toEqual([expect.objectContaining({ command: CommandIDs.openPanel })]);
    expect(schema.properties.panelArea.enum).toEqual(['left', 'right']);
  });

  it('agrees with the defaults in schema/plugin.json', () => {
    const schema = pluginSchema;
    for (const [key, value] of Object.entries(DEFAULT_SETTINGS)) {
      expect(schema.properties[key].default).toEqual(value);
    }
  });
});
