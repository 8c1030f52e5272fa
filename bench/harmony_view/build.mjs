// Bundles page.mjs (and through it the extension's compiled lib/) into dist/page.js for a file:// page.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { rspack } = require('@rspack/core');
const here = dirname(fileURLToPath(import.meta.url));

const compiler = rspack({
  mode: 'production',
  context: here,
  entry: './page.mjs',
  output: { path: join(here, 'dist'), filename: 'page.js' },
  devtool: false,
  resolve: { extensions: ['.js', '.mjs', '.json'] },
});
compiler.run((err, stats) => {
  if (err || stats.hasErrors()) {
    console.error(err ?? stats.toString('errors-only'));
    process.exit(1);
  }
  console.log(stats.toString({ colors: false, modules: false, assets: true }).split('\n').slice(0, 4).join('\n'));
});
