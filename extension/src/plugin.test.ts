import { DATASET_MIME, HARMONY_MIME, TRAINING_MIME } from '@oss-finetune/schema';

import mimeExtensions from './mime';
import plugin, { readSettings } from './plugin';
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

  it('agrees with the defaults in schema/plugin.json', () => {
    const schema = require('../schema/plugin.json');
    for (const [key, value] of Object.entries(DEFAULT_SETTINGS)) {
      expect(schema.properties[key].default).toEqual(value);
    }
  });
});
