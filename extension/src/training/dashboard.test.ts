import type { Kernel } from '@jupyterlab/services';
import { TRAINING_MIME, TrainingRunPayload, schemaIssues } from '@oss-finetune/schema';

import { contractFixture, contractFixtures, mimeModel } from '../testing/fixtures';
import { fakeKernel, refusal, reply } from '../testing/kernel';
import { Series, svgCharts } from './charts';
import { TrainingDashboard } from './dashboard';
import { TrainingRenderer } from './renderer';
import { FinetuneClients } from '../comm/client';
import { COMM_TARGET, stopHandler } from './stop';

function running(step: number, status: TrainingRunPayload['status'] = 'running'): TrainingRunPayload {
  return {
    version: 1,
    run_id: 'run-1',
    status,
    step,
    max_steps: 60,
    elapsed_seconds: step * 6,
    eta_seconds: (60 - step) * 6,
    device: 'cuda:0 (H100)',
    metrics: Array.from({ length: step }, (_, i) => ({
      step: i + 1,
      loss: 1.62 - i * 0.01,
      lr: 2e-4,
      grad_norm: 0.5,
      tokens_per_second: 2400 + i,
      gpu_memory_gib: 41.5,
    })),
  };
}

function renderer(stop = jest.fn(async () => undefined)) {
  return { r: new TrainingRenderer(svgCharts, stop), stop };
}

const text = (root: ParentNode, selector: string) => root.querySelector(selector)!.textContent;

