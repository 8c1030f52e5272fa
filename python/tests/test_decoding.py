"""Generation over a KV cache (oss_finetune.modeling.decoding), read as a manual: it continues prompts
exactly as transformers' generate does, with or without an adapter, a batch of different lengths as
each prompt alone, and stops, samples and streams as asked."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from oss_finetune.modeling.decoding import Decoder, generate_batch
from oss_finetune.modeling.model import PAD_TOKEN_ID, apply_lora, build_embedded_model
from oss_finetune.training.language import _greedy_batch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Longer than the tiny model's sliding window (16), so the windowed layers are exercised.
PROMPTS = [list(range(1000, 1040)), list(range(2000, 2007)), list(range(3000, 3025))]


def with_adapter(target_experts: bool, target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")):
    model = apply_lora(
        build_embedded_model("embedded:tiny"),
        {"r": 4, "alpha": 8, "target_experts": target_experts, "target_modules": list(target_modules)},
        seed=0,
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


@pytest.mark.parametrize("output_layer", [False, True], ids=["attention and experts", "and the output layer"])
def test_adapter_rows_answer_with_and_without_the_adapter_in_one_batch(output_layer):
    from oss_finetune.modeling.adapter import adapter_enabled

    targets = ("q_proj", "k_proj", "v_proj", "o_proj") + (("lm_head",) if output_layer else ())
    model = with_adapter(True, targets)
    prompt = PROMPTS[0]
    with adapter_enabled(model, False):
        base = generate_batch(model, [prompt], 12)[0]
    adapted = generate_batch(model, [prompt], 12)[0]
    assert base != adapted  # the adapter changes the answer, so the rows below are a real check
    assert generate_batch(model, [prompt, prompt], 12, adapter_rows=[False, True]) == [base, adapted]


def test_adapter_rows_must_match_the_prompts():
    with pytest.raises(ValueError, match="adapter_rows has 1 entries for 2 prompts"):
        generate_batch(build_embedded_model("embedded:tiny"), PROMPTS[:2], 3, adapter_rows=[True])


def test_a_sliding_window_layer_keeps_only_its_window():
    model = build_embedded_model("embedded:tiny")
    window = model.config.sliding_window
    decoder = Decoder(model, PROMPTS, 30)
    capacity = max(len(p) for p in PROMPTS) + 30
    kinds = model.config.layer_types
    assert "sliding_attention" in kinds and "full_attention" in kinds
    for kind, layer in zip(kinds, decoder.cache.layers):
        assert layer.slots == (window if kind == "sliding_attention" else capacity)
    # Decoding far past the window still equals transformers' generate (the ring wraps several times).
    assert generate_batch(model, PROMPTS, 40) == _greedy_batch(model, PROMPTS, 40, PAD_TOKEN_ID, ())


def test_mxfp4_experts_decode_row_by_row_as_the_grouped_product_does():
    from oss_finetune.modeling import experts as experts_module
    from oss_finetune.modeling.mxfp4 import quantize_experts

    model = build_embedded_model("embedded:tiny")
    quantize_experts(model)
    by_row = generate_batch(model, [PROMPTS[1]], 8)  # one row: 4 (token, expert) rows a step, row by row
    saved = experts_module.ROW_PRODUCT_MAX_ROWS
    experts_module.ROW_PRODUCT_MAX_ROWS = 0
    try:
        grouped = generate_batch(model, [PROMPTS[1]], 8)
    finally:
        experts_module.ROW_PRODUCT_MAX_ROWS = saved
    assert by_row == grouped


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def first_difference(a: list[int], b: list[int]) -> int | None:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)


@cuda
def test_on_a_gpu_the_decode_step_runs_as_a_cuda_graph_with_the_eager_steps_tokens(monkeypatch):
    model = with_adapter(True).to("cuda", torch.bfloat16)
    decoder = Decoder(model, PROMPTS, 4)
    decoder.prefill()
    for _ in range(3):
        decoder.step(torch.zeros(len(PROMPTS), dtype=torch.long, device="cuda"))
    assert decoder._graph is not None
    graphed = generate_batch(model, PROMPTS, 24, adapter_rows=[True, False, True])
    monkeypatch.setenv("OSS_FINETUNE_CUDA_GRAPHS", "0")
    assert generate_batch(model, PROMPTS, 24, adapter_rows=[True, False, True]) == graphed


DEVICES = ["cpu", pytest.param("cuda", marks=cuda)]


@pytest.mark.parametrize("device", DEVICES)
def test_in_bf16_the_tokens_agree_with_transformers_up_to_a_tie_that_bf16_cannot_decide(device):
    """bf16 rounds differently in the two paths, so where two tokens are nearly equally likely either may
    win. How the test decides: at the first token where the paths differ, the model in float32 scores the
    two tokens; they are a tie when their float32 gap is within twice transformers' own bf16 error at that
    position (the largest distance of its bf16 logits from the float32 ones), since rounding that large
    can reorder them. A bug (a wrong mask, position or adapter) makes the paths differ where one token
    clearly leads, and shows in the second check: fed the same tokens, our bf16 logits stay as close to
    the float32 ones as transformers' do, on average over the vocabulary and the steps."""
    model = with_adapter(True)
    reference = copy.deepcopy(model).to(device)  # float32
    model = model.to(device, torch.bfloat16)
    ours = generate_batch(model, PROMPTS, 24)

    def logits(of, sequence: list[int]) -> torch.Tensor:
        with torch.no_grad():
            return of(input_ids=torch.tensor([sequence], device=device)).logits[0, -1].double()

    for prompt, mine in zip(PROMPTS, ours):
        ids = torch.tensor([prompt], device=device)
        theirs = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=24,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=PAD_TOKEN_ID,
            eos_token_id=[PAD_TOKEN_ID],
        )[0, len(prompt) :].tolist()
        at = first_difference(mine, theirs)
        if at is None:
            continue
        context = prompt + mine[:at]
        exact = logits(reference, context)
        rounding = float((logits(model, context) - exact).abs().max())
        gap = abs(float(exact[mine[at]] - exact[theirs[at]]))
        assert gap <= 2 * rounding, (
            f"token {at}: ours {mine[at]}, transformers {theirs[at]}: float32 gap {gap:.4f}, "
            f"more than twice transformers' bf16 error there ({rounding:.4f})"
        )

    ours_error, their_error = [], []
    for prompt in PROMPTS:
        decoder = Decoder(model, [prompt], 17)
        step_logits, sequence = decoder.prefill()[0], list(prompt)
        for _ in range(16):
            exact = logits(reference, sequence)
            ours_error.append(float((step_logits.double() - exact).abs().mean()))
            their_error.append(float((logits(model, sequence) - exact).abs().mean()))
            sequence.append(int(exact.argmax()))  # both fed the float32 path's tokens
            step_logits = decoder.step(torch.tensor([sequence[-1]], device=device))[0]
    assert sum(ours_error) <= 1.5 * sum(their_error), (sum(ours_error), sum(their_error))


