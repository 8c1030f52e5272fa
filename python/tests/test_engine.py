"""The fast engine (oss_finetune.engine) computes what the Hugging Face model computes.

Each piece is compared with the eager implementation that ships with transformers: attention with
sinks (full and sliding window, grouped query heads, several packed conversations), the experts with
and without LoRA, the chunked output layer and loss, and finally a whole training micro-batch of the
embedded GPT-OSS with LoRA on attention and experts: same loss, same adapter gradients. On a CUDA
machine the same comparisons also run through PyTorch's flash-attention kernels in bf16.
"""

import pytest
import torch
import torch.nn.functional as F
from test_train import half_trained
from transformers.models.gpt_oss import modeling_gpt_oss as hf

from oss_finetune.modeling import engine
from oss_finetune.modeling.model import apply_lora, build_embedded_model
from oss_finetune.training.trainer import Trainer, TrainingExample

pytestmark = pytest.mark.usefixtures("one_torch_thread")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


class _Heads(torch.nn.Module):
    """What eager_attention_forward reads from the attention module."""

    def __init__(self, sinks, groups):
        super().__init__()
        self.sinks = sinks
        self.num_key_value_groups = groups
        self.training = True


def eager_attention(q, k, v, sinks, cu, scale, window):
    """transformers' eager attention, one conversation at a time (no packing there)."""
    outs = []
    bounds = cu.tolist()
    for start, end in zip(bounds[:-1], bounds[1:]):
        n = end - start
        i = torch.arange(n)[:, None]
        j = torch.arange(n)[None, :]
        allowed = (j <= i) & ((j > i - window) if window else True)
        mask = torch.zeros(n, n, dtype=q.dtype).masked_fill(~allowed, torch.finfo(q.dtype).min)
        out, _ = hf.eager_attention_forward(
            _Heads(sinks, q.shape[1] // k.shape[1]),
            q[start:end].transpose(0, 1)[None],
            k[start:end].transpose(0, 1)[None],
            v[start:end].transpose(0, 1)[None],
            mask[None, None],
            scale,
        )
        outs.append(out[0])
    return torch.cat(outs)


def attention_inputs(dtype, device="cpu", lengths=(5, 9, 3), heads=4, kv_heads=2, dim=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    total = sum(lengths)

    def make(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)

    q, k, v = make(total, heads, dim), make(total, kv_heads, dim), make(total, kv_heads, dim)
    sinks = make(heads)
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=device)
    return [t.requires_grad_() for t in (q, k, v, sinks)], cu, max(lengths)


@pytest.mark.parametrize("window", [None, 4])
def test_sink_attention_matches_eager_values_and_gradients(window):
    (q, k, v, sinks), cu, longest = attention_inputs(torch.float64)
    ours = engine.sink_attention(q, k, v, sinks, cu, longest, 0.35, window)
    theirs = eager_attention(q, k, v, sinks, cu, 0.35, window)
    assert relative_error(ours, theirs) < 1e-12
    upstream = torch.randn_like(ours)
    grads_ours = torch.autograd.grad((ours * upstream).sum(), (q, k, v, sinks))
    grads_theirs = torch.autograd.grad((theirs * upstream).sum(), (q, k, v, sinks))
    for name, a, b in zip("q k v sinks".split(), grads_ours, grads_theirs):
        assert relative_error(a, b) < 1e-10, name


def test_conversations_packed_together_do_not_see_each_other():
    (q, k, v, sinks), cu, longest = attention_inputs(torch.float64, lengths=(6, 6))
    together = engine.sink_attention(q, k, v, sinks, cu, longest, 0.35, None)
    second_alone = engine.sink_attention(
        q[6:], k[6:], v[6:], sinks, torch.tensor([0, 6], dtype=torch.int32), 6, 0.35, None
    )
    assert torch.allclose(together[6:], second_alone)


def test_pack_lays_conversations_end_to_end_with_their_own_positions_and_targets():
    a = TrainingExample([10, 11, 12, 13], [False, False, True, True])
    b = TrainingExample([20, 21, 22], [False, True, True])
    c = TrainingExample(list(range(30, 38)), [True] * 8)
    first, second = engine.pack([a, b, c], pack_tokens=7)
    assert first.input_ids.tolist() == [[10, 11, 12, 13, 20, 21, 22]]
    assert first.position_ids.tolist() == [[0, 1, 2, 3, 0, 1, 2]]
    assert first.cu_seqlens.tolist() == [0, 4, 7]
    # Token i is the target of position i - 1; never across a conversation's end.
    assert first.targets.tolist() == [-100, 12, 13, -100, 21, 22, -100]
    assert first.trained == 4 and first.max_length == 4
    # Longer than pack_tokens: a micro-batch of its own, not dropped or cut.
    assert second.tokens == 8 and second.conversations == 1 and second.trained == 7


@pytest.fixture
def chunks_of_seven(monkeypatch):
    """The output loss in several chunks of rows, the last one short."""
    monkeypatch.setattr(engine, "_chunk_rows", lambda vocab: 7)


def output_layer_case(head=None):
    """Hidden states (50 x 16, float64), a frozen output layer of 300 tokens (unless given) and targets
    with every third position left out of the loss."""
    torch.manual_seed(0)
    hidden = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    if head is None:
        head = torch.nn.Linear(16, 300, bias=False).double().requires_grad_(False)
    targets = torch.randint(0, 300, (50,))
    targets[::3] = engine.IGNORE
    return hidden, head, targets


def test_chunked_output_loss_matches_cross_entropy_and_its_gradient(chunks_of_seven):
    hidden, head, targets = output_layer_case()
    keep = targets != engine.IGNORE
    expected = F.cross_entropy(head(hidden[keep]), targets[keep], reduction="sum")
    got, count = engine.output_loss_sum(hidden, head, targets)
    assert count == int(keep.sum())
    assert relative_error(got, expected) < 1e-12
    (g_ours,) = torch.autograd.grad(got, hidden)
    (g_ref,) = torch.autograd.grad(expected, hidden)
    assert relative_error(g_ours, g_ref) < 1e-12


def test_zero_rows_of_a_frozen_output_layer_are_counted_without_being_computed(chunks_of_seven):
    """The embedded default's output layer is zero outside the 2,938 tokens it was trained on: those rows
    give logit 0 and no gradient, so the loss adds them to the softmax as one term. Same loss and gradient
    as the whole layer, targets among the zero rows included; a changed weight is looked at again."""
    hidden, head, targets = output_layer_case()
    with torch.no_grad():
        head.weight[torch.randperm(300)[:220]] = 0.0
        head.weight[5] = 0.0
    targets[1] = 5  # a target whose row is zero
    keep = targets != engine.IGNORE
    expected = F.cross_entropy(head(hidden[keep]), targets[keep], reduction="sum")
    got, _ = engine.output_loss_sum(hidden, head, targets)
    compact, position, tokens = engine._live_rows(head.weight)
    assert torch.equal(position[tokens], torch.arange(80))
    assert compact.shape[0] == 80 and int(position[5]) == -1
    assert relative_error(got, expected) < 1e-12
    (g_ours,) = torch.autograd.grad(got, hidden)
    (g_ref,) = torch.autograd.grad(expected, hidden)
    assert relative_error(g_ours, g_ref) < 1e-12
    with torch.no_grad():
        head.weight[5] = 1.0  # as loading another weight would
    assert int(engine._live_rows(head.weight)[1][5]) >= 0
    expected = F.cross_entropy(head(hidden[keep]), targets[keep], reduction="sum")
    got, _ = engine.output_loss_sum(hidden, head, targets)
    assert relative_error(got, expected) < 1e-12
    with torch.no_grad():
        head.weight.normal_()  # no zero rows: the whole layer, as before
    assert engine._live_rows(head.weight) is None


@pytest.mark.parametrize("rank", [4, 8])  # below a third of the width (the low-rank pair), above (merged)
def test_chunked_output_loss_trains_a_lora_on_the_output_layer(rank, chunks_of_seven):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(1)
    holder = torch.nn.Module()
    holder.head = torch.nn.Linear(16, 300, bias=False).double()
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["head"])
    head = get_peft_model(holder, config).base_model.model.head
    torch.nn.init.normal_(head.lora_B["default"].weight, std=0.1)  # a fresh B is zero and would hide a's gradient
    factors = (head.lora_A["default"].weight, head.lora_B["default"].weight)
    hidden, head, targets = output_layer_case(head)
    keep = targets != engine.IGNORE
    expected = F.cross_entropy(head(hidden[keep]), targets[keep], reduction="sum")
    got, _ = engine.output_loss_sum(hidden, head, targets)
    assert relative_error(got, expected) < 1e-12
    ours = torch.autograd.grad(got * 1.5, (hidden, *factors))
    theirs = torch.autograd.grad(expected * 1.5, (hidden, *factors))
    for name, a, b in zip(("hidden", "lora_A", "lora_B"), ours, theirs):
        assert relative_error(a, b) < 1e-12, name