describe('TrainingRenderer', () => {
  it('shows progress, ETA, status and the latest metrics', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, running(12)));
    expect(text(r.node, '.ossft-progress-text')).toBe('step 12 / 60 (20%)');
    expect(text(r.node, '.ossft-timing')).toBe('elapsed 1 min 12 s · ETA 4 min 48 s');
    expect(text(r.node, '.ossft-run-status')).toBe('running');
    expect(text(r.node, '.ossft-latest-loss')).toBe('1.51');
    expect(text(r.node, '.ossft-latest-tokens_per_second')).toBe('2411');
    expect(r.node.querySelector('.ossft-progress')!.getAttribute('aria-valuenow')).toBe('12');
  });

  it('draws a chart for every metric', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, running(5)));
    for (const key of ['loss', 'lr', 'grad_norm', 'tokens_per_second', 'gpu_memory_gib']) {
      const path = r.node.querySelector(`.ossft-chart-${key} .ossft-series`)!;
      expect(path.getAttribute('d')!.split('L').length).toBe(5);
    }
  });

  it('updates in place when the same output receives a new payload', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, running(2)));
    const dashboard = r.node.firstElementChild;
    const chart = r.node.querySelector('.ossft-chart-loss svg');
    await r.renderModel(mimeModel(TRAINING_MIME, running(30)));
    expect(r.node.firstElementChild).toBe(dashboard);
    expect(r.node.querySelector('.ossft-chart-loss svg')).toBe(chart);
    expect(text(r.node, '.ossft-progress-text')).toBe('step 30 / 60 (50%)');
    expect(r.node.querySelector('.ossft-chart-loss .ossft-series')!.getAttribute('d')!.split('L').length).toBe(30);
  });

  it('hides charts of metrics the run does not log', async () => {
    const payload = running(3);
    for (const m of payload.metrics) m.gpu_memory_gib = null;
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, payload));
    expect(r.node.querySelector<HTMLElement>('.ossft-chart-gpu_memory_gib')!.hidden).toBe(true);
    expect(text(r.node, '.ossft-latest-gpu_memory_gib')).toBe('–');
  });

  it('sends a stop request for the run and disables the button', async () => {
    const { r, stop } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, running(5)));
    const button = r.node.querySelector<HTMLButtonElement>('.ossft-stop')!;
    expect(button.disabled).toBe(false);
    button.click();
    await Promise.resolve();
    expect(stop).toHaveBeenCalledWith('run-1', expect.any(HTMLElement));
    expect(button.disabled).toBe(true);
    expect(button.textContent).toBe('Stopping…');
    await r.renderModel(mimeModel(TRAINING_MIME, { ...running(6, 'stopped'), checkpoint: 'runs/run-1/checkpoint-6' }));
    expect(button.disabled).toBe(true);
    expect(button.textContent).toBe('Stop');
    expect(text(r.node, '.ossft-run-message')).toContain('checkpoint: runs/run-1/checkpoint-6');
  });

  it('names the checkpoint once when the message already does', async () => {
    const { r } = renderer();
    const checkpoint = 'runs/run-1/checkpoints/step-1';
    await r.renderModel(
      mimeModel(TRAINING_MIME, {
        ...running(1, 'completed'),
        max_steps: 1,
        message: `completed 1 step; adapter in ${checkpoint}`,
        checkpoint,
      }),
    );
    expect(text(r.node, '.ossft-run-message')).toBe(`completed 1 step; adapter in ${checkpoint}`);
  });

  it('asks for exponent ticks on the learning rate, whose SI prefix would read 50µ', async () => {
    const drawn: Series[] = [];
    const r = new TrainingRenderer({ draw: (_host, series) => drawn.push(series) }, jest.fn());
    await r.renderModel(mimeModel(TRAINING_MIME, running(3)));
    expect(drawn.find((s) => s.title === 'learning rate')!.exponent).toBe(true);
    expect(drawn.find((s) => s.title === 'loss')!.exponent).toBeFalsy();
  });

  it('charts only the metrics it is asked for, and leaves Stop out without a handler', () => {
    const dashboard = new TrainingDashboard(svgCharts, null, { charts: ['loss'] });
    dashboard.update(running(4));
    expect(dashboard.node.querySelectorAll('.ossft-chart').length).toBe(1);
    expect(dashboard.node.querySelector('.ossft-chart-loss .ossft-series')).not.toBeNull();
    expect(text(dashboard.node, '.ossft-latest-tokens_per_second')).toBe('2403');
    expect(dashboard.node.querySelector<HTMLButtonElement>('.ossft-stop')!.hidden).toBe(true);
  });

  it('says so when the stop request cannot reach a kernel', async () => {
    const { r } = renderer(
      jest.fn(async () => {
        throw new Error('no kernel');
      }),
    );
    await r.renderModel(mimeModel(TRAINING_MIME, running(5)));
    r.node.querySelector<HTMLButtonElement>('.ossft-stop')!.click();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(text(r.node, '.ossft-stop-note')).toContain('no kernel');
    expect(r.node.querySelector<HTMLButtonElement>('.ossft-stop')!.disabled).toBe(false);
  });

  it('shows control characters and bidi overrides in what the kernel sends escaped, not acting on the text', async () => {
    // A right-to-left override would show "run-1-lave" as "evil-1-nur" and a BEL or ESC is invisible.
    const payload = {
      ...running(3, 'failed'),
      run_id: 'run-1-\u202elave',
      device: 'cuda:0\x1b[2J',
      message: 'stopped: \u2067loss\u2069 is nan\x07\nsee the log',
      checkpoint: 'runs/\u202dx\u202c',
    };
    const { r } = renderer(
      jest.fn(async () => {
        throw new Error('kernel said \u202eno\x9b');
      }),
    );
    await r.renderModel(mimeModel(TRAINING_MIME, payload));
    expect(text(r.node, '.ossft-run-id')).toBe('Run run-1-\\u202elave · cuda:0\\x1b[2J');
    // Line breaks and tabs are only white space in the page, and stay.
    expect(text(r.node, '.ossft-run-message')).toBe(
      'stopped: \\u2067loss\\u2069 is nan\\x07\nsee the log — checkpoint: runs/\\u202dx\\u202c',
    );
    await r.renderModel(mimeModel(TRAINING_MIME, { ...payload, status: 'running' }));
    r.node.querySelector<HTMLButtonElement>('.ossft-stop')!.click();
    await new Promise((resolve) => setTimeout(resolve, 0));
    expect(text(r.node, '.ossft-stop-note')).toBe('Could not ask the kernel to stop: kernel said \\u202eno\\x9b');
  });

  it('escapes them in the schema problems it lists too', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, { ...running(1), 'x\u202e': 1 }));
    expect(text(r.node, '.ossft-invalid li')).toBe('x\\u202e: is not an allowed field');
  });

  it('renders the contract fixtures', async () => {
    for (const name of ['running', 'stopped']) {
      const { r } = renderer();
      await r.renderModel(mimeModel(TRAINING_MIME, contractFixture('training-run', 'valid', name)));
      expect(r.node.querySelector('.ossft-invalid')).toBeNull();
      expect(text(r.node, '.ossft-run-status')).toBe(name);
    }
  });

  it('shows the schema error for every invalid fixture without throwing', async () => {
    for (const [, data] of contractFixtures('training-run', 'invalid')) {
      const { r } = renderer();
      await expect(r.renderModel(mimeModel(TRAINING_MIME, data))).resolves.toBeUndefined();
      expect(r.node.querySelector('.ossft-invalid')!.textContent).toMatch(/: (must|is) /);
    }
  });

  it('recovers when a valid payload follows an invalid one', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, { ...running(1), status: 'exploded' }));
    expect(text(r.node, '.ossft-invalid')).toContain('status: must be one of');
    await r.renderModel(mimeModel(TRAINING_MIME, running(2)));
    expect(r.node.querySelector('.ossft-invalid')).toBeNull();
    expect(text(r.node, '.ossft-progress-text')).toBe('step 2 / 60 (3%)');
  });
});

