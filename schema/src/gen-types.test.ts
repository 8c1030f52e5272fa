// Fails when a schema changed but src/generated was not regenerated (npm run gen:types).
import { execFileSync } from 'child_process';
import { join } from 'path';

describe('generated TypeScript types', () => {
  it('match the schemas', () => {
    const script = join(__dirname, '..', 'scripts', 'gen-types.mjs');
    let output = '';
    try {
      output = execFileSync(process.execPath, [script, '--check'], { encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string };
      throw new Error(`generated types are stale:\n${err.stderr ?? ''}${err.stdout ?? ''}`);
    }
    expect(output).toContain('up to date');
  });
});
