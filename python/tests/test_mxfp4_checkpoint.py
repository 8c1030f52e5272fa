"""Loading an MXFP4 checkpoint (the format OpenAI released gpt-oss in) with `mxfp4_experts`: the
experts' blocks and scales are read as stored, never expanded to bf16.

No hub here, so the test writes a small checkpoint in that format itself: the tiny GPT-OSS with its
experts quantized, stored as `{proj}_blocks` (experts, out, in/32, 16) and `{proj}_scales` (experts,
out, in/32) with a `quantization_config` of `quant_method: mxfp4`. transformers' own loader reads the
same folder and dequantizes it (`Mxfp4Config(dequantize=True)`): that is the reference.
"""

import json

import pytest
import torch
from safetensors.torch import save_file
from transformers import GptOssForCausalLM, Mxfp4Config

from oss_finetune.modeling.export import MXFP4_QUANTIZATION_CONFIG
from oss_finetune.modeling.model import TINY_SEED, ModelLoadError, load_model, tiny_config
from oss_finetune.modeling.mxfp4 import Mxfp4Experts, quantize


def write_checkpoint(folder, *, drop: str | None = None):
    config = tiny_config()
    torch.manual_seed(TINY_SEED)
    model = GptOssForCausalLM(config)
    tensors = {}
    for name, value in model.state_dict().items():
        module, _, leaf = name.rpartition(".")
        if module.endswith("mlp.experts") and leaf in ("gate_up_proj", "down_proj"):
            packed, scales = quantize(value.transpose(1, 2))  # stored (experts, out, in)
            tensors[f"{module}.{leaf}_blocks"] = packed.reshape(*scales.shape, 16)
            tensors[f"{module}.{leaf}_scales"] = scales
        else:
            tensors[name] = value.to(torch.bfloat16).contiguous()
    if drop:
        del tensors[drop]
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "model.safetensors"))
    values = config.to_dict()
    values["quantization_config"] = MXFP4_QUANTIZATION_CONFIG
    (folder / "config.json").write_text(json.dumps(values))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("gpt-oss-mxfp4"))


def test_the_experts_are_read_as_stored_and_equal_transformers_dequantized_ones(checkpoint, tokenizer):
    ours = load_model({"name_or_path": str(checkpoint), "mxfp4_experts": True, "device": "cpu"}, tokenizer=tokenizer)
    assert ours.quantization == "mxfp4-experts" and "experts kept in MXFP4 as released" in ours.description
    reference = GptOssForCausalLM.from_pretrained(
        checkpoint, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.float32
    ).eval()
    for layer, expected in zip(ours.model.model.layers, reference.model.layers):
        experts = layer.mlp.experts
        assert isinstance(experts, Mxfp4Experts) and experts.gate_up_proj_blocks.dtype == torch.uint8
        for name in ("gate_up_proj", "down_proj"):
            assert torch.equal(experts.weight(name), getattr(expected.mlp.experts, name))
            assert torch.equal(getattr(experts, f"{name}_bias"), getattr(expected.mlp.experts, f"{name}_bias"))
    plain = {n: p for n, p in reference.named_parameters() if ".experts." not in n}
    for name, param in ours.model.named_parameters():
        if ".experts." not in name:
            assert torch.equal(param, plain[name]), name
    ids = torch.tensor([tokenizer.encode("Bon, on calcule les deux côtés.")])
    with torch.no_grad():
        got, expected = ours.model(ids).logits, reference(ids).logits
    # Same weights; the experts' products are summed in another order (our grouped path against
    # transformers'), which a many-core CPU's threads make differ in the last float32 bits.
    assert (got - expected).abs().max() <= 1e-3 * expected.abs().max()


def test_a_missing_tensor_is_named(tmp_path):
    folder = write_checkpoint(tmp_path / "broken", drop="model.layers.1.mlp.experts.down_proj_scales")
    with pytest.raises(ModelLoadError, match="layer 1's experts lack down_proj_scales"):
        load_model({"name_or_path": str(folder), "mxfp4_experts": True, "device": "cpu"})
    folder = write_checkpoint(tmp_path / "no-norm", drop="model.norm.weight")
    with pytest.raises(ModelLoadError, match="lacks 1 weight"):
        load_model({"name_or_path": str(folder), "mxfp4_experts": True, "device": "cpu"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_the_gpu_each_tensor_goes_straight_there(checkpoint, tokenizer):
    torch.cuda.reset_peak_memory_stats()
    ours = load_model({"name_or_path": str(checkpoint), "mxfp4_experts": True, "device": "cuda"}, tokenizer=tokenizer)
    assert ours.dtype == torch.bfloat16
    assert all(t.is_cuda for t in list(ours.model.parameters()) + list(ours.model.buffers()))
    held = torch.cuda.memory_allocated()
    # Nothing of bf16 expert size was made on the way: the peak is the model plus at most one tensor.
    assert torch.cuda.max_memory_allocated() <= held * 1.5
    reference = GptOssForCausalLM.from_pretrained(
        checkpoint, quantization_config=Mxfp4Config(dequantize=True), dtype=torch.bfloat16
    ).eval()
    ids = torch.tensor([tokenizer.encode("Bon, on calcule les deux côtés.")])
    with torch.no_grad():
        got = ours.model(ids.cuda()).logits.float().cpu()
        expected = reference(ids).logits.float()
    assert (got - expected).abs().max() < 0.05 * expected.abs().max()


def test_from_the_hub_only_the_top_level_weights_are_fetched():
    from huggingface_hub.utils import filter_repo_objects

    from oss_finetune.modeling.model import CHECKPOINT_FILES

    # The layout of OpenAI's gpt-oss repos: transformers' files at the top, other formats in folders.
    listing = [
        "config.json",
        "generation_config.json",
        "model-00000-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "original/model.safetensors",
        "original/config.json",
        "metal/model.bin",
        "README.md",
    ]
    fetched = list(filter_repo_objects(listing, allow_patterns=list(CHECKPOINT_FILES)))
    assert fetched == [
        "config.json",
        "generation_config.json",
        "model-00000-of-00002.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
    ]
