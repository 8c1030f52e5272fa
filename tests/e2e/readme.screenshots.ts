/**
 * The README's pictures, taken in real JupyterLab from a real run: the first French-reasoning row of
 * the bundled multilingual sample in the Harmony view with its loss mask, and the live dashboard of the
 * tutorial's training on the embedded tiny GPT-OSS (its real settings, 30 steps of 16, on the CPU).
 * Nothing in either picture is made up for it.
 *
 * Runs only with E2E_SCREENSHOTS=1 (see playwright.config.ts): it takes minutes on a 2-core CPU and
 * rewrites docs/img. Each picture is saved under test-results first and then copied, so a run that
 * fails half-way leaves the README's pictures as they were.
 */
import * as fs from 'fs';
import * as path from 'path';
import {
  cell,
  expect,
  expectOurView,
  openNotebook,
  output,
  repoPath,
  runCell,
  startCell,
  test,
  waitForIdleKernel,
  writeNotebook,
} from './lab';

const RESULTS = path.join(__dirname, 'test-results', 'readme');
const IMG = (name: string) => repoPath('docs', 'img', name);

// The tutorial's own parameters cell, at its defaults for the embedded model: the run in the picture
// is the one `npm run tutorial` trains.
const SETTINGS = [
  'from oss_finetune.notebook import tutorial',
  'from oss_finetune.session import get_session',
  'get_session().set_config(tutorial.settings("embedded:tiny-base", "embedded:multilingual", OUTPUT_DIR="readme-runs"), replace=True)',
  '%oss_finetune load --run',
].join('\n');

// The tutorial is about reasoning in the language asked for, so the row shown is one that reasons in
// French; the kernel picks it from the prepared rows, nothing is chosen by hand.
const SHOW_ROW = [
  'from oss_finetune.session import get_session',
  'ROW = next(i for i, e in enumerate(get_session().prepared.examples) if e.language == "French")',
  '%oss_finetune show {ROW}',
].join('\n');

const CELLS = ['%load_ext oss_finetune', SETTINGS, '%oss_finetune data', SHOW_ROW, '%oss_finetune lora --run', '%oss_finetune train --run'];
const SHOW = 3;
const TRAIN = 5;
// The dashboard is taken while the run is live (Stop button, ETA), late enough for the curves to
// have a shape: the tutorial's run has 30 steps.
const LIVE_STEP = 20;

function keep(file: string, name: string): void {
  fs.copyFileSync(file, IMG(name));
  process.stdout.write(`saved ${path.relative(repoPath(), IMG(name))}\n`);
}

test('README screenshots from a real run', async ({ page, lab }) => {
  test.setTimeout(15 * 60_000);
  fs.mkdirSync(RESULTS, { recursive: true });
  await page.setViewportSize({ width: 1200, height: 1000 });
  await writeNotebook(lab, 'readme.ipynb', CELLS);
  await openNotebook(page, lab, 'readme.ipynb');
  // Without the file browser the outputs get the full width of the picture.
  await page.evaluate(() => (window as any).jupyterapp.shell.collapseLeft());
  for (let i = 0; i < TRAIN; i++) await runCell(page, i);

  const harmony = output(page, 'harmony');
  await expectOurView(cell(page, SHOW), 'harmony');
  await expect(harmony).toContainText('French');
  await expect(harmony.locator('[role=option].ossft-masked').first()).toBeVisible();
  // The first trained token of the row, hovered so the picture shows the token's details as well.
  const trained = harmony.locator('[role=option]:not(.ossft-masked)').first();
  await trained.scrollIntoViewIfNeeded();
  await trained.hover();
  const harmonyShot = path.join(RESULTS, 'harmony-view.png');
  await harmony.screenshot({ path: harmonyShot });

  await startCell(page, TRAIN);
  await expectOurView(cell(page, TRAIN), 'training', 120_000);
  const dashboard = output(page, 'training');
  const progress = dashboard.getByRole('progressbar');
  await expect
    .poll(async () => Number(await progress.getAttribute('aria-valuenow')), {
      message: `the run reaches step ${LIVE_STEP}`,
      timeout: 10 * 60_000,
      intervals: [250],
    })
    .toBeGreaterThanOrEqual(LIVE_STEP);
  await expect(dashboard.getByRole('status')).toHaveText('running');
  await expect(dashboard.locator('.ossft-chart-loss .js-plotly-plot .scatterlayer .trace')).toHaveCount(1);
  await dashboard.scrollIntoViewIfNeeded();
  await page.mouse.move(0, 0);
  const dashboardShot = path.join(RESULTS, 'training-dashboard.png');
  await dashboard.screenshot({ path: dashboardShot });

  // The run the picture shows ends normally; only then do the pictures replace the README's.
  await expect(dashboard.getByRole('status')).toHaveText('completed', { timeout: 10 * 60_000 });
  await waitForIdleKernel(page);
  keep(harmonyShot, 'harmony-view.png');
  keep(dashboardShot, 'training-dashboard.png');
});
