/**
 * Text from a notebook (outputs, sources, error values) shown in a terminal. Printed raw, a control
 * character is a command to the terminal: ESC ] 0 ; retitles the window, ESC [ 2 J clears the screen,
 * a carriage return rewinds the line; and a bidi override makes what follows read backwards.
 */

export interface EscapeOptions {
  /** Characters to pass through unchanged, e.g. '\n' where the text is shown over several lines. */
  keep?: string;
  /** Pass through ANSI colour sequences (ESC [ digits and ; m), which tracebacks are written with. */
  colours?: boolean;
}

const SHORT: Record<string, string> = { '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/**
 * Whether `code` is shown escaped: the C0 controls, DEL, the C1 controls, and the bidi embeddings,
 * overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
 */
export function isControl(code: number): boolean {
  return code < 0x20 || (code >= 0x7f && code <= 0x9f) || (code >= 0x202a && code <= 0x202e) || (code >= 0x2066 && code <= 0x2069);
}

const hex = (code: number, width: number) => code.toString(16).padStart(width, '0');

/**
 * `text` with each control character written as an escape: \t, \n, \r, \xHH below U+0100, \uHHHH
 * above, e.g. ESC as \x1b and RIGHT-TO-LEFT OVERRIDE as \u202e. Backslashes already in the text are
 * left alone, so the result is for reading, not for parsing back.
 */
export function escapeControls(text: string, options: EscapeOptions = {}): string {
  const keep = options.keep ?? '';
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const code = text.charCodeAt(i);
    if (!isControl(code) || keep.includes(ch)) {
      out += ch;
      continue;
    }
    if (options.colours && code === 0x1b) {
      const sgr = /^\[[0-9;]*m/.exec(text.slice(i + 1, i + 33));
      if (sgr) {
        out += ch + sgr[0];
        i += sgr[0].length;
        continue;
      }
    }
    out += SHORT[ch] ?? (code < 0x100 ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
  }
  return out;
}
