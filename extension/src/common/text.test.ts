import { escapeControls, isControl, WHITESPACE } from './text';

describe('escapeControls', () => {
  it('writes the bidi embeddings, overrides and isolates as \\uHHHH', () => {
    expect(escapeControls('\u202aa\u202bb\u202cc\u202dd\u202ee\u2066f\u2067g\u2068h\u2069')).toBe(
      '\\u202aa\\u202bb\\u202cc\\u202dd\\u202ee\\u2066f\\u2067g\\u2068h\\u2069',
    );
  });

  it('writes C0, DEL and C1 as \\xHH, and tab, newline, carriage return short', () => {
    expect(escapeControls('\x1b[2J\x07\x00\x7f\x85\x9b a\tb\nc\rd')).toBe('\\x1b[2J\\x07\\x00\\x7f\\x85\\x9b a\\tb\\nc\\rd');
  });

  it('leaves printable text alone: accents, right-to-left scripts, emoji, backslashes', () => {
    const text = 'café שלום مرحبا 日本 🚀 C:\\path ~!@#';
    expect(escapeControls(text)).toBe(text);
  });

  it('keeps what it is told to keep', () => {
    expect(escapeControls('a\nb\tc\r\u202e', WHITESPACE)).toBe('a\nb\tc\\r\\u202e');
  });

  it('classifies exactly C0, DEL, C1 and U+202A-U+202E, U+2066-U+2069 as control', () => {
    const controls = [];
    for (let code = 0; code < 0x3000; code++) if (isControl(code)) controls.push(code);
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    expect(controls).toEqual([...range(0, 0x1f), ...range(0x7f, 0x9f), ...range(0x202a, 0x202e), ...range(0x2066, 0x2069)]);
  });
});
