/* Generated from schema/comm-operations.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

import type {CommError} from './comm-message';
import type {FinetuneConfig} from './finetune-config';
import type {StepMetrics, TrainingRunPayload} from './training-run';

/**
 * The 'oss_finetune' comm one operation at a time: the arguments each request op takes, the result its reply carries, and the training_update and export_update events, each a union keyed by op. The kernel validates what it receives against the envelope, comm-message.schema.json, whose rules (and error wording) the fields here reuse; this schema is the narrower description of each op that the TypeScript and Python types are generated from. Every message valid here is valid against the envelope.
 */
export type CommOperation = CommRequest | CommReply | TrainingUpdateEvent | ExportUpdateEvent;
/**
 * A request from a widget {op, request_id, ...arguments}.
 */
export type CommRequest =
  | GetConfigRequest
  | SetConfigRequest
  | StartTrainingRequest
  | StopRequest
  | ListRunsRequest
  | ReadMetricsRequest
  | ExportRequest;
/**
 * The kernel's one answer to a request: ok with the op's result, or ok: false with the first broken rule.
 */
export type CommReply =
  | GetConfigReply
  | SetConfigReply
  | StartTrainingReply
  | StopReply
  | ListRunsReply
  | ReadMetricsReply
  | ExportReply
  | ErrorReply;
/**
 * An event of a training run: its state after a logged step or a change of status, or the error that ended it. request_id is that of the start_training that began the run, or 'run:<run_id>' for a run the receiving widget did not start.
 */
export type TrainingUpdateEvent = TrainingProgressEvent | TrainingErrorEvent;
/**
 * An event of an export, with the request_id of the export that began it: a step done or begun, then either its result (stage 'done') or the error that ended it. Exactly one of these two ends every export the kernel started.
 */
export type ExportUpdateEvent = ExportProgressEvent | ExportErrorEvent;

/**
 * get_config: the kernel's current fine-tune config. No arguments.
 */
export interface GetConfigRequest {
  op: 'get_config';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
}
/**
 * set_config: a partial config merged into the kernel's (sections merged, lists and scalars replaced), or the whole config with replace: true. Validated against finetune-config before anything changes; its errors are reported under config., e.g. config.lora.r.
 */
export interface SetConfigRequest {
  op: 'set_config';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  config: FinetuneConfig;
  /**
   * set_config: replace the whole config (defaults fill what is missing) instead of merging.
   */
  replace?: boolean;
}
/**
 * start_training: trains in a background thread of the kernel, which keeps answering; the run's events come as training_update with this request's request_id.
 */
export interface StartTrainingRequest {
  op: 'start_training';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  /**
   * Settings merged into the kernel's config (as set_config) before the run starts.
   */
  config?: FinetuneConfig;
  /**
   * start_training: a checkpoint folder, a run folder or 'latest'.
   */
  resume_from?: string | null;
}
/**
 * stop: asks the kernel's current run to stop after its current step and write a checkpoint. The kernel trains one run at a time, so none is named. No arguments.
 */
export interface StopRequest {
  op: 'stop';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
}
/**
 * list_runs: every run folder under training.output_dir. No arguments.
 */
export interface ListRunsRequest {
  op: 'list_runs';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
}
/**
 * read_metrics: the logged steps of one run, from its metrics.jsonl.
 */
export interface ReadMetricsRequest {
  op: 'read_metrics';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  /**
   * read_metrics: the run, a folder name under training.output_dir.
   */
  run_id: string;
  /**
   * read_metrics: only the steps after this one (for polling).
   */
  since_step?: number;
}
/**
 * export: writes the fine-tune in a serving format, reads it back with the program that serves it and compares it with the model in the kernel (docs/export.md), as `%oss_finetune save --format` does. It runs in a background thread of the kernel, which keeps answering; its steps and its result come as export_update events with this request's request_id. Refused while a run trains or another export is being written.
 */
export interface ExportRequest {
  op: 'export';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  /**
   * export: the serving format to write and check (docs/export.md): peft, merged, mxfp4, vllm or gguf.
   */
  format: 'peft' | 'merged' | 'mxfp4' | 'vllm' | 'gguf';
  /**
   * export: where to write it, relative to the kernel's working folder; null or left out: the format's name in the kernel's last run folder, as `%oss_finetune save --format` does.
   */
  folder?: string | null;
}
export interface GetConfigReply {
  op: 'get_config';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: GetConfigResult;
}
/**
 * The kernel's config, complete (every default filled in), and the defaults alone.
 */
export interface GetConfigResult {
  config: FinetuneConfig;
  defaults: FinetuneConfig;
}
export interface SetConfigReply {
  op: 'set_config';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: SetConfigResult;
}
/**
 * The kernel's config after the change, complete, and the defaults alone.
 */
