"""Generated from schema/finetune-config.schema.json by schema/scripts/gen_python.py; do not edit.

Everything a fine-tune run needs: which model, which data, the LoRA adapter and the training loop. Every field has a default, so {} is a complete config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from ._config_base import ConfigBase


@dataclass(frozen=True)
class ModelConfig(ConfigBase):
    """The base model to load."""

    SECTION: ClassVar[str] = "model"
    name_or_path: str = field(default="embedded:tiny-base", metadata={"help": "A hub id (openai/gpt-oss-20b), a local folder, or an embedded model that needs no hub: 'embedded:tiny-base' (the default: the tiny GPT-OSS trained once on English reasoning, built on first use and cached), 'embedded:tiny' (the same architecture with seeded random weights, for tests and benches), 'embedded:gpt-oss-20b-random' (the real 20b architecture with random bf16 weights, on a GPU) or 'embedded:gpt-oss-120b-random' (the same for 120b; with mxfp4_experts only)."})
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = field(default="auto", metadata={"help": "Weight dtype. 'auto' picks bfloat16 on a GPU that supports it, float32 on a CPU."})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "Where the model runs. 'auto' takes the first CUDA GPU when there is one."})
    load_in_4bit: bool = field(default=False, metadata={"help": "Quantize the base weights to 4 bits with bitsandbytes (needs CUDA)."})
    mxfp4_experts: bool = field(default=False, metadata={"help": "Keep the mixture-of-experts weights in 4-bit MXFP4 (as OpenAI released them), dequantized one layer at a time while it computes: gpt-oss-20b takes about 13 GiB instead of 39. The experts take no LoRA then (target_experts must be false). Works on the CPU and GPU, with or without bitsandbytes."})
    attn_implementation: Literal["eager", "flex_attention", "kernels-community/vllm-flash-attn3"] = field(default="eager", metadata={"help": "Attention kernel passed to transformers. GPT-OSS needs one that supports attention sinks."})


@dataclass(frozen=True)
class DataConfig(ConfigBase):
    """The conversations to train on and how they become tokens."""

    SECTION: ClassVar[str] = "data"
    source: str = field(default="embedded:multilingual", metadata={"help": "A hub data set id, a local .jsonl/.json/.parquet file, or 'embedded:multilingual' for the sample that ships with the package."})
    split: str = field(default="train", metadata={"help": "Which split of a hub data set to read."})
    format: Literal["auto", "multilingual-thinking", "messages", "sharegpt"] = field(default="auto", metadata={"help": "Row format. 'auto' detects Multilingual-Thinking rows, messages lists and ShareGPT."})
    max_seq_length: int = field(default=1024, metadata={"help": "The longest tokenized conversation kept, in tokens."})
    overflow: Literal["truncate", "drop"] = field(default="drop", metadata={"help": "What happens to a row longer than max_seq_length. Either way it is counted in the summary."})
    loss_mask: Literal["assistant", "calls_and_final", "final", "all"] = field(default="assistant", metadata={"help": "Which tokens the loss is computed on: 'assistant' (everything the assistant writes: reasoning, tool calls and answers), 'calls_and_final' (the same without the analysis-channel reasoning), 'final' (answers only) or 'all'."})
    reasoning_effort: Literal["low", "medium", "high"] = field(default="medium", metadata={"help": "Written into the system message of rows that do not set their own."})
    on_bad_row: Literal["error", "skip"] = field(default="error", metadata={"help": "'error' stops at the first malformed row, naming it; 'skip' leaves it out and counts it."})
    limit: int | None = field(default=None, metadata={"help": "Read at most this many rows; null reads them all."})
    tools: str | None = field(default=None, metadata={"help": "Function tools for the rows that carry none of their own: a .json file holding the list, as Hugging Face chat data sets write it ([{\"type\": \"function\", \"function\": {\"name\", \"description\", \"parameters\"}}]), or that list as JSON text. They become the developer message's # Tools section. null: only the rows' own tools."})
    special_tokens: Literal["text", "error"] = field(default="text", metadata={"help": "Special-token text inside a message's content (<|end|>, <|endoftext|> in a pasted log): 'text' encodes it as ordinary characters, as openai-harmony does, and the summary counts those rows; 'error' makes such a row a bad row."})


@dataclass(frozen=True)
class LoraConfig(ConfigBase):
    """The LoRA adapter trained on top of the frozen base model."""

    SECTION: ClassVar[str] = "lora"
    r: int = field(default=8, metadata={"help": "Rank of the low-rank update."})
    alpha: float = field(default=16, metadata={"help": "Scale of the update is alpha / r."})
    dropout: float = field(default=0, metadata={"help": "Dropout on the adapter's input."})
    target_modules: tuple[str, ...] = field(default=("q_proj", "k_proj", "v_proj", "o_proj",), metadata={"help": "Linear layers that get an adapter."})
    target_experts: bool = field(default=False, metadata={"help": "Also put adapters on the mixture-of-experts weights (peft target_parameters)."})


@dataclass(frozen=True)
class TrainingConfig(ConfigBase):
    """The optimisation loop."""

    SECTION: ClassVar[str] = "training"
    max_steps: int | None = field(default=60, metadata={"help": "Optimizer steps to run; null trains for 'epochs' instead."})
    epochs: float = field(default=1, metadata={"help": "Passes over the data when max_steps is null."})
    batch_size: int = field(default=1, metadata={"help": "Conversations per micro-batch on one device."})
    gradient_accumulation_steps: int = field(default=16, metadata={"help": "Micro-batches summed into one optimizer step."})
    learning_rate: float = field(default=0.0002, metadata={"help": "Peak learning rate."})
    lr_scheduler: Literal["linear", "cosine", "constant"] = field(default="linear", metadata={"help": "How the learning rate moves after warm-up."})
    warmup_steps: int = field(default=5, metadata={"help": "Steps of linear warm-up from 0 to the peak learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "Decoupled weight decay of AdamW."})
    optimizer: Literal["auto", "adamw_torch", "adamw_8bit"] = field(default="auto", metadata={"help": "'auto' uses adamw_8bit where bitsandbytes works, else adamw_torch."})
    gradient_checkpointing: bool = field(default=True, metadata={"help": "Recompute activations in the backward pass to save memory."})
    engine: Literal["auto", "fast", "transformers"] = field(default="auto", metadata={"help": "How a training step runs. 'fast' packs the step's conversations without padding and uses flash attention with sinks, grouped expert products and a chunked output loss (same model, same adapter); 'transformers' calls the Hugging Face model on padded micro-batches; 'auto' is 'fast' for GPT-OSS models (on a GPU or the CPU), else 'transformers'."})
    gpus: int = field(default=1, metadata={"help": "How many GPUs of this machine train together, in data parallel: the notebook launches torchrun (python -m oss_finetune train with this config, one rank per GPU, each with a replica of the model and a share of every optimizer step: the same steps and the same adapter, in less time), follows it in the dashboard, and loads the adapter it trained back into the notebook's model. Each GPU must hold the whole model and its share's activations. On a model on the CPU the ranks are CPU processes."})
    sharding: Literal["auto", "replicate", "fsdp"] = field(default="auto", metadata={"help": "How the ranks that torchrun starts (python -m oss_finetune train) hold the model. 'replicate': each GPU holds the whole model and the ranks sum the adapter's gradients once per step; 'fsdp': the frozen base and the adapter are sharded over the ranks with FSDP2 (each GPU holds its share plus the layer being computed), for a model one GPU cannot hold; 'auto': fsdp when the memory planner says a replica does not fit one GPU, else replicate. One process always replicates."})
    pack_tokens: int | None = field(default=None, metadata={"help": "With the fast engine: the most tokens in one packed micro-batch (the step's conversations are laid end to end up to this many; the gradient is the same, only memory and speed change). null picks 16,384 with gradient checkpointing (6,144 when the experts carry LoRA) and 4,096 without."})
    logging_steps: int = field(default=1, metadata={"help": "Report metrics every this many optimizer steps."})
    save_steps: int = field(default=20, metadata={"help": "Write a checkpoint every this many optimizer steps."})
    report_to: tuple[Literal["tensorboard", "wandb", "mlflow", "trackio"], ...] = field(default=(), metadata={"help": "Experiment trackers that also receive every logged step, as in transformers' report_to: 'tensorboard' (event files in the run folder), 'wandb', 'mlflow', 'trackio'. Each needs its package installed; rank 0 alone reports. Empty: none."})
    seed: int = field(default=3407, metadata={"help": "Seeds data order, adapter initialisation and dropout."})
    output_dir: str = field(default="runs", metadata={"help": "Folder that holds one sub-folder per run."})
    watch_every: int | None = field(default=None, metadata={"help": "Watch the goal while training: every this many optimizer steps (at the first logged step from there on), generate a few held-out prompts with the adapter being trained and record how often they meet the goal (the requested reasoning language, or a right tool call with valid arguments for rows that call tools) in metrics.jsonl and on the dashboard. Greedy generation in eval mode; the training itself is unchanged. null never watches."})
    watch_prompts: str | None = field(default=None, metadata={"help": "The held-out rows the watch generates from: a data source as data.source takes (embedded:NAME, a local file, a hub id). null takes the held-out split of an embedded data set (embedded:multilingual-heldout for embedded:multilingual)."})
    watch_count: int = field(default=6, metadata={"help": "How many held-out rows each watch generates: the same ones every time, taken in turn from each requested language."})


@dataclass(frozen=True)
class FinetuneConfig(ConfigBase):
    """Everything a fine-tune run needs: which model, which data, the LoRA adapter and the training loop. Every field has a default, so {} is a complete config."""

    SECTION: ClassVar[str] = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)


SECTIONS: dict[str, type[ConfigBase]] = {
    "model": ModelConfig,
    "data": DataConfig,
    "lora": LoraConfig,
    "training": TrainingConfig,
}
