/**
 * The dashboard's Stop button on a real run: training started from a cell on the embedded tiny model
 * is stopped from the page, and the run ends as "stopped" with a checkpoint on disk.
 */
import * as fs from 'fs';
import {
  cell,
  expect,
  expectOurView,
  openNotebook,
  output,
  rootPath,
  runCell,
  startCell,
  test,
  waitForIdleKernel,
  writeNotebook,
} from './lab';

// Relative to the kernel's working folder, which is the server's root.
const RUNS = 'stop-runs';
const MAX_STEPS = 200;

const CELLS = [
  '%load_ext oss_finetune',
  '%oss_finetune load embedded:tiny',
  '%oss_finetune data embedded:multilingual --limit 16 --max-seq-length 256',
  '%oss_finetune lora --run',
  // Far more steps than the test waits for, and no periodic checkpoint: only the stop can write one.
  `%oss_finetune train --max-steps ${MAX_STEPS} --batch-size 1 --gradient-accumulation-steps 1 --save-steps 1000 --output-dir ${RUNS}`,
  '%oss_finetune status',
];
const TRAIN = 4;
const STATUS = 5;

test('Stop on the dashboard stops a running training with a checkpoint', async ({ page, lab }) => {
  test.setTimeout(5 * 60_000);
  await writeNotebook(lab, 'stop.ipynb', CELLS);
  await openNotebook(page, lab, 'stop.ipynb');
  for (let i = 0; i < TRAIN; i++) await runCell(page, i);

  await startCell(page, TRAIN);
  await expectOurView(cell(page, TRAIN), 'training', 120_000);
  const dashboard = output(page, 'training');
  const progress = dashboard.getByRole('progressbar');
  await expect(dashboard.getByRole('status')).toHaveText('running', { timeout: 120_000 });
  await expect
    .poll(async () => Number(await progress.getAttribute('aria-valuenow')), {
      message: 'the dashboard reaches step 2',
      timeout: 120_000,
    })
    .toBeGreaterThanOrEqual(2);

  await dashboard.getByRole('button', { name: /Stop training/ }).click();
  await expect(dashboard.getByRole('status')).toHaveText('stopped', { timeout: 120_000 });
  await waitForIdleKernel(page, 120_000);
  const stoppedAt = Number(await progress.getAttribute('aria-valuenow'));
  expect(stoppedAt, 'the run stopped early').toBeLessThan(MAX_STEPS);
  await expect(cell(page, TRAIN).locator('.jp-OutputArea-output').last()).toContainText(/^stopped: /);

  // The run folder holds one checkpoint, complete, of the step the run stopped at: --save-steps is
  // beyond the run, so only the stop can have written it.
  const runs = fs.readdirSync(rootPath(RUNS));
  expect(runs, 'one run folder').toHaveLength(1);
  const runId = runs[0];
  const checkpoints = fs.readdirSync(rootPath(RUNS, runId, 'checkpoints'));
  expect(checkpoints, 'the checkpoint written on stop').toEqual([`step-${stoppedAt}`]);
  expect(fs.existsSync(rootPath(RUNS, runId, 'checkpoints', `step-${stoppedAt}`, 'trainer_state.json'))).toBe(true);

  // The kernel agrees, in a cell run after the stop.
  await runCell(page, STATUS);
  await expect(cell(page, STATUS).locator('.jp-OutputArea-output').first()).toContainText(
    `${runId}: stopped at step ${stoppedAt}/${MAX_STEPS}`,
  );
});
