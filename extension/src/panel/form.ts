/**
 * The fine-tune settings form, built from schema/finetune-config.schema.json at run time: a new
 * field in the schema shows up here without a change to this file, and its rules are checked by the
 * same validator the kernel's wording follows.
 */
import { SCHEMAS, SchemaIssue, schemaIssues } from '@oss-finetune/schema';
import type { FinetuneConfig } from '@oss-finetune/schema';

import { el } from '../common/dom';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** The parts of JSON Schema the config schema uses. */
export interface PropertySchema {
  title?: string;
  description?: string;
  type?: string | string[];
  enum?: Json[];
  default?: Json;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minLength?: number;
  items?: PropertySchema;
  properties?: Record<string, PropertySchema>;
}

export type FieldKind = 'enum' | 'boolean' | 'integer' | 'number' | 'string' | 'list' | 'json';

export interface FieldSpec {
  /** Where the value sits in the config, e.g. ['lora', 'r']. */
  segments: string[];
  /** Dotted, as schemaIssues writes paths: `lora.r`. */
  path: string;
  kind: FieldKind;
  /** Whether null is allowed (shown as an empty input). */
  nullable: boolean;
  schema: PropertySchema;
}

const CONFIG_SCHEMA = SCHEMAS['finetune-config'] as unknown as PropertySchema;

function typesOf(schema: PropertySchema): string[] {
  return schema.type === undefined ? [] : ([] as string[]).concat(schema.type);
}

function kindOf(schema: PropertySchema): FieldKind {
  if (schema.enum) return 'enum';
  const base = typesOf(schema).filter((t) => t !== 'null');
  if (base.length === 1) {
    const [type] = base;
    if (type === 'boolean' || type === 'integer' || type === 'number' || type === 'string') return type;
    if (type === 'array' && typesOf(schema.items ?? {}).join() === 'string') return 'list';
  }
  return 'json';
}

/** Every leaf of the schema in its order, with what the form needs to draw it. */
export function fieldSpecs(schema: PropertySchema = CONFIG_SCHEMA, prefix: string[] = []): FieldSpec[] {
  const specs: FieldSpec[] = [];
  for (const [key, child] of Object.entries(schema.properties ?? {})) {
    const segments = [...prefix, key];
    if (child.properties && typesOf(child).includes('object')) {
      specs.push(...fieldSpecs(child, segments));
    } else {
      specs.push({ segments, path: segments.join('.'), kind: kindOf(child), nullable: typesOf(child).includes('null'), schema: child });
    }
  }
  return specs;
}

/** The config the schema's defaults describe, i.e. what `{}` means. */
export function schemaDefaults(schema: PropertySchema = CONFIG_SCHEMA): FinetuneConfig {
  const config: ConfigTree = {};
  for (const spec of fieldSpecs(schema)) setAt(config, spec.segments, clone(spec.schema.default ?? null));
  return config as FinetuneConfig;
}

function clone<T>(value: T): T {
  return value === undefined ? value : JSON.parse(JSON.stringify(value));
}

/** A config as nested plain objects, read and written one field at a time by its path. */
export type ConfigTree = { [key: string]: unknown };

export function getAt(config: unknown, segments: string[]): unknown {
  let node = config;
  for (const s of segments) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as ConfigTree)[s];
  }
  return node;
}

export function setAt(config: ConfigTree, segments: string[], value: unknown): void {
  let node = config;
  for (const s of segments.slice(0, -1)) {
    if (node[s] === null || typeof node[s] !== 'object') node[s] = {};
    node = node[s] as ConfigTree;
  }
  node[segments[segments.length - 1]] = value;
}

/**
 * The settings people change, shown first and by these names; every other field is folded under
 * "More settings". Each still carries its config path as its input's name.
 */
