"""MXFP4 experts (oss_finetune.modeling.mxfp4): 4-bit storage of GPT-OSS' expert weights.

Quantizing is exact on values MXFP4 can hold, within half a step on the rest; the quantized experts
compute what the bf16 experts compute with the dequantized weights, through transformers' own
forward (generation) and through the fast engine (training), and a LoRA run on the attention trains.
"""

import pytest
import torch

from oss_finetune.modeling import engine, mxfp4
from oss_finetune.modeling.model import apply_lora, build_embedded_model
from oss_finetune.training.trainer import Trainer, TrainingExample

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_values_mxfp4_can_hold_come_back_exactly():
    grid = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0, 6.0] * 2)
    for scale in (2.0**-6, 1.0, 8.0):
        packed, scales = mxfp4.quantize((grid * scale)[None])
        assert packed.shape == (1, 16) and packed.dtype == torch.uint8 and scales.shape == (1, 1)
        assert torch.equal(mxfp4.dequantize(packed, scales, torch.float32)[0], grid * scale)


def test_rounding_error_is_at_most_half_a_step_of_the_block():
    torch.manual_seed(0)
    weight = torch.randn(3, 5, 64) * 0.02
    back = mxfp4.dequantize(*mxfp4.quantize(weight), torch.float32)
    blocks = weight.reshape(3, 5, 2, 32)
    # The widest E2M1 step is 2 (between 4 and 6), at a scale that brings the block's largest within 6.
    step = 2 * torch.exp2(torch.ceil(torch.log2(blocks.abs().amax(-1) / 6)))
    assert ((back - weight).reshape(3, 5, 2, 32).abs() <= step[..., None] / 2 + 1e-12).all()
    assert float((back - weight).norm() / weight.norm()) < 0.15


def test_a_row_that_is_not_a_multiple_of_32_is_refused_by_name():
    with pytest.raises(ValueError, match="multiple of 32"):
        mxfp4.quantize(torch.ones(2, 40))


def quantized_tiny():
    model = build_embedded_model()
    reference = build_embedded_model()
    assert mxfp4.quantize_experts(model) == 2
    # The reference: the same model with each expert stack replaced by its dequantized weights.
    for layer, ref_layer in zip(model.model.layers, reference.model.layers):
        with torch.no_grad():
            for name in ("gate_up_proj", "down_proj"):
                getattr(ref_layer.mlp.experts, name).copy_(layer.mlp.experts.weight(name))
    reference.config._experts_implementation = "eager"
    return model, reference