describe('the goal beside the loss', () => {
  function watched(step: number): TrainingRunPayload {
    const payload = running(step);
    payload.config = { training: { watch_every: 2 } };
    for (const m of payload.metrics) {
      if (m.step % 2 === 0) {
        const passed = m.step / 2;
        m.goal = { goal: 'language', label: 'reasoned in the requested language', rate: passed / 4, passed, total: 4 };
      }
    }
    return payload;
  }

  it('charts the rate at the watched steps on a 0 to 100% scale and shows the latest', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, watched(4)));
    const chart = r.node.querySelector<HTMLElement>('.ossft-chart-goal')!;
    expect(chart.hidden).toBe(false);
    // Second in the grid, beside the loss.
    expect(chart.previousElementSibling!.classList.contains('ossft-chart-loss')).toBe(true);
    expect(text(chart, '.ossft-chart-title')).toBe('goal: reasoned in the requested language (%)');
    expect(chart.querySelector('.ossft-series')!.getAttribute('d')!.split('L').length).toBe(2);
    expect(chart.querySelector('svg')!.getAttribute('aria-label')).toBe('goal: reasoned in the requested language: 2 points, latest 50 %');
    expect(text(chart, '.ossft-ymax')).toBe('100');
    expect(text(r.node, '.ossft-latest-goal')).toBe('50% (2 of 4)');
    expect(r.node.querySelector<HTMLElement>('.ossft-latest-goal')!.title).toBe('reasoned in the requested language at step 4');
  });

  it('shows an empty goal chart before the first watch of a run that watches', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, watched(1)));
    expect(r.node.querySelector<HTMLElement>('.ossft-chart-goal')!.hidden).toBe(false);
    expect(text(r.node, '.ossft-latest-goal')).toBe('–');
  });

  it('leaves the goal out of a run that does not watch it', async () => {
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, running(4)));
    expect(r.node.querySelector<HTMLElement>('.ossft-chart-goal')!.hidden).toBe(true);
    expect(r.node.querySelector<HTMLElement>('.ossft-goal-metric')!.hidden).toBe(true);
  });

  it('writes the goal label as text, escaping controls', async () => {
    const payload = watched(2);
    payload.metrics[1].goal!.label = '<img src=x onerror=alert(1)>\u202e';
    const { r } = renderer();
    await r.renderModel(mimeModel(TRAINING_MIME, payload));
    expect(r.node.querySelector('.ossft-chart-goal img')).toBeNull();
    expect(text(r.node, '.ossft-chart-goal .ossft-chart-title')).toContain('<img src=x onerror=alert(1)>');
    expect(text(r.node, '.ossft-chart-goal .ossft-chart-title')).not.toContain('\u202e');
  });
});

describe('the Stop handler', () => {
  // What the plugin hands the training renderer: the kernel behind the output, and the shared clients.
  const handler = (kernel: unknown) => stopHandler(() => kernel as Kernel.IKernelConnection | null, new FinetuneClients());

  it('opens a comm on the oss_finetune target and sends a stop request the kernel accepts', async () => {
    const k = fakeKernel((req) => reply(req, { run_id: 'run-7' }));
    await handler(k.kernel)('run-7', document.createElement('div'));
    expect(k.targets).toEqual([COMM_TARGET]);
    expect(COMM_TARGET).toBe('oss_finetune');
    expect(k.sent).toEqual([{ op: 'stop', request_id: expect.any(String) }]);
    expect(schemaIssues('comm-message', k.sent[0])).toEqual([]);
  });

  it('interrupts a busy kernel instead, since a run in a cell holds the shell channel', async () => {
    const k = fakeKernel((req) => reply(req, { run_id: 'run-7' }));
    k.kernel.status = 'busy';
    k.kernel.interrupt = jest.fn(() => Promise.resolve());
    await handler(k.kernel)('run-7', document.createElement('div'));
    expect(k.kernel.interrupt).toHaveBeenCalledTimes(1);
    expect(k.sent).toEqual([]);
  });

  it('passes on why the kernel refused to stop', async () => {
    const k = fakeKernel((req) => refusal(req, '(root)', 'no run is training'));
    await expect(handler(k.kernel)('run-7', document.createElement('div'))).rejects.toThrow('could not stop run-7: no run is training');
  });

  it('refuses with a reason when no kernel is connected', async () => {
    await expect(handler(null)('run-7', document.createElement('div'))).rejects.toThrow('no running kernel');
  });
});