def tiny_with_lora(target_experts, **lora):
    model = build_embedded_model(dtype=torch.float64)
    # The reference is transformers' own per-expert loop: its grouped_mm path has no float64 kernel.
    model.config._experts_implementation = "eager"
    return apply_lora(model, {"r": 4, "alpha": 8, "target_experts": target_experts, **lora}, seed=0)


def perturb_adapter(model):
    # A fresh adapter's B is zero, which would hide a wrong expert LoRA path.
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.05)


def test_experts_with_lora_match_peft():
    model = tiny_with_lora(target_experts=True)
    perturb_adapter(model)
    layer = engine._causal_lm(model).model.layers[0]
    torch.manual_seed(0)
    x = torch.randn(11, layer.mlp.router.hidden_dim, dtype=torch.float64)
    _, weights, indices = layer.mlp.router(x)
    expected = layer.mlp.experts(x, indices, weights)
    got = engine.experts_forward(layer.mlp.experts, x, indices, weights)
    assert relative_error(got, expected) < 1e-12


def sample_examples(tokenizer):
    texts = [
        "The cat sat on the mat.",
        "Le chat est assis sur le tapis, près de la fenêtre ouverte.",
        "Two plus three is five, so x = 5.",
    ]
    return half_trained(tokenizer, texts)


