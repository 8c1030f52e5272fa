/**
 * The "GPT-OSS fine-tune" side panel: the model, data, adapter and training settings of the current
 * notebook's kernel, and its runs. Edits go to the kernel as soon as they are valid, so a
 * `%oss_finetune train` typed in a cell afterwards trains with what the panel shows.
 */
import type { Kernel, KernelMessage } from '@jupyterlab/services';
import type { FinetuneConfig, RunInfo, SchemaIssue, TrainingRunPayload } from '@oss-finetune/schema';
import { Widget } from '@lumino/widgets';

import { ClientOptions, CommRequestError, CommUnavailableError, FinetuneClient, TrainingUpdate } from '../comm/client';
import { el } from '../common/dom';
import type { IFinetuneClients } from '../tokens';
import { ChartBackend, svgCharts } from '../training/charts';
import { TrainingDashboard } from '../training/dashboard';
import { ExportSection } from './export';
import { ConfigForm, ConfigTree, FieldSpec, getAt, setAt } from './form';

export const PANEL_ID = 'oss-finetune-panel';
export const PANEL_TITLE = 'GPT-OSS fine-tune';

/** The notebook the panel works for. */
export interface PanelTarget {
  /** How the person knows it, e.g. the notebook's file name. */
  label: string;
  kernel: Kernel.IKernelConnection | null;
}

export interface FinetunePanelOptions {
  /** The comm client of each kernel, shared with the dashboards' Stop buttons. */
  clients: IFinetuneClients;
  /** Quiet time after the last keystroke before edits go to the kernel. */
  syncDelayMs?: number;
  client?: ClientOptions;
  /**
   * Waits before each new try after the kernel could not be reached, in order; the last one repeats.
   * Growing waits keep a kernel that has not loaded the extension from being asked constantly.
   */
  retryDelaysMs?: number[];
  /** Draws the live run's loss chart; the small SVG charts unless the plugin passes plotly's. */
  charts?: ChartBackend;
}

const RETRY_DELAYS_MS = [1_000, 2_000, 4_000, 8_000, 15_000, 30_000];

/** What the person can do when the kernel cannot be reached, by what went wrong. */
function advice(error: CommUnavailableError): string {
  switch (error.reason) {
    case 'no-target':
      return 'the kernel has not loaded oss_finetune. Run %load_ext oss_finetune in a cell of the notebook.';
    case 'open-timeout':
    case 'no-answer':
      return `${error.message} The panel can reach the kernel once it is idle.`;
    default:
      return `${error.message}.`;
  }
}

const ACTIVE = new Set(['pending', 'running', 'stopping']);

function button(className: string, text: string, label: string): HTMLButtonElement {
  const b = el('button', `ossft-button ${className}`, text);
  b.type = 'button';
  b.title = label;
  b.setAttribute('aria-label', label);
  return b;
}

