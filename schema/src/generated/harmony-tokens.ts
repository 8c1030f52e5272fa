/* Generated from schema/harmony-tokens.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

export type Role = 'system' | 'developer' | 'user' | 'assistant' | 'tool';
export type Channel = 'analysis' | 'commentary' | 'final' | 'none';
export type Part = 'header' | 'content' | 'special';

/**
 * application/vnd.oss-finetune.harmony+json: one or more conversations rendered in the Harmony format, token by token. Token fields are parallel arrays (one entry per token) so that 300,000 tokens stay compact.
 */
export interface HarmonyTokensPayload {
  version: 1;
  title?: string;
  conversations: HarmonyConversationView[];
}
export interface HarmonyConversationView {
  title?: string;
  loss_mask?: 'assistant' | 'calls_and_final' | 'final' | 'all';
  /**
   * Where the tokens come from. 'data' (the default when absent): a training row, whose trained flags are the loss mask. 'generation': a prompt and a model's answer; nothing in it is a training target, so the view opens with the loss mask off.
   */
  origin?: 'data' | 'generation';
  messages: HarmonyMessageInfo[];
  tokens: HarmonyTokenStream;
  compare?: HarmonyTokenStream1;
}
export interface HarmonyMessageInfo {
  index: number;
  role: Role;
  channel: Channel;
  recipient?: string | null;
  content_type?: string | null;
  author_name?: string | null;
}
/**
 * Parallel per-token arrays; all present arrays have the length of ids.
 */
export interface HarmonyTokenStream {
  /**
   * What this stream is, e.g. 'base model' or 'with adapter'.
   */
  label?: string;
  ids: number[];
  text: string[];
  /**
   * Index into the conversation's messages; -1 for tokens outside any message.
   */
  message: number[];
  role: Role[];
  channel: Channel[];
  part: Part[];
  /**
   * The loss mask: true where the token is a training target.
   */
  trained: boolean[];
  /**
   * Per-token cross-entropy (nats); null where none was computed.
   */
  loss?: (number | null)[];
  /**
   * Per-token log-probability under the model; null where none was computed.
   */
  logprob?: (number | null)[];
}
/**
 * Parallel per-token arrays; all present arrays have the length of ids.
 */
export interface HarmonyTokenStream1 {
  /**
   * What this stream is, e.g. 'base model' or 'with adapter'.
   */
  label?: string;
  ids: number[];
  text: string[];
  /**
   * Index into the conversation's messages; -1 for tokens outside any message.
   */
  message: number[];
  role: Role[];
  channel: Channel[];
  part: Part[];
  /**
   * The loss mask: true where the token is a training target.
   */
  trained: boolean[];
  /**
   * Per-token cross-entropy (nats); null where none was computed.
   */
  loss?: (number | null)[];
  /**
   * Per-token log-probability under the model; null where none was computed.
   */
  logprob?: (number | null)[];
}
