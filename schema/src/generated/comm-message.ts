/* Generated from schema/comm-message.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

/**
 * A message on the 'oss_finetune' comm, in either direction. A widget sends a request {op, request_id, ...arguments}; the kernel answers each request with exactly one reply {op, request_id, ok, result | error}, a run started with start_training sends events {op: 'training_update', request_id of that start_training, ok, payload | error}, and an export sends events {op: 'export_update', request_id of that export, ok, payload | error} while it writes and checks the files, the last of them its result. Every open comm also receives the events of the runs it did not start (a magic's, another widget's), with request_id 'run:<run_id>'. The kernel validates every message it receives against this schema and answers a bad one with ok: false and the first broken rule; op-specific required arguments (set_config: config; read_metrics: run_id; export: format) are checked by the kernel with the same wording.
 */
export interface CommMessage {
  /**
   * The operation of a request, echoed by its reply; 'training_update' marks an event of a running training and 'export_update' one of an export; 'error' is the op of a reply to a message whose op could not be read.
   */
  op:
    | 'get_config'
    | 'set_config'
    | 'start_training'
    | 'stop'
    | 'list_runs'
    | 'read_metrics'
    | 'export'
    | 'training_update'
    | 'export_update'
    | 'error';
  /**
   * Chosen by the widget, unique among its pending requests (never starting with 'run:'); echoed by the reply and by the events of a run it started. Events of a run the widget did not start carry 'run:<run_id>'.
   */
  request_id: string;
  /**
   * set_config: a partial fine-tune config (schema finetune-config) merged into the kernel's, or the whole config with replace: true. start_training: settings merged in before the run starts.
   */
  config?: {};
  /**
   * set_config: replace the whole config (defaults fill what is missing) instead of merging.
   */
  replace?: boolean;
  /**
   * start_training: a checkpoint folder, a run folder or 'latest'.
   */
  resume_from?: string | null;
  /**
   * read_metrics: the run, a folder name under training.output_dir.
   */
  run_id?: string;
  /**
   * read_metrics: only the steps after this one (for polling).
   */
  since_step?: number;
  /**
   * export: the serving format to write and check (docs/export.md): peft, merged, mxfp4, vllm or gguf.
   */
  format?: 'peft' | 'merged' | 'mxfp4' | 'vllm' | 'gguf';
  /**
   * export: where to write it, relative to the kernel's working folder; null or left out: the format's name in the kernel's last run folder, as `%oss_finetune save --format` does.
   */
  folder?: string | null;
  /**
   * Replies and events: whether the request succeeded.
   */
  ok?: boolean;
  /**
   * A successful reply's answer: get_config / set_config {config, defaults}; start_training {started}; stop {run_id}; list_runs {runs}; read_metrics {run_id, metrics}; export {started, folder}.
   */
  result?: {};
  /**
   * training_update events: the run as an application/vnd.oss-finetune.training+json payload (schema training-run). export_update events: a step of the export {stage, message}, or, with stage 'done', its result.
   */
  payload?: {};
  error?: CommError;
}
/**
 * A failed reply or event: where (a path in the message or the config, e.g. config.lora.r) and the rule in words.
 */
export interface CommError {
  path: string;
  message: string;
}
