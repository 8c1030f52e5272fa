import { DATASET_MIME, HARMONY_MIME, TRAINING_MIME } from '@oss-finetune/schema';

import mimeExtensions from './mime';
import { CommandRegistry } from '@lumino/commands';

import { CommandIDs } from './commands';
import plugin, { HIGHLIGHT_EXTENSION, readSettings } from './plugin';
import { DEFAULT_SETTINGS, getSettings, updateSettings } from './settings';
import { HarmonyRenderer } from './harmony/renderer';
import { makePayload, mimeModel } from './testing/fixtures';

describe('registration', () => {
  it('registers one safe renderer per MIME type', () => {
    const types = mimeExtensions.flatMap((e) => e.rendererFactory.mimeTypes);
    expect(types.sort()).toEqual([DATASET_MIME, HARMONY_MIME, TRAINING_MIME].sort());
    expect(mimeExtensions.every((e) => e.rendererFactory.safe && e.dataType === 'json')).toBe(true);
  });

  it('has the plugin id its settings schema is stored under', () => {
    expect(plugin.id).toBe('oss-finetune:plugin');
    expect(plugin.autoStart).toBe(true);
  });
});

describe('activation', () => {
  afterEach(() => updateSettings(DEFAULT_SETTINGS));

  it('adds the commands, the palette items and the %%oss_finetune highlighting', () => {
    const commands = new CommandRegistry();
    const shell = { add: jest.fn(), activateById: jest.fn() };
    const palette = { addItem: jest.fn() };
    const editorExtensions = { addExtension: jest.fn() };
    plugin.activate({ commands, shell } as any, null, null, palette, editorExtensions);
    expect(Object.values(CommandIDs).every((id) => commands.hasCommand(id))).toBe(true);
    expect(palette.addItem).toHaveBeenCalledTimes(4);
    const [factory] = editorExtensions.addExtension.mock.calls[0];
    expect(factory.name).toBe(HIGHLIGHT_EXTENSION);
    expect(factory.factory({ inline: true, model: { mimeType: 'text/x-ipython', sharedModel: { getSource: () => '%%oss_finetune\nlora: {}' } } })).not.toBeNull();
    expect(factory.factory({ inline: true, model: { mimeType: 'text/x-ipythongfm' } })).toBeNull();
    commands.execute(CommandIDs.openPanel);
    expect(shell.add).toHaveBeenCalledWith(expect.objectContaining({ id: 'oss-finetune-panel' }), 'right', expect.any(Object));
  });
});

describe('settings', () => {
  afterEach(() => updateSettings(DEFAULT_SETTINGS));

  it('fills what the user did not set with the defaults', () => {
    expect(readSettings({ palette: 'tol-bright' })).toEqual({ ...DEFAULT_SETTINGS, palette: 'tol-bright' });
    expect(readSettings(undefined)).toEqual(DEFAULT_SETTINGS);
  });

  it('reaches open Harmony views when changed', async () => {
    const renderer = new HarmonyRenderer();
    await renderer.renderModel(mimeModel(HARMONY_MIME, makePayload(10)));
    updateSettings({ palette: 'tol-bright' });
    expect(getSettings().palette).toBe('tol-bright');
    expect(renderer.node.querySelector('.ossft-harmony')!.classList).toContain('ossft-palette-tol-bright');
    renderer.dispose();
  });

  it('declares the notebook toolbar button for the open-panel command', () => {
    const schema = require('../schema/plugin.json');
    expect(schema['jupyter.lab.toolbars'].Notebook).toEqual([expect.objectContaining({ command: CommandIDs.openPanel })]);
    expect(schema.properties.panelArea.enum).toEqual(['left', 'right']);
  });

  it('agrees with the defaults in schema/plugin.json', () => {
    const schema = require('../schema/plugin.json');
    for (const [key, value] of Object.entries(DEFAULT_SETTINGS)) {
      expect(schema.properties[key].default).toEqual(value);
    }
  });
});
