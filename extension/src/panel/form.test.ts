import { SCHEMAS } from '@oss-finetune/schema';

import { ConfigForm, MAIN_FIELDS, fieldSpecs, schemaDefaults, shortHelp } from './form';

function leaves(schema: any, prefix = ''): [string, any][] {
  return Object.entries(schema.properties).flatMap(([key, child]: [string, any]) =>
    child.properties ? leaves(child, `${prefix}${key}.`) : [[`${prefix}${key}`, child]],
  );
}

const schemaLeaves = leaves(SCHEMAS['finetune-config']);

function edit(form: ConfigForm, path: string, value: string | boolean): void {
  const input = form.input(path)!;
  if (typeof value === 'boolean') {
    (input as HTMLInputElement).checked = value;
    input.dispatchEvent(new Event('change'));
  } else if (input instanceof HTMLSelectElement) {
    input.value = String([...input.options].findIndex((o) => o.textContent === value));
    input.dispatchEvent(new Event('change'));
  } else {
    input.value = value;
    input.dispatchEvent(new Event('input'));
  }
}

const errorOf = (form: ConfigForm, path: string) =>
  form.node.querySelector(`.ossft-field[data-path="${path}"] .ossft-field-error`)!.textContent;

describe('ConfigForm', () => {
  it('has one field per schema property, with short help, the whole description on hover, and its default shown', () => {
    const form = new ConfigForm();
    const rows = [...form.node.querySelectorAll<HTMLElement>('.ossft-field')];
    expect(rows.map((r) => r.dataset.path).sort()).toEqual(schemaLeaves.map(([path]) => path).sort());
    for (const [path, schema] of schemaLeaves) {
      const row = form.node.querySelector(`.ossft-field[data-path="${path}"]`)!;
      const help = row.querySelector<HTMLElement>('.ossft-help')!;
      expect(help.textContent).toBe(shortHelp(schema.description));
      expect(help.textContent!.length).toBeLessThanOrEqual(90);
      expect(help.title).toBe(schema.description);
      const input = row.querySelector<HTMLInputElement | HTMLSelectElement>('input, select')!;
      expect(row.querySelector('label')!.htmlFor).toBe(input.id);
      if (schema.enum) {
        expect(input.tagName).toBe('SELECT');
        expect([...(input as HTMLSelectElement).options].map((o) => o.textContent)).toEqual(schema.enum);
        expect((input as HTMLSelectElement).selectedOptions[0].textContent).toBe(schema.default);
      } else if (schema.type === 'boolean') {
        expect((input as HTMLInputElement).type).toBe('checkbox');
        expect((input as HTMLInputElement).checked).toBe(schema.default);
      } else if (schema.type === 'array') {
        expect(input.value).toBe(schema.default.join(', '));
      } else {
        expect(input.value).toBe(schema.default === null ? '' : String(schema.default));
      }
    }
    expect(form.value).toEqual(schemaDefaults());
    expect(form.issues).toEqual([]);
  });

  it('puts the settings people change first and folds the rest, in schema order, under More settings', () => {
    const form = new ConfigForm();
    const main = [...form.node.querySelectorAll<HTMLElement>('.ossft-main-settings .ossft-field')];
    expect(main.map((r) => r.dataset.path)).toEqual(MAIN_FIELDS.map(([path]) => path));
    expect(main.map((r) => r.querySelector('label')!.textContent)).toEqual(MAIN_FIELDS.map(([, label]) => label));
    expect(form.more.open).toBe(false);
    expect(form.more.querySelector('summary')!.textContent).toBe('More settings');
    const folded = [...form.more.querySelectorAll<HTMLElement>('.ossft-field')].map((r) => r.dataset.path);
    const mainPaths = MAIN_FIELDS.map(([path]) => path);
    expect(folded).toEqual(schemaLeaves.map(([path]) => path).filter((path) => !mainPaths.includes(path)));
  });

  it('opens More settings when a folded field breaks a rule', () => {
    const form = new ConfigForm();
    edit(form, 'training.batch_size', '0');
    expect(form.more.open).toBe(true);
  });

  it('shortens help to its first sentence and about one line', () => {
    expect(shortHelp('Rank of the low-rank update.')).toBe('Rank of the low-rank update.');
    expect(shortHelp('Dropout first. Then more words.')).toBe('Dropout first.');
    const long = shortHelp(`A hub id (openai/gpt-oss-20b), a local folder, or an embedded model that needs no hub: ${'x '.repeat(60)}.`);
    expect(long.length).toBeLessThanOrEqual(90);
    expect(long.endsWith('…')).toBe(true);
  });

  it('gives number fields the schema limits and groups fields by section', () => {
    const form = new ConfigForm();
    const r = form.input('lora.r') as HTMLInputElement;
    expect([r.type, r.min, r.max, r.step]).toEqual(['number', '1', '1024', '1']);
    expect((form.input('training.learning_rate') as HTMLInputElement).step).toBe('any');
    const legends = [...form.node.querySelectorAll('legend')].map((l) => l.textContent);
    expect(legends).toEqual(Object.keys(SCHEMAS['finetune-config'].properties));
    expect(fieldSpecs().find((s) => s.path === 'data.limit')!.nullable).toBe(true);
  });

  it('shows the rule broken next to the field, and clears it once fixed', () => {
    const edits: unknown[] = [];
    const form = new ConfigForm({ onEdit: (config, field, issues) => edits.push([field.path, issues.length]) });
    edit(form, 'lora.r', '0');
    expect(errorOf(form, 'lora.r')).toBe('must be >= 1');
    expect(form.input('lora.r')!.getAttribute('aria-invalid')).toBe('true');
    expect(form.valid).toBe(false);
    expect(errorOf(form, 'lora.alpha')).toBe('');
    edit(form, 'lora.r', '16');
    expect(errorOf(form, 'lora.r')).toBe('');
    expect(form.value.lora!.r).toBe(16);
    expect(form.valid).toBe(true);
    expect(edits).toEqual([
      ['lora.r', 1],
      ['lora.r', 0],
    ]);
  });

  it('reads each kind of input into the config the schema describes', () => {
    const form = new ConfigForm();
    edit(form, 'data.limit', '');
    edit(form, 'data.reasoning_effort', 'high');
    edit(form, 'lora.target_experts', true);
    edit(form, 'lora.target_modules', 'q_proj, v_proj,,');
    edit(form, 'training.learning_rate', '0.0001');
    edit(form, 'model.name_or_path', 'openai/gpt-oss-20b');
    const v = form.value;
    expect(v.data!.limit).toBeNull();
    expect(v.data!.reasoning_effort).toBe('high');
    expect(v.lora!.target_experts).toBe(true);
    expect(v.lora!.target_modules).toEqual(['q_proj', 'v_proj']);
    expect(v.training!.learning_rate).toBe(0.0001);
    expect(v.model!.name_or_path).toBe('openai/gpt-oss-20b');
    expect(form.issues).toEqual([]);
  });

  it('names a rule broken by a list item or an empty required number', () => {
    const form = new ConfigForm();
    edit(form, 'lora.target_modules', 'q_proj, q_proj');
    expect(errorOf(form, 'lora.target_modules')).toBe('must not contain duplicate items');
    edit(form, 'training.batch_size', '');
    expect(errorOf(form, 'training.batch_size')).toBe('must be integer');
    edit(form, 'model.name_or_path', '');
    expect(errorOf(form, 'model.name_or_path')).toBe('must have at least 1 characters');
  });

  it('shows a config from the kernel but keeps edits the kernel has not seen', () => {
    const form = new ConfigForm();
    edit(form, 'lora.alpha', '32');
    form.setValue({ lora: { r: 4, alpha: 16 }, training: { max_steps: 10 } }, ['lora.alpha']);
    expect((form.input('lora.r') as HTMLInputElement).value).toBe('4');
    expect((form.input('lora.alpha') as HTMLInputElement).value).toBe('32');
    expect((form.input('training.max_steps') as HTMLInputElement).value).toBe('10');
    // What the kernel's config leaves out shows the schema default.
    expect((form.input('data.max_seq_length') as HTMLInputElement).value).toBe('1024');
  });

  it('puts a rule the kernel reports by its field', () => {
    const form = new ConfigForm();
    form.showKernelError('model.name_or_path', 'no such model folder');
    expect(errorOf(form, 'model.name_or_path')).toBe('no such model folder');
    expect(form.valid).toBe(false);
    edit(form, 'model.name_or_path', 'embedded:tiny');
    expect(errorOf(form, 'model.name_or_path')).toBe('');
    expect(form.valid).toBe(true);
  });
});
