// Generates src/generated/*.ts from the *.schema.json files. `--check` exits 1 when a committed file
// differs from what the schema produces, so a schema change without regenerated types fails the tests.
import { readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compile } from 'json-schema-to-typescript';

const here = join(dirname(fileURLToPath(import.meta.url)), '..');
const outDir = join(here, 'src', 'generated');
const check = process.argv.includes('--check');

function resolvePointer(schema, pointer) {
  let node = schema;
  for (const raw of pointer.split('/').filter(Boolean)) {
    node = node?.[raw.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  if (node === undefined) throw new Error(`$ref pointer #${pointer} does not exist`);
  return node;
}

/**
 * A `$ref` into another schema file that lands on a titled schema names a type that file's own module
 * declares: it becomes an import of that type. Left to json-schema-to-typescript it would be declared
 * again, under the same name, and the package index could not re-export both. Untitled targets (an
 * enum, a string rule) are inlined as usual. Returns a copy of `schema`; `imports` collects
 * module -> type names.
 */
function linkExternalRefs(schema, file, imports) {
  const visit = (node) => {
    if (Array.isArray(node)) return node.map(visit);
    if (node === null || typeof node !== 'object') return node;
    if (typeof node.$ref === 'string' && !node.$ref.startsWith('#')) {
      const [target, pointer = ''] = node.$ref.split('#');
      if (!target.endsWith('.schema.json') || target.includes('/')) throw new Error(`${file}: $ref ${node.$ref} must name a schema file beside it`);
      const resolved = resolvePointer(JSON.parse(readFileSync(join(here, target), 'utf8')), pointer);
      if (resolved.title) {
        const { $ref: _ref, ...rest } = node;
        const module = `./${target.replace('.schema.json', '')}`;
        if (!imports.has(module)) imports.set(module, new Set());
        imports.get(module).add(resolved.title);
        return { ...visit(rest), tsType: resolved.title };
      }
    }
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, visit(value)]));
  };
  return visit(schema);
}

export async function generate() {
  const result = {};
  for (const file of readdirSync(here).filter((n) => n.endsWith('.schema.json')).sort()) {
    const imports = new Map();
    const schema = linkExternalRefs(JSON.parse(readFileSync(join(here, file), 'utf8')), file, imports);
    const importLines = [...imports]
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([module, names]) => `import type { ${[...names].sort().join(', ')} } from '${module}';`);
    const banner = `/* Generated from schema/${file} by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */`;
    const ts = await compile(schema, schema.title, {
      bannerComment: importLines.length ? `${banner}\n\n${importLines.join('\n')}` : banner,
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
