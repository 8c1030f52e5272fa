import { schemaIssues } from '@oss-finetune/schema';

import { FinetuneClients } from '../comm/client';
import { FakeKernelOptions, fakeKernel, flush, refusal, reply } from '../testing/kernel';
import { schemaDefaults } from './form';
import { FinetunePanel, describeRun } from './panel';

/** A kernel that keeps a config like session.py: set_config merges, and refuses lora.r above 64. */
function configKernel(options: FakeKernelOptions = {}) {
  let config: any = schemaDefaults();
  config.training.max_steps = 30;
  const k = fakeKernel((req, emit) => {
    expect(schemaIssues('comm-message', req)).toEqual([]);
    switch (req.op) {
      case 'get_config':
        return reply(req, { config, defaults: schemaDefaults() });
      case 'set_config':
        if (req.config.lora?.r > 64) return refusal(req, 'config.lora.r', 'is more than this kernel allows');
        config = {
          ...config,
          ...Object.fromEntries(Object.entries(req.config).map(([k, v]: [string, any]) => [k, { ...config[k], ...v }])),
        };
        return reply(req, { config, defaults: schemaDefaults() });
      case 'start_training':
        emit({
          op: 'training_update',
          request_id: req.request_id,
          ok: true,
          payload: { version: 1, run_id: 'run-9', status: 'running', step: 2, max_steps: 30, metrics: [{ step: 2, loss: 1.5 }] },
        });
        return reply(req, { started: true });
      case 'stop':
        return reply(req, { run_id: 'run-9' });
      case 'list_runs':
        return reply(req, { runs: [{ run_id: 'run-1', status: 'completed', step: 60, max_steps: 60, last_loss: 1.07 }] });
      case 'read_metrics':
        return reply(req, {
          run_id: req.run_id,
          metrics: [
            { step: 1, loss: 1.62 },
            { step: 2, loss: 1.5 },
          ],
        });
    }
    return null;
  }, options);
  return { ...k, config: () => config };
}

async function openPanel() {
  const k = configKernel();
  const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0 });
  await panel.setTarget({ label: 'tutorial.ipynb', kernel: k.kernel });
  return { k, panel };
}

function type(panel: FinetunePanel, path: string, value: string) {
  const input = panel.form.input(path) as HTMLInputElement;
  input.value = value;
  input.dispatchEvent(new Event('input'));
}

const q = (panel: FinetunePanel, selector: string) => panel.node.querySelector<HTMLElement>(selector)!;

