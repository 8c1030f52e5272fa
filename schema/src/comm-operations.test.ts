// comm-operations.schema.json describes each op of the comm on its own; the kernel validates against
// the envelope, comm-message.schema.json. The two must agree: every message the per-op schema accepts
// is a valid envelope, and the envelope's own examples read the same way per op.
import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import Ajv2020 from 'ajv/dist/2020';

import commOperations from '../comm-operations.schema.json';
import { SCHEMAS, schemaIssues } from './validate';

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true });
for (const schema of Object.values(SCHEMAS)) ajv.addSchema(schema);
const isOperation = ajv.compile(commOperations);
const isOp = (name: string) => ajv.compile({ $ref: `${commOperations.$id}#/$defs/${name}` });

const envelopeFixtures = join(__dirname, '..', '..', 'tests', 'contract', 'fixtures', 'comm-message');
const fixtures = (kind: 'valid' | 'invalid') =>
  readdirSync(join(envelopeFixtures, kind))
    .filter((f) => f.endsWith('.json'))
    .map((f) => ({ file: `${kind}/${f}`, message: JSON.parse(readFileSync(join(envelopeFixtures, kind, f), 'utf8')) }));

const config = { model: { name_or_path: 'embedded:tiny' }, lora: { r: 8 }, training: { max_steps: 30 } };
const run = {
  run_id: '20260101-120000-ab12',
  run_dir: 'runs/20260101-120000-ab12',
  status: 'completed',
  step: 30,
  max_steps: 30,
  checkpoint: 'runs/20260101-120000-ab12/checkpoints/step-30',
  last_loss: 1.07,
  started_at: '2026-01-01T12:00:00.000Z',
  updated_at: '2026-01-01T12:10:00.000Z',
  message: null,
  adapter: null,
};
const payload = { version: 1, run_id: run.run_id, status: 'running', step: 1, max_steps: 30, metrics: [{ step: 1, loss: 1.62 }] };
const exported = {
  stage: 'done',
  message: 'peft: wrote /home/me/runs/a/peft (36.4 KiB, 0.1 s); verified with peft: 36 greedy tokens of 3 probes equal, identical logits',
  format: 'peft',
  folder: '/home/me/runs/a/peft',
  bytes: 37273,
  size: '36.4 KiB',
  seconds: 0.081,
  verification: 'verified with peft: 36 greedy tokens of 3 probes equal, identical logits',
  logits_compared: true,
  serve: "PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained('embedded:tiny'), '/home/me/runs/a/peft')",
};

/** One message of every kind the kernel and the widgets exchange, as comm.py builds them. */
const messages = [
  { op: 'get_config', request_id: 'r1' },
  { op: 'set_config', request_id: 'r2', config: { lora: { r: 16 } } },
  { op: 'set_config', request_id: 'r3', config: {}, replace: true },
  { op: 'start_training', request_id: 'r4' },
  { op: 'start_training', request_id: 'r4', config, resume_from: 'latest' },
  { op: 'stop', request_id: 'r5' },
  { op: 'list_runs', request_id: 'r6' },
  { op: 'read_metrics', request_id: 'r7', run_id: run.run_id, since_step: 3 },
  { op: 'export', request_id: 'r8', format: 'peft' },
  { op: 'export', request_id: 'r8', format: 'gguf', folder: 'out/gguf' },
  { op: 'get_config', request_id: 'r1', ok: true, result: { config, defaults: {} } },
  { op: 'set_config', request_id: 'r2', ok: true, result: { config, defaults: config } },
  { op: 'start_training', request_id: 'r4', ok: true, result: { started: true } },
  { op: 'stop', request_id: 'r5', ok: true, result: { run_id: null } },
  { op: 'list_runs', request_id: 'r6', ok: true, result: { runs: [run] } },
  {
    op: 'read_metrics',
    request_id: 'r7',
    ok: true,
    result: { run_id: run.run_id, metrics: [{ step: 4, loss: 1.5, lr: 2e-4, grad_norm: null }] },
  },
  { op: 'export', request_id: 'r8', ok: true, result: { started: true, folder: '/home/me/runs/a/peft' } },
  { op: 'set_config', request_id: 'r2', ok: false, error: { path: 'config.lora.r', message: 'must be >= 1' } },
  { op: 'export', request_id: 'r8', ok: false, error: { path: 'format', message: 'peft exports an adapter and there is none' } },
  { op: 'error', request_id: 'unknown', ok: false, error: { path: '(root)', message: 'must be object' } },
  { op: 'training_update', request_id: 'r4', ok: true, payload },
  { op: 'training_update', request_id: `run:${run.run_id}`, ok: true, payload },
  { op: 'export_update', request_id: 'r8', ok: true, payload: { stage: 'writing', message: 'writing peft to /home/me/runs/a/peft' } },
  { op: 'export_update', request_id: 'r8', ok: true, payload: exported },
  { op: 'export_update', request_id: 'r8', ok: false, error: { path: 'format', message: 'the export picks another token' } },
  { op: 'training_update', request_id: 'r4', ok: false, error: { path: '(root)', message: 'CUDA out of memory' } },
];

