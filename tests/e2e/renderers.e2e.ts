import { Page } from '@playwright/test';
import {
  MIME,
  displayCell,
  expect,
  fixture,
  openNotebook,
  output,
  plainTextOutputs,
  runAll,
  save,
  test,
  waitForNotebook,
  writeNotebook,
} from './lab';

const harmony = fixture('harmony-tokens', 'one-conversation');
const training = fixture('training-run', 'running');
const dataset = fixture('dataset-summary', 'multilingual');

type Stream = { ids: number[]; text: string[]; trained: boolean[]; part: string[]; channel: string[] };
const stream = (harmony.conversations as { tokens: Stream }[])[0].tokens;

/** The token view draws spaces as a visible middle dot; everything else must come through as is. */
const shown = (text: string) => text.replace(/ /g, '·');

async function expectHarmonyView(page: Page): Promise<void> {
  const view = output(page, 'harmony');
  await expect(view).toHaveCount(1);
  const chips = view.getByRole('option');
  await expect(chips).toHaveText(stream.text.map(shown));
  await expect(view.locator('[role=option].ossft-part-special')).toHaveCount(stream.part.filter((p) => p === 'special').length);
  // The loss mask is on by default: every token that is not a training target is marked.
  await expect(view.locator('[role=option].ossft-masked')).toHaveCount(stream.trained.filter((t) => !t).length);
}

async function expectTrainingDashboard(page: Page): Promise<void> {
  const view = output(page, 'training');
  await expect(view).toHaveCount(1);
  await expect(view.locator('.ossft-run-id')).toContainText(String(training.run_id));
  await expect(view.getByRole('status')).toHaveText('running');
  const progress = view.getByRole('progressbar');
  await expect(progress).toHaveAttribute('aria-valuenow', String(training.step));
  await expect(progress).toHaveAttribute('aria-valuemax', String(training.max_steps));
  await expect(view.locator('.ossft-latest-loss')).toHaveText('1.55');
  await expect(view.getByRole('button', { name: /Stop training/ })).toBeEnabled();
  // plotly.js draws the loss curve: one line trace through the two logged steps. The SVG chart is
  // only the stand-in shown until plotly has loaded, so it does not count.
  await expect(
    view.locator('.ossft-chart-loss .js-plotly-plot .scatterlayer .trace'),
    'plotly has replaced the SVG stand-in of the loss chart',
  ).toHaveCount(1);
}

async function expectDatasetSummary(page: Page): Promise<void> {
  const view = output(page, 'dataset');
  await expect(view).toHaveCount(1);
  await expect(view.locator('.ossft-fact-rows')).toContainText('998 of 1000');
  const languages = view.locator('.ossft-languages tbody tr');
  await expect(languages).toHaveCount(Object.keys(dataset.languages as object).length);
  await expect(languages.filter({ hasText: 'French' })).toContainText('200');
  const fraction = ((dataset.tokens_trained as number) / (dataset.tokens_total as number)) * 100;
  await expect(view.getByRole('meter')).toHaveAttribute('aria-valuenow', fraction.toFixed(1));
  await expect(view.getByLabel(/Token length histogram: 4 bins, 998 rows/)).toBeVisible();
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
  expect(plugins).toEqual(expect.arrayContaining(['oss-finetune:harmony', 'oss-finetune:training', 'oss-finetune:dataset']));
  // The renderers are plugins handed the settings and the comm clients by the others: all of them start.
  expect(plugins).toEqual(expect.arrayContaining(['oss-finetune:plugin', 'oss-finetune:clients']));
  const inactive = await page.evaluate((ids) => ids.filter((id) => !(window as any).jupyterapp.isPluginActivated(id)), plugins);
  expect(inactive).toEqual([]);
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
  const registered: string[] = await page.evaluate(() => (window as any).jupyterapp.shell.currentWidget.content.rendermime.mimeTypes);
  expect(registered).toEqual(expect.arrayContaining(Object.values(MIME)));

  await runAll(page);
  await expectHarmonyView(page);
  await expectTrainingDashboard(page);
  await expectDatasetSummary(page);
  await expect(plainTextOutputs(page)).toHaveCount(0);

  // The view reacts: the mask toggle clears the marks, the channel filter hides the final channel.
  const view = output(page, 'harmony');
  await view.getByRole('checkbox', { name: 'loss mask' }).uncheck();
  await expect(view.locator('[role=option].ossft-masked')).toHaveCount(0);
  await view.getByRole('checkbox', { name: 'final' }).uncheck();
  await expect(view.getByRole('option')).toHaveCount(stream.channel.filter((c) => c !== 'final').length);
  await view.getByRole('option').filter({ hasText: 'Hello' }).hover();
  await expect(view.locator('.ossft-detail')).toContainText(`id ${stream.ids[stream.text.indexOf('Hello')]}`);
});