def test_quantized_experts_compute_what_their_dequantized_weights_compute():
    model, reference = quantized_tiny()
    ids = torch.tensor([[200006, 1428, 200008, 12194, 382, 261, 1746]])
    with torch.no_grad():
        got = model(input_ids=ids).logits
        expected = reference(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_the_experts_shrink_to_about_an_eighth_of_float32():
    model = build_embedded_model()
    before = mxfp4.expert_bytes(model)
    mxfp4.quantize_experts(model)
    # 4 bits per weight plus 8 bits per 32: 4.25 of float32's 32 bits.
    assert mxfp4.expert_bytes(model) == before * 4.25 / 32


def test_attention_lora_trains_over_quantized_experts_with_the_fast_engine(tokenizer, tmp_path):
    model, _ = quantized_tiny()
    peft_model = apply_lora(model, {"r": 4, "alpha": 8}, seed=0)
    ids = tokenizer.encode("Le chat est assis sur le tapis, près de la fenêtre ouverte.", add_special_tokens=False)
    examples = [TrainingExample(ids, [False] * 4 + [True] * (len(ids) - 4))] * 4
    trainer = Trainer(
        peft_model,
        examples,
        {
            "output_dir": str(tmp_path),
            "max_steps": 6,
            "batch_size": 2,
            "gradient_accumulation_steps": 2,
            "learning_rate": 2e-2,
            "warmup_steps": 0,
            "engine": "fast",
        },
    )
    result = trainer.train()
    assert result.status == "completed"
    assert result.metrics[-1].loss < result.metrics[0].loss
    # The packed experts stayed as they were: they are buffers, not trained parameters.
    assert not any("experts" in n for n, p in peft_model.named_parameters() if p.requires_grad)


def test_lora_on_quantized_experts_is_refused():
    model, _ = quantized_tiny()
    with pytest.raises(ValueError, match="MXFP4"):
        apply_lora(model, {"r": 4, "target_experts": True}, seed=0)


def test_load_model_keeps_the_experts_in_mxfp4_on_request():
    from oss_finetune.modeling.model import load_model

    loaded = load_model({"name_or_path": "embedded:tiny", "mxfp4_experts": True})
    assert loaded.quantization == "mxfp4-experts"
    assert "experts kept in MXFP4" in loaded.description
    assert all(isinstance(layer.mlp.experts, mxfp4.Mxfp4Experts) for layer in loaded.model.model.layers)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quantized_grouped_products_on_the_gpu_match_their_dequantized_weights():
    model = build_embedded_model(dtype=torch.bfloat16).to("cuda")
    mxfp4.quantize_experts(model)
    experts = model.model.layers[0].mlp.experts
    x = torch.randn(300, experts.hidden_size, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    indices = torch.randint(0, experts.num_experts, (300, 2), device="cuda")
    weights = torch.softmax(torch.randn(300, 2, device="cuda"), -1).to(torch.bfloat16)
    got = engine.experts_forward(experts, x, indices, weights)
    (grad,) = torch.autograd.grad(got.float().sum(), x)
    # The reference: the dequantized stacks in float32, one expert at a time.
    w_up, w_down = experts.weight("gate_up_proj").float(), experts.weight("down_proj").float()
    xr = x.detach().float().requires_grad_()
    expected = torch.zeros(300, experts.hidden_size, device="cuda")
    for k in range(2):
        e = indices[:, k]
        up = torch.einsum("ti,tio->to", xr, w_up[e]) + experts.gate_up_proj_bias.float()[e]
        gate, lin = up[:, ::2].clamp(max=experts.limit), up[:, 1::2].clamp(-experts.limit, experts.limit)
        act = (lin + 1) * gate * torch.sigmoid(gate * experts.alpha)
        down = torch.einsum("ti,tio->to", act, w_down[e]) + experts.down_proj_bias.float()[e]
        expected = expected + down * weights[:, k, None].float()
    (expected_grad,) = torch.autograd.grad(expected.sum(), xr)
    assert float((got.float() - expected).norm() / expected.norm()) < 2e-2
    assert float((grad.float() - expected_grad).norm() / expected_grad.norm()) < 2e-2


def test_a_model_drawn_layer_by_layer_has_mxfp4_experts_and_the_usual_initialisation():
    from oss_finetune.modeling.model import tiny_config

    config = tiny_config()
    config._attn_implementation = "eager"
    model = mxfp4.build_random_layerwise(config, seed=0, dtype=torch.float32, device="cpu")
    whole = build_embedded_model()
    assert all(isinstance(layer.mlp.experts, mxfp4.Mxfp4Experts) for layer in model.model.layers)
    assert not any(p.is_meta for p in model.parameters()) and not any(b.is_meta for b in model.buffers())
    # The frequencies of the rope are computed as in a model built whole.
    assert torch.equal(model.model.rotary_emb.inv_freq, whole.model.rotary_emb.inv_freq)
    params = dict(model.named_parameters())
    assert torch.equal(params["model.norm.weight"], torch.ones(config.hidden_size))
    assert float(params["model.layers.0.self_attn.q_proj.bias"].abs().sum()) == 0.0
    assert abs(float(params["lm_head.weight"].std()) - config.initializer_range) < 0.01
    logits = model(input_ids=torch.tensor([[200006, 1428, 200008]])).logits
    assert torch.isfinite(logits).all()


def test_staging_on_the_host_moves_each_layer_to_the_device_when_quantizing():
    model = build_embedded_model()
    assert mxfp4.quantize_experts(model, device="cpu") == 2
    assert all(b.device.type == "cpu" for b in model.model.layers[0].mlp.experts.buffers())


def test_the_graph_capturable_product_equals_the_chunked_one():
    from oss_finetune.modeling.mxfp4 import _chunked_product, _chunked_product_fixed

    generator = torch.Generator().manual_seed(3)
    weight = torch.randn(8, 64, 32, generator=generator)  # experts, out, in
    packed, scales = mxfp4.quantize(weight)
    counts = torch.tensor([3, 0, 2, 5, 0, 1, 4, 0])  # some experts get no rows
    offsets = torch.cumsum(counts, 0).to(torch.int32)
    x = torch.randn(int(counts.sum()), 32, generator=generator)
    expected = _chunked_product(x, packed, scales, offsets, transpose=True)
    torch.testing.assert_close(_chunked_product_fixed(x, packed, scales, offsets, transpose=True), expected)
