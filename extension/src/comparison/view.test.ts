import { RUNS_MIME, RunsComparisonPayload } from '@oss-finetune/schema';

import { contractFixture, contractFixtures, mimeModel } from '../testing/fixtures';
import { Overlay, svgOverlay } from './overlay';
import { RunsRenderer, runsRendererFactory } from './renderer';
import { RunsView } from './view';

function payload(): RunsComparisonPayload {
  return {
    version: 1,
    output_dir: 'runs',
    runs: [
      {
        run_id: '20261128-100000-ab12',
        status: 'completed',
        step: 3,
        max_steps: 3,
        last_loss: 1.2,
        goal_label: 'reasoned in the requested language',
        points: [
          { step: 1, loss: 1.6 },
          { step: 2, loss: 1.4, goal: 0.25 },
          { step: 3, loss: 1.2, goal: 0.75 },
        ],
      },
      {
        run_id: '20261128-110000-cd34',
        status: 'stopped',
        step: 2,
        max_steps: 3,
        goal_label: null,
        points: [
          { step: 1, loss: 1.7 },
          { step: 2, loss: 1.65 },
        ],
      },
    ],
    differences: [
      { setting: 'training.learning_rate', values: ['0.005', '0.001'] },
      { setting: 'training.watch_every', values: ['2', 'null'] },
    ],
    same_settings: 40,
    left_out: ['notes: not a run folder (it has no config.json)'],
  };
}

const text = (root: ParentNode, selector: string) => root.querySelector(selector)!.textContent;
const all = (root: ParentNode, selector: string) => Array.from(root.querySelectorAll(selector)).map((n) => n.textContent);

async function rendered(data: unknown = payload()): Promise<RunsRenderer> {
  const r = new RunsRenderer(svgOverlay);
  await r.renderModel(mimeModel(RUNS_MIME, data));
  return r;
}