describe('FinetunePanel', () => {
  it('says what to do without a notebook, and disables what needs a kernel', () => {
    const panel = new FinetunePanel({ clients: new FinetuneClients() });
    expect(q(panel, '.ossft-panel-title').textContent).toBe('GPT-OSS fine-tune');
    expect(q(panel, '.ossft-target').textContent).toBe('Open a notebook: the settings go to its kernel.');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(true);
    expect(panel.statusText()).toMatch(/No notebook is open/);
  });

  it('shows the kernel config and its runs when it follows a notebook', async () => {
    const { k, panel } = await openPanel();
    expect(k.sent.map((m) => m.op)).toEqual(['get_config', 'list_runs']);
    expect((panel.form.input('training.max_steps') as HTMLInputElement).value).toBe('30');
    expect(q(panel, '.ossft-run-text').textContent).toBe('run-1 · completed · step 60 / 60 · loss 1.070');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(false);
  });

  it('sends set_config with the edited fields once they are valid', async () => {
    const { k, panel } = await openPanel();
    type(panel, 'lora.r', '16');
    await flush();
    await flush();
    const sets = k.sent.filter((m) => m.op === 'set_config');
    expect(sets).toEqual([{ op: 'set_config', request_id: expect.any(String), config: { lora: { r: 16 } } }]);
    expect(k.config().lora.r).toBe(16);
    expect(q(panel, '.ossft-sync').textContent).toBe('Saved in the kernel.');
  });

  it('sends nothing and disables Start while a value breaks the schema', async () => {
    const { k, panel } = await openPanel();
    type(panel, 'lora.r', '0');
    await flush();
    expect(q(panel, '.ossft-field[data-path="lora.r"] .ossft-field-error').textContent).toBe('must be >= 1');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(true);
    expect(await panel.startTraining()).toBe(false);
    expect(k.sent.map((m) => m.op)).not.toContain('set_config');
    expect(k.sent.map((m) => m.op)).not.toContain('start_training');
    expect(panel.statusText()).toContain('Settings: lora.r: must be >= 1');
  });

  it('puts the kernel’s refusal by the field it names', async () => {
    const { panel } = await openPanel();
    type(panel, 'lora.r', '128');
    await flush();
    await flush();
    expect(q(panel, '.ossft-field[data-path="lora.r"] .ossft-field-error').textContent).toBe('is more than this kernel allows');
    expect(q(panel, '.ossft-sync').textContent).toBe('The kernel refused: config.lora.r: is more than this kernel allows');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(true);
  });

  it('starts training with the shown config, follows the run, stops it and reads its metrics', async () => {
    const { k, panel } = await openPanel();
    (panel.form.input('lora.r') as HTMLInputElement).value = '4';
    panel.form.input('lora.r')!.dispatchEvent(new Event('input'));
    q(panel, '.ossft-start').click();
    await flush();
    await flush();
    const start = k.sent.find((m) => m.op === 'start_training')!;
    expect(start.config.lora.r).toBe(4);
    expect(start.config.training.max_steps).toBe(30);
    expect(q(panel, '.ossft-live').textContent).toBe('run-9 · running · step 2 / 30 · loss 1.500');
    expect(panel.statusText()).toBe('Notebook: tutorial.ipynb\nRun: run-9 · running · step 2 / 30 · loss 1.500');

    q(panel, '.ossft-panel-stop').click();
    await flush();
    expect(k.sent[k.sent.length - 1].op).toBe('stop');
    expect(q(panel, '.ossft-sync').textContent).toBe('Asked run-9 to stop after this step and save a checkpoint.');

    q(panel, '.ossft-run-metrics-button').click();
    await flush();
    expect(k.sent[k.sent.length - 1]).toEqual({ op: 'read_metrics', request_id: expect.any(String), run_id: 'run-1' });
    expect(q(panel, '.ossft-run-metrics').textContent).toBe('run-1: 2 logged steps; last step 2, loss 1.500');
  });

  it('shows the live run with its loss chart, drawn by the dashboard of the notebook', async () => {
    const { k, panel } = await openPanel();
    const section = q(panel, '.ossft-live-run');
    expect(section.hidden).toBe(true);
    const run = { version: 1, run_id: 'run-7', max_steps: 30, metrics: [1, 2, 3].map((step) => ({ step, loss: 2 - step / 10, lr: 1e-4 })) };
    k.emit({ op: 'training_update', request_id: 'run:run-7', ok: true, payload: { ...run, status: 'running', step: 3 } });
    await flush();
    expect(section.hidden).toBe(false);
    expect(section.querySelector('.ossft-progress')!.getAttribute('aria-valuenow')).toBe('3');
    expect([...section.querySelectorAll<HTMLElement>('.ossft-chart')].filter((c) => !c.hidden).length).toBe(1);
    expect(section.querySelector('.ossft-chart-loss .ossft-series')!.getAttribute('d')!.split('L').length).toBe(3);
    // The panel's own Stop button is the one to use.
    expect(section.querySelector<HTMLElement>('.ossft-stop')!.hidden).toBe(true);
    k.emit({ op: 'training_update', request_id: 'run:run-7', ok: true, payload: { ...run, status: 'completed', step: 30 } });
    await flush();
    expect(section.querySelector('.ossft-run-status')!.textContent).toBe('completed');
  });

  it('charts the watched goal beside the loss when the run watches it', async () => {
    const { k, panel } = await openPanel();
    const section = q(panel, '.ossft-live-run');
    const metrics = [1, 2, 3, 4].map((step) => ({
      step,
      loss: 2 - step / 10,
      lr: 1e-4,
      ...(step % 2 === 0
        ? { goal: { goal: 'language', label: 'reasoned in the requested language', rate: step / 8, passed: step / 2, total: 4 } }
        : {}),
    }));
    const run = { version: 1, run_id: 'run-8', max_steps: 30, config: { training: { watch_every: 2 } }, metrics };
    k.emit({ op: 'training_update', request_id: 'run:run-8', ok: true, payload: { ...run, status: 'running', step: 4 } });
    await flush();
    const goal = section.querySelector<HTMLElement>('.ossft-chart-goal')!;
    expect(goal.hidden).toBe(false);
    expect(goal.querySelector('.ossft-series')!.getAttribute('d')!.split('L').length).toBe(2);
  });

  it('says the kernel is busy, not that it failed, while cells run', async () => {
    const k = configKernel();
    k.kernel.status = 'busy';
    const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0 });
    const reading = panel.setTarget({ label: 'tutorial.ipynb', kernel: k.kernel });
    expect(q(panel, '.ossft-sync').textContent).toBe('The kernel is busy running cells; the settings are read when it is free.');
    await reading;
    expect(q(panel, '.ossft-sync').textContent).toBe('Settings read from the kernel.');
  });

  it("follows a run it did not start, such as a magic's, and keeps Start off while it trains", async () => {
    const { k, panel } = await openPanel();
    const run = { version: 1, run_id: 'run-7', max_steps: 30, metrics: [{ step: 5, loss: 1.25 }] };
    k.emit({ op: 'training_update', request_id: 'run:run-7', ok: true, payload: { ...run, status: 'running', step: 5 } });
    await flush();
    expect(q(panel, '.ossft-live').textContent).toBe('run-7 · running · step 5 / 30 · loss 1.250');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(true);
    const lists = k.sent.filter((m) => m.op === 'list_runs').length;
    k.emit({ op: 'training_update', request_id: 'run:run-7', ok: true, payload: { ...run, status: 'completed', step: 30 } });
    await flush();
    await flush();
    expect(q(panel, '.ossft-live').textContent).toBe('run-7 · completed · step 30 / 30 · loss 1.250');
    expect((q(panel, '.ossft-start') as HTMLButtonElement).disabled).toBe(false);
    expect(k.sent.filter((m) => m.op === 'list_runs').length).toBe(lists + 1);
  });

  it('shows token-like text from the kernel as text', () => {
    const panel = new FinetunePanel({ clients: new FinetuneClients() });
    void panel.setTarget({ label: '<img src=x onerror=alert(1)>.ipynb', kernel: null });
    expect(q(panel, '.ossft-target').textContent).toBe('<img src=x onerror=alert(1)>.ipynb: no kernel is running.');
    expect(panel.node.querySelector('img')).toBeNull();
    expect(describeRun({ run_id: '<b>x</b>' })).toBe('<b>x</b>');
  });

  describe('when the kernel cannot be reached', () => {
    /** Lets replies and short retry waits pass until `done` holds, or gives up after many turns. */
    async function until(done: () => boolean): Promise<void> {
      for (let i = 0; i < 200 && !done(); i++) await new Promise((resolve) => setTimeout(resolve, 2));
    }

    const cellFinished = {
      header: { msg_type: 'status' },
      parent_header: { msg_type: 'execute_request' },
      content: { execution_state: 'idle' },
    };

    it('says to load the extension, and reads the settings by itself once a cell has loaded it', async () => {
      let loaded = false;
      const k = configKernel({ hasTarget: () => loaded });
      // A retry wait far beyond the test: only the end of the cell can bring the settings in.
      const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0, retryDelaysMs: [60_000] });
      await panel.setTarget({ label: 'tutorial.ipynb', kernel: k.kernel });
      expect(q(panel, '.ossft-sync').textContent).toMatch(
        /^Could not read the settings: .*Run %load_ext oss_finetune in a cell.*Trying again in 60 s, or press Reload\.$/,
      );
      expect(q(panel, '.ossft-run-metrics').textContent).toContain('Could not list the runs');
      expect(panel.retryPending).toBe(true);
      expect(k.sent).toEqual([]);

      // The kernel's own idle after a comm message is no reason to try again.
      k.iopub({ ...cellFinished, parent_header: { msg_type: 'comm_open' } });
      await flush();
      expect(k.targets).toHaveLength(1);

      loaded = true; // %load_ext oss_finetune ran in a cell
      k.iopub(cellFinished);
      await until(() => !!panel.node.querySelector('.ossft-run-text'));
      expect(q(panel, '.ossft-sync').textContent).toBe('Settings read from the kernel.');
      expect((panel.form.input('training.max_steps') as HTMLInputElement).value).toBe('30');
      expect(q(panel, '.ossft-run-text').textContent).toBe('run-1 · completed · step 60 / 60 · loss 1.070');
      expect(q(panel, '.ossft-run-metrics').textContent).toBe('');
      expect(panel.retryPending).toBe(false);
      panel.dispose();
    });

    it('tries again after a wait when a message is lost on a deleted subshell, and gets through', async () => {
      let failures = 2;
      const k = configKernel({ routeError: () => (failures-- > 0 ? 'UnknownSubshellError' : null) });
      const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0, retryDelaysMs: [1] });
      await panel.setTarget({ label: 'tutorial.ipynb', kernel: k.kernel });
      expect(q(panel, '.ossft-sync').textContent).toContain('UnknownSubshellError');
      await until(() => q(panel, '.ossft-sync').textContent === 'Settings read from the kernel.');
      expect(q(panel, '.ossft-sync').textContent).toBe('Settings read from the kernel.');
      // Each failed comm was given up and a fresh one opened for the next try.
      expect(k.targets.length).toBeGreaterThanOrEqual(2);
      expect(k.sent.map((m) => m.op)).toEqual(['get_config', 'list_runs']);
      panel.dispose();
    });

    it('waits longer after each failed try, and stops trying when it follows another notebook', async () => {
      const k = configKernel({ hasTarget: () => false });
      const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0, retryDelaysMs: [1, 2, 60_000] });
      await panel.setTarget({ label: 'a.ipynb', kernel: k.kernel });
      await until(() => /in 60 s/.test(q(panel, '.ossft-sync').textContent ?? ''));
      expect(q(panel, '.ossft-sync').textContent).toContain('Trying again in 60 s');
      expect(k.targets).toHaveLength(3);
      await panel.setTarget({ label: 'b.ipynb', kernel: null });
      expect(panel.retryPending).toBe(false);
      panel.dispose();
    });

    it('does not retry a request the kernel refused', async () => {
      const k = fakeKernel((req) => refusal(req, '(root)', 'no session'));
      const panel = new FinetunePanel({ clients: new FinetuneClients(), syncDelayMs: 0, retryDelaysMs: [1] });
      await panel.setTarget({ label: 'a.ipynb', kernel: k.kernel });
      expect(q(panel, '.ossft-sync').textContent).toBe('Could not read the settings: no session');
      expect(panel.retryPending).toBe(false);
      panel.dispose();
    });
  });
});
