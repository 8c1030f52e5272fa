// The Python package validates against the same schema files as TypeScript; the wheel carries a copy.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const from = join(root, 'schema');
const to = join(root, 'python', 'oss_finetune', 'schema');
mkdirSync(to, { recursive: true });
let copied = 0;
for (const name of readdirSync(from).filter((n) => n.endsWith('.schema.json') || n === 'mime-types.json')) {
  const target = join(to, name);
  const bytes = readFileSync(join(from, name));
  if (existsSync(target) && readFileSync(target).equals(bytes)) continue;
  copyFileSync(join(from, name), target);
  copied += 1;
}
console.log(`schema: ${copied ? `${copied} file(s) copied` : 'up to date'} in python/oss_finetune/schema`);
