// Builds the bench page with the extension's view as it was at a git revision, for an A/B in one
// sitting on a shared machine:
//   node bench/harmony_view/build-ref.mjs REV && node bench/harmony_view/run.mjs 3 --cases virtual --page bench/harmony_view/dist/ref/index.html
// The page script (page.mjs) is today's, so both sides are measured the same way.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { rspack } = require('@rspack/core');
const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');
const rev = process.argv[2];
if (!rev) {
  console.error('usage: node bench/harmony_view/build-ref.mjs REV');
  process.exit(2);
}

const out = join(here, 'dist', 'ref');
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const tar = execFileSync('git', ['-C', repo, 'archive', rev, 'extension/src', 'extension/style'], { maxBuffer: 64 * 2 ** 20 });
execFileSync('tar', ['-x', '-C', out], { input: tar });
writeFileSync(join(out, 'REV'), `${execFileSync('git', ['-C', repo, 'rev-parse', rev], { encoding: 'utf8' }).trim()}\n`);

// Compiled with the repository's TypeScript settings, less what only a package build needs.
writeFileSync(
  join(out, 'tsconfig.json'),
  JSON.stringify({
    extends: relative(out, join(repo, 'tsconfig.json')),
    compilerOptions: { rootDir: 'extension/src', outDir: 'lib', module: 'esnext', moduleResolution: 'bundler', declaration: false, sourceMap: false, noUnusedLocals: false },
    include: ['extension/src/**/*.ts'],
    exclude: ['extension/src/**/*.test.ts', 'extension/src/testing/**'],
  }),
);
execFileSync(join(repo, 'node_modules', '.bin', 'tsc'), ['-p', join(out, 'tsconfig.json')], { stdio: 'inherit' });

writeFileSync(join(out, 'page.mjs'), readFileSync(join(here, 'page.mjs'), 'utf8').replaceAll('../../extension/lib/', './lib/'));
writeFileSync(
  join(out, 'index.html'),
  readFileSync(join(here, 'index.html'), 'utf8')
    .replace('../../extension/style/index.css', 'extension/style/index.css')
    .replace('dist/page.js', 'page.js'),
);

rspack({
  mode: 'production',
  context: out,
  entry: './page.mjs',
  output: { path: out, filename: 'page.js' },
  devtool: false,
  resolve: { extensions: ['.js', '.mjs', '.json'] },
}).run((err, stats) => {
  if (err || stats.hasErrors()) {
    console.error(err ?? stats.toString('errors-only'));
    process.exit(1);
  }
  console.log(`${relative(repo, join(out, 'index.html'))}: the view at ${rev}`);
});