@cuda
def test_on_a_gpu_the_next_call_reuses_the_captured_step_until_the_weights_change():
    from oss_finetune.modeling.decoding import _decoder_for

    model = with_adapter(False).to("cuda", torch.bfloat16)
    first = generate_batch(model, PROMPTS, 8)
    kept = _decoder_for(model, PROMPTS, 8, None)
    assert kept._graph is not None  # the first call's captured step, ready to replay
    assert generate_batch(model, PROMPTS, 8) == first
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).mul_(0)  # as an optimizer step would
    assert _decoder_for(model, PROMPTS, 8, None) is not kept


def greedy_with(decoder: Decoder, steps: int) -> list[list[int]]:
    logits, out = decoder.prefill(), []
    for _ in range(steps):
        chosen = logits.argmax(-1)
        out.append(chosen.tolist())
        logits = decoder.step(chosen)
    return [list(row) for row in zip(*out)]


def test_a_decoder_reset_with_new_prompts_continues_them_as_a_new_one_would():
    """What lets a GPU keep one captured decode step across calls: new prompts go into the same buffers."""
    model = with_adapter(False)
    others = [list(range(500, 510)), list(range(600, 633)), list(range(700, 702))]
    decoder = Decoder(model, PROMPTS, 6, capacity=64, adapter_rows=[True, False, True])
    greedy_with(decoder, 6)
    decoder.reset(others, 6, [False, True, True])
    fresh = Decoder(model, others, 6, adapter_rows=[False, True, True])
    assert greedy_with(decoder, 6) == greedy_with(fresh, 6)
    with pytest.raises(ValueError, match="same batch size"):
        decoder.reset(others[:2], 6, None)


