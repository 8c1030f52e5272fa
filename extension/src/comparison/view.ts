import type { ComparedRun, RunsComparisonPayload } from '@oss-finetune/schema';

import { el } from '../common/dom';
import { formatNumber } from '../common/payload';
import { escapeControls, WHITESPACE } from '../common/text';
import { Line, Overlay, OverlayBackend, RUN_COLOURS } from './overlay';

/** A run's colour: the same one in the legend, the curves and the kernel's HTML fallback. */
export function runColour(index: number): string {
  return RUN_COLOURS[index % RUN_COLOURS.length];
}

function lines(runs: ComparedRun[], key: 'loss' | 'goal', scale = 1): Line[] {
  return runs.map((run, i) => {
    const points = run.points.filter((p) => typeof p[key] === 'number');
    return {
      name: `run ${i + 1}`,
      colour: runColour(i),
      x: points.map((p) => p.step),
      y: points.map((p) => scale * (p[key] as number)),
    };
  });
}

function chart(cls: string, title: string): { box: HTMLDivElement; plot: HTMLDivElement } {
  const box = el('div', `ossft-chart ${cls}`);
  box.appendChild(el('div', 'ossft-chart-title', escapeControls(title)));
  const plot = el('div', 'ossft-chart-plot');
  box.appendChild(plot);
  return { box, plot };
}

/**
 * The runs of an output folder side by side: a numbered legend, their loss (and goal) curves over
 * the same axes, and a table of only the settings in which their configs differ. Every run id,
 * status, setting and value is the kernel's (and, through config.json, anyone's) text: it is only
 * ever written as textContent, with control characters shown escaped.
 */
export class RunsView {
  readonly node: HTMLDivElement;
  private readonly plots: HTMLElement[] = [];
  private payload: RunsComparisonPayload | null = null;

  constructor(private readonly backend: OverlayBackend) {
    this.node = el('div', 'ossft-runs');
  }

  update(payload: RunsComparisonPayload): void {
    this.payload = payload;
    this.plots.length = 0;
    const runs = payload.runs;
    const parts: HTMLElement[] = [];
    const head = runs.length
      ? `${runs.length} run${runs.length === 1 ? '' : 's'} in ${payload.output_dir}`
      : `no runs in ${payload.output_dir} yet`;
    parts.push(el('div', 'ossft-runs-head', escapeControls(head)));

    if (runs.length) {
      const legend = el('ol', 'ossft-runs-legend');
      runs.forEach((run, i) => {
        const item = el('li', 'ossft-runs-run');
        const swatch = el('span', 'ossft-runs-swatch');
        swatch.style.background = runColour(i);
        const total = run.max_steps ?? '?';
        const loss = run.last_loss !== undefined && run.last_loss !== null ? `, last loss ${formatNumber(run.last_loss)}` : '';
        item.append(
          swatch,
          el('span', 'ossft-runs-number', `run ${i + 1}`),
          el('span', 'ossft-runs-id', escapeControls(run.run_id)),
          el('span', 'ossft-runs-state', escapeControls(`${run.status} at step ${run.step}/${total}${loss}`)),
        );
        legend.appendChild(item);
      });
      parts.push(legend);

      const grid = el('div', 'ossft-charts');
      const loss = chart('ossft-runs-loss', 'loss');
      grid.appendChild(loss.box);
      this.plots.push(loss.plot);
      const goals = [...new Set(runs.map((r) => r.goal_label).filter((l): l is string => !!l))];
      if (goals.length) {
        const goal = chart('ossft-runs-goal', `goal: ${goals.join('; ')} (%)`);
        grid.appendChild(goal.box);
        this.plots.push(goal.plot);
      }
      parts.push(grid);
    }

    if (runs.length > 1) parts.push(this.differences(payload));
    const leftOut = payload.left_out ?? [];
    if (leftOut.length) {
      const list = el('ul', 'ossft-runs-left-out');
      for (const reason of leftOut) list.appendChild(el('li', undefined, escapeControls(`left out: ${reason}`, WHITESPACE)));
      parts.push(list);
    }
    this.node.replaceChildren(...parts);
    this.draw();
  }

  private differences(payload: RunsComparisonPayload): HTMLElement {
    const box = el('div', 'ossft-runs-diff');
    const same = payload.same_settings;
    const alike = same !== undefined ? ` (${same} other${same === 1 ? '' : 's'} alike)` : '';
    if (!payload.differences.length) {
      box.appendChild(el('div', 'ossft-runs-diff-title', `the runs' settings are all alike${alike}`));
      return box;
    }
    box.appendChild(el('div', 'ossft-runs-diff-title', `settings that differ${alike}`));
    const table = el('table', 'ossft-runs-diff-table');
    const headRow = el('tr');
    headRow.appendChild(el('th', undefined, 'setting'));
    payload.runs.forEach((run, i) => {
      const th = el('th', undefined, `run ${i + 1}`);
      th.title = escapeControls(run.run_id);
      th.style.borderBottom = `3px solid ${runColour(i)}`;
      headRow.appendChild(th);
    });
    table.appendChild(el('thead')).appendChild(headRow);
    const body = el('tbody');
    for (const difference of payload.differences) {
      const row = el('tr');
      const setting = el('td');
      setting.appendChild(el('code', undefined, escapeControls(difference.setting)));
      row.appendChild(setting);
      payload.runs.forEach((_, i) => {
        const cell = el('td');
        cell.appendChild(el('code', undefined, escapeControls(difference.values[i] ?? '(missing)', WHITESPACE)));
        row.appendChild(cell);
      });
      body.appendChild(row);
    }
    table.appendChild(body);
    box.appendChild(table);
    return box;
  }

  private draw(): void {
    const payload = this.payload;
    if (!payload || !payload.runs.length) return;
    const overlays: Overlay[] = [{ title: 'loss', lines: lines(payload.runs, 'loss') }];
    if (this.plots.length > 1) {
      // Only the runs that watched the goal; each keeps its colour and number.
      const watched = lines(payload.runs, 'goal', 100).filter((line) => line.x.length > 0);
      overlays.push({ title: 'goal', unit: '%', lines: watched, range: [0, 100] });
    }
    overlays.forEach((overlay, i) => this.backend.draw(this.plots[i], overlay));
  }

  /** Charts drawn while detached have no size; every attach draws them again. */
  resize(): void {
    this.draw();
  }
}
