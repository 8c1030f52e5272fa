import type { GoalMeasure, StepMetrics, TrainingRunPayload } from '@oss-finetune/schema';

import { el } from '../common/dom';
import { formatDuration, formatNumber } from '../common/payload';
import { escapeControls, WHITESPACE } from '../common/text';
import { ChartBackend, Series } from './charts';

export type StopHandler = (runId: string, node: HTMLElement) => Promise<void>;

export type MetricKey = keyof StepMetrics;

interface MetricSpec {
  key: MetricKey;
  title: string;
  unit?: string;
  exponent?: boolean;
}

const METRICS: MetricSpec[] = [
  { key: 'loss', title: 'loss' },
  { key: 'lr', title: 'learning rate', exponent: true },
  { key: 'grad_norm', title: 'grad norm' },
  { key: 'tokens_per_second', title: 'tokens/s' },
  { key: 'gpu_memory_gib', title: 'GPU memory', unit: 'GiB' },
];

const ACTIVE = new Set(['pending', 'running']);

export interface DashboardOptions {
  /** The metrics that get a chart, in order ('goal' for the watched goal); all of them by default. The latest
   * values show for every metric. */
  charts?: MetricKey[];
}

/** The goal's rate as people read it: "67% (4 of 6)". */
export function formatGoal(goal: GoalMeasure | undefined): string {
  if (!goal) return '–';
  return `${Math.round(goal.rate * 100)}% (${goal.passed} of ${goal.total})`;
}

/** Whether the run's config asks for the goal to be watched (training.watch_every). */
function watchesGoal(payload: TrainingRunPayload): boolean {
  const training = (payload.config as { training?: { watch_every?: unknown } } | undefined)?.training;
  return typeof training?.watch_every === 'number';
}

/** The run's message, and the checkpoint where the message does not already name it. */
function runMessage(payload: TrainingRunPayload): string {
  const message = payload.message ?? '';
  const checkpoint = payload.checkpoint;
  if (!checkpoint || message.includes(checkpoint)) return message;
  return message ? `${message} — checkpoint: ${checkpoint}` : `checkpoint: ${checkpoint}`;
}

/**
 * The live view of one training run. It is built once and then updated in place, because the
 * kernel re-sends the whole payload after every logged step to the same display.
 */
export class TrainingDashboard {
  readonly node: HTMLDivElement;
  private readonly runLabel: HTMLSpanElement;
  private readonly statusBadge: HTMLSpanElement;
  private readonly progress: HTMLDivElement;
  private readonly progressFill: HTMLDivElement;
  private readonly progressText: HTMLSpanElement;
  private readonly timing: HTMLSpanElement;
  private readonly message: HTMLDivElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly charted: MetricSpec[];
  private readonly stopNote: HTMLSpanElement;
  private readonly latest = new Map<string, HTMLElement>();
  private readonly charts = new Map<string, HTMLDivElement>();
  private readonly goalLatest: HTMLElement;
  private readonly goalPair: HTMLDivElement;
  private readonly goalChart: HTMLDivElement;
  private readonly goalCharted: boolean;
  private readonly goalTitle: HTMLDivElement;
  private readonly goalPlot: HTMLDivElement;
  private payload: TrainingRunPayload | null = null;
  private stopRequestedFor: string | null = null;