def test_the_routing_by_comparison_picks_and_sorts_as_topk_and_a_stable_sort_do():
    """A decode step routes its few rows by counting comparisons (one fused kernel on a GPU, where topk,
    sort, scatter and cumsum are a dozen). Same experts, order, weights and offsets as the sorting way,
    ties included: a tied logit goes to the lower expert, and rows of one expert keep their token order."""
    from oss_finetune.modeling.experts import _route, route_by_comparison

    generator = torch.Generator().manual_seed(3)
    tokens, hidden, experts, top_k = 6, 8, 10, 4
    x = torch.randn(tokens, hidden, generator=generator, dtype=torch.float64)
    weight = torch.randn(experts, hidden, generator=generator, dtype=torch.float64)
    bias = torch.randn(experts, generator=generator, dtype=torch.float64)
    weight[7], bias[2], bias[7] = weight[2], 10.0, 10.0  # experts 2 and 7 tie, both chosen by every token
    x[4] = x[1]  # two tokens pick the same experts, so experts hold several rows
    row_scale = torch.tensor([[1.0], [0.0], [1.0], [1.0], [0.0], [1.0]], dtype=torch.float64)

    hidden_rows, expert_ids, offsets, inverse, weights, scale = route_by_comparison(x, weight, bias, top_k, row_scale)

    logits = torch.nn.functional.linear(x, weight, bias)
    best_first = [sorted(range(experts), key=lambda e: (-float(row[e]), e))[:top_k] for row in logits]
    assert all(chosen[:2] == [2, 7] for chosen in best_first)
    top_indices = torch.tensor(best_first)
    top_values = torch.gather(logits, 1, top_indices)
    expected_ids, order, expected_inverse, expected_offsets = _route(top_indices.reshape(-1), experts)
    assert expert_ids.tolist() == expected_ids.tolist()
    assert inverse.tolist() == expected_inverse.tolist()
    assert offsets.tolist() == expected_offsets.tolist() and offsets.dtype == torch.int32
    torch.testing.assert_close(hidden_rows, x[order // top_k])
    torch.testing.assert_close(weights, torch.softmax(top_values, dim=1).reshape(-1)[order])
    torch.testing.assert_close(scale, row_scale.reshape(-1)[order // top_k][:, None])


def test_prompts_with_more_rows_than_the_comparison_routes_take_the_sorting_way_with_the_same_tokens(monkeypatch):
    from oss_finetune.modeling import decoding

    model = with_adapter(True)
    compared = generate_batch(model, PROMPTS, 12, adapter_rows=[True, False, True])
    monkeypatch.setattr(decoding, "COMPARED_ROUTING_MAX_ROWS", 0)
    assert generate_batch(model, PROMPTS, 12, adapter_rows=[True, False, True]) == compared


def test_every_fused_step_of_decoding_and_training_traces_as_one_graph(monkeypatch):
    """On a GPU the engine compiles its fused steps with fullgraph=True, so a step that breaks torch.compile's
    graph (a Python branch on a tensor's value, an unsupported call) would fail only there. Here every one
    of them is traced by torch.compile on the CPU (the "eager" backend: tracing without code generation) and
    must give the tokens and the loss of the plain functions."""
    from oss_finetune.modeling import engine, kernels

    model = with_adapter(True)
    conversations = [SimpleNamespace(input_ids=p, trained=[True] * len(p)) for p in PROMPTS]
    batch = engine.pack(conversations, pack_tokens=4096)[0]
    plain_tokens = generate_batch(model, PROMPTS, 6, adapter_rows=[True, False, True])
    plain_loss = engine.loss_sum(model, batch)[0]

    monkeypatch.setattr(kernels, "fuses_kernels", lambda on_cuda: True)
    monkeypatch.setattr(kernels, "COMPILE_BACKEND", "eager")
    monkeypatch.setattr(kernels, "_COMPILED", {})
    torch._dynamo.reset()
    try:
        assert generate_batch(model, PROMPTS, 6, adapter_rows=[True, False, True]) == plain_tokens
        torch.testing.assert_close(engine.loss_sum(model, batch)[0], plain_loss)
        traced = {fn.__name__ for fn in kernels._COMPILED}
    finally:
        torch._dynamo.reset()
    assert {
        "route_by_comparison",
        "_slots",
        "_bias_and_gate",
        "_bias_weight_and_sum",
        "_rotate_pair",
        "_rms_norm",
    } <= traced


def test_an_output_layer_mostly_of_zero_rows_gives_the_same_logits_computed_over_its_other_rows():
    """The embedded default's output layer is zero outside the tokens it was trained on; on the CPU the
    decoder multiplies only the other rows and leaves the zero rows' logits at 0, as the product gives."""
    model = build_embedded_model("embedded:tiny").eval()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        vocab = model.lm_head.weight.shape[0]
        model.lm_head.weight[torch.randperm(vocab, generator=generator)[: vocab * 9 // 10]] = 0.0
    decoder = Decoder(model, [PROMPTS[0]], 1)
    with torch.no_grad():
        expected = model(torch.tensor([PROMPTS[0]])).logits[0, -1].float()
    torch.testing.assert_close(decoder.prefill()[0], expected, rtol=1e-4, atol=1e-4)
    assert generate_batch(model, PROMPTS, 16) == _greedy_batch(model, PROMPTS, 16, PAD_TOKEN_ID, ())
