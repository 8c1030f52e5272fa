/**
 * YAML highlighting for the body of `%%oss_finetune` cells. The notebook gives every code cell the
 * kernel's language; this extension adds, with the highest precedence, a language of its own while
 * (and only while) the cell starts with the magic, so typing or deleting the magic line switches the
 * highlighting at once and every other cell keeps Python.
 */
import { StreamLanguage, StreamParser, StringStream } from '@codemirror/language';
import { Compartment, EditorState, Extension, Prec, Text } from '@codemirror/state';
import { yaml } from '@codemirror/legacy-modes/mode/yaml';

export const CELL_MAGIC = '%%oss_finetune';

/** IPython skips blank lines before a cell magic, so the highlighting does too. */
export function isFinetuneCell(doc: Text): boolean {
  for (let n = 1; n <= doc.lines; n++) {
    const text = doc.line(n).text;
    if (text.trim() === '') continue;
    return text.startsWith(CELL_MAGIC) && (text.length === CELL_MAGIC.length || /\s/.test(text[CELL_MAGIC.length]));
  }
  return false;
}

interface CellState {
  /** Still on the magic line (or the blank lines before it). */
  head: boolean;
  body: unknown;
}

const body = yaml as StreamParser<unknown>;

const cellParser: StreamParser<CellState> = {
  name: 'oss-finetune-cell',
  startState: (indentUnit: number) => ({ head: true, body: body.startState ? body.startState(indentUnit) : {} }),
  copyState: (state: CellState) => ({
    head: state.head,
    body: body.copyState ? body.copyState(state.body) : state.body,
  }),
  token(stream: StringStream, state: CellState): string | null {
    if (state.head) {
      let style: string | null = null;
      if (stream.sol() && stream.match(CELL_MAGIC)) style = 'keyword';
      else if (stream.eatSpace()) style = null;
      else if (stream.match(/^--?[\w-]+/)) style = 'attribute';
      else if (stream.match(/^[^\s]+/)) style = 'string';
      else stream.next();
      if (stream.eol()) state.head = false;
      return style;
    }
    return body.token(stream, state.body);
  },
  blankLine(state: CellState, indentUnit: number) {
    if (!state.head) body.blankLine?.(state.body, indentUnit);
  },
  languageData: body.languageData,
  tokenTable: body.tokenTable,
};

/** The magic line, then YAML. */
export const finetuneCellLanguage = StreamLanguage.define(cellParser);

/**
 * Highlights a cell as a `%%oss_finetune` cell while it starts with the magic; otherwise adds nothing.
 * Any provider of CodeMirror's language facet, even an empty one, switches on its language state,
 * which fails while JupyterLab's editor has no language yet; so the language sits in a compartment
 * that holds it only while the magic is there. `initialText` is the cell's text when the editor opens.
 */
export function finetuneCellHighlighting(initialText = ''): Extension {
  const slot = new Compartment();
  const on = Prec.highest(finetuneCellLanguage);
  const wanted = (doc: Text): Extension => (isFinetuneCell(doc) ? on : []);
  return [
    slot.of(wanted(Text.of(initialText.split('\n')))),
    EditorState.transactionExtender.of((tr) => {
      const want = isFinetuneCell(tr.newDoc);
      const has = slot.get(tr.startState) === on;
      return want === has ? null : { effects: slot.reconfigure(want ? on : []) };
    }),
  ];
}

/** Markdown cells keep their own highlighting even when their text starts with the magic. */
const PROSE_MIME_TYPES = new Set(['text/x-ipythongfm', 'text/x-markdown', 'text/markdown']);

/** For IEditorExtensionRegistry: notebook and console cells get it; file editors and Markdown do not. */
export function appliesTo(options: { inline: boolean; model: { mimeType: string } }): boolean {
  return options.inline && !PROSE_MIME_TYPES.has(options.model.mimeType);
}
