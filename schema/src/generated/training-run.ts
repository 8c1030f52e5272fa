/* Generated from schema/training-run.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

/**
 * application/vnd.oss-finetune.training+json: the state of one training run, re-sent in place (display_id) after every logged step.
 */
export interface TrainingRunPayload {
  version: 1;
  run_id: string;
  run_dir?: string | null;
  status: 'pending' | 'running' | 'stopping' | 'stopped' | 'completed' | 'failed';
  step: number;
  max_steps: number;
  /**
   * ISO 8601 time the run started.
   */
  started_at?: string | null;
  /**
   * ISO 8601 time of this update.
   */
  updated_at?: string | null;
  elapsed_seconds?: number | null;
  eta_seconds?: number | null;
  /**
   * A line for the person: why it stopped, what failed, where the adapter is.
   */
  message?: string | null;
  /**
   * Folder of the latest checkpoint.
   */
  checkpoint?: string | null;
  device?: string | null;
  trainable_parameters?: number | null;
  /**
   * The fine-tune config of the run (schema finetune-config).
   */
  config?: {};
  metrics: StepMetrics[];
}
export interface StepMetrics {
  step: number;
  loss: number;
  lr?: number | null;
  grad_norm?: number | null;
  tokens_per_second?: number | null;
  gpu_memory_gib?: number | null;
  epoch?: number | null;
  elapsed_seconds?: number | null;
  goal?: GoalMeasure;
}
/**
 * The goal watched at this step (training.watch_every; absent at the steps it was not): held-out prompts generated with the adapter as it stood after the step, and how many met the goal.
 */
export interface GoalMeasure {
  /**
   * language: reasoned in the requested language; tool_calls: called the right tool with arguments valid against its schema.
   */
  goal: 'language' | 'tool_calls';
  /**
   * The goal in words, for a chart's title.
   */
  label: string;
  rate: number;
  passed: number;
  total: number;
  /**
   * How long the generation took.
   */
  seconds?: number | null;
}
