/**
 * The "GPT-OSS fine-tune" side panel edits the config of the notebook's kernel over the comm: a
 * setting typed in the form is what the kernel's session holds, and a value the schema refuses is
 * shown in place and never sent. Before that, the panel reaches a kernel that loads the extension
 * only after the panel has tried, and while the panel is connecting again.
 */
import { Page } from '@playwright/test';
import { cell, expect, openNotebook, runCell, startCell, test, writeNotebook } from './lab';

const CELLS = [
  // The comm target exists once the extension is loaded in the kernel.
  '%load_ext oss_finetune',
  'from oss_finetune.session import get_session; print(get_session().get_config()["lora"]["r"])',
];
const READ_RANK = 1;

async function openPanelFromPalette(page: Page): Promise<void> {
  const search = page.locator('.lm-CommandPalette-input');
  // The modal palette closes when focus leaves it, and a notebook that is still opening takes the
  // focus: ask again until it stays open.
  await expect(async () => {
    if (!(await search.isVisible())) {
      await page.evaluate(() => (window as any).jupyterapp.commands.execute('apputils:activate-command-palette'));
    }
    await expect(search).toBeVisible({ timeout: 2_000 });
  }).toPass({ timeout: 30_000 });
  await search.fill('GPT-OSS fine-tune panel');
  await page.locator('.lm-CommandPalette-item', { hasText: 'Open the GPT-OSS fine-tune panel' }).click();
}

async function kernelRank(page: Page): Promise<string> {
  await runCell(page, READ_RANK);
  return (await cell(page, READ_RANK).locator('.jp-OutputArea-output').innerText()).trim();
}

test('the panel sets the LoRA rank in the kernel and refuses a rank of 0 in place', async ({ page, lab }) => {
  await writeNotebook(lab, 'panel.ipynb', CELLS);
  await openNotebook(page, lab, 'panel.ipynb');
  await openPanelFromPalette(page);
  const panel = page.locator('#oss-finetune-panel');
  await expect(panel).toBeVisible();
  await expect(panel.locator('.ossft-target')).toContainText('panel.ipynb');
  // The panel follows the notebook from the moment it opens, before the kernel has the comm target,
  // and says what to do about it.
  const sync = panel.locator('.ossft-sync');
  await expect(sync).toContainText('Could not read the settings');
  await expect(sync).toContainText('Run %load_ext oss_finetune in a cell');
  await expect(panel.locator('.ossft-run-metrics')).toContainText('Could not list the runs');
  // The order that used to hang the panel: it opens its comm again while %load_ext runs. JupyterLab
  // 4.6 puts comm messages on a kernel subshell, and the new comm could inherit the subshell of the
  // refused one, deleted meanwhile; every request then went unanswered (UnknownSubshellError).
  await startCell(page, 0);
  await panel.locator('button.ossft-reload').click();
  // No second click: the panel gets through by itself.
  await expect(sync).toHaveText('Settings read from the kernel.', { timeout: 60_000 });
  await expect(panel.locator('.ossft-run-metrics')).not.toContainText('Could not');
  const before = await kernelRank(page);
  expect(before, 'the kernel starts from another rank, so 16 can only come from the panel').not.toBe('16');
  const rank = panel.locator('input[name="lora.r"]');
  // The form shows what the kernel holds before anything is edited.
  await expect(rank).toHaveValue(before);

  await rank.fill('16');
  await expect(sync).toHaveText('Saved in the kernel.');
  expect(await kernelRank(page)).toBe('16');

  const start = panel.locator('button.ossft-start');
  await rank.fill('0');
  const field = panel.locator('.ossft-field[data-path="lora.r"]');
  await expect(field.locator('.ossft-field-error')).toContainText('must be >= 1');
  await expect(start).toBeDisabled();
  await expect(sync).toContainText('Not sent to the kernel');
  // The refused value never reaches the kernel.
  expect(await kernelRank(page)).toBe('16');
});

test('the panel reaches a kernel that loads the extension while the panel is first connecting to it', async ({ page, lab }) => {
  await writeNotebook(lab, 'panel-race.ipynb', CELLS);
  await openNotebook(page, lab, 'panel-race.ipynb');
  // The panel follows the notebook from page load, open or not, so %load_ext started now runs while
  // its first comm is refused and the next one is opened: the order in which a new comm inherited the
  // refused comm's deleted subshell, and the panel then waited on answers that could never come.
  await runCell(page, 0);
  await openPanelFromPalette(page);
  const panel = page.locator('#oss-finetune-panel');
  await expect(panel.locator('.ossft-target')).toContainText('panel-race.ipynb');
  // Nothing is clicked: retries alone must get the panel through.
  await expect(panel.locator('.ossft-sync')).toHaveText('Settings read from the kernel.', { timeout: 60_000 });
  await expect(panel.locator('input[name="lora.r"]')).toHaveValue(await kernelRank(page));
});

test('the panel follows, live, a run that a magic started in the notebook', async ({ page, lab }) => {
  await writeNotebook(lab, 'panel-follow.ipynb', [
    // The random tiny model: the trained default would be built first on a fresh machine.
    '%load_ext oss_finetune\n%oss_finetune load embedded:tiny',
    '%oss_finetune train --max-steps 3 --batch-size 1 --gradient-accumulation-steps 2 --save-steps 100',
  ]);
  await openNotebook(page, lab, 'panel-follow.ipynb');
  await runCell(page, 0);
  await openPanelFromPalette(page);
  const panel = page.locator('#oss-finetune-panel');
  await expect(panel.locator('.ossft-sync')).toHaveText('Settings read from the kernel.', { timeout: 60_000 });
  const live = panel.locator('.ossft-live');
  await expect(live).toHaveText('');
  // Nothing in the panel started this run; the kernel sends its updates to every open comm.
  await startCell(page, 1);
  await expect(live).toContainText('running', { timeout: 120_000 });
  await expect(panel.locator('button.ossft-start')).toBeDisabled();
  await expect(live).toContainText('completed · step 3 / 3', { timeout: 120_000 });
  await expect(panel.locator('button.ossft-start')).toBeEnabled();
  // The run shows as the notebook's dashboard does, with its loss curve drawn at the size of its box.
  const run = panel.locator('.ossft-live-run');
  await expect(run.getByRole('status')).toHaveText('completed');
  await expect(run.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '3');
  await expect(run.locator('.ossft-chart-loss .js-plotly-plot .scatterlayer .trace')).toHaveCount(1);
  await expect
    .poll(() =>
      run
        .locator('.ossft-chart-loss .main-svg')
        .first()
        .evaluate((svg) => Math.round(svg.getBoundingClientRect().height)),
    )
    .toBeGreaterThan(100);
  await expect(panel.locator('.ossft-run-text').last()).toContainText('completed · step 3 / 3');
});
