/* Generated from schema/dataset-summary.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

/**
 * application/vnd.oss-finetune.dataset+json: what a loaded data set holds once tokenized.
 */
export interface DatasetSummaryPayload {
  version: 1;
  source: string;
  format?: 'multilingual-thinking' | 'messages' | 'sharegpt';
  /**
   * Rows kept for training.
   */
  rows: number;
  rows_read?: number;
  /**
   * Bad rows left out with on_bad_row=skip, each with its reason.
   */
  skipped_rows?: {
    row: number;
    field?: string | null;
    error: string;
  }[];
  /**
   * Rows per reasoning language.
   */
  languages: {
    [k: string]: number;
  };
  token_lengths: {
    /**
     * @minItems 2
     */
    edges: [number, number, ...number[]];
    counts: number[];
    min?: number | null;
    max?: number | null;
    mean?: number | null;
  };
  max_seq_length: number;
  over_limit: {
    rows: number;
    action: 'truncate' | 'drop';
    row_indices?: number[];
  };
  loss_mask?: 'assistant' | 'calls_and_final' | 'final' | 'all';
  tokens_total: number;
  tokens_trained: number;
  /**
   * Rows whose content held special-token text (<|end|> typed out), encoded as ordinary text (data.special_tokens: text).
   */
  rows_with_special_text?: number;
}
