// Generates src/generated/*.ts from the *.schema.json files. `--check` exits 1 when a committed file
// differs from what the schema produces, so a schema change without regenerated types fails the tests.
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(here, 'src', 'generated');
const check = process.argv.includes('--check');

export async function generate() {
  const result = {};
  for (const file of readdirSync(here).filter((n) => n.endsWith('.schema.json')).sort()) {
    const schema = JSON.parse(readFileSync(join(here, file), 'utf8'));
    const ts = await compile(schema, schema.title, {
      bannerComment: `/* Generated from schema/${file} by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */`,
      additionalProperties: false,
      style: { singleQuote: true },
      cwd: here,
    });
    result[file.replace('.schema.json', '.ts')] = ts;
  }
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const files = await generate();
  const stale = [];
  for (const [name, text] of Object.entries(files)) {
    const path = join(outDir, name);
    const current = existsSync(path) ? readFileSync(path, 'utf8') : null;
    if (current === text) continue;
    if (check) stale.push(name);
    else writeFileSync(path, text);
  }
  if (check && stale.length) {
    console.error(`stale generated types: ${stale.join(', ')}; run npm run gen:types`);
    process.exit(1);
  }
  console.log(check ? 'generated types are up to date' : `types generated in schema/src/generated (${Object.keys(files).length} files)`);
}