export interface SetConfigResult {
  config: FinetuneConfig;
  defaults: FinetuneConfig;
}
export interface StartTrainingReply {
  op: 'start_training';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: StartTrainingResult;
}
/**
 * The run was started; a refusal (another run trains, no checkpoint to resume) is an error reply instead.
 */
export interface StartTrainingResult {
  started: true;
}
export interface StopReply {
  op: 'stop';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: StopResult;
}
export interface StopResult {
  /**
   * The run asked to stop; null when none was training.
   */
  run_id: string | null;
}
export interface ListRunsReply {
  op: 'list_runs';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: ListRunsResult;
}
export interface ListRunsResult {
  /**
   * Oldest first.
   */
  runs: RunInfo[];
}
/**
 * One run folder as the kernel describes it; the live run's status, step and message come from its trainer.
 */
export interface RunInfo {
  run_id: string;
  /**
   * The run's folder.
   */
  run_dir: string;
  /**
   * How the run stands or ended; a run whose kernel went away while it trained reads stopped (at its last checkpoint) or failed.
   */
  status: 'pending' | 'running' | 'stopping' | 'stopped' | 'completed' | 'failed';
  /**
   * The last step done (of a run that ended early, the step of its last checkpoint).
   */
  step: number;
  max_steps: number | null;
  /**
   * The newest complete checkpoint folder.
   */
  checkpoint: string | null;
  /**
   * The loss of the last logged step.
   */
  last_loss: number | null;
  started_at: string | null;
  updated_at: string | null;
  message: string | null;
  /**
   * The saved adapter folder, when the run wrote one.
   */
  adapter: string | null;
}
export interface ReadMetricsReply {
  op: 'read_metrics';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: ReadMetricsResult;
}
export interface ReadMetricsResult {
  run_id: string;
  /**
   * The steps after since_step, in the order they were logged.
   */
  metrics: StepMetrics[];
}
export interface ExportReply {
  op: 'export';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  result: ExportResult;
}
/**
 * The export was started; a refusal (a run trains, no adapter for peft or vllm, a folder holding other files) is an error reply instead.
 */
export interface ExportResult {
  started: true;
  /**
   * The folder it writes, as the kernel resolved it (absolute).
   */
  folder: string;
}
/**
 * A refused request, of any op: the first broken rule. A message whose op could not be read is answered with op 'error' (and request_id 'unknown' when that could not be read either).
 */
export interface ErrorReply {
  op: 'get_config' | 'set_config' | 'start_training' | 'stop' | 'list_runs' | 'read_metrics' | 'export' | 'error';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: false;
  error: CommError;
}
export interface TrainingProgressEvent {
  op: 'training_update';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  payload: TrainingRunPayload;
}
/**
 * The run failed in its thread: where and why.
 */
export interface TrainingErrorEvent {
  op: 'training_update';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: false;
  error: CommError;
}
export interface ExportProgressEvent {
  op: 'export_update';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: true;
  payload: ExportStep | ExportDone;
}
/**
 * A step of an export in one line: a step done on the way (preparing, e.g. the model loaded), the files being written (writing) or read back and compared (checking).
 */
export interface ExportStep {
  stage: 'preparing' | 'writing' | 'checking';
  message: string;
}
/**
 * A written and checked export.
 */
export interface ExportDone {
  stage: 'done';
  /**
   * The line `%oss_finetune save --format` prints: what was written, its size, the time and the check.
   */
  message: string;
  /**
   * export: the serving format to write and check (docs/export.md): peft, merged, mxfp4, vllm or gguf.
   */
  format: 'peft' | 'merged' | 'mxfp4' | 'vllm' | 'gguf';
  /**
   * The folder written (absolute).
   */
  folder: string;
  /**
   * The size of the files written.
   */
  bytes: number;
  /**
   * The same in words, e.g. 117.5 KiB.
   */
  size: string;
  /**
   * The time it took to write the files, the check not included.
   */
  seconds: number;
  /**
   * What the check compared and found, e.g. 'verified with peft: 36 greedy tokens of 3 probes equal, identical logits'.
   */
  verification: string;
  /**
   * Whether the export's consumer answered the probes; false where only the files were read back (a GGUF without llama-cpp-python).
   */
  logits_compared: boolean;
  /**
   * The command that serves (or, for peft, the line that loads) the written folder.
   */
  serve: string;
}
/**
 * The export failed in its thread: where and why. An export that does not answer like the live model fails here, naming the probe and the first differing token; its files are left to inspect.
 */
export interface ExportErrorEvent {
  op: 'export_update';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  ok: false;
  error: CommError;
}
