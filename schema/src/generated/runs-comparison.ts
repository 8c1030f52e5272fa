/* Generated from schema/runs-comparison.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

/**
 * application/vnd.oss-finetune.runs+json: runs of one output folder side by side: their loss curves (and goal curves where the goal was watched) overlaid, and the settings in which their configs differ.
 */
export interface RunsComparisonPayload {
  version: 1;
  /**
   * The folder the runs were read from.
   */
  output_dir: string;
  runs: ComparedRun[];
  /**
   * Only the settings whose values are not the same in every run, by their config path.
   */
  differences: SettingDifference[];
  /**
   * How many settings every run has alike (not listed).
   */
  same_settings?: number;
  /**
   * Folders of the output folder that are not shown, each with the reason.
   */
  left_out?: string[];
}
export interface ComparedRun {
  run_id: string;
  status: string;
  step: number;
  max_steps?: number | null;
  /**
   * ISO 8601 time the run started.
   */
  started_at?: string | null;
  last_loss?: number | null;
  /**
   * The goal watched in this run, in words; null when it was not watched.
   */
  goal_label?: string | null;
  /**
   * The run's logged steps, in order.
   */
  points: CurvePoint[];
}
export interface CurvePoint {
  step: number;
  loss: number;
  /**
   * The goal's rate at this step, where it was watched.
   */
  goal?: number;
}
export interface SettingDifference {
  /**
   * The config path, e.g. training.learning_rate.
   */
  setting: string;
  /**
   * Each run's value as JSON text, in the order of runs; '(not set)' where a run's config lacks the setting.
   */
  values: string[];
}