  /** `stop` is what the Stop button does; null leaves the button out (the side panel has its own). */
  constructor(
    private readonly backend: ChartBackend,
    private readonly stop: StopHandler | null,
    options: DashboardOptions = {},
  ) {
    this.charted = options.charts ? METRICS.filter((spec) => options.charts!.includes(spec.key)) : METRICS;
    this.goalCharted = !options.charts || options.charts.includes('goal');
    this.node = el('div', 'ossft-training');
    const head = el('div', 'ossft-run-head');
    this.runLabel = el('span', 'ossft-run-id');
    this.statusBadge = el('span', 'ossft-run-status');
    this.statusBadge.setAttribute('role', 'status');
    this.stopButton = el('button', 'ossft-stop', 'Stop');
    this.stopButton.type = 'button';
    this.stopButton.setAttribute('aria-label', 'Stop training after the current step and save a checkpoint');
    this.stopButton.addEventListener('click', () => void this.onStop());
    this.stopNote = el('span', 'ossft-stop-note');
    this.stopNote.setAttribute('aria-live', 'polite');
    this.stopButton.hidden = stop === null;
    head.append(this.runLabel, this.statusBadge, this.stopButton, this.stopNote);
    this.node.appendChild(head);

    this.progress = el('div', 'ossft-progress');
    this.progress.setAttribute('role', 'progressbar');
    this.progress.setAttribute('aria-valuemin', '0');
    this.progressFill = el('div', 'ossft-progress-fill');
    this.progress.appendChild(this.progressFill);
    const progressRow = el('div', 'ossft-progress-row');
    this.progressText = el('span', 'ossft-progress-text');
    this.timing = el('span', 'ossft-timing');
    progressRow.append(this.progress, this.progressText, this.timing);
    this.node.appendChild(progressRow);

    this.message = el('div', 'ossft-run-message');
    this.node.appendChild(this.message);

    const latest = el('dl', 'ossft-latest');
    for (const spec of METRICS) {
      // Each name and value in a group of their own, so the row wraps in pairs in a narrow panel.
      const pair = el('div', 'ossft-metric');
      const value = el('dd', `ossft-latest-${spec.key}`, '–');
      pair.append(el('dt', undefined, spec.unit ? `${spec.title} (${spec.unit})` : spec.title), value);
      latest.appendChild(pair);
      this.latest.set(spec.key, value);
    }
    // The goal sits beside the loss: what the run is for, next to what it optimises.
    this.goalPair = el('div', 'ossft-metric ossft-goal-metric');
    this.goalLatest = el('dd', 'ossft-latest-goal', '–');
    this.goalPair.append(el('dt', undefined, 'goal'), this.goalLatest);
    this.goalPair.hidden = true;
    latest.insertBefore(this.goalPair, latest.children[1] ?? null);
    this.node.appendChild(latest);

    const grid = el('div', 'ossft-charts');
    for (const spec of this.charted) {
      const chart = el('div', `ossft-chart ossft-chart-${spec.key}`);
      chart.appendChild(el('div', 'ossft-chart-title', spec.unit ? `${spec.title} (${spec.unit})` : spec.title));
      const plot = el('div', 'ossft-chart-plot');
      chart.appendChild(plot);
      grid.appendChild(chart);
      this.charts.set(spec.key, plot);
    }
    this.goalChart = el('div', 'ossft-chart ossft-chart-goal');
    this.goalTitle = el('div', 'ossft-chart-title', 'goal (%)');
    this.goalPlot = el('div', 'ossft-chart-plot');
    this.goalChart.append(this.goalTitle, this.goalPlot);
    this.goalChart.hidden = true;
    if (this.goalCharted) grid.insertBefore(this.goalChart, grid.children[1] ?? null);
    this.node.appendChild(grid);
  }

  get runId(): string | null {
    return this.payload?.run_id ?? null;
  }

