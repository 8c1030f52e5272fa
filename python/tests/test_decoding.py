"""Generation over a KV cache (oss_finetune.modeling.decoding), read as a manual: it continues prompts
exactly as transformers' generate does, with or without an adapter, a batch of different lengths as
each prompt alone, and stops, samples and streams as asked."""

from __future__ import annotations

import pytest
import torch

from oss_finetune.modeling.decoding import Decoder, generate_batch
from oss_finetune.modeling.model import PAD_TOKEN_ID, apply_lora, build_embedded_model
from oss_finetune.training.language import _greedy_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Longer than the tiny model's sliding window (16), so the windowed layers are exercised.
PROMPTS = [list(range(1000, 1040)), list(range(2000, 2007)), list(range(3000, 3025))]


def with_adapter(target_experts: bool):
    model = apply_lora(
        build_embedded_model("embedded:tiny"), {"r": 4, "alpha": 8, "target_experts": target_experts}, seed=0
    )
    with torch.no_grad():  # a trained adapter, not the zero one LoRA starts from
        generator = torch.Generator().manual_seed(1)
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model.eval()


@pytest.mark.parametrize("adapter", ["none", "attention", "attention and experts"])
def test_greedy_tokens_equal_transformers_generate(adapter):
    model = build_embedded_model("embedded:tiny") if adapter == "none" else with_adapter(adapter != "attention")
    expected = _greedy_batch(model, PROMPTS, 24, PAD_TOKEN_ID, ())
    assert generate_batch(model, PROMPTS, 24) == expected


def test_the_first_logits_equal_the_models_own_forward():
    model = with_adapter(True)
    decoder = Decoder(model, [PROMPTS[0]], 1)
    with torch.no_grad():
        expected = model(torch.tensor([PROMPTS[0]])).logits[0, -1].float()
    torch.testing.assert_close(decoder.prefill()[0], expected, rtol=1e-4, atol=1e-4)


def test_a_row_of_a_batch_decodes_as_it_would_alone():
    model = with_adapter(False)
    together = generate_batch(model, PROMPTS, 16)
    assert together == [generate_batch(model, [prompt], 16)[0] for prompt in PROMPTS]


def test_a_row_stops_after_its_stop_token_and_the_others_go_on():
    model = build_embedded_model("embedded:tiny")
    free = generate_batch(model, PROMPTS, 12)
    stop = free[1][3]  # the fourth token of the second row
    stopped = generate_batch(model, PROMPTS, 12, stop_token_ids=[stop])
    assert stopped[1] == free[1][: free[1].index(stop) + 1]
    assert all(len(row) == 12 or row[-1] == stop for row in stopped)


def test_sampling_is_repeatable_with_a_seed_and_a_tiny_top_p_is_greedy():
    model = build_embedded_model("embedded:tiny")
    first = generate_batch(model, PROMPTS, 10, temperature=1.0, seed=7)
    assert first == generate_batch(model, PROMPTS, 10, temperature=1.0, seed=7)
    assert first != generate_batch(model, PROMPTS, 10, temperature=1.0, seed=8)
    assert generate_batch(model, PROMPTS, 10, temperature=1.0, top_p=1e-6, seed=7) == generate_batch(model, PROMPTS, 10)


def test_tokens_stream_as_they_come():
    model = build_embedded_model("embedded:tiny")
    seen: list[tuple[int, int]] = []
    out = generate_batch(model, PROMPTS[:2], 5, on_token=lambda row, token: seen.append((row, token)))
    assert [token for row, token in seen if row == 0] == out[0]
    assert [token for row, token in seen if row == 1] == out[1]


def test_an_empty_prompt_is_refused():
    with pytest.raises(ValueError, match="at least one token"):
        generate_batch(build_embedded_model("embedded:tiny"), [[1, 2], []], 3)