describe('RunsRenderer', () => {
  it('numbers the runs in a legend with their colour, status and last loss', async () => {
    const r = await rendered();
    expect(text(r.node, '.ossft-runs-head')).toBe('2 runs in runs');
    expect(all(r.node, '.ossft-runs-number')).toEqual(['run 1', 'run 2']);
    expect(all(r.node, '.ossft-runs-id')).toEqual(['20261128-100000-ab12', '20261128-110000-cd34']);
    expect(all(r.node, '.ossft-runs-state')).toEqual(['completed at step 3/3, last loss 1.2', 'stopped at step 2/3']);
    const swatches = Array.from(r.node.querySelectorAll<HTMLElement>('.ossft-runs-swatch')).map((s) => s.style.background);
    expect(new Set(swatches).size).toBe(2);
  });

  it('overlays the loss curves of every run and the goal curves of those that watched it', async () => {
    const r = await rendered();
    const loss = r.node.querySelectorAll('.ossft-runs-loss .ossft-run-line');
    expect(loss).toHaveLength(2);
    expect(loss[0].getAttribute('d')!.split('L')).toHaveLength(3);
    expect(loss[1].getAttribute('d')!.split('L')).toHaveLength(2);
    expect(loss[0].getAttribute('stroke')).not.toBe(loss[1].getAttribute('stroke'));
    expect(text(r.node, '.ossft-runs-goal .ossft-chart-title')).toBe('goal: reasoned in the requested language (%)');
    const goal = r.node.querySelectorAll('.ossft-runs-goal .ossft-run-line');
    expect(goal).toHaveLength(1);
    expect(goal[0].getAttribute('data-run')).toBe('run 1');
    expect(text(r.node, '.ossft-runs-goal .ossft-ymax')).toBe('100');
  });

  it('tables only the settings that differ, one column per run', async () => {
    const r = await rendered();
    expect(text(r.node, '.ossft-runs-diff-title')).toBe('settings that differ (40 others alike)');
    expect(all(r.node, '.ossft-runs-diff-table th')).toEqual(['setting', 'run 1', 'run 2']);
    const rows = Array.from(r.node.querySelectorAll('.ossft-runs-diff-table tbody tr')).map((tr) =>
      Array.from(tr.querySelectorAll('td')).map((td) => td.textContent),
    );
    expect(rows).toEqual([
      ['training.learning_rate', '0.005', '0.001'],
      ['training.watch_every', '2', 'null'],
    ]);
    expect(r.node.querySelector<HTMLElement>('.ossft-runs-diff-table th[title="20261128-110000-cd34"]')).not.toBeNull();
    expect(all(r.node, '.ossft-runs-left-out li')).toEqual(['left out: notes: not a run folder (it has no config.json)']);
  });

  it('says when there is no run, and when the runs are alike', async () => {
    const empty = await rendered({ version: 1, output_dir: 'runs', runs: [], differences: [] });
    expect(text(empty.node, '.ossft-runs-head')).toBe('no runs in runs yet');
    expect(empty.node.querySelector('.ossft-chart')).toBeNull();
    const alike = payload();
    alike.differences = [];
    const r = await rendered(alike);
    expect(text(r.node, '.ossft-runs-diff-title')).toBe("the runs' settings are all alike (40 others alike)");
  });

  it('writes run ids, settings and values as text: markup in them stays text', async () => {
    const hostile = payload();
    hostile.runs[0].run_id = '<img src=x onerror="alert(1)">';
    hostile.runs[0].goal_label = '<b>bold</b>';
    hostile.differences[0].setting = '<script>alert(2)</script>';
    hostile.differences[0].values[0] = '"\u202eevil"';
    const r = await rendered(hostile);
    expect(r.node.querySelector('img, script, b')).toBeNull();
    expect(text(r.node, '.ossft-runs-id')).toBe('<img src=x onerror="alert(1)">');
    expect(text(r.node, '.ossft-runs-goal .ossft-chart-title')).toBe('goal: <b>bold</b> (%)');
    expect(text(r.node, '.ossft-runs-diff-table td code')).toBe('<script>alert(2)</script>');
    expect(r.node.textContent).not.toContain('\u202e');
  });

  it('never hands a run id to the chart library, whose trace names are markup', async () => {
    const seen: Overlay[] = [];
    const r = new RunsRenderer({ draw: (_host, overlay) => seen.push(overlay) });
    const hostile = payload();
    hostile.runs[1].run_id = '<a href="javascript:alert(1)">x</a>';
    await r.renderModel(mimeModel(RUNS_MIME, hostile));
    expect(seen.flatMap((o) => o.lines.map((l) => l.name))).toEqual(['run 1', 'run 2', 'run 1']);
  });

  it('renders the contract fixtures and reports the invalid ones', async () => {
    const r = await rendered(contractFixture('runs-comparison', 'valid', 'two-runs'));
    expect(all(r.node, '.ossft-runs-number')).toEqual(['run 1', 'run 2']);
    for (const [, data] of contractFixtures('runs-comparison', 'invalid')) {
      const bad = await rendered(data);
      expect(bad.node.querySelector('.ossft-invalid')!.textContent).toMatch(/comparison of runs does not match its schema/);
    }
  });

  it('is a safe renderer of its MIME type, below the HTML copy', () => {
    const factory = runsRendererFactory(svgOverlay);
    expect([factory.mimeTypes, factory.safe, factory.defaultRank]).toEqual([[RUNS_MIME], true, 40]);
    expect(factory.createRenderer({} as never)).toBeInstanceOf(RunsRenderer);
  });
});

describe('RunsView', () => {
  it('redraws its charts on resize', () => {
    const draws: string[] = [];
    const view = new RunsView({ draw: (_host, overlay) => draws.push(overlay.title) });
    view.update(payload());
    view.resize();
    expect(draws).toEqual(['loss', 'goal', 'loss', 'goal']);
  });
});