  update(payload: TrainingRunPayload): void {
    if (this.payload && this.payload.run_id !== payload.run_id) this.stopRequestedFor = null;
    this.payload = payload;
    // The kernel's words are shown with control characters escaped: a bidi override in them would
    // reorder what is shown (a run id reading backwards) and other controls are invisible.
    this.runLabel.textContent = escapeControls(`Run ${payload.run_id}${payload.device ? ` · ${payload.device}` : ''}`);
    this.statusBadge.textContent = escapeControls(payload.status);
    this.statusBadge.className = `ossft-run-status ossft-status-${payload.status}`;

    const fraction = Math.max(0, Math.min(1, payload.step / payload.max_steps));
    this.progress.setAttribute('aria-valuemax', String(payload.max_steps));
    this.progress.setAttribute('aria-valuenow', String(payload.step));
    this.progress.setAttribute('aria-label', `Training progress: step ${payload.step} of ${payload.max_steps}`);
    this.progressFill.style.width = `${(fraction * 100).toFixed(1)}%`;
    this.progressText.textContent = `step ${payload.step} / ${payload.max_steps} (${Math.round(fraction * 100)}%)`;
    const timing = [`elapsed ${formatDuration(payload.elapsed_seconds)}`];
    if (ACTIVE.has(payload.status)) timing.push(`ETA ${formatDuration(payload.eta_seconds)}`);
    this.timing.textContent = timing.join(' · ');

    const message = runMessage(payload);
    this.message.textContent = escapeControls(message, WHITESPACE);
    this.message.hidden = message === '';

    const active = ACTIVE.has(payload.status);
    const asked = this.stopRequestedFor === payload.run_id;
    this.stopButton.disabled = !active || asked;
    this.stopButton.textContent = payload.status === 'stopping' || (asked && active) ? 'Stopping…' : 'Stop';
    if (!active && payload.status !== 'stopping') this.stopNote.textContent = '';

    const last = payload.metrics[payload.metrics.length - 1];
    for (const spec of METRICS) {
      const value = last?.[spec.key] as number | null | undefined;
      this.latest.get(spec.key)!.textContent = formatNumber(value);
    }
    for (const spec of this.charted) {
      const series: Series = {
        title: spec.title,
        unit: spec.unit,
        exponent: spec.exponent,
        x: payload.metrics.map((m) => m.step),
        y: payload.metrics.map((m) => (m[spec.key] as number | null | undefined) ?? NaN),
      };
      const plot = this.charts.get(spec.key)!;
      const hasData = series.y.some((y) => Number.isFinite(y));
      plot.parentElement!.hidden = !hasData && spec.key !== 'loss';
      if (hasData || spec.key === 'loss') this.backend.draw(plot, series);
    }
    this.updateGoal(payload);
  }

  private updateGoal(payload: TrainingRunPayload): void {
    const watched = payload.metrics.filter((m) => m.goal);
    const last = watched[watched.length - 1]?.goal;
    const shown = watched.length > 0 || watchesGoal(payload);
    this.goalPair.hidden = !shown;
    this.goalChart.hidden = !shown;
    if (!shown) return;
    this.goalLatest.textContent = formatGoal(last);
    if (last) this.goalLatest.title = escapeControls(`${last.label} at step ${watched[watched.length - 1].step}`);
    if (!this.goalCharted) return;
    const label = last ? `goal: ${last.label}` : 'goal';
    this.goalTitle.textContent = escapeControls(`${label} (%)`);
    this.backend.draw(this.goalPlot, {
      title: label,
      unit: '%',
      x: watched.map((m) => m.step),
      y: watched.map((m) => 100 * m.goal!.rate),
      range: [0, 100],
      empty: 'not watched yet',
    });
  }

  resize(): void {
    // Outputs are rendered before they are attached (page reload, notebook windowing), and a chart
    // drawn while detached is skipped, so every attach redraws from the last payload.
    if (this.payload) this.update(this.payload);
    for (const plot of [...this.charts.values(), this.goalPlot]) this.backend.resize?.(plot);
  }

  private async onStop(): Promise<void> {
    const payload = this.payload;
    if (!payload) return;
    this.stopRequestedFor = payload.run_id;
    this.stopButton.disabled = true;
    this.stopButton.textContent = 'Stopping…';
    this.stopNote.textContent = 'Asked the kernel to stop after this step and save a checkpoint.';
    try {
      await this.stop?.(payload.run_id, this.node);
    } catch (err) {
      this.stopRequestedFor = null;
      this.stopButton.disabled = !ACTIVE.has(this.payload?.status ?? '');
      this.stopButton.textContent = 'Stop';
      this.stopNote.textContent = `Could not ask the kernel to stop: ${escapeControls(err instanceof Error ? err.message : String(err), WHITESPACE)}`;
    }
  }
}