@pytest.mark.parametrize(
    "target_experts, lora",
    [
        (False, {}),
        (True, {}),
        # The tool-calling tutorial's: the output layer too, at the model's whole width (the merged path).
        (True, {"r": 64, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "lm_head"]}),
    ],
)
@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_packed_micro_batch_gives_the_padded_loss_and_gradients(
    tokenizer, tmp_path, target_experts, lora, checkpointing
):
    model = tiny_with_lora(target_experts, **lora)
    perturb_adapter(model)
    model.train()
    examples = sample_examples(tokenizer)
    # The reference: transformers' forward on a right-padded batch, the loss where the mask is on.
    trainer = Trainer(model, examples, {"output_dir": str(tmp_path)})
    ids, attention, trained = trainer._collate(examples, torch.device("cpu"))
    causal_lm = engine._causal_lm(model)
    hidden = causal_lm.model(input_ids=ids, attention_mask=attention, use_cache=False).last_hidden_state
    targets_mask = trained[:, 1:]
    logits = causal_lm.lm_head(hidden[:, :-1][targets_mask])
    expected = F.cross_entropy(logits, ids[:, 1:][targets_mask], reduction="sum")
    expected_count = int(targets_mask.sum())
    params = [p for p in model.parameters() if p.requires_grad]
    expected_grads = torch.autograd.grad(expected, params)

    (batch,) = engine.pack(examples, pack_tokens=10_000)
    got, count = engine.loss_sum(model, batch, gradient_checkpointing=checkpointing)
    got_grads = torch.autograd.grad(got, params)
    assert count == expected_count
    assert relative_error(got, expected) < 1e-10
    assert any(g.abs().sum() > 0 for g in got_grads)
    for a, b in zip(got_grads, expected_grads):
        assert relative_error(a, b) < 1e-8


def test_supports_gpt_oss_only():
    assert engine.supports(tiny_with_lora(False))
    assert not engine.supports(torch.nn.Linear(2, 2))


# -- on a CUDA GPU: the flash kernels against the reference, in bf16 ---------------------------------
@cuda
@pytest.mark.parametrize("window", [None, 128])
def test_flash_kernels_match_the_reference_in_bf16(window):
    (q, k, v, sinks), cu, longest = attention_inputs(
        torch.bfloat16, "cuda", lengths=(300, 1024, 77), heads=64, kv_heads=8, dim=64
    )
    assert engine.flash_available(q)
    ours = engine.sink_attention(q, k, v, sinks, cu, longest, 0.125, window)
    upstream = torch.randn_like(ours)
    grads = torch.autograd.grad((ours.float() * upstream.float()).sum(), (q, k, v, sinks))
    wide = [t.detach().double().requires_grad_() for t in (q, k, v, sinks)]
    ref = engine.sink_attention(*wide, cu, longest, 0.125, window)
    ref_grads = torch.autograd.grad((ref * upstream.double()).sum(), wide)
    assert relative_error(ours, ref) < 1e-2
    for name, a, b in zip("q k v sinks".split(), grads, ref_grads):
        assert relative_error(a, b) < 2e-2, name