test('token text is shown as text, never run as HTML', async ({ page, lab }) => {
  const img = '<img src=x onerror="window.__pwned=1">';
  const script = '<script>window.__pwned=2</script>';
  const entity = '&lt;b&gt;&amp;';
  const texts = ['<|start|>', 'user', '<|message|>', img, script, entity, '<|end|>'];
  const hostileHarmony = {
    version: 1,
    title: img,
    conversations: [
      {
        title: script,
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
  // The other views print strings from the kernel too: a run message and a language name.
  const hostileTraining = { ...training, message: '<img src=x onerror="window.__pwned=3">' };
  const hostileDataset = { ...dataset, languages: { '<img src=x onerror="window.__pwned=4">': 3 } };
  await writeNotebook(lab, 'unsafe.ipynb', [
    [
      displayCell(MIME.harmony, hostileHarmony, 'harmony fallback'),
      displayCell(MIME.training, hostileTraining, 'training fallback'),
      displayCell(MIME.dataset, hostileDataset, 'dataset fallback'),
    ].join('\n'),
  ]);
  await openNotebook(page, lab, 'unsafe.ipynb');
  await runAll(page);

  const view = output(page, 'harmony');
  await expect(view.getByRole('option')).toHaveText(texts.map(shown));
  // Hovering and pinning write the token into the detail line: another place it must stay text.
  const imgChip = view.getByRole('option').nth(texts.indexOf(img));
  await imgChip.hover();
  await expect(view.locator('.ossft-detail')).toContainText(shown(img));
  await view.getByRole('option').nth(texts.indexOf(script)).click();
  await expect(view.locator('.ossft-detail')).toContainText(shown(script));
  await expect(output(page, 'training').locator('.ossft-run-message')).toContainText(hostileTraining.message);
  await expect(output(page, 'dataset').locator('.ossft-languages')).toContainText(Object.keys(hostileDataset.languages)[0]);

  const outputs = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea');
  await expect(outputs.locator('img, script, b')).toHaveCount(0);
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
  const savedMimes = saved.content.cells.flatMap((cell) => cell.outputs.flatMap((o) => Object.keys(o.data)));
  expect(savedMimes).toEqual(expect.arrayContaining([MIME.harmony, MIME.training]));

  // With the kernel gone, whatever shows after the reload can only come from the file.
  await lab.stopKernels();
  await page.reload();
  await waitForNotebook(page, 'reload.ipynb');
  await expectHarmonyView(page);
  await expectTrainingDashboard(page);
  await expect(plainTextOutputs(page)).toHaveCount(0);
});

test('the training dashboard follows display updates in place', async ({ page, lab }) => {
  // The trainer re-sends the whole run under one display_id after each step; the view must update
  // the existing dashboard, not stack a new output per step.
  const cell = [
    'from IPython.display import display, update_display',
    `run = ${JSON.stringify(JSON.stringify(training))}`,
    'import json',
    'payload = json.loads(run)',
    'for step in range(3, 8):',
    '    payload["step"] = step',
    '    payload["metrics"].append({"step": step, "loss": round(1.6 - step / 10, 2)})',
    '    bundle = {"application/vnd.oss-finetune.training+json": payload, "text/plain": "training fallback"}',
    '    if step == 3:',
    '        display(bundle, raw=True, display_id="live-run")',
    '    else:',
    '        update_display(bundle, raw=True, display_id="live-run")',
  ].join('\n');
  await writeNotebook(lab, 'live.ipynb', [cell]);
  await openNotebook(page, lab, 'live.ipynb');
  await runAll(page);

  const view = output(page, 'training');
  await expect(view).toHaveCount(1);
  await expect(view.getByRole('progressbar')).toHaveAttribute('aria-valuenow', '7');
  await expect(view.locator('.ossft-latest-loss')).toHaveText('0.9');
  await expect(plainTextOutputs(page)).toHaveCount(0);
});
