/**
 * Cell editors must work with the extension loaded. An editor extension that throws (a language
 * provider, a compartment, a highlighter) can leave every cell without an editor, and the message it
 * logs need not name oss-finetune; so this test listens to every console error and page error.
 */
import { ConsoleMessage, Page } from '@playwright/test';
import { expect, openNotebook, test, writeNotebook } from './lab';

/**
 * Console errors JupyterLab itself logs on a healthy page, by exact text, each with why it is
 * harmless. JupyterLab 4.6 with this suite's server settings logs none, so the list is empty; an
 * entry belongs here only with evidence that it comes from JupyterLab and not from our extension.
 */
const HARMLESS: { text: string; why: string }[] = [];

interface Problem {
  kind: string;
  text: string;
}

function collectProblems(page: Page): Problem[] {
  const problems: Problem[] = [];
  page.on('pageerror', (error) => problems.push({ kind: 'pageerror', text: `${error.name}: ${error.message}\n${error.stack ?? ''}` }));
  page.on('console', (message: ConsoleMessage) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    if (HARMLESS.some((h) => h.text === text)) return;
    const where = message.location();
    problems.push({ kind: 'console.error', text: `${text} (${where.url}:${where.lineNumber})` });
  });
  return problems;
}

function describe(problems: Problem[]): string {
  return problems.map((p) => `${p.kind}: ${p.text}`).join('\n\n');
}

const CELLS = ['x = 1\nprint(x)', ['%%oss_finetune lora', 'r: 8', 'alpha: 16'].join('\n'), '%oss_finetune help'];

test('cell editors work and the page logs no errors while a notebook with our magics loads', async ({ page, lab }) => {
  const problems = collectProblems(page);
  await writeNotebook(lab, 'editors.ipynb', CELLS);
  await openNotebook(page, lab, 'editors.ipynb');

  const notebook = page.locator('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook');
  const cells = notebook.locator('.jp-Cell');
  // Soft, so that a broken load still reaches the report of what the page logged, which is what
  // says why.
  await expect.soft(cells).toHaveCount(CELLS.length);
  // One live CodeMirror per cell: a broken editor extension leaves cells with no .cm-editor at all.
  await expect.soft(notebook.locator('.cm-editor')).toHaveCount(CELLS.length);
  expect(problems, describe(problems)).toEqual([]);
  expect(test.info().errors, 'every cell has its editor').toEqual([]);
  for (let i = 0; i < CELLS.length; i++) {
    await expect(cells.nth(i).locator('.cm-content .cm-line')).toHaveText(CELLS[i].split('\n'));
  }

  // Typing must reach both the editor and the cell's model, in a plain cell and in a magic cell.
  for (const [index, typed] of [
    [0, '\ny = x + 41'],
    [1, '\ndropout: 0.05'],
  ] as const) {
    const content = cells.nth(index).locator('.cm-content');
    await content.click();
    await page.keyboard.press('Control+End');
    await page.keyboard.type(typed);
    await expect(content).toContainText(typed.trim());
    const source = await page.evaluate(
      (i) => (window as any).jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel.getSource(),
      index,
    );
    expect(source).toBe(CELLS[index] + typed);
  }
  await page.keyboard.press('Escape');

  // The magic cell keeps its editor after edits; the highlighting must not replace or break it.
  await expect(notebook.locator('.cm-editor')).toHaveCount(CELLS.length);
  expect(problems, describe(problems)).toEqual([]);
});
