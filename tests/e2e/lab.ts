/**
 * Helpers shared by the end-to-end tests: the server started by global-setup.ts, notebooks written
 * through the contents API, and JupyterLab driven through its command registry (exposed as
 * window.jupyterapp by the server's --LabApp.expose_app_in_browser).
 */
import { APIRequestContext, Locator, Page, expect, test as base } from '@playwright/test';
import * as fs from 'fs';
import * as path from 'path';

export const KERNEL = 'oss-finetune';

export const MIME = {
  harmony: 'application/vnd.oss-finetune.harmony+json',
  training: 'application/vnd.oss-finetune.training+json',
  dataset: 'application/vnd.oss-finetune.dataset+json',
} as const;

export interface Lab {
  url: string;
  token: string;
  /** Calls the Jupyter server's REST API with the token; fails the test on an HTTP error. */
  api<T = unknown>(method: 'GET' | 'PUT' | 'DELETE', route: string, body?: unknown): Promise<T>;
  /** Ends every session and its kernel. */
  stopKernels(): Promise<void>;
}

function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is unset: run the suite through playwright.config.ts (its global set-up)`);
  return value;
}

/** A path inside the server's root folder, which is also the working folder of its kernels. */
export function rootPath(...parts: string[]): string {
  return path.join(env('E2E_ROOT_DIR'), ...parts);
}

export function repoPath(...parts: string[]): string {
  return path.join(env('E2E_REPO'), ...parts);
}

/** A valid payload from the contract fixtures, so these tests and the schema tests read the same data. */
export function fixture(schema: string, name: string): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(repoPath('tests', 'contract', 'fixtures', schema, 'valid', `${name}.json`), 'utf8'));
}

/**
 * Python source that displays one raw MIME bundle. The payload travels as a JSON string literal
 * (JSON string syntax is valid Python) so no characters in it can break out of the cell's code.
 */
export function displayCell(mime: string, payload: unknown, plain: string): string {
  const bundle = { [mime]: payload, 'text/plain': plain };
  return [
    'import json',
    'from IPython.display import display',
    `display(json.loads(${JSON.stringify(JSON.stringify(bundle))}), raw=True)`,
  ].join('\n');
}

function makeLab(request: APIRequestContext): Lab {
  const url = env('E2E_LAB_URL');
  const token = env('E2E_LAB_TOKEN');
  return {
    url,
    token,
    async api<T>(method: string, route: string, body?: unknown): Promise<T> {
      const response = await request.fetch(`${url}api/${route}`, {
        method,
        headers: { Authorization: `token ${token}` },
        data: body === undefined ? undefined : JSON.stringify(body),
      });
      expect(response.ok(), `${method} /api/${route}: ${response.status()} ${await response.text()}`).toBeTruthy();
      return (response.status() === 204 ? undefined : await response.json()) as T;
    },
    async stopKernels() {
      for (const session of await this.api<{ id: string }[]>('GET', 'sessions')) {
        await this.api('DELETE', `sessions/${session.id}`);
      }
      for (const kernel of await this.api<{ id: string }[]>('GET', 'kernels')) {
        await this.api('DELETE', `kernels/${kernel.id}`);
      }
    },
  };
}

export const test = base.extend<{ lab: Lab }>({
  lab: async ({ request }, use) => {
    const lab = makeLab(request);
    await use(lab);
    // Each test starts its own kernel; stopping them keeps later tests from competing for the CPU.
    await lab.stopKernels();
  },
});
export { expect };

/** Writes a notebook of code cells that asks for the project's kernel. */
export async function writeNotebook(lab: Lab, name: string, cells: string[]): Promise<void> {
  await lab.api('PUT', `contents/${encodeURIComponent(name)}`, {
    type: 'notebook',
    format: 'json',
    content: {
      nbformat: 4,
      nbformat_minor: 5,
      metadata: {
        kernelspec: { name: KERNEL, display_name: 'Python (oss-finetune)', language: 'python' },
        language_info: { name: 'python' },
      },
      cells: cells.map((source, i) => ({
        id: `cell-${i}`,
        cell_type: 'code',
        metadata: {},
        source,
        outputs: [],
        execution_count: null,
      })),
    },
  });
}

/**
 * Opens JupyterLab on a notebook and waits until its kernel is connected. Each notebook gets a
 * workspace of its own, so tabs restored from an earlier test never take the focus.
 */
export async function openNotebook(page: Page, lab: Lab, name: string): Promise<void> {
  const workspace = name.replace(/[^A-Za-z0-9-]/g, '-');
  await page.goto(`${lab.url}lab/workspaces/${workspace}/tree/${encodeURIComponent(name)}?token=${lab.token}`);
  await waitForNotebook(page, name);
}

/** Waits for the notebook to be the current tab with its kernel connected. */
export async function waitForNotebook(page: Page, name: string): Promise<void> {
  await page.waitForFunction((path) => (window as any).jupyterapp?.shell?.currentWidget?.context?.path === path, name);
  const kernel = await page.evaluate(async () => {
    const panel = (window as any).jupyterapp.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    return panel.sessionContext.session?.kernel?.name;
  });
  expect(kernel, 'the notebook runs on the project kernelspec').toBe(KERNEL);
  await expect(page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook')).toBeVisible();
}

/** Runs every cell; the command's promise settles once each cell's reply and outputs have arrived. */
export async function runAll(page: Page): Promise<void> {
  const ok = await page.evaluate(() => (window as any).jupyterapp.commands.execute('notebook:run-all-cells'));
  const errors = ok
    ? []
    : await page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) [data-mime-type="application/vnd.jupyter.stderr"]').allInnerTexts();
  expect(ok, `every cell ran without an error\n${errors.join('\n')}`).toBe(true);
}

export async function save(page: Page): Promise<void> {
  const dirty = await page.evaluate(async () => {
    const app = (window as any).jupyterapp;
    await app.commands.execute('docmanager:save');
    return app.shell.currentWidget.context.model.dirty;
  });
  expect(dirty, 'the notebook is saved').toBe(false);
}

/**
 * The output of one of our renderers in the current notebook. JupyterLab only records the MIME type
 * it chose on its own renderers, so ours are recognised by the root element each view draws.
 */
export const VIEW = {
  harmony: '.ossft-harmony',
  training: '.ossft-training',
  dataset: '.ossft-dataset',
} as const;

export function output(page: Page, view: keyof typeof VIEW) {
  return page.locator(`.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output:has(${VIEW[view]})`);
}

/** The root element of the kernel's own text/html twin of each payload (see display.py). */
export const FALLBACK = {
  harmony: '.oss-finetune-harmony',
  training: '.oss-finetune-training',
  dataset: '.oss-finetune-dataset',
} as const;

/**
 * Waits for a payload of `view` to be shown under `scope`, then asserts that the extension's view
 * draws it. The kernel sends each payload with a text/html twin; if JupyterLab ranks that twin
 * above our MIME type, the page shows the plain HTML and every control of the view is missing.
 */
export async function expectOurView(scope: Locator, view: keyof typeof VIEW, timeout = 60_000): Promise<void> {
  await expect(scope.locator(`${VIEW[view]}, ${FALLBACK[view]}`).first()).toBeAttached({ timeout });
  await expect(
    scope.locator(FALLBACK[view]),
    `the ${view} payload is drawn by the extension's view, not by the kernel's text/html fallback`,
  ).toHaveCount(0, { timeout: 1 });
}

/** Outputs drawn as plain text, which is where a bundle lands when no renderer claims it. */
export function plainTextOutputs(page: Page) {
  return page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output.jp-RenderedText');
}

/** A cell of the current notebook, markdown cells included in the count. */
export function cell(page: Page, index: number) {
  return page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell').nth(index);
}

/**
 * Runs one cell of the current notebook and waits for its reply and outputs; fails the test with the
 * cell's error output when it raised.
 */
export async function runCell(page: Page, index: number): Promise<void> {
  const ok = await page.evaluate(async (i) => {
    const app = (window as any).jupyterapp;
    const notebook = app.shell.currentWidget.content;
    notebook.deselectAll();
    notebook.activeCellIndex = i;
    return app.commands.execute('notebook:run-cell');
  }, index);
  const errors = ok ? [] : await cell(page, index).locator('.jp-OutputArea-output').allInnerTexts();
  expect(ok, `cell ${index} ran without an error\n${errors.join('\n')}`).toBe(true);
}

/** Starts one cell without waiting for it to finish, for a cell that is stopped while it runs. */
export async function startCell(page: Page, index: number): Promise<void> {
  await page.evaluate((i) => {
    const app = (window as any).jupyterapp;
    const notebook = app.shell.currentWidget.content;
    notebook.deselectAll();
    notebook.activeCellIndex = i;
    void app.commands.execute('notebook:run-cell');
  }, index);
}

/** Waits until the current notebook's kernel has nothing left to run. */
export async function waitForIdleKernel(page: Page, timeout = 60_000): Promise<void> {
  await page.waitForFunction(
    () => (window as any).jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle',
    undefined,
    { timeout },
  );
}

/** The outputs the notebook model holds for each cell, as nbformat JSON. */
export async function modelOutputs(page: Page): Promise<{ output_type: string; [key: string]: unknown }[][]> {
  return page.evaluate(() => {
    const cells = (window as any).jupyterapp.shell.currentWidget.content.model.cells;
    const all = [];
    for (let i = 0; i < cells.length; i++) {
      const c = cells.get(i);
      all.push(c.type === 'code' ? c.outputs.toJSON() : []);
    }
    return all;
  });
}
