/**
 * YAML highlighting for the body of `%%oss_finetune` cells. The notebook gives every code cell the
 * kernel's language; this extension adds, with the highest precedence, a language of its own while
 * (and only while) the cell starts with the magic, so typing or deleting the magic line switches the
 * highlighting at once and every other cell keeps Python.
 */
import { StreamLanguage, StreamParser, StringStream, language } from '@codemirror/language';
import { Extension, Prec, Text } from '@codemirror/state';
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

/** Highlights a cell as a `%%oss_finetune` cell while it starts with the magic; otherwise adds nothing. */
export function finetuneCellHighlighting(): Extension {
  return Prec.highest(language.computeN(['doc'], (state) => (isFinetuneCell(state.doc) ? [finetuneCellLanguage] : [])));
}

/** Markdown cells keep their own highlighting even when their text starts with the magic. */
const PROSE_MIME_TYPES = new Set(['text/x-ipythongfm', 'text/x-markdown', 'text/markdown']);

/** For IEditorExtensionRegistry: notebook and console cells get it; file editors and Markdown do not. */
export function appliesTo(options: { inline: boolean; model: { mimeType: string } }): boolean {
  return options.inline && !PROSE_MIME_TYPES.has(options.model.mimeType);
}
