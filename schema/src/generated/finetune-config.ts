/* Generated from schema/finetune-config.schema.json by schema/scripts/gen-types.mjs. Do not edit: edit the schema and run npm run gen:types. */

/**
 * Everything a fine-tune run needs: which model, which data, the LoRA adapter and the training loop. Every field has a default, so {} is a complete config.
 */
export interface FinetuneConfig {
  model?: ModelConfig;
  data?: DataConfig;
  lora?: LoraConfig;
  training?: TrainingConfig;
}
/**
 * The base model to load.
 */
export interface ModelConfig {
  /**
   * A hub id (openai/gpt-oss-20b), a local folder, or an embedded model that needs no hub: 'embedded:tiny-base' (the default: the tiny GPT-OSS trained once on English reasoning, built on first use and cached), 'embedded:tiny' (the same architecture with seeded random weights, for tests and benches), 'embedded:gpt-oss-20b-random' (the real 20b architecture with random bf16 weights, on a GPU) or 'embedded:gpt-oss-120b-random' (the same for 120b; with mxfp4_experts only).
   */
  name_or_path?: string;
  /**
   * Weight dtype. 'auto' picks bfloat16 on a GPU that supports it, float32 on a CPU.
   */
  dtype?: 'auto' | 'bfloat16' | 'float16' | 'float32';
  /**
   * Where the model runs. 'auto' takes the first CUDA GPU when there is one.
   */
  device?: 'auto' | 'cpu' | 'cuda';
  /**
   * Quantize the base weights to 4 bits with bitsandbytes (needs CUDA).
   */
  load_in_4bit?: boolean;
  /**
   * Keep the mixture-of-experts weights in 4-bit MXFP4 (as OpenAI released them), dequantized one layer at a time while it computes: gpt-oss-20b takes about 13 GiB instead of 39. The experts take no LoRA then (target_experts must be false). Works on the CPU and GPU, with or without bitsandbytes.
   */
  mxfp4_experts?: boolean;
  /**
   * Attention kernel passed to transformers. GPT-OSS needs one that supports attention sinks.
   */
  attn_implementation?: 'eager' | 'flex_attention' | 'kernels-community/vllm-flash-attn3';
}
/**
 * The conversations to train on and how they become tokens.
 */
export interface DataConfig {
  /**
   * A hub data set id, a local .jsonl/.json/.parquet file, or 'embedded:multilingual' for the sample that ships with the package.
   */
  source?: string;
  /**
   * Which split of a hub data set to read.
   */
  split?: string;
  /**
   * Row format. 'auto' detects Multilingual-Thinking rows, messages lists and ShareGPT.
   */
  format?: 'auto' | 'multilingual-thinking' | 'messages' | 'sharegpt';
  /**
   * The longest tokenized conversation kept, in tokens.
   */
  max_seq_length?: number;
  /**
   * What happens to a row longer than max_seq_length. Either way it is counted in the summary.
   */
  overflow?: 'truncate' | 'drop';
  /**
   * Which tokens the loss is computed on: 'assistant' (everything the assistant writes: reasoning, tool calls and answers), 'calls_and_final' (the same without the analysis-channel reasoning), 'final' (answers only) or 'all'.
   */
  loss_mask?: 'assistant' | 'calls_and_final' | 'final' | 'all';
  /**
   * Written into the system message of rows that do not set their own.
   */
  reasoning_effort?: 'low' | 'medium' | 'high';
  /**
   * 'error' stops at the first malformed row, naming it; 'skip' leaves it out and counts it.
   */
  on_bad_row?: 'error' | 'skip';
  /**
   * Read at most this many rows; null reads them all.
   */
  limit?: number | null;
  /**
   * Function tools for the rows that carry none of their own: a .json file holding the list, as Hugging Face chat data sets write it ([{"type": "function", "function": {"name", "description", "parameters"}}]), or that list as JSON text. They become the developer message's # Tools section. null: only the rows' own tools.
   */
  tools?: string | null;
  /**
   * Special-token text inside a message's content (<|end|>, <|endoftext|> in a pasted log): 'text' encodes it as ordinary characters, as openai-harmony does, and the summary counts those rows; 'error' makes such a row a bad row.
   */
  special_tokens?: 'text' | 'error';
}
/**
 * The LoRA adapter trained on top of the frozen base model.
 */
