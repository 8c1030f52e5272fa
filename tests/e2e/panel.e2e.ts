/**
 * The "GPT-OSS fine-tune" side panel edits the config of the notebook's kernel over the comm: a
 * setting typed in the form is what the kernel's session holds, and a value the schema refuses is
 * shown in place and never sent.
 */
import { Page } from '@playwright/test';
import { cell, expect, openNotebook, runCell, test, writeNotebook } from './lab';

const CELLS = [
  // The comm target exists once the extension is loaded in the kernel.
  '%load_ext oss_finetune',
  'from oss_finetune.session import get_session; print(get_session().get_config()["lora"]["r"])',
];
const READ_RANK = 1;

async function openPanelFromPalette(page: Page): Promise<void> {
  await page.evaluate(() => (window as any).jupyterapp.commands.execute('apputils:activate-command-palette'));
  const search = page.locator('.lm-CommandPalette-input');
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
  // The panel follows the notebook from the moment it opens, before the kernel has the comm target.
  // It must say so, and be done trying, before the extension is loaded: a comm opened again while
  // %load_ext runs lands on a kernel subshell JupyterLab has already deleted, and then every request
  // fails (UnknownSubshellError, unanswered in the panel).
  await expect(panel.locator('.ossft-sync')).toContainText('Could not read the settings');
  await expect(panel.locator('.ossft-run-metrics')).toContainText('Could not list the runs');
  await runCell(page, 0);
  const before = await kernelRank(page);
  expect(before, 'the kernel starts from another rank, so 16 can only come from the panel').not.toBe('16');
  await panel.locator('button.ossft-reload').click();
  await expect(panel.locator('.ossft-sync')).toHaveText('Settings read from the kernel.');
  const rank = panel.locator('input[name="lora.r"]');
  // The form shows what the kernel holds before anything is edited.
  await expect(rank).toHaveValue(before);

  await rank.fill('16');
  await expect(panel.locator('.ossft-sync')).toHaveText('Saved in the kernel.');
  expect(await kernelRank(page)).toBe('16');

  const start = panel.locator('button.ossft-start');
  await rank.fill('0');
  const field = panel.locator('.ossft-field[data-path="lora.r"]');
  await expect(field.locator('.ossft-field-error')).toContainText('must be >= 1');
  await expect(start).toBeDisabled();
  await expect(panel.locator('.ossft-sync')).toContainText('Not sent to the kernel');
  // The refused value never reaches the kernel.
  expect(await kernelRank(page)).toBe('16');
});
