import Ajv2020, { ErrorObject, ValidateFunction } from 'ajv/dist/2020';

import commMessage from '../comm-message.schema.json';
import datasetSummary from '../dataset-summary.schema.json';
import finetuneConfig from '../finetune-config.schema.json';
import harmonyTokens from '../harmony-tokens.schema.json';
import runsComparison from '../runs-comparison.schema.json';
import trainingRun from '../training-run.schema.json';

export const SCHEMAS = {
  'finetune-config': finetuneConfig,
  'harmony-tokens': harmonyTokens,
  'training-run': trainingRun,
  'dataset-summary': datasetSummary,
  'runs-comparison': runsComparison,
  'comm-message': commMessage,
} as const;

export type SchemaName = keyof typeof SCHEMAS;

/** One broken rule, described the same way by the Python validator (oss_finetune.schema). */
export interface SchemaIssue {
  /** Where in the instance, as path segments: property names and array indices. */
  segments: (string | number)[];
  /** Dotted form, e.g. `lora.r` or `metrics[3].loss`; `(root)` for the instance itself. */
  path: string;
  /** The JSON Schema keyword that failed, e.g. `minimum`. */
  keyword: string;
  /** The rule in words, e.g. `must be >= 1`. */
  message: string;
}

export class SchemaValidationError extends Error {
  constructor(
    readonly schema: SchemaName,
    readonly issues: SchemaIssue[],
  ) {
    super(`${schema}: ${formatIssue(issues[0])}`);
    this.name = 'SchemaValidationError';
  }
}

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
const compiled = new Map<SchemaName, ValidateFunction>();

function validatorFor(name: SchemaName): ValidateFunction {
  let fn = compiled.get(name);
  if (!fn) {
    fn = ajv.compile(SCHEMAS[name]);
    compiled.set(name, fn);
  }
  return fn;
}

export function formatPath(segments: (string | number)[]): string {
  if (segments.length === 0) return '(root)';
  return segments.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
}

export function formatIssue(issue: SchemaIssue): string {
  return `${issue.path}: ${issue.message}`;
}

// Numbers in messages are written as the schema wrote them; both languages print integers and
// the short decimals our schemas use identically.
const show = (value: unknown): string => JSON.stringify(value);

function describe(keyword: string, params: ErrorObject['params']): string {
  switch (keyword) {
    case 'type':
      return `must be ${([] as string[]).concat(params.type).join(' or ')}`;
    case 'minimum':
      return `must be >= ${params.limit}`;
    case 'maximum':
      return `must be <= ${params.limit}`;
    case 'exclusiveMinimum':
      return `must be > ${params.limit}`;
    case 'exclusiveMaximum':
      return `must be < ${params.limit}`;
    case 'enum':
      return `must be one of: ${(params.allowedValues as unknown[]).map(show).join(', ')}`;
    case 'const':
      return `must be equal to ${show(params.allowedValue)}`;
    case 'required':
      return 'is required';
    case 'additionalProperties':
      return 'is not an allowed field';
    case 'minLength':
      return `must have at least ${params.limit} characters`;
    case 'maxLength':
      return `must have at most ${params.limit} characters`;
    case 'minItems':
      return `must have at least ${params.limit} items`;
    case 'maxItems':
      return `must have at most ${params.limit} items`;
    case 'uniqueItems':
      return 'must not contain duplicate items';
    case 'pattern':
      return `must match pattern ${params.pattern}`;
    default:
      return `is invalid (${keyword})`;
  }
}

function decodePointer(pointer: string): (string | number)[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((raw) => raw.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9][0-9]*)$/.test(s) ? Number(s) : s));
}

function valueAt(instance: unknown, segments: (string | number)[]): unknown {
  let node = instance;
  for (const s of segments) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[s];
  }
  return node;
}

/** The wording both languages use for NaN, Infinity and -Infinity where the schema wants a number. */
export const NON_FINITE_MESSAGE = 'must be a finite number';

function toIssue(error: ErrorObject, instance: unknown): SchemaIssue {
  const segments = decodePointer(error.instancePath);
  // A missing or unknown field is reported at the field itself, not at the object holding it.
  if (error.keyword === 'required') segments.push(error.params.missingProperty);
  if (error.keyword === 'additionalProperties') segments.push(error.params.additionalProperty);
  let message = describe(error.keyword, error.params);
  if (error.keyword === 'type') {
    // ajv refuses NaN and the infinities as numbers, but "must be number" would read as nonsense for
    // a value that prints as a number; say what is wrong with it instead.
    const types = ([] as string[]).concat(error.params.type);
    const value = valueAt(instance, segments);
    if (typeof value === 'number' && !Number.isFinite(value) && (types.includes('number') || types.includes('integer')))
      message = NON_FINITE_MESSAGE;
  }
  return { segments, path: formatPath(segments), keyword: error.keyword, message };
}

function compareSegments(a: (string | number)[], b: (string | number)[]): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/**
 * Every broken rule, in the canonical order both languages share: by path (indices numerically,
 * names by code point, a parent before its children), then keyword, then message. The first one is
 * what users see.
 */
export function schemaIssues(name: SchemaName, instance: unknown): SchemaIssue[] {
  const validate = validatorFor(name);
  if (validate(instance)) return [];
  const issues = (validate.errors ?? []).map((e) => toIssue(e, instance));
  const seen = new Set<string>();
  return issues
    .filter((i) => {
      const key = `${i.path}\u0000${i.keyword}\u0000${i.message}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    })
    .sort(
      (a, b) =>
        compareSegments(a.segments, b.segments) ||
        (a.keyword < b.keyword ? -1 : a.keyword > b.keyword ? 1 : 0) ||
        (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
    );
}

/** Throws SchemaValidationError naming the first broken rule, e.g. `lora.r: must be >= 1`. */
export function validate<T = unknown>(name: SchemaName, instance: unknown): T {
  const issues = schemaIssues(name, instance);
  if (issues.length) throw new SchemaValidationError(name, issues);
  return instance as T;
}
