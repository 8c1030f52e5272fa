// The TypeScript half of the contract: every fixture under fixtures/<schema>/{valid,invalid} is checked
// by @oss-finetune/schema, and invalid ones must fail with exactly the first error recorded in
// expected-first-errors.json. python/tests/test_contract.py checks the same files against the same
// manifest, so the two languages agree on what is invalid and on where.
import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';

import { formatIssue, schemaIssues, SchemaName, SCHEMAS, validate, SchemaValidationError } from '../../schema/src';

const fixtures = join(__dirname, 'fixtures');
const expected: Record<string, string> = JSON.parse(readFileSync(join(__dirname, 'expected-first-errors.json'), 'utf8'));

const cases = (kind: 'valid' | 'invalid') =>
  (Object.keys(SCHEMAS) as SchemaName[]).flatMap((schema) =>
    readdirSync(join(fixtures, schema, kind))
      .filter((f) => f.endsWith('.json'))
      .map((f) => ({ schema, file: `${schema}/${kind}/${f}` })),
  );

const load = (file: string) => JSON.parse(readFileSync(join(fixtures, file), 'utf8'));

describe('contract fixtures', () => {
  it('has fixtures of both kinds for every schema', () => {
    for (const schema of Object.keys(SCHEMAS)) {
      expect(cases('valid').some((c) => c.schema === schema)).toBe(true);
      expect(cases('invalid').some((c) => c.schema === schema)).toBe(true);
    }
  });

  it('records an expected first error for every invalid fixture and no stale entries', () => {
    expect(
      cases('invalid')
        .map((c) => c.file)
        .sort(),
    ).toEqual(Object.keys(expected).sort());
  });

  it.each(cases('valid'))('$file is valid', ({ schema, file }) => {
    expect(schemaIssues(schema, load(file))).toEqual([]);
  });

  it.each(cases('invalid'))('$file fails with its recorded first error', ({ schema, file }) => {
    const issues = schemaIssues(schema, load(file));
    expect(issues.length).toBeGreaterThan(0);
    expect(formatIssue(issues[0])).toBe(expected[file]);
  });
});

describe('validate()', () => {
  it('names the path and the rule, e.g. lora.r: must be >= 1', () => {
    expect(() => validate('finetune-config', { lora: { r: 0 } })).toThrow('finetune-config: lora.r: must be >= 1');
  });

  it('returns the instance when it is valid', () => {
    const config = { lora: { r: 8 } };
    expect(validate('finetune-config', config)).toBe(config);
  });

  it('keeps every issue, in the shared order, on the error', () => {
    try {
      validate('finetune-config', { lora: { r: 0.5, bogus: true } });
      throw new Error('expected a SchemaValidationError');
    } catch (e) {
      expect(e).toBeInstanceOf(SchemaValidationError);
      expect((e as SchemaValidationError).issues.map(formatIssue)).toEqual([
        'lora.bogus: is not an allowed field',
        'lora.r: must be >= 1',
        'lora.r: must be integer',
      ]);
    }
  });
});

// JSON cannot hold NaN or an infinity, so these cases have no fixture file: they reach the validator
// from JavaScript (a form field, a computed value) and are checked here only. The Python validator
// words them identically.
describe('non-finite numbers', () => {
  it.each([NaN, Infinity, -Infinity])('%p in a number field: <path>: must be a finite number', (value) => {
    expect(() => validate('finetune-config', { lora: { alpha: value } })).toThrow('finetune-config: lora.alpha: must be a finite number');
    expect(schemaIssues('finetune-config', { lora: { alpha: value } }).map(formatIssue)).toEqual(['lora.alpha: must be a finite number']);
  });

  it('in integer fields, nullable fields and array items alike', () => {
    expect(schemaIssues('finetune-config', { lora: { r: NaN } }).map(formatIssue)).toEqual(['lora.r: must be a finite number']);
    const run = {
      version: 1,
      run_id: 'r',
      status: 'running',
      step: 1,
      max_steps: 2,
      elapsed_seconds: Infinity,
      metrics: [{ step: 1, loss: NaN }],
    };
    expect(schemaIssues('training-run', run).map(formatIssue)).toEqual([
      'elapsed_seconds: must be a finite number',
      'metrics[0].loss: must be a finite number',
    ]);
  });

  it('leaves a non-finite value in a field of another type to the usual rule', () => {
    const [issue] = schemaIssues('finetune-config', { model: { name_or_path: NaN } });
    expect(formatIssue(issue)).toBe('model.name_or_path: must be string');
  });
});
