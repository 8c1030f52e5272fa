"""training.generation on the decoding path: the tokens transformers' generate gives (greedy, float32, the
tiny model), with and without an adapter, one prompt or several of different lengths, rows with and
without the adapter in one batch, and the stream of tokens as they come."""

import pytest
import torch

from oss_finetune.core.harmony import Conversation, Message, render
from oss_finetune.modeling import engine
from oss_finetune.modeling.model import apply_lora, build_embedded_model
from oss_finetune.training.generation import generate, generate_many, transformers_generate

QUESTIONS = ("Hi", "Compute 12 × 4 + 3 - 9, please.", "Quelle est la capitale de l'Italie ?")
NEW = 12


@pytest.fixture(scope="module", autouse=True)
def threads(one_torch_thread):
    return None


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [
        render(Conversation([Message("user", text)]), mode="prompt", date="2025-06-28", tokenizer=tokenizer).ids
        for text in QUESTIONS
    ]


@pytest.fixture(scope="module")
def base():
    model = build_embedded_model()
    assert next(model.parameters()).dtype == torch.float32
    return model


@pytest.fixture(scope="module")
def adapted():
    model = apply_lora(build_embedded_model(), {"r": 4, "alpha": 8, "target_experts": True}, seed=0)
    # A fresh adapter's B is zero, so it would change nothing; trained-like weights make "with" and
    # "without" generate different tokens, which is what these tests need to tell them apart.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def test_the_tiny_model_takes_the_decoding_path(base, adapted):
    assert engine.supports(base) and engine.supports(adapted)


def test_generate_gives_transformers_tokens_one_prompt_at_a_time(base, prompts, tokenizer):
    for prompt in prompts:
        streamed = []
        ours = generate(base, tokenizer, prompt, NEW, on_token=streamed.append)
        [theirs] = transformers_generate(base, [prompt], NEW, tokenizer=tokenizer)
        assert ours == theirs
        assert streamed == ours


def test_generate_with_and_without_the_adapter_gives_transformers_tokens(adapted, prompts, tokenizer):
    prompt = prompts[1]
    with_adapter = generate(adapted, tokenizer, prompt, NEW)
    without = generate(adapted, tokenizer, prompt, NEW, use_adapter=False)
    assert with_adapter == transformers_generate(adapted, [prompt], NEW, use_adapter=True)[0]
    assert without == transformers_generate(adapted, [prompt], NEW, use_adapter=False)[0]
    assert with_adapter != without, "the perturbed adapter changes the answer"


def test_prompts_of_different_lengths_in_one_batch_answer_as_each_alone(base, prompts, tokenizer):
    assert len({len(p) for p in prompts}) == len(prompts)
    streamed: list[list[int]] = [[] for _ in prompts]
    together = generate_many(base, prompts, NEW, on_token=lambda row, token: streamed[row].append(token))
    assert together == [transformers_generate(base, [p], NEW)[0] for p in prompts]
    assert streamed == together


def test_rows_with_and_without_the_adapter_in_one_batch_equal_separate_calls(adapted, prompts, decoding_batches):
    calls = decoding_batches
    prompt = prompts[2]
    before, after = generate_many(adapted, [prompt, prompt], NEW, adapter_rows=[False, True])
    assert calls == [[False, True]]
    assert before == generate(adapted, None, prompt, NEW, use_adapter=False)
    assert after == generate(adapted, None, prompt, NEW, use_adapter=True)
    assert before != after


def test_a_stop_token_ends_a_row_and_is_kept(base, prompts):
    [free] = generate_many(base, [prompts[0]], NEW, stop_token_ids=())
    stop = free[3]
    [cut] = generate_many(base, [prompts[0]], NEW, stop_token_ids=(stop,))
    assert cut == free[: free.index(stop) + 1]


def test_sampling_with_a_seed_repeats_and_leaves_the_global_stream_alone(base, prompts):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = generate(base, None, prompts[1], NEW, temperature=1.0, seed=7)
    assert torch.rand(1) == expected_next
    assert generate(base, None, prompts[1], NEW, temperature=1.0, seed=7) == first


def test_generation_leaves_a_training_model_in_training_mode(adapted, prompts):
    adapted.train()
    try:
        generate(adapted, None, prompts[0], 2)
        assert adapted.training
    finally:
        adapted.eval()


def test_a_model_the_decoding_path_does_not_walk_goes_through_transformers(prompts):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=201_088,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model = LlamaForCausalLM(config).eval()
    assert not engine.supports(model)
    streamed: list[int] = []
    ours = generate(model, None, prompts[0], 5, on_token=streamed.append)
    assert ours == transformers_generate(model, [prompts[0]], 5)[0]
    assert streamed == ours and len(ours) == 5


def test_an_adapter_on_the_output_layer_is_not_applied_to_the_rows_without_it(prompts, decoding_batches):
    # modeling.decoding switches LoRA per row on the attention and the experts only; LoRA on the output
    # layer (the tool-calling tutorial's) would reach the "before" rows too, so such a batch runs in two passes.
    from oss_finetune.training.generation import adapters_switch_per_row

    model = apply_lora(build_embedded_model(), {"r": 4, "alpha": 8, "target_modules": ["q_proj", "lm_head"]}, seed=0)
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    assert not adapters_switch_per_row(model)
    calls = decoding_batches
    prompt = prompts[2]
    streamed: list[tuple[int, int]] = []
    before, after = generate_many(
        model, [prompt, prompt], NEW, adapter_rows=[False, True], on_token=lambda row, t: streamed.append((row, t))
    )
    assert calls == [None, None]
    assert before == generate(model, None, prompt, NEW, use_adapter=False)
    assert after == generate(model, None, prompt, NEW, use_adapter=True)
    assert before != after
    assert [t for row, t in streamed if row == 0] == before and [t for row, t in streamed if row == 1] == after


def test_adapters_on_attention_and_experts_switch_per_row(adapted, base):
    from oss_finetune.training.generation import adapters_switch_per_row

    assert adapters_switch_per_row(adapted) and adapters_switch_per_row(base)