function reason(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** What a one-line description of a run uses, from list_runs (RunInfo) or a training-run payload. */
export type RunLine = Pick<RunInfo, 'run_id'> & Partial<Pick<RunInfo, 'status' | 'step' | 'max_steps' | 'last_loss'>>;

/** A run in one line: `run-3 · running · step 12 / 60 · loss 1.234`. */
export function describeRun(run: RunLine): string {
  const parts = [run.run_id];
  if (run.status) parts.push(run.status);
  if (typeof run.step === 'number') parts.push(run.max_steps ? `step ${run.step} / ${run.max_steps}` : `step ${run.step}`);
  if (typeof run.last_loss === 'number') parts.push(`loss ${run.last_loss.toFixed(3)}`);
  return parts.join(' · ');
}

export class FinetunePanel extends Widget {
  readonly form: ConfigForm;
  /** Writes the fine-tune in a serving format, checked by the kernel. */
  readonly exportSection: ExportSection;
  private readonly targetLine: HTMLParagraphElement;
  private readonly syncLine: HTMLParagraphElement;
  private readonly liveLine: HTMLParagraphElement;
  /** The run the kernel trains or trained last, drawn by the notebook's own dashboard. */
  private readonly liveDashboard: TrainingDashboard;
  private readonly startButton: HTMLButtonElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly reloadButton: HTMLButtonElement;
  private readonly runsButton: HTMLButtonElement;
  private readonly runList: HTMLUListElement;
  private readonly metricsLine: HTMLParagraphElement;
  private readonly syncDelayMs: number;
  private readonly clientOptions: ClientOptions | undefined;
  private readonly clients: IFinetuneClients;

  private target: PanelTarget | null = null;
  private client: FinetuneClient | null = null;
  private unfollow: (() => void) | null = null;
  /** Fields edited since the kernel last confirmed them. */
  private readonly edited = new Set<string>();
  private syncTimer: ReturnType<typeof setTimeout> | null = null;
  private syncing: Promise<void> | null = null;
  private liveRun: TrainingRunPayload | null = null;
  private starting = false;
  private runs: RunInfo[] = [];
  private readonly retryDelaysMs: number[];
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private retryCount = 0;
  private reloading: Promise<void> | null = null;
  private stopWatchingKernel: (() => void) | null = null;

  constructor(options: FinetunePanelOptions) {
    super();
    this.clients = options.clients;
    this.syncDelayMs = options.syncDelayMs ?? 400;
    this.clientOptions = options.client;
    this.retryDelaysMs = options.retryDelaysMs?.length ? options.retryDelaysMs : RETRY_DELAYS_MS;
    this.id = PANEL_ID;
    this.addClass('ossft-panel');
    this.title.caption = PANEL_TITLE;

    const header = el('header', 'ossft-panel-header');
    header.append(el('h2', 'ossft-panel-title', PANEL_TITLE));
    this.targetLine = el('p', 'ossft-target');
    header.append(this.targetLine);

    const actions = el('div', 'ossft-actions');
    this.startButton = button('ossft-start', 'Start training', 'Start training with these settings in the notebook’s kernel');
    this.stopButton = button('ossft-panel-stop', 'Stop', 'Stop training after the current step and save a checkpoint');
    this.reloadButton = button('ossft-reload', 'Reload', 'Read the settings from the kernel again');
    this.startButton.addEventListener('click', () => void this.startTraining());
    this.stopButton.addEventListener('click', () => void this.stopTraining());
    this.reloadButton.addEventListener('click', () => void this.reload());
    actions.append(this.startButton, this.stopButton, this.reloadButton);

    this.syncLine = el('p', 'ossft-sync');
    this.syncLine.setAttribute('aria-live', 'polite');
    this.liveLine = el('p', 'ossft-live');
    this.liveLine.setAttribute('aria-live', 'polite');
    // The panel's Stop button stands for the dashboard's; the loss and the watched goal fit a sidebar.
    this.liveDashboard = new TrainingDashboard(options.charts ?? svgCharts, null, { charts: ['loss', 'goal'] });
    const live = el('section', 'ossft-live-run ossft-renderer');
    live.setAttribute('aria-label', 'Current run');
    live.append(this.liveLine, this.liveDashboard.node);
    live.hidden = true;

    this.form = new ConfigForm({ onEdit: (config, field, issues) => this.onEdit(config, field, issues) });

    const runs = el('section', 'ossft-runs-section');
    const runsHead = el('div', 'ossft-runs-head');
    runsHead.append(el('h3', 'ossft-runs-title', 'Runs'));
    this.runsButton = button('ossft-refresh-runs', 'Refresh', 'List the runs in the output folder again');
    this.runsButton.addEventListener('click', () => void this.refreshRuns());
    runsHead.append(this.runsButton);
    this.runList = el('ul', 'ossft-runs');
    this.metricsLine = el('p', 'ossft-run-metrics');
    this.metricsLine.setAttribute('aria-live', 'polite');
    runs.append(runsHead, this.runList, this.metricsLine);

    this.exportSection = new ExportSection({
      client: () => this.client,
      isTraining: () => this.isTraining,
      onChange: () => this.render(),
    });

    this.node.append(header, actions, this.syncLine, live, this.form.node, runs, this.exportSection.node);
    this.node.setAttribute('aria-label', PANEL_TITLE);
    this.render();
  }

  /** Whether the panel will try to reach the kernel again by itself. */
  get retryPending(): boolean {
    return this.retryTimer !== null;
  }

  /** Whether Start would start a run now. */
  get canStart(): boolean {
    return !!this.client && this.form.valid && !this.starting && !this.isTraining;
  }

  get isTraining(): boolean {
    return !!this.liveRun && ACTIVE.has(this.liveRun.status);
  }

  get currentTarget(): PanelTarget | null {
    return this.target;
  }

  /** Follows another notebook (or none); reads that kernel's settings and runs. */
  async setTarget(target: PanelTarget | null): Promise<void> {
    const sameKernel = target?.kernel === this.target?.kernel;
    this.target = target;
    if (!sameKernel) {
      this.unfollow?.();
      this.unfollow = null;
      this.cancelSync();
      this.edited.clear();
      this.liveRun = null;
      this.liveLine.textContent = '';
      this.liveLine.classList.remove('ossft-sr-only');
      this.showLiveRun();
      this.runs = [];
      this.exportSection.reset();
      this.cancelRetry();
      this.retryCount = 0;
      this.stopWatchingKernel?.();
      this.stopWatchingKernel = null;
      this.client = target?.kernel ? this.clients.clientFor(target.kernel, this.clientOptions) : null;
      if (this.client) this.unfollow = this.client.onTrainingUpdate((u) => this.onUpdate(u));
      if (target?.kernel) this.watchKernel(target.kernel);
    }
    this.render();
    if (!sameKernel && this.client) await this.reload();
  }

  /**
   * Reads the kernel's config and runs; unsent edits are kept. When the kernel cannot be reached
   * (extension not loaded, no answer, a lost comm) the panel says what to do and tries again by
   * itself, after growing waits and whenever the kernel turns idle, e.g. once `%load_ext` has run.
   */
  reload(): Promise<void> {
    this.cancelRetry();
    // One read at a time: the retry timer, an idle kernel and the Reload button can all ask at once.
    if (!this.reloading) {
      const run = this.read().finally(() => {
        if (this.reloading === run) this.reloading = null;
      });
      this.reloading = run;
    }
    return this.reloading;
  }

  private async read(): Promise<void> {
    const client = this.client;
    if (!client) return;
    // A kernel running cells answers between them; that is a wait, not an error.
    this.say(
      client.kernel.status === 'busy'
        ? 'The kernel is busy running cells; the settings are read when it is free.'
        : 'Reading the settings from the kernel…',
    );
    try {
      const { config } = await client.request('get_config');
      if (client !== this.client) return;
      this.retryCount = 0;
      this.form.setValue(config, this.edited);
      this.say(this.edited.size ? 'Some edits are not in the kernel yet.' : 'Settings read from the kernel.');
    } catch (error) {
      if (client !== this.client) return;
      if (error instanceof CommUnavailableError) {
        const wait = this.scheduleRetry();
        const again = `Trying again in ${Math.max(1, Math.round(wait / 1000))} s, or press Reload.`;
        this.say(`Could not read the settings: ${advice(error)} ${again}`);
        this.metricsLine.textContent = `Could not list the runs: the kernel cannot be reached yet.`;
        this.render();
        return;
      }
      this.say(`Could not read the settings: ${reason(error)}`);
    }
    this.render();
    await this.refreshRuns();
  }

  private scheduleRetry(): number {
    this.cancelRetry();
    const wait = this.retryDelaysMs[Math.min(this.retryCount, this.retryDelaysMs.length - 1)];
    this.retryCount += 1;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      void this.reload();
    }, wait);
    return wait;
  }

  private cancelRetry(): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /**
   * A kernel that has just finished running a cell may have loaded the extension: try at once then.
   * Only the end of an execute request counts, not any idle status: the panel's own comm messages
   * make the kernel busy and idle too, and reacting to those would retry without pause.
   */
  private watchKernel(kernel: Kernel.IKernelConnection): void {
    const signal = kernel.iopubMessage;
    if (!signal?.connect) return;
    const onMessage = (_: unknown, msg: KernelMessage.IIOPubMessage) => {
      if (this.retryTimer === null || this.target?.kernel !== kernel) return;
      const content = msg.content as { execution_state?: string };
      if (msg.header.msg_type === 'status' && content.execution_state === 'idle' && msg.parent_header?.msg_type === 'execute_request') {
        void this.reload();
      }
    };
    signal.connect(onMessage);
    this.stopWatchingKernel = () => signal.disconnect(onMessage);
  }

  /** Sends the edits the kernel has not seen yet, now. */
  async flush(): Promise<void> {
    this.cancelSync();
    if (this.syncing) await this.syncing;
    if (this.edited.size && this.form.valid) await this.sync();
  }

  async startTraining(): Promise<boolean> {
    const client = this.client;
    if (!client) {
      this.say('Open a notebook with a running kernel to train.');
      return false;
    }
    if (!this.form.valid) {
      this.say('Fix the settings marked in red first.');
      return false;
    }
    this.cancelSync();
    this.starting = true;
    this.render();
    // The whole form goes with the request, so the run trains with exactly what is shown.
    const config = this.form.value;
    try {
      await client.request('start_training', { config });
      this.edited.clear();
      this.say('Training started.');
      return true;
    } catch (error) {
      this.showRefusal(error);
      return false;
    } finally {
      this.starting = false;
      this.render();
    }
  }

  async stopTraining(): Promise<string | null> {
    const client = this.client;
    if (!client) return null;
    try {
      const { run_id } = await client.request('stop');
      this.say(run_id ? `Asked ${run_id} to stop after this step and save a checkpoint.` : 'No run is training in this kernel.');
      return run_id ?? null;
    } catch (error) {
      this.say(`Could not stop: ${reason(error)}`);
      return null;
    }
  }

  async refreshRuns(): Promise<RunInfo[]> {
    const client = this.client;
    if (!client) return [];
    try {
      const { runs } = await client.request('list_runs');
      if (client === this.client) this.runs = runs;
      // A failure to list is stale once a list came; metrics shown for a run stay.
      if (this.metricsLine.textContent?.startsWith('Could not list the runs')) this.metricsLine.textContent = '';
    } catch (error) {
      this.metricsLine.textContent = `Could not list the runs: ${reason(error)}`;
    }
    this.renderRuns();
    return this.runs;
  }

  async showMetrics(runId: string): Promise<void> {
    const client = this.client;
    if (!client) return;
    try {
      const { metrics } = await client.request('read_metrics', { run_id: runId });
      const last = metrics[metrics.length - 1];
      const loss = typeof last?.loss === 'number' ? `, loss ${last.loss.toFixed(3)}` : '';
      this.metricsLine.textContent = last
        ? `${runId}: ${metrics.length} logged steps; last step ${String(last.step)}${loss}`
        : `${runId}: no steps logged yet`;
    } catch (error) {
      this.metricsLine.textContent = `Could not read the metrics of ${runId}: ${reason(error)}`;
    }
  }

  /** One paragraph on where things stand, for the "show status" command. */
  statusText(): string {
    if (!this.target) return 'No notebook is open: open one to fine-tune from its kernel.';
    const lines = [`Notebook: ${this.target.label}`];
    if (!this.client) lines.push('No kernel is running.');
    if (this.liveRun)
      lines.push(`Run: ${describeRun({ ...this.liveRun, last_loss: this.liveRun.metrics[this.liveRun.metrics.length - 1]?.loss })}`);
    else if (this.runs.length) lines.push(`Latest run: ${describeRun(this.runs[this.runs.length - 1])}`);
    else if (this.client) lines.push('No run yet.');
    const issues = this.form.issues;
    if (issues.length) lines.push(`Settings: ${issues[0].path}: ${issues[0].message}`);
    else if (this.edited.size) lines.push('Settings: edits not yet in the kernel');
    if (this.exportSection.statusText) lines.push(`Export: ${this.exportSection.statusText}`);
    return lines.join('\n');
  }

  dispose(): void {
    if (this.isDisposed) return;
    this.cancelSync();
    this.cancelRetry();
    this.stopWatchingKernel?.();
    this.unfollow?.();
    super.dispose();
  }

  private onEdit(_config: FinetuneConfig, field: FieldSpec, issues: SchemaIssue[]): void {
    this.edited.add(field.path);
    this.cancelSync();
    if (issues.length === 0) {
      this.say('Edited; sending to the kernel…');
      this.syncTimer = setTimeout(() => void this.sync(), this.syncDelayMs);
    } else {
      this.say('Not sent to the kernel: fix the settings marked in red.');
    }
    this.render();
  }

  private cancelSync(): void {
    if (this.syncTimer !== null) clearTimeout(this.syncTimer);
    this.syncTimer = null;
  }

  private sync(): Promise<void> {
    this.syncTimer = null;
    const client = this.client;
    if (!client || !this.edited.size || !this.form.valid) return Promise.resolve();
    // Only the edited fields go, merged into the kernel's config, so a setting changed by a magic
    // meanwhile is not overwritten with what the panel showed before.
    const shown = this.form.value;
    const changes: ConfigTree = {};
    const sent = new Map<string, string>();
    for (const path of this.edited) {
      const segments = path.split('.');
      const value = getAt(shown, segments);
      setAt(changes, segments, value);
      sent.set(path, JSON.stringify(value));
    }
    const run = (async () => {
      try {
        const { config } = await client.request('set_config', { config: changes as FinetuneConfig });
        if (client !== this.client) return;
        const now = this.form.value;
        for (const [path, value] of sent) {
          if (JSON.stringify(getAt(now, path.split('.'))) === value) this.edited.delete(path);
        }
        this.form.setValue(config, this.edited);
        this.say(this.edited.size ? 'Sending the latest edits…' : 'Saved in the kernel.');
      } catch (error) {
        if (client === this.client) this.showRefusal(error);
      } finally {
        this.syncing = null;
        this.render();
      }
    })();
    this.syncing = run;
    return run;
  }

  private showRefusal(error: unknown): void {
    if (error instanceof CommRequestError && error.path.startsWith('config.')) {
      this.form.showKernelError(error.path.slice('config.'.length), error.rule);
    }
    this.say(`The kernel refused: ${reason(error)}`);
  }

  private onUpdate(update: TrainingUpdate): void {
    if (update.error) {
      this.liveLine.textContent = `Training failed: ${update.error.path && update.error.path !== '(root)' ? `${update.error.path}: ` : ''}${update.error.message}`;
      this.liveLine.classList.remove('ossft-sr-only');
      if (this.liveRun) this.liveRun = { ...this.liveRun, status: 'failed' };
    } else if (update.payload) {
      this.liveRun = update.payload;
      const last = update.payload.metrics[update.payload.metrics.length - 1];
      this.liveLine.textContent = describeRun({ ...update.payload, last_loss: last?.loss });
      // The dashboard shows the same; the line stays for screen readers, which it tells of each step.
      this.liveLine.classList.add('ossft-sr-only');
      if (!ACTIVE.has(update.payload.status)) void this.refreshRuns();
    }
    this.showLiveRun();
    this.render();
  }

  private showLiveRun(): void {
    const section = this.liveLine.parentElement;
    if (section) section.hidden = !this.liveRun && !this.liveLine.textContent;
    if (this.liveRun) this.liveDashboard.update(this.liveRun);
    this.liveDashboard.node.hidden = !this.liveRun;
  }

  protected onAfterShow(): void {
    // Charts drawn while the sidebar was collapsed had no width to take.
    this.liveDashboard.resize();
  }

  private say(text: string): void {
    this.syncLine.textContent = text;
  }

  private render(): void {
    if (!this.target) this.targetLine.textContent = 'Open a notebook: the settings go to its kernel.';
    else if (!this.client) this.targetLine.textContent = `${this.target.label}: no kernel is running.`;
    else this.targetLine.textContent = `${this.target.label} · kernel ${this.target.kernel?.name ?? ''}`.trim();
    this.startButton.disabled = !this.canStart;
    // Stop stays available whatever the panel has seen: the kernel says when nothing trains.
    this.stopButton.disabled = !this.client;
    this.reloadButton.disabled = !this.client;
    this.runsButton.disabled = !this.client;
    this.exportSection.render();
  }

  private renderRuns(): void {
    this.runList.replaceChildren(
      ...this.runs.map((run) => {
        const item = el('li', 'ossft-run');
        item.dataset.runId = run.run_id;
        const text = el('span', 'ossft-run-text', describeRun(run));
        const show = button('ossft-run-metrics-button', 'Metrics', `Show the logged metrics of ${run.run_id}`);
        show.addEventListener('click', () => void this.showMetrics(run.run_id));
        item.append(text, show);
        return item;
      }),
    );
    if (!this.runs.length) this.runList.append(el('li', 'ossft-run ossft-run-none', 'No runs yet.'));
  }
}