export interface LoraConfig {
  /**
   * Rank of the low-rank update.
   */
  r?: number;
  /**
   * Scale of the update is alpha / r.
   */
  alpha?: number;
  /**
   * Dropout on the adapter's input.
   */
  dropout?: number;
  /**
   * Linear layers that get an adapter.
   *
   * @minItems 1
   */
  target_modules?: [string, ...string[]];
  /**
   * Also put adapters on the mixture-of-experts weights (peft target_parameters).
   */
  target_experts?: boolean;
}
/**
 * The optimisation loop.
 */
export interface TrainingConfig {
  /**
   * Optimizer steps to run; null trains for 'epochs' instead.
   */
  max_steps?: number | null;
  /**
   * Passes over the data when max_steps is null.
   */
  epochs?: number;
  /**
   * Conversations per micro-batch on one device.
   */
  batch_size?: number;
  /**
   * Micro-batches summed into one optimizer step.
   */
  gradient_accumulation_steps?: number;
  /**
   * Peak learning rate.
   */
  learning_rate?: number;
  /**
   * How the learning rate moves after warm-up.
   */
  lr_scheduler?: 'linear' | 'cosine' | 'constant';
  /**
   * Steps of linear warm-up from 0 to the peak learning rate.
   */
  warmup_steps?: number;
  /**
   * Decoupled weight decay of AdamW.
   */
  weight_decay?: number;
  /**
   * 'auto' uses adamw_8bit where bitsandbytes works, else adamw_torch.
   */
  optimizer?: 'auto' | 'adamw_torch' | 'adamw_8bit';
  /**
   * Recompute activations in the backward pass to save memory.
   */
  gradient_checkpointing?: boolean;
  /**
   * How a training step runs. 'fast' packs the step's conversations without padding and uses flash attention with sinks, grouped expert products and a chunked output loss (same model, same adapter); 'transformers' calls the Hugging Face model on padded micro-batches; 'auto' is 'fast' for GPT-OSS models (on a GPU or the CPU), else 'transformers'.
   */
  engine?: 'auto' | 'fast' | 'transformers';
  /**
   * How many GPUs of this machine train together, in data parallel: the notebook launches torchrun (python -m oss_finetune train with this config, one rank per GPU, each with a replica of the model and a share of every optimizer step: the same steps and the same adapter, in less time), follows it in the dashboard, and loads the adapter it trained back into the notebook's model. Each GPU must hold the whole model and its share's activations. On a model on the CPU the ranks are CPU processes.
   */
  gpus?: number;
  /**
   * How the ranks that torchrun starts (python -m oss_finetune train) hold the model. 'replicate': each GPU holds the whole model and the ranks sum the adapter's gradients once per step; 'fsdp': the frozen base and the adapter are sharded over the ranks with FSDP2 (each GPU holds its share plus the layer being computed), for a model one GPU cannot hold; 'auto': fsdp when the memory planner says a replica does not fit one GPU, else replicate. One process always replicates.
   */
  sharding?: 'auto' | 'replicate' | 'fsdp';
  /**
   * With the fast engine: the most tokens in one packed micro-batch (the step's conversations are laid end to end up to this many; the gradient is the same, only memory and speed change). null picks 16,384 with gradient checkpointing (6,144 when the experts carry LoRA) and 4,096 without.
   */
  pack_tokens?: number | null;
  /**
   * Report metrics every this many optimizer steps.
   */
  logging_steps?: number;
  /**
   * Write a checkpoint every this many optimizer steps.
   */
  save_steps?: number;
  /**
   * Experiment trackers that also receive every logged step, as in transformers' report_to: 'tensorboard' (event files in the run folder), 'wandb', 'mlflow', 'trackio'. Each needs its package installed; rank 0 alone reports. Empty: none.
   */
  report_to?: ('tensorboard' | 'wandb' | 'mlflow' | 'trackio')[];
  /**
   * Seeds data order, adapter initialisation and dropout.
   */
  seed?: number;
  /**
   * Folder that holds one sub-folder per run.
   */
  output_dir?: string;
  /**
   * Watch the goal while training: every this many optimizer steps (at the first logged step from there on), generate a few held-out prompts with the adapter being trained and record how often they meet the goal (the requested reasoning language, or a right tool call with valid arguments for rows that call tools) in metrics.jsonl and on the dashboard. Greedy generation in eval mode; the training itself is unchanged. null never watches.
   */
  watch_every?: number | null;
  /**
   * The held-out rows the watch generates from: a data source as data.source takes (embedded:NAME, a local file, a hub id). null takes the held-out split of an embedded data set (embedded:multilingual-heldout for embedded:multilingual).
   */
  watch_prompts?: string | null;
  /**
   * How many held-out rows each watch generates: the same ones every time, taken in turn from each requested language.
   */
  watch_count?: number;
}