describe('comm-operations.schema.json', () => {
  it('accepts every kind of message, each as exactly one op', () => {
    for (const message of messages) {
      expect([message, isOperation(message), isOperation.errors]).toEqual([message, true, null]);
    }
  });

  it('accepts nothing the envelope the kernel validates against refuses', () => {
    for (const message of messages) expect([message, schemaIssues('comm-message', message)]).toEqual([message, []]);
  });

  it('reads every example of the envelope the same way', () => {
    for (const { file, message } of fixtures('valid')) expect([file, isOperation(message)]).toEqual([file, true]);
    for (const { file, message } of fixtures('invalid')) expect([file, isOperation(message)]).toEqual([file, false]);
  });

  it('holds each op to its own arguments and result', () => {
    // What the envelope lets through because it describes every op at once.
    expect(isOperation({ op: 'set_config', request_id: 'r2' })).toBe(false);
    expect(isOperation({ op: 'read_metrics', request_id: 'r7' })).toBe(false);
    expect(isOperation({ op: 'get_config', request_id: 'r1', run_id: 'a' })).toBe(false);
    expect(isOperation({ op: 'set_config', request_id: 'r2', config: { lora: { r: 0 } } })).toBe(false);
    expect(isOperation({ op: 'stop', request_id: 'r5', ok: true, result: { runs: [] } })).toBe(false);
    expect(isOperation({ op: 'list_runs', request_id: 'r6', ok: true, result: { runs: [{ run_id: 'a' }] } })).toBe(false);
    expect(isOperation({ op: 'training_update', request_id: 'r4', ok: true, payload: { run_id: 'a' } })).toBe(false);
    expect(isOperation({ op: 'training_update', request_id: 'r4', ok: true, result: { started: true } })).toBe(false);
    expect(isOperation({ op: 'export', request_id: 'r8' })).toBe(false);
    expect(isOperation({ op: 'export', request_id: 'r8', format: 'onnx' })).toBe(false);
    expect(isOperation({ op: 'export_update', request_id: 'r8', ok: true, payload: { ...exported, serve: undefined } })).toBe(false);
    expect(isOperation({ op: 'export_update', request_id: 'r8', ok: true, payload: { stage: 'done', message: 'x' } })).toBe(false);
  });

  it('names a request, a result and a reply for every op the kernel answers', () => {
    const events = ['training_update', 'export_update', 'error'];
    const ops = SCHEMAS['comm-message'].properties.op.enum.filter((op) => !events.includes(op));
    const pascal = (op: string) => op.replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
    for (const op of ops) {
      for (const part of ['Request', 'Result', 'Reply']) expect(Object.keys(commOperations.$defs)).toContain(`${pascal(op)}${part}`);
      expect(isOp(`${pascal(op)}Request`)(messages.find((m) => m.op === op && !('ok' in m)))).toBe(true);
    }
    expect(isOp('TrainingUpdateEvent')(messages[messages.length - 1])).toBe(true);
    expect(isOp('ExportUpdateEvent')(messages.find((m) => m.op === 'export_update'))).toBe(true);
  });
});
