import { Page } from '@playwright/test';
import {
  MIME,
  displayCell,
  expect,
  fixture,
  mimeOutput,
  openNotebook,
  runAll,
  save,
  test,
  waitForNotebook,
  writeNotebook,
} from './lab';

const harmony = fixture('harmony-tokens', 'one-conversation');
const training = fixture('training-run', 'running');
const dataset = fixture('dataset-summary', 'multilingual');

/** Asserts that an output is drawn by our renderer, not by JupyterLab's text/plain fallback. */
async function expectRenderedBy(page: Page, mime: string): Promise<void> {
  const output = mimeOutput(page, mime);
  await expect(output, `one ${mime} output`).toHaveCount(1);
  await expect(output).toBeVisible();
  await expect(output.locator('.jp-RenderedText')).toHaveCount(0);
  await expect(output).not.toHaveText(/fallback/);
}

async function expectHarmonyView(page: Page): Promise<void> {
  await expectRenderedBy(page, MIME.harmony);
  const output = mimeOutput(page, MIME.harmony);
  // Text of tokens from the fixture, drawn by the token view.
  await expect(output).toContainText('Hello');
  await expect(output).toContainText('<|message|>');
}

async function expectTrainingDashboard(page: Page): Promise<void> {
  await expectRenderedBy(page, MIME.training);
  const output = mimeOutput(page, MIME.training);
  await expect(output).toContainText(String(training.run_id));
}

async function expectDatasetSummary(page: Page): Promise<void> {
  await expectRenderedBy(page, MIME.dataset);
  const output = mimeOutput(page, MIME.dataset);
  await expect(output).toContainText('French');
}

test('the extension is served and its renderers are registered', async ({ page, lab }) => {
  const problems: string[] = [];
  page.on('pageerror', (error) => problems.push(String(error)));
  page.on('console', (message) => {
    if (message.type() === 'error' && /oss-finetune/.test(message.text())) problems.push(message.text());
  });

  const html = await (await page.request.get(`${lab.url}lab?token=${lab.token}`)).text();
  const config = JSON.parse(/<script id="jupyter-config-data" type="application\/json">([\s\S]*?)<\/script>/.exec(html)![1]);
  const names = (config.federated_extensions as { name: string }[]).map((e) => e.name);
  expect(names).toContain('oss-finetune');

  await page.goto(`${lab.url}lab?token=${lab.token}`);
  await page.waitForFunction(() => (window as any).jupyterapp !== undefined);
  const plugins: string[] = await page.evaluate(async () => {
    const app = (window as any).jupyterapp;
    await app.restored;
    return app.listPlugins().filter((id: string) => id.startsWith('oss-finetune'));
  });
  expect(plugins.length, 'plugins registered by the extension').toBeGreaterThan(0);
  expect(problems).toEqual([]);
});

test('each MIME type is rendered by its own view', async ({ page, lab }) => {
  await writeNotebook(lab, 'renderers.ipynb', [
    [
      displayCell(MIME.harmony, harmony, 'harmony fallback'),
      displayCell(MIME.training, training, 'training fallback'),
      displayCell(MIME.dataset, dataset, 'dataset fallback'),
    ].join('\n'),
  ]);
  await openNotebook(page, lab, 'renderers.ipynb');

  const registered: string[] = await page.evaluate(
    () => (window as any).jupyterapp.shell.currentWidget.content.rendermime.mimeTypes,
  );
  expect(registered).toEqual(expect.arrayContaining(Object.values(MIME)));

  await runAll(page);
  await expectHarmonyView(page);
  await expectTrainingDashboard(page);
  await expectDatasetSummary(page);
});

test('token text is shown as text, never run as HTML', async ({ page, lab }) => {
  const img = '<img src=x onerror="window.__pwned=1">';
  const script = '<script>window.__pwned=2</script>';
  const entity = '&lt;b&gt;';
  const texts = ['<|start|>', 'user', '<|message|>', img, script, entity, '<|end|>'];
  const payload = {
    version: 1,
    conversations: [
      {
        messages: [{ index: 0, role: 'user', channel: 'none' }],
        tokens: {
          ids: texts.map((_, i) => 1000 + i),
          text: texts,
          message: texts.map(() => 0),
          role: texts.map(() => 'user'),
          channel: texts.map(() => 'none'),
          part: ['special', 'header', 'special', 'content', 'content', 'content', 'special'],
          trained: texts.map(() => false),
        },
      },
    ],
  };
  await writeNotebook(lab, 'unsafe.ipynb', [displayCell(MIME.harmony, payload, 'harmony fallback')]);
  await openNotebook(page, lab, 'unsafe.ipynb');
  await runAll(page);

  await expectRenderedBy(page, MIME.harmony);
  const output = mimeOutput(page, MIME.harmony);
  await expect(output).toContainText(img);
  await expect(output).toContainText(script);
  await expect(output).toContainText(entity);
  await expect(output.locator('img, script, b')).toHaveCount(0);
  expect(await page.evaluate(() => (window as any).__pwned)).toBeUndefined();
});

test('rendered outputs come back from the saved notebook after a reload', async ({ page, lab }) => {
  await writeNotebook(lab, 'reload.ipynb', [
    displayCell(MIME.harmony, harmony, 'harmony fallback'),
    displayCell(MIME.training, training, 'training fallback'),
  ]);
  await openNotebook(page, lab, 'reload.ipynb');
  await runAll(page);
  await expectHarmonyView(page);
  await expectTrainingDashboard(page);
  await save(page);

  const saved = await lab.api<{ content: { cells: { outputs: { data: Record<string, unknown> }[] }[] } }>(
    'GET',
    'contents/reload.ipynb?content=1',
  );
  const savedMimes = saved.content.cells.flatMap((cell) => cell.outputs.flatMap((output) => Object.keys(output.data)));
  expect(savedMimes).toEqual(expect.arrayContaining([MIME.harmony, MIME.training]));

  // Stop the kernel first: whatever shows after the reload can only come from the file.
  const kernels = await lab.api<{ id: string }[]>('GET', 'kernels');
  for (const kernel of kernels) await lab.api('DELETE', `kernels/${kernel.id}`);
  await page.reload();
  await waitForNotebook(page, 'reload.ipynb');
  await expectHarmonyView(page);
  await expectTrainingDashboard(page);
});
