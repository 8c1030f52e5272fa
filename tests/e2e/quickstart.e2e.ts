/**
 * The README's "In a notebook" block, exactly as written there, in JupyterLab on a fresh kernel: each
 * line acts, every view it promises is drawn, and nothing is printed to stderr.
 */
import * as fs from 'fs';
import { cell, expect, expectOurView, modelOutputs, openNotebook, repoPath, runAll, test, waitForIdleKernel, writeNotebook } from './lab';

/** The first ```python block under "## In a notebook" in README.md, one magic per line. */
function quickStart(): string[] {
  const readme = fs.readFileSync(repoPath('README.md'), 'utf8');
  const section = readme.split(/^## In a notebook$/m)[1];
  expect(section, 'README.md has an "In a notebook" section').toBeTruthy();
  const block = /```python\n([\s\S]*?)```/.exec(section);
  expect(block, 'the section opens with a python block').not.toBeNull();
  return block![1].split('\n').filter((line) => line.trim() !== '');
}

test("the README's quick start runs as written, one line per cell, without stderr", async ({ page, lab }) => {
  test.setTimeout(25 * 60_000);
  const lines = quickStart();
  const index = (verb: string) => {
    const found = lines.findIndex((l) => l.startsWith(`%oss_finetune ${verb}`));
    expect(found, `the quick start has a ${verb} line`).toBeGreaterThanOrEqual(0);
    return found;
  };
  await writeNotebook(lab, 'quickstart.ipynb', lines);
  await openNotebook(page, lab, 'quickstart.ipynb');
  await runAll(page);
  await waitForIdleKernel(page, 10 * 60_000);

  const outputs = await modelOutputs(page);
  const errors = outputs.flatMap((o, i) => o.filter((x) => x.output_type === 'error').map((x) => `${lines[i]}: ${String(x.evalue)}`));
  expect(errors, 'no line fails').toEqual([]);
  const stderr = outputs.flatMap((o, i) =>
    o.filter((x) => x.output_type === 'stream' && x.name === 'stderr').map((x) => `${lines[i]}: ${String(x.text)}`),
  );
  expect(stderr, 'nothing is printed to stderr').toEqual([]);

  // What a line said, printed or displayed as text.
  const said = (i: number) =>
    outputs[i]
      .map((x) => (x.output_type === 'stream' ? x.text : ((x.data as Record<string, unknown> | undefined)?.['text/plain'] ?? '')))
      .map((t) => (Array.isArray(t) ? t.join('') : String(t)))
      .join('\n');
  expect(said(index('load')), 'load says what it loaded').toMatch(/loaded embedded:tiny-base/);
  expect(said(index('lora')), 'lora echoes r, alpha and its targets').toMatch(/LoRA: r 8, alpha 16 on .*q_proj/);
  await expectOurView(cell(page, index('data')), 'dataset');
  await expectOurView(cell(page, index('show')), 'harmony');
  const dashboard = cell(page, index('train')).locator('.ossft-training');
  await expectOurView(cell(page, index('train')), 'training');
  await expect(dashboard.getByRole('status')).toHaveText('completed');
  await expectOurView(cell(page, index('chat')), 'harmony');
  expect(said(index('save')), 'save says where the adapter is').toMatch(/adapter saved to /);
});
