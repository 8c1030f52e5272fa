import { CommandRegistry } from '@lumino/commands';

import { FinetuneClients } from '../comm/client';
import { FinetunePanel } from '../panel/panel';
import { fakeKernel, flush, reply } from '../testing/kernel';
import { CommandIDs, PALETTE_CATEGORY, addCommands, finetuneIcon } from '.';

function setup() {
  const commands = new CommandRegistry();
  const shell = { add: jest.fn(), activateById: jest.fn() };
  const notify = jest.fn();
  const palette = { addItem: jest.fn() };
  const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0 });
  let area: 'left' | 'right' = 'right';
  addCommands({ commands, shell }, panel, { area: () => area, notify, palette });
  return { commands, shell, notify, palette, panel, setArea: (a: 'left' | 'right') => (area = a) };
}

describe('commands', () => {
  it('puts all four commands in the palette under one category', () => {
    const { commands, palette } = setup();
    for (const id of Object.values(CommandIDs)) {
      expect(commands.hasCommand(id)).toBe(true);
      expect(commands.label(id)).not.toBe('');
      expect(palette.addItem).toHaveBeenCalledWith({ command: id, category: PALETTE_CATEGORY });
    }
    expect(commands.icon(CommandIDs.openPanel)).toBe(finetuneIcon);
  });

  it('opens the panel on the side the setting names, and moves it when that changes', async () => {
    const { commands, shell, panel, setArea } = setup();
    await commands.execute(CommandIDs.openPanel);
    expect(shell.add).toHaveBeenCalledWith(panel, 'right', expect.any(Object));
    expect(shell.activateById).toHaveBeenCalledWith('oss-finetune-panel');
    setArea('left');
    await commands.execute(CommandIDs.openPanel);
    expect(shell.add).toHaveBeenLastCalledWith(panel, 'left', expect.any(Object));
  });

  it('starts, stops and reports on training through the notebook’s kernel', async () => {
    const { commands, notify, panel } = setup();
    expect(commands.isEnabled(CommandIDs.startTraining)).toBe(false);
    const k = fakeKernel((req) => {
      if (req.op === 'get_config') return reply(req, { config: {}, defaults: {} });
      if (req.op === 'list_runs') return reply(req, { runs: [{ run_id: 'run-3', status: 'stopped', step: 12, max_steps: 60 }] });
      if (req.op === 'start_training') return reply(req, { started: true });
      if (req.op === 'stop') return reply(req, { run_id: 'run-4' });
      return null;
    });
    await panel.setTarget({ label: 'tune.ipynb', kernel: k.kernel });
    expect(commands.isEnabled(CommandIDs.startTraining)).toBe(true);

    await expect(commands.execute(CommandIDs.startTraining)).resolves.toBe(true);
    expect(k.sent.filter((m) => m.op === 'start_training')).toHaveLength(1);

    await commands.execute(CommandIDs.stopTraining);
    expect(notify).toHaveBeenLastCalledWith('Stopping run-4 after this step; a checkpoint will be saved.', 'info');

    const status = await commands.execute(CommandIDs.showStatus);
    await flush();
    expect(status).toBe('Notebook: tune.ipynb\nLatest run: run-3 · stopped · step 12 / 60');
    expect(notify).toHaveBeenLastCalledWith(status, 'info');
  });

  it('opens the panel to show why training did not start', async () => {
    const { commands, shell } = setup();
    await expect(commands.execute(CommandIDs.startTraining)).resolves.toBe(false);
    expect(shell.activateById).toHaveBeenCalledWith('oss-finetune-panel');
  });
});
