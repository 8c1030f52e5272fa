import { python } from '@codemirror/lang-python';
import { ensureSyntaxTree, language } from '@codemirror/language';
import { EditorState } from '@codemirror/state';
import { classHighlighter, highlightTree } from '@lezer/highlight';

import { appliesTo, finetuneCellHighlighting, finetuneCellLanguage, isFinetuneCell } from './cellMagic';

function cell(text: string): EditorState {
  return EditorState.create({ doc: text, extensions: [python(), finetuneCellHighlighting(text)] });
}

/** The highlight classes of each piece of text, e.g. ['lora', 'tok-...']. */
function tokens(state: EditorState): [string, string][] {
  const tree = ensureSyntaxTree(state, state.doc.length, 5000)!;
  const out: [string, string][] = [];
  highlightTree(tree, classHighlighter, (from, to, classes) => out.push([state.doc.sliceString(from, to), classes]));
  return out;
}

const classOf = (state: EditorState, text: string) => tokens(state).find(([t]) => t === text)?.[1];

const BODY = '%%oss_finetune train --steps 5\nlora:\n  r: 16  # rank\ndata:\n  reasoning_effort: high\n';

describe('%%oss_finetune highlighting', () => {
  it('recognises the magic on the first non-blank line only', () => {
    expect(isFinetuneCell(EditorState.create({ doc: BODY }).doc)).toBe(true);
    expect(isFinetuneCell(EditorState.create({ doc: '\n  \n%%oss_finetune\nlora: {}' }).doc)).toBe(true);
    expect(isFinetuneCell(EditorState.create({ doc: '%%oss_finetuner\nx: 1' }).doc)).toBe(false);
    expect(isFinetuneCell(EditorState.create({ doc: 'x = 1\n%%oss_finetune' }).doc)).toBe(false);
    expect(isFinetuneCell(EditorState.create({ doc: '%oss_finetune train' }).doc)).toBe(false);
  });

  it('highlights the body of a %%oss_finetune cell as YAML', () => {
    const state = cell(BODY);
    expect(state.facet(language)).toBe(finetuneCellLanguage);
    expect(classOf(state, '%%oss_finetune')).toBe('tok-keyword');
    expect(classOf(state, 'train')).toBe('tok-string');
    expect(classOf(state, '--steps')).toBe('tok-propertyName');
    // YAML keys and their colons, where Python would see plain names.
    expect(classOf(state, 'lora')).toBe('tok-atom');
    expect(classOf(state, ':')).toBe('tok-meta');
    expect(classOf(state, '# rank')).toBe('tok-comment');
    expect(classOf(cell('%%oss_finetune\nmax_steps: 60'), '60')).toBe('tok-number');
    const asPython = cell(BODY.slice(BODY.indexOf('\n') + 1));
    expect(classOf(asPython, 'lora')).toBe('tok-variableName');
  });

  it('leaves other cells to the kernel language', () => {
    const state = cell('import torch\nr: int = 16\n');
    expect(state.facet(language)).not.toBe(finetuneCellLanguage);
    expect(state.facet(language)!.name).toBe('python');
    expect(classOf(state, 'import')).toBe('tok-keyword');
  });

  it('switches as the magic line is typed or deleted', () => {
    let state = cell('lora:\n  r: 8\n');
    expect(state.facet(language)!.name).toBe('python');
    state = state.update({ changes: { from: 0, insert: '%%oss_finetune\n' } }).state;
    expect(state.facet(language)).toBe(finetuneCellLanguage);
    expect(classOf(state, '8')).toBe('tok-number');
    state = state.update({ changes: { from: 0, to: '%%oss_finetune\n'.length } }).state;
    expect(state.facet(language)!.name).toBe('python');
  });

  it('works in an editor that has no language yet, as JupyterLab creates it', () => {
    let state = EditorState.create({ doc: 'x = 1', extensions: [finetuneCellHighlighting('x = 1')] });
    expect(state.facet(language)).toBeNull();
    state = state.update({ changes: { from: 0, insert: '%%oss_finetune\n' } }).state;
    expect(state.facet(language)).toBe(finetuneCellLanguage);
    state = state.update({ changes: { from: 0, to: '%%oss_finetune\n'.length } }).state;
    expect(state.facet(language)).toBeNull();
  });

  it('highlights a cell that already starts with the magic when its editor opens', () => {
    const text = '%%oss_finetune\nlora:\n  r: 8\n';
    const state = EditorState.create({ doc: text, extensions: [finetuneCellHighlighting(text)] });
    expect(state.facet(language)).toBe(finetuneCellLanguage);
  });

  it('applies to notebook and console cells, not to file editors or Markdown', () => {
    expect(appliesTo({ inline: true, model: { mimeType: 'text/x-ipython' } })).toBe(true);
    expect(appliesTo({ inline: true, model: { mimeType: 'text/x-ipythongfm' } })).toBe(false);
    expect(appliesTo({ inline: false, model: { mimeType: 'text/x-python' } })).toBe(false);
  });
});
