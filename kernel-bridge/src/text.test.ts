import { escapeControls, isControl } from './text';

describe('escapeControls', () => {
  it('writes terminal commands as escapes: ESC as \\x1b, BEL as \\x07, C1 as \\x9b, DEL as \\x7f', () => {
    expect(escapeControls('\x1b]0;owned\x07 \x1b[2J \x9b2J \x7f \x00')).toBe('\\x1b]0;owned\\x07 \\x1b[2J \\x9b2J \\x7f \\x00');
  });

  it('writes tab, newline and carriage return short', () => {
    expect(escapeControls('a\tb\nc\rd')).toBe('a\\tb\\nc\\rd');
  });

  it('writes the bidi embeddings, overrides and isolates as \\uHHHH', () => {
    expect(escapeControls('\u202aa\u202bb\u202cc\u202dd\u202ee\u2066f\u2067g\u2068h\u2069')).toBe(
      '\\u202aa\\u202bb\\u202cc\\u202dd\\u202ee\\u2066f\\u2067g\\u2068h\\u2069',
    );
  });

  it('leaves printable text alone: accents, right-to-left scripts, emoji, backslashes', () => {
    const text = 'café שלום مرحبا 日本 🚀 C:\\path ~!@#';
    expect(escapeControls(text)).toBe(text);
  });

  it('keeps what it is told to keep', () => {
    expect(escapeControls('a\nb\tc\r', { keep: '\n\t' })).toBe('a\nb\tc\\r');
  });

  it('keeps colour sequences when asked, and only those', () => {
    const text = '\x1b[31mValueError\x1b[39m: \x1b[0;1;32mok\x1b[0m \x1b]0;t\x07 \x1b[2J \x1b[';
    expect(escapeControls(text, { colours: true })).toBe(
      '\x1b[31mValueError\x1b[39m: \x1b[0;1;32mok\x1b[0m \\x1b]0;t\\x07 \\x1b[2J \\x1b[',
    );
  });

  it('classifies exactly C0, DEL, C1 and U+202A-U+202E, U+2066-U+2069 as control', () => {
    const controls = [];
    for (let code = 0; code < 0x3000; code++) if (isControl(code)) controls.push(code);
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    expect(controls).toEqual([...range(0, 0x1f), ...range(0x7f, 0x9f), ...range(0x202a, 0x202e), ...range(0x2066, 0x2069)]);
  });
});