export const MAIN_FIELDS: [path: string, label: string][] = [
  ['model.name_or_path', 'model'],
  ['data.source', 'data'],
  ['lora.r', 'LoRA rank r'],
  ['lora.alpha', 'LoRA alpha'],
  ['lora.target_modules', 'LoRA targets'],
  ['training.max_steps', 'steps'],
  ['training.learning_rate', 'learning rate'],
];

const SHORT_HELP = 90;

/**
 * The first sentence of a schema description, cut at a word near SHORT_HELP characters: a narrow
 * sidebar shows one or two lines; the whole text is the field's tooltip.
 */
export function shortHelp(text: string): string {
  const sentence = /^[\s\S]*?[.!?](?=\s|$)/.exec(text)?.[0] ?? text;
  if (sentence.length <= SHORT_HELP) return sentence;
  const cut = sentence.lastIndexOf(' ', SHORT_HELP - 1);
  return `${sentence.slice(0, cut > 0 ? cut : SHORT_HELP - 1).replace(/[\s,:;(]+$/, '')}…`;
}

let formCount = 0;

interface Field {
  spec: FieldSpec;
  row: HTMLDivElement;
  input: HTMLInputElement | HTMLSelectElement;
  error: HTMLParagraphElement;
}

export interface ConfigFormOptions {
  /** Called after every edit with the whole config, the field edited and the rules it breaks. */
  onEdit?: (config: FinetuneConfig, edited: FieldSpec, issues: SchemaIssue[]) => void;
}

export class ConfigForm {
  readonly node: HTMLFormElement;
  /** Every field but the main ones, folded until opened (or until one of them breaks a rule). */
  readonly more: HTMLDetailsElement;
  private readonly fields = new Map<string, Field>();
  private readonly formError: HTMLParagraphElement;
  private readonly id = `ossft-form-${++formCount}`;
  private current: ConfigTree;
  private shownIssues: SchemaIssue[] = [];
  /** Messages from the kernel, by field path, until that field is edited again. */
  private readonly kernelErrors = new Map<string, string>();

  constructor(private readonly options: ConfigFormOptions = {}) {
    this.current = schemaDefaults() as ConfigTree;
    this.node = el('form', 'ossft-config-form');
    this.node.noValidate = true;
    this.node.addEventListener('submit', (event) => event.preventDefault());
    const specs = fieldSpecs();
    const main = el('div', 'ossft-main-settings');
    for (const [path, label] of MAIN_FIELDS) {
      const spec = specs.find((s) => s.path === path);
      if (spec) main.append(this.makeField(spec, label));
    }
    this.more = el('details', 'ossft-more');
    this.more.append(el('summary', 'ossft-more-title', 'More settings'));
    const groups = new Map<string, HTMLElement>();
    for (const spec of specs) {
      if (this.fields.has(spec.path)) continue;
      this.groupFor(spec, groups).append(this.makeField(spec));
    }
    this.node.append(main, this.more);
    this.formError = el('p', 'ossft-form-error');
    this.formError.setAttribute('role', 'alert');
    this.node.append(this.formError);
    this.writeAll();
  }

  /** The config as the form shows it, invalid values included. */
  get value(): FinetuneConfig {
    return clone(this.current) as FinetuneConfig;
  }

  /** The rules the shown config breaks, in the validator's order. */
  get issues(): SchemaIssue[] {
    return this.shownIssues;
  }

  get specs(): FieldSpec[] {
    return [...this.fields.values()].map((f) => f.spec);
  }

  input(path: string): HTMLInputElement | HTMLSelectElement | undefined {
    return this.fields.get(path)?.input;
  }

