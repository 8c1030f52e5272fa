/**
 * The tutorial notebook, Run All in JupyterLab on the embedded default with a few small parameters:
 * no cell fails and every view it promises is drawn by the extension (data set summary, one row in
 * the Harmony view, the live dashboard to completion, before/after Harmony views of two streams).
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { cell, expect, expectOurView, modelOutputs, openNotebook, output, repoPath, runAll, test, waitForIdleKernel } from './lab';

const NOTEBOOK = 'gpt-oss-multilingual-reasoning.ipynb';

// Small enough for a 2-core CPU; each name must be in the parameters cell, so a renamed parameter
// fails here instead of silently running the full tutorial.
const PARAMETERS: Record<string, string> = {
  MAX_STEPS: '3',
  BATCH_SIZE: '4',
  EVAL_LIMIT: '4',
  OUTPUT_DIR: '"tutorial-runs"',
};

interface NotebookCell {
  cell_type: string;
  source: string | string[];
  metadata: { tags?: string[] };
}

const text = (c: NotebookCell) => (Array.isArray(c.source) ? c.source.join('') : c.source);

function withParameters(notebook: { cells: NotebookCell[] }): void {
  const cells = notebook.cells.filter((c) => c.metadata.tags?.includes('parameters'));
  expect(cells, 'the notebook has one cell tagged "parameters"').toHaveLength(1);
  let source = text(cells[0]);
  for (const [name, value] of Object.entries(PARAMETERS)) {
    const line = new RegExp(`^${name} = .*$`, 'm');
    expect(source, `the parameters cell sets ${name}`).toMatch(line);
    source = source.replace(line, `${name} = ${value}`);
  }
  cells[0].source = source;
}

/** Index of the one code cell whose text matches. */
function codeCell(cells: NotebookCell[], pattern: RegExp): number {
  const found = cells.flatMap((c, i) => (c.cell_type === 'code' && pattern.test(text(c)) ? [i] : []));
  expect(found, `one code cell matches ${pattern}`).toHaveLength(1);
  return found[0];
}

test.beforeAll(async () => {
  // The tutorial's base model is built once into a cache; a fresh machine builds it here (minutes)
  // rather than inside the notebook's load cell.
  test.setTimeout(10 * 60_000);
  const python = repoPath('.venv', 'bin', 'python');
  const where = execFileSync(python, ['-m', 'oss_finetune.embedded', 'where'], { encoding: 'utf8' });
  if (!where.includes('(built)')) {
    execFileSync(python, ['-m', 'oss_finetune.embedded', 'build'], { stdio: 'inherit' });
  }
});

test('the tutorial notebook runs top to bottom and shows every view', async ({ page, lab }) => {
  test.setTimeout(10 * 60_000);
  const notebook = JSON.parse(fs.readFileSync(repoPath('notebooks', NOTEBOOK), 'utf8'));
  withParameters(notebook);
  await lab.api('PUT', `contents/${NOTEBOOK}`, { type: 'notebook', format: 'json', content: notebook });
  const cells: NotebookCell[] = notebook.cells;
  const dataCell = codeCell(cells, /^%oss_finetune data\b/m);
  const showCell = codeCell(cells, /^%oss_finetune show\b/m);
  const trainCell = codeCell(cells, /^%oss_finetune train\b/m);
  const chatCells = cells.flatMap((c, i) => (c.cell_type === 'code' && /^%oss_finetune chat --before-after\b/m.test(text(c)) ? [i] : []));
  expect(chatCells.length, 'before/after chat cells').toBeGreaterThan(0);

  await openNotebook(page, lab, NOTEBOOK);
  await runAll(page);
  await waitForIdleKernel(page);

  const errors = (await modelOutputs(page)).flatMap((outputs, i) =>
    outputs.filter((o) => o.output_type === 'error').map((o) => `cell ${i}: ${String(o.ename)}: ${String(o.evalue)}`),
  );
  expect(errors, 'no cell output is an error').toEqual([]);
  const stderr = (await modelOutputs(page)).flatMap((outputs, i) =>
    outputs.filter((o) => o.output_type === 'stream' && o.name === 'stderr').map((o) => `cell ${i}: ${String(o.text)}`),
  );
  expect(stderr, 'Run All prints nothing to stderr').toEqual([]);

  await cell(page, dataCell).scrollIntoViewIfNeeded();
  await expectOurView(cell(page, dataCell), 'dataset');
  await expect(cell(page, dataCell).locator('.ossft-languages tbody tr').first()).toBeVisible();

  await cell(page, showCell).scrollIntoViewIfNeeded();
  await expectOurView(cell(page, showCell), 'harmony');
  await expect(cell(page, showCell).getByRole('option').first()).toBeVisible();
  // One data row is trained on its assistant part only, so the loss mask marks some tokens.
  await expect(cell(page, showCell).locator('[role=option].ossft-masked').first()).toBeVisible();

  await cell(page, trainCell).scrollIntoViewIfNeeded();
  await expectOurView(cell(page, trainCell), 'training');
  const dashboard = cell(page, trainCell).locator('.ossft-training');
  await expect(dashboard.getByRole('status')).toHaveText('completed');
  await expect(dashboard.getByRole('progressbar')).toHaveAttribute('aria-valuenow', PARAMETERS.MAX_STEPS);
  // After Run All the charts keep their height (they used to be left at 0 px in a small scroll box).
  await expect
    .poll(() =>
      dashboard
        .locator('.ossft-chart-loss .main-svg')
        .first()
        .evaluate((svg) => Math.round(svg.getBoundingClientRect().height)),
    )
    .toBeGreaterThan(100);

  for (const index of chatCells) {
    const view = cell(page, index);
    await view.scrollIntoViewIfNeeded();
    await expectOurView(view, 'harmony');
    // Both answers open side by side, the base model's on the left; generated text has no loss mask.
    await expect(view.getByRole('combobox', { name: 'Compare before and after' })).toHaveValue('side-by-side');
    const columns = view.locator('.ossft-column');
    await expect(columns).toHaveCount(2);
    await expect(columns.nth(0).locator('.ossft-column-label')).toHaveText(/^base model/);
    await expect(view.locator('[role=option].ossft-masked')).toHaveCount(0);
    for (let k = 0; k < 2; k++) await expect(columns.nth(k).getByRole('option').first()).toBeVisible();
  }
  expect(await output(page, 'harmony').count()).toBe(1 + chatCells.length);
});
