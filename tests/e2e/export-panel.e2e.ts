/**
 * The panel's Export writes the notebook's fine-tune in a serving format and says how it was checked:
 * on a kernel that has loaded embedded:tiny and added an adapter, peft goes to the default folder (the
 * format's name in the output folder, as `%oss_finetune save --format peft` has it), the result line
 * names that folder and the check, and the adapter is on disk there.
 */
import * as fs from 'fs';
import * as path from 'path';
import { expect, openNotebook, rootPath, runCell, test, writeNotebook } from './lab';

test('the panel exports the adapter as peft, checked against the model in the notebook', async ({ page, lab }) => {
  // Loading, adding the adapter and the check's three probes take a minute on a busy 2-core machine.
  test.setTimeout(300_000);
  await writeNotebook(lab, 'export-panel.ipynb', [
    // The random tiny model: the trained default would be built first on a fresh machine.
    '%load_ext oss_finetune\n%oss_finetune load embedded:tiny\n%oss_finetune lora',
  ]);
  await openNotebook(page, lab, 'export-panel.ipynb');
  await runCell(page, 0);
  await page.evaluate(() => (window as any).jupyterapp.commands.execute('oss-finetune:open-panel'));
  const panel = page.locator('#oss-finetune-panel');
  await expect(panel.locator('.ossft-sync')).toHaveText('Settings read from the kernel.', { timeout: 60_000 });

  const section = panel.locator('details.ossft-export');
  await expect(section.locator('button.ossft-export-button')).toBeHidden();
  await section.locator('summary').click();
  await expect(section.locator('select#ossft-export-format')).toHaveValue('peft');
  await expect(section.locator('.ossft-export-hint')).toContainText('PeftModel.from_pretrained');
  await section.locator('button.ossft-export-button').click();

  // The kernel runs in the server's root folder; it names folders as the system resolves them.
  const folder = path.join(fs.realpathSync(rootPath()), 'runs', 'peft');
  const status = section.locator('.ossft-export-status');
  await expect(status).toContainText('Done.', { timeout: 240_000 });
  await expect(status).toContainText(`peft: wrote ${folder} (`);
  await expect(status).toContainText('verified with peft: 36 greedy tokens of 3 probes equal');
  await expect(section.locator('.ossft-export-serve-label')).toHaveText('Load it with:');
  await expect(section.locator('.ossft-export-command')).toHaveText(
    `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('embedded:tiny'), '${folder}')`,
  );
  for (const file of ['adapter_config.json', 'adapter_model.safetensors', 'export.json']) {
    expect(fs.existsSync(path.join(folder, file)), `${file} in ${folder}`).toBe(true);
  }
  const manifest = JSON.parse(fs.readFileSync(path.join(folder, 'export.json'), 'utf8'));
  expect(manifest.verified.greedy_tokens_equal).toBe(36);
});