  /**
   * Shows a config from the kernel. Fields listed in `keep` hold edits the kernel has not seen
   * yet, so they keep what the person typed.
   */
  setValue(config: FinetuneConfig, keep: Iterable<string> = []): void {
    const kept = new Set(keep);
    const next = clone(config) as ConfigTree;
    for (const path of kept) {
      const field = this.fields.get(path);
      if (field) setAt(next, field.spec.segments, clone(getAt(this.current, field.spec.segments)));
    }
    // Fields the kernel's config lacks keep the schema's default, so every input has a value.
    const defaults = schemaDefaults() as ConfigTree;
    for (const { spec } of this.fields.values()) {
      if (getAt(next, spec.segments) === undefined) setAt(next, spec.segments, getAt(defaults, spec.segments));
    }
    this.current = next;
    this.writeAll();
  }

  /** Shows a rule the kernel reported, e.g. for `lora.r`; one it cannot place goes under the form. */
  showKernelError(path: string, message: string): void {
    const field = this.fieldFor(path.split('.'));
    this.kernelErrors.set(field ? field.spec.path : '', message);
    this.validate();
  }

  /** Checks the shown config against the schema and puts each message by its field. */
  validate(): SchemaIssue[] {
    const issues = schemaIssues('finetune-config', this.current);
    const byField = new Map<string, string>();
    const unplaced: string[] = [];
    for (const issue of issues) {
      const field = this.fieldFor(issue.segments.map(String));
      if (!field) unplaced.push(`${issue.path}: ${issue.message}`);
      else if (!byField.has(field.spec.path)) byField.set(field.spec.path, issue.message);
    }
    for (const [path, message] of this.kernelErrors) {
      if (!path) unplaced.push(message);
      else if (!byField.has(path)) byField.set(path, message);
    }
    for (const field of this.fields.values()) {
      const message = byField.get(field.spec.path) ?? '';
      field.error.textContent = message;
      field.row.classList.toggle('ossft-invalid', message !== '');
      field.input.setAttribute('aria-invalid', message ? 'true' : 'false');
      // A folded field with a problem would block Start with nothing in sight to fix.
      if (message && this.more.contains(field.row)) this.more.open = true;
    }
    this.formError.textContent = unplaced.join('; ');
    this.shownIssues = issues;
    return issues;
  }

  /** Whether the shown config may go to the kernel. */
  get valid(): boolean {
    return this.shownIssues.length === 0 && this.kernelErrors.size === 0;
  }

  private fieldFor(segments: string[]): Field | undefined {
    // A rule on an item of a list (lora.target_modules[1]) belongs to the list's field.
    for (let n = segments.length; n > 0; n--) {
      const field = this.fields.get(segments.slice(0, n).join('.'));
      if (field) return field;
    }
    return undefined;
  }

  private groupFor(spec: FieldSpec, groups: Map<string, HTMLElement>): HTMLElement {
    let parent: HTMLElement = this.more;
    for (let depth = 1; depth < spec.segments.length; depth++) {
      const key = spec.segments.slice(0, depth).join('.');
      let group = groups.get(key);
      if (!group) {
        const schema = getAt(
          CONFIG_SCHEMA.properties,
          spec.segments.slice(0, depth).flatMap((s, i) => (i ? ['properties', s] : [s])),
        ) as PropertySchema;
        group = el('fieldset', 'ossft-group');
        group.dataset.path = key;
        const legend = el('legend', 'ossft-group-title', spec.segments[depth - 1]);
        group.append(legend);
        if (schema?.description) {
          const help = el('p', 'ossft-group-help', shortHelp(schema.description));
          help.title = schema.description;
          group.append(help);
        }
        parent.append(group);
        groups.set(key, group);
      }
      parent = group;
    }
    return parent;
  }

