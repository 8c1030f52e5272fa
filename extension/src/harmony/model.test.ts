import { StreamSource, alignSources, columns, diffSources, displayText, streamProblems } from './model';
import { layoutLines, lineOf, measure } from './layout';
import { makeStream } from '../testing/fixtures';

describe('displayText', () => {
  it('makes whitespace visible', () => {
    expect(displayText('a b\n')).toBe('a·b⏎');
    expect(displayText('\t')).toBe('⇥');
    expect(displayText('')).toBe('∅');
  });
  it('counts wide characters as two columns', () => {
    expect(columns('abc')).toBe(3);
    expect(columns('日本')).toBe(4);
    expect(columns('😀')).toBe(2);
    expect(columns('a b\n')).toBe(displayText('a b\n').length);
  });
});

describe('streamProblems', () => {
  it('names a parallel array of the wrong length', () => {
    const stream = makeStream(4);
    stream.channel.pop();
    expect(streamProblems(stream, 'conversations[0].tokens')).toEqual(['conversations[0].tokens.channel: has 3 entries but ids has 4']);
  });
});

describe('layoutLines', () => {
  const geometry = { width: 200, charWidth: 10, chipExtra: 10 };

  it('breaks after a newline token and when a line is full', () => {
    const stream = makeStream(3, { texts: { 0: 'ab\n', 1: 'x'.repeat(15), 2: 'y'.repeat(15) } });
    const source = new StreamSource(stream);
    const layout = layoutLines(source, measure(source), () => true, geometry);
    expect(layout.lineCount).toBe(3);
    expect(Array.from(layout.lineStarts)).toEqual([0, 1, 2, 3]);
  });

  it('lays out only the tokens that pass the filter', () => {
    const source = new StreamSource(makeStream(28));
    const layout = layoutLines(source, measure(source), (i) => source.channel(i) === 'final', geometry);
    expect(layout.order.length).toBe(7);
    expect(Array.from(layout.order).every((i) => source.channel(i) === 'final')).toBe(true);
  });

  it('finds the line of a position', () => {
    const source = new StreamSource(makeStream(2000));
    const layout = layoutLines(source, measure(source), () => true, geometry);
    for (const k of [0, 1, 500, 1999]) {
      const line = lineOf(layout, k);
      expect(layout.lineStarts[line]).toBeLessThanOrEqual(k);
      expect(layout.lineStarts[line + 1]).toBeGreaterThan(k);
    }
  });
});

describe('diffSources', () => {
  it('marks tokens only before as removed and only after as added', () => {
    const before = makeStream(3, { texts: { 0: 'a', 1: 'b', 2: 'c' } });
    before.ids = [1, 2, 3];
    const after = makeStream(3, { texts: { 0: 'a', 1: 'x', 2: 'c' } });
    after.ids = [1, 9, 3];
    const diff = diffSources(new StreamSource(before), new StreamSource(after));
    const rows = Array.from({ length: diff.length }, (_, k) => `${diff.change(k)}:${diff.text(k)}`);
    expect(rows).toEqual(['same:a', 'removed:b', 'added:x', 'same:c']);
  });

  it('falls back to replace-all when the middle is too large to align', () => {
    const before = makeStream(4);
    before.ids = [1, 2, 3, 4];
    const after = makeStream(4);
    after.ids = [1, 3, 2, 4];
    const diff = diffSources(new StreamSource(before), new StreamSource(after), 1);
    const changes = Array.from({ length: diff.length }, (_, k) => diff.change(k));
    expect(changes).toEqual(['same', 'removed', 'removed', 'added', 'added', 'same']);
  });
});

describe('alignSources', () => {
  it('pairs the tokens the diff keeps, across a shared prompt and after the answers part', () => {
    const before = makeStream(5);
    before.ids = [1, 2, 3, 4, 5];
    const after = makeStream(6);
    after.ids = [1, 2, 9, 9, 4, 5];
    const { toAfter, toBefore } = alignSources(new StreamSource(before), new StreamSource(after));
    expect(Array.from(toAfter)).toEqual([0, 1, -1, 4, 5]);
    expect(Array.from(toBefore)).toEqual([0, 1, -1, -1, 3, 4]);
  });
});