@cuda
def test_grouped_experts_match_peft_on_the_gpu():
    model = build_embedded_model(dtype=torch.bfloat16).to("cuda")
    model = apply_lora(model, {"r": 8, "alpha": 16, "target_experts": True}, seed=0)
    perturb_adapter(model)
    layer = engine._causal_lm(model).model.layers[0]
    x = torch.randn(257, layer.mlp.router.hidden_dim, device="cuda", dtype=torch.bfloat16)
    _, weights, indices = layer.mlp.router(x)
    got = engine.experts_forward(layer.mlp.experts, x, indices, weights)
    expected = layer.mlp.experts(x, indices, weights)
    assert relative_error(got, expected) < 2e-2


def test_the_trainer_with_the_fast_engine_follows_the_transformers_engine(tokenizer, tmp_path):
    """Two steps of the same run through each engine: the same losses, the status names the engine."""
    examples = sample_examples(tokenizer) * 2
    runs = {}
    for name in ("transformers", "fast"):
        model = apply_lora(build_embedded_model(), {"r": 4, "alpha": 8, "target_experts": True}, seed=0)
        trainer = Trainer(
            model,
            examples,
            {
                "output_dir": str(tmp_path / name),
                "max_steps": 2,
                "batch_size": 1,
                "gradient_accumulation_steps": 3,
                "learning_rate": 1e-2,
                "warmup_steps": 0,
                "engine": name,
                "pack_tokens": 40,
            },
        )
        messages = []
        trainer.on_status(lambda event, messages=messages: messages.append(event.message or ""))
        result = trainer.train()
        assert result.status == "completed" and trainer.engine == name
        runs[name] = ([m.loss for m in result.metrics], messages)
    assert runs["fast"][0] == pytest.approx(runs["transformers"][0], rel=1e-4)
    assert any("fast engine, packed micro-batches of up to 40 tokens" in m for m in runs["fast"][1])
    assert any("transformers engine" in m for m in runs["transformers"][1])


def test_auto_picks_the_fast_engine_for_gpt_oss_on_the_cpu_too(tmp_path, tokenizer):
    model = apply_lora(build_embedded_model(), {"r": 4}, seed=0)
    trainer = Trainer(model, sample_examples(tokenizer), {"output_dir": str(tmp_path), "max_steps": 1})
    trainer.train()
    assert trainer.engine == "fast"


def test_fast_refuses_a_model_that_is_not_gpt_oss(tmp_path, tokenizer):
    from oss_finetune.training.trainer import TrainingError

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(2))

    trainer = Trainer(Tiny(), sample_examples(tokenizer), {"output_dir": str(tmp_path), "engine": "fast"})
    with pytest.raises(TrainingError, match="engine 'fast' runs GPT-OSS models only"):
        trainer.train()


def test_default_packing_halves_when_the_experts_carry_lora():
    assert engine.default_pack_tokens(True) == 16_384
    assert engine.default_pack_tokens(True, experts_lora=True) == 6_144
    assert engine.default_pack_tokens(False) == 4_096
    assert engine.has_expert_lora(tiny_with_lora(True)) and not engine.has_expert_lora(tiny_with_lora(False))


@cuda
def test_chunked_output_loss_on_the_gpu_in_bf16():
    hidden = torch.randn(700, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    head = torch.nn.Linear(256, 201_088, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False)
    targets = torch.randint(0, 201_088, (700,), device="cuda")
    expected = F.cross_entropy(head(hidden).float(), targets, reduction="sum")
    got, _ = engine.output_loss_sum(hidden, head, targets)
    (g_ours,) = torch.autograd.grad(got, hidden)
    (g_ref,) = torch.autograd.grad(expected, hidden)
    assert relative_error(got, expected) < 1e-3
    assert relative_error(g_ours, g_ref) < 2e-2


@cuda
def test_a_packed_micro_batch_on_the_gpu_gives_the_padded_loss(tokenizer):
    model = build_embedded_model(dtype=torch.bfloat16).to("cuda")
    model = apply_lora(model, {"r": 4, "alpha": 8, "target_experts": True}, seed=0)
    perturb_adapter(model)
    examples = sample_examples(tokenizer)
    (batch,) = engine.pack(examples, pack_tokens=10_000)
    got, count = engine.loss_sum(model, batch.to(torch.device("cuda")), gradient_checkpointing=True)
    trainer = Trainer(model, examples, {"output_dir": "unused"})
    expected, expected_count = trainer._masked_loss_sum(*trainer._collate(examples, torch.device("cuda")))
    assert count == expected_count
    assert relative_error(got, expected) < 2e-2
