import * as fs from 'fs';
import * as path from 'path';

// Token text, language names and run messages come from the kernel and from data sets; they only
// ever enter the DOM as text. This keeps markup-parsing sinks out of the source for good.
function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sources(full);
    return entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

it('uses no HTML-parsing DOM sinks', () => {
  const sinks = /\.(innerHTML|outerHTML|insertAdjacentHTML)\b|document\.write\(/;
  const offenders = sources(__dirname).filter((file) => sinks.test(fs.readFileSync(file, 'utf8')));
  expect(offenders).toEqual([]);
});
