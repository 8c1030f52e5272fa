// Builds the prebuilt (federated) labextension with Node alone. @jupyter/builder ships its CLI as a
// plain script without a `bin` entry, and it needs the JupyterLab core package.json to know which
// packages the page already provides; @jupyterlab/core-meta carries that file, so no Python and no
// network are involved.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = dirname(dirname(fileURLToPath(import.meta.url)));
const cli = require.resolve('@jupyter/builder/lib/build-labextension.js');
const corePackage = join(dirname(require.resolve('@jupyterlab/core-meta/package.json')), 'core.package.json');

const args = [cli, '--core-package-file', corePackage, ...process.argv.slice(2), here];
const result = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
