/**
 * `%oss_finetune runs` in JupyterLab: two run folders written by a cell, then the magic's output drawn
 * by the extension's runs view: the legend, the loss curves of both runs and the goal curve of the one
 * that watched it (plotly traces), and the table of the settings that differ.
 */
import { expect, openNotebook, plainTextOutputs, runAll, test, writeNotebook } from './lab';

const FOLDER = 'compare-runs';

/** Python that writes two finished runs as the trainer and the session leave them. */
const WRITE_RUNS = [
  'import json, pathlib',
  `root = pathlib.Path(${JSON.stringify(FOLDER)})`,
  'runs = [("20261128-100000-ab12", 0.005, True), ("20261128-110000-cd34", 0.001, False)]',
  'for n, (run, lr, watched) in enumerate(runs):',
  '    folder = root / run',
  '    folder.mkdir(parents=True, exist_ok=True)',
  '    config = {"training": {"learning_rate": lr, "max_steps": 4, "watch_every": 2 if watched else None}, "lora": {"r": 8}}',
  '    (folder / "config.json").write_text(json.dumps({"run_id": run, "config": config}))',
  '    rows = []',
  '    for step in range(1, 5):',
  '        row = {"step": step, "loss": 2.0 - 0.2 * step - 0.1 * n}',
  '        if watched and step % 2 == 0:',
  '            row["goal"] = {"goal": "language", "label": "reasoned in the requested language", "rate": step / 8, "passed": step // 2, "total": 4}',
  '        rows.append(json.dumps(row))',
  '    (folder / "metrics.jsonl").write_text("\\n".join(rows) + "\\n")',
  '    state = {"status": "completed", "step": 4, "max_steps": 4, "started_at": f"2026-11-28T1{n}:00:00.000+00:00"}',
  '    (folder / "state.json").write_text(json.dumps(state))',
  '(root / "notes").mkdir(exist_ok=True)',
].join('\n');

test('%oss_finetune runs shows the runs side by side: curves overlaid and the settings that differ', async ({ page, lab }) => {
  await writeNotebook(lab, 'compare.ipynb', [WRITE_RUNS, `%%oss_finetune\ntraining:\n  output_dir: ${FOLDER}`, '%oss_finetune runs']);
  await openNotebook(page, lab, 'compare.ipynb');
  await runAll(page);

  const view = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:has(.ossft-runs)');
  await expect(view).toHaveCount(1);
  // Drawn by the extension, not by the kernel's own HTML copy.
  await expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .oss-finetune-runs')).toHaveCount(0);
  await expect(view.locator('.ossft-runs-head')).toHaveText(`2 runs in ${FOLDER}`);
  await expect(view.locator('.ossft-runs-id')).toHaveText(['20261128-100000-ab12', '20261128-110000-cd34']);

  // plotly has replaced the SVG stand-ins: two loss traces, one goal trace (the run that watched).
  await expect(view.locator('.ossft-runs-loss .js-plotly-plot .scatterlayer .trace')).toHaveCount(2);
  await expect(view.locator('.ossft-runs-goal .ossft-chart-title')).toHaveText('goal: reasoned in the requested language (%)');
  await expect(view.locator('.ossft-runs-goal .js-plotly-plot .scatterlayer .trace')).toHaveCount(1);

  // Only the settings that differ, one column per run.
  await expect(view.locator('.ossft-runs-diff-title')).toContainText('settings that differ');
  const rows = view.locator('.ossft-runs-diff-table tbody tr');
  await expect(rows).toHaveCount(2);
  await expect(rows.nth(0).locator('td')).toHaveText(['training.learning_rate', '0.005', '0.001']);
  await expect(rows.nth(1).locator('td')).toHaveText(['training.watch_every', '2', 'null']);
  await expect(view.locator('.ossft-runs-left-out li')).toHaveText(['left out: notes: not a run folder (it has no config.json)']);
  // Every output found a renderer: none fell through to plain text.
  await expect(plainTextOutputs(page).filter({ hasText: 'runs in' })).toHaveCount(0);
});