  private makeField(spec: FieldSpec, title?: string): HTMLDivElement {
    const id = `${this.id}-${spec.segments.join('-')}`;
    const row = el('div', `ossft-field ossft-field-${spec.kind}`);
    row.dataset.path = spec.path;
    const label = el('label', 'ossft-label', title ?? spec.segments[spec.segments.length - 1]);
    label.htmlFor = id;
    const description = spec.schema.description ?? '';
    // The whole description, and the config path under a friendlier name, show on hover.
    label.title = title ? `${spec.path}: ${description}` : description;
    const input = this.makeInput(spec);
    input.id = id;
    input.name = spec.path;
    input.title = description;
    const help = el('p', 'ossft-help', shortHelp(description));
    help.title = description;
    help.id = `${id}-help`;
    const error = el('p', 'ossft-field-error');
    error.id = `${id}-error`;
    error.setAttribute('aria-live', 'polite');
    input.setAttribute('aria-describedby', `${help.id} ${error.id}`);
    if (spec.kind === 'boolean') row.append(input, label, help, error);
    else row.append(label, input, help, error);
    input.addEventListener(spec.kind === 'enum' || spec.kind === 'boolean' ? 'change' : 'input', () => this.onInput(spec));
    this.fields.set(spec.path, { spec, row, input, error });
    return row;
  }

  private makeInput(spec: FieldSpec): HTMLInputElement | HTMLSelectElement {
    const { schema } = spec;
    if (spec.kind === 'enum') {
      const select = el('select', 'ossft-input');
      (schema.enum ?? []).forEach((choice, index) => {
        const option = el('option', '', typeof choice === 'string' ? choice : JSON.stringify(choice));
        option.value = String(index);
        select.append(option);
      });
      return select;
    }
    const input = el('input', 'ossft-input');
    if (spec.kind === 'boolean') {
      input.type = 'checkbox';
    } else if (spec.kind === 'integer' || spec.kind === 'number') {
      input.type = 'number';
      input.step = spec.kind === 'integer' ? '1' : 'any';
      const min = schema.minimum ?? schema.exclusiveMinimum;
      const max = schema.maximum ?? schema.exclusiveMaximum;
      if (min !== undefined) input.min = String(min);
      if (max !== undefined) input.max = String(max);
      if (spec.nullable) input.placeholder = 'none';
    } else {
      input.type = 'text';
      input.spellcheck = false;
      if (spec.kind === 'list') input.placeholder = 'comma-separated';
    }
    return input;
  }

  private read(field: Field): unknown {
    const { spec, input } = field;
    if (spec.kind === 'enum') return (spec.schema.enum ?? [])[Number(input.value)];
    if (spec.kind === 'boolean') return (input as HTMLInputElement).checked;
    const text = input.value;
    if (spec.kind === 'integer' || spec.kind === 'number') {
      // An empty number field is null where null is allowed; elsewhere it stays text, so the
      // validator names the rule it breaks instead of the form guessing a number.
      if (text.trim() === '') return spec.nullable ? null : '';
      const n = Number(text);
      return Number.isFinite(n) ? n : text;
    }
    if (spec.kind === 'list') {
      return text
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    }
    if (spec.kind === 'json') {
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    }
    return text;
  }

  private write(field: Field): void {
    const { spec, input } = field;
    const value = getAt(this.current, spec.segments);
    if (spec.kind === 'enum') {
      const index = (spec.schema.enum ?? []).findIndex((choice) => JSON.stringify(choice) === JSON.stringify(value));
      input.value = String(Math.max(index, 0));
    } else if (spec.kind === 'boolean') {
      (input as HTMLInputElement).checked = value === true;
    } else if (spec.kind === 'list') {
      input.value = Array.isArray(value) ? value.join(', ') : '';
    } else if (spec.kind === 'json') {
      input.value = value === undefined ? '' : JSON.stringify(value);
    } else {
      input.value = value === null || value === undefined ? '' : String(value);
    }
  }

  private writeAll(): void {
    for (const field of this.fields.values()) this.write(field);
    this.validate();
  }

  private onInput(spec: FieldSpec): void {
    const field = this.fields.get(spec.path)!;
    setAt(this.current, spec.segments, this.read(field));
    this.kernelErrors.delete(spec.path);
    this.kernelErrors.delete('');
    const issues = this.validate();
    this.options.onEdit?.(this.value, spec, issues);
  }
}
