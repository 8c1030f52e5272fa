/**
 * Text the kernel or a data set chose, shown as text (never markup) but still able to mislead: a
 * right-to-left override makes what follows read backwards ("run-1-\u202elave" shows as
 * "run-1-evil"), and other control characters are invisible. Shown escaped, they are seen for what
 * they are.
 */

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
 * above, e.g. RIGHT-TO-LEFT OVERRIDE as \u202e. Characters in `keep` pass unchanged (e.g. '\n\t',
 * which the page shows as white space). Backslashes already in the text are left alone: the result is
 * for reading, not for parsing back.
 */
export function escapeControls(text: string, keep = ''): string {
  let out = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    const code = text.charCodeAt(i);
    if (!isControl(code) || keep.includes(ch)) out += ch;
    else out += SHORT[ch] ?? (code < 0x100 ? `\\x${hex(code, 2)}` : `\\u${hex(code, 4)}`);
  }
  return out;
}

/** Line breaks and tabs: white space in the page, so text shown in a paragraph may keep them. */
export const WHITESPACE = '\n\t';
