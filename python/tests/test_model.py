"""The base model and the LoRA adapter: golden facts of the embedded GPT-OSS, the local-folder loading
path, and the reference's trainable-parameter count on the real gpt-oss-20b architecture."""

import json

import pytest
import torch
from transformers import GptOssForCausalLM

from oss_finetune.modeling import model as model_mod
from oss_finetune.modeling.model import (
    EXPERT_PARAMETERS,
    VOCAB_SIZE,
    ModelLoadError,
    all_parameters,
    apply_lora,
    build_embedded_model,
    describe_lora,
    gpt_oss_20b_config,
    load_model,
    trainable_parameters,
)

CUDA = torch.cuda.is_available()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def loaded():
    return load_model({"name_or_path": "embedded:tiny"})


def test_embedded_default_is_a_real_gpt_oss_with_the_full_vocabulary(loaded):
    model = loaded.model
    assert type(model) is GptOssForCausalLM
    assert loaded.embedded and loaded.name_or_path == "embedded:tiny"
    assert model.model.embed_tokens.weight.shape[0] == VOCAB_SIZE == 201_088
    assert model.lm_head.weight.shape[0] == 201_088
    config = model.config
    # Every feature of the real architecture is present, only narrower.
    assert config.num_local_experts > config.num_experts_per_tok > 1
    assert config.layer_types == ["sliding_attention", "full_attention"]
    assert config.sliding_window is not None
    assert config.rope_parameters["rope_type"] == "yarn" and config.rope_parameters["factor"] == 32.0
    assert model.model.layers[0].self_attn.sinks.shape == (config.num_attention_heads,)
    assert model.model.layers[0].mlp.experts.gate_up_proj.ndim == 3


@pytest.mark.skipif(CUDA, reason="the 'auto' choice differs on a GPU machine")
def test_the_line_says_which_device_and_dtype_and_why(loaded):
    assert loaded.device == torch.device("cpu") and loaded.dtype == torch.float32
    assert "on cpu in float32" in loaded.description
    assert "no CUDA GPU found" in loaded.description
    assert "vocab 201,088" in loaded.description
    assert repr(loaded).startswith("LoadedModel(embedded:tiny")


def test_the_real_tokenizer_comes_with_the_embedded_model(loaded):
    tok = loaded.tokenizer
    assert tok.convert_tokens_to_ids("<|return|>") == 200002
    assert tok.convert_tokens_to_ids("<|start|>") == 200006
    assert tok.convert_tokens_to_ids("<|message|>") == 200008
    assert max(tok.get_vocab().values()) < VOCAB_SIZE


def test_the_embedded_model_is_the_same_on_every_build_and_leaves_the_callers_rng_alone():
    torch.manual_seed(7)
    expected_next = torch.rand(3)
    torch.manual_seed(7)
    first = build_embedded_model()
    assert torch.equal(torch.rand(3), expected_next)
    second = build_embedded_model()
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name


def test_a_saved_model_loads_through_the_local_folder_path_with_the_same_logits(loaded, tmp_path):
    loaded.model.save_pretrained(tmp_path)
    again = load_model({"name_or_path": str(tmp_path), "device": "cpu", "dtype": "float32"})
    assert type(again.model) is GptOssForCausalLM and not again.embedded
    assert str(tmp_path) in again.description and "float32" in again.description
    # The folder has no tokenizer files, so the vendored gpt-oss tokenizer stands in.
    assert again.tokenizer.convert_tokens_to_ids("<|return|>") == 200002
    ids = torch.tensor([[200006, 1428, 200008, 13225, 11, 2375, 0, 200007, 200006]])
    with torch.no_grad():
        assert torch.equal(loaded.model(ids).logits, again.model(ids).logits)


def test_an_mxfp4_checkpoint_is_dequantized_to_bf16(monkeypatch, loaded, tmp_path):
    loaded.model.config.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "mxfp4", "modules_to_not_convert": ["lm_head"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    seen = {}

    def fake_from_pretrained(name, **kwargs):
        seen.update(kwargs)
        return build_embedded_model()

    monkeypatch.setattr(GptOssForCausalLM, "from_pretrained", staticmethod(fake_from_pretrained))
    result = load_model({"name_or_path": str(tmp_path), "device": "cpu"}, tokenizer=loaded.tokenizer)
    assert seen["quantization_config"].dequantize is True
    assert result.quantization == "mxfp4->dequantized"
    assert "dequantized to bf16" in result.description
    with pytest.raises(ModelLoadError, match="MXFP4"):
        monkeypatch.setattr(model_mod, "_bitsandbytes_available", lambda: True)
        monkeypatch.setattr(
            model_mod, "choose_device_and_dtype", lambda *a: (torch.device("cuda", 0), torch.bfloat16, "test")
        )
        load_model({"name_or_path": str(tmp_path), "load_in_4bit": True})


def test_a_missing_model_folder_is_named_not_sent_to_the_hub(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(ModelLoadError, match=f"the model folder {missing} does not exist"):
        load_model({"name_or_path": str(missing), "device": "cpu"})
    with pytest.raises(ModelLoadError, match="the model folder ./checkpoints/gpt-oss does not exist"):
        load_model({"name_or_path": "./checkpoints/gpt-oss", "device": "cpu"})


@pytest.mark.skipif(CUDA, reason="checks the message shown without a GPU")
def test_4bit_and_cuda_without_a_gpu_say_so_clearly():
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model({"name_or_path": "embedded:tiny", "load_in_4bit": True})
    with pytest.raises(ModelLoadError, match="no CUDA GPU"):
        load_model({"name_or_path": "embedded:tiny", "device": "cuda"})


def test_lora_on_gpt_oss_20b_attention_has_the_reference_count():
    with torch.device("meta"):
        base = GptOssForCausalLM(gpt_oss_20b_config())
    assert all_parameters(base) == 20_914_757_184  # "20.9 B parameters"
    adapted = apply_lora(base, {"r": 8, "alpha": 16})
    assert trainable_parameters(adapted) == 3_981_312
    assert "3,981,312 trainable" in describe_lora(adapted)


def test_lora_on_gpt_oss_20b_experts_uses_target_parameters():
    with torch.device("meta"):
        base = GptOssForCausalLM(gpt_oss_20b_config())
    adapted = apply_lora(base, {"r": 8, "target_experts": True})
    assert trainable_parameters(adapted) == 92_454_912  # 92.45 M, as measured with peft's target_parameters
    assert list(adapted.peft_config["default"].target_parameters) == list(EXPERT_PARAMETERS)


def test_lora_on_the_tiny_model_trains_only_the_adapter_and_starts_as_a_no_op():
    base = build_embedded_model()
    ids = torch.tensor([[200006, 1428, 200008, 13225, 11]])
    with torch.no_grad():
        expected = base(ids).logits.clone()
    adapted = apply_lora(base, {"r": 4, "target_experts": True}, seed=0)
    trainable = [n for n, p in adapted.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("experts" in n for n in trainable)
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, expected, atol=1e-6)  # lora_B starts at zero
    adapted(ids).logits.float().logsumexp(-1).sum().backward()
    assert all(p.grad is not None for p in adapted.parameters() if p.requires_grad)
    assert all(p.grad is None for p in adapted.parameters() if not p.requires_grad)


def test_the_adapter_seed_fixes_its_initial_weights():
    a = apply_lora(build_embedded_model(), {"r": 4}, seed=3)
    b = apply_lora(build_embedded_model(), {"r": 4}, seed=3)
    for (name, x), (_, y) in zip(a.named_parameters(), b.named_parameters()):
        if "lora_A" in name:
            assert torch.equal(x, y), name
