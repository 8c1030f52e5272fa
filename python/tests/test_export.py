"""Exports (modeling.export): each format written, read back by its consumer and compared with the live
model; a corrupted export caught with the first differing token named; vLLM's gpt-oss LoRA layout
checked against a fixture derived from vLLM's source; the Harmony chat template against core.harmony.

Everything runs on embedded:tiny on the CPU with real transformers, peft, gguf and (where installed)
llama-cpp-python."""

from __future__ import annotations

import json

import pytest
import torch

from oss_finetune.modeling import export as ex
from oss_finetune.modeling.model import apply_lora, load_model


@pytest.fixture(scope="module")
def live(one_torch_thread):
    """embedded:tiny with LoRA on the attention and the experts, its B factors drawn so the adapter matters."""
    loaded = load_model({"name_or_path": "embedded:tiny", "device": "cpu", "dtype": "float32"})
    model = apply_lora(loaded.model, {"target_experts": True}, seed=0)
    draw = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=draw) * 0.05)
    return model, loaded.tokenizer


@pytest.fixture(scope="module")
def prompts(live):
    return ex.probe_prompts(live[1])[:2]


@pytest.mark.parametrize("fmt", ["peft", "vllm", "merged", "mxfp4"])
def test_each_format_is_written_read_back_by_its_consumer_and_compared(live, prompts, tmp_path, fmt):
    model, tokenizer = live
    result = ex.export(model, tokenizer, fmt, tmp_path / fmt, base_model="embedded:tiny", prompts=prompts)
    check = result.verification
    assert check is not None and check.probes == 2 and check.tokens == 2 * ex.NEW_TOKENS
    assert check.max_logit_diff <= check.tolerance
    line = result.line()
    assert line.startswith(f"{fmt}: wrote {tmp_path / fmt} (") and "verified with" in line
    manifest = json.loads((tmp_path / fmt / ex.MANIFEST).read_text())
    assert manifest["base_model"] == "embedded:tiny" and manifest["verified"]["greedy_tokens_equal"] == check.tokens


def test_peft_notes_its_base_model(live, prompts, tmp_path):
    model, tokenizer = live
    ex.export(model, tokenizer, "peft", tmp_path / "a", base_model="embedded:tiny", verify=False)
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "embedded:tiny"


def test_merged_has_no_quantization_config_and_carries_tokenizer_and_template(live, tmp_path):
    model, tokenizer = live
    ex.export(model, tokenizer, "merged", tmp_path / "m", base_model="embedded:tiny", verify=False)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["GptOssForCausalLM"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "model.safetensors"), framework="pt") as reader:
        assert {reader.get_slice(k).get_dtype() for k in reader.keys()} == {"BF16"}
    from transformers import AutoTokenizer

    reloaded = AutoTokenizer.from_pretrained(str(tmp_path / "m"))
    assert reloaded.chat_template


def test_mxfp4_is_in_openais_layout(live, tmp_path):
    """The released checkpoints' names, shapes, dtypes and quantization_config."""
    model, tokenizer = live
    ex.export(model, tokenizer, "mxfp4", tmp_path / "q", base_model="embedded:tiny", verify=False)
    config = json.loads((tmp_path / "q" / "config.json").read_text())
    assert config["quantization_config"] == ex.MXFP4_QUANTIZATION_CONFIG
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "q" / "model.safetensors"))
    cfg = model.get_base_model().config
    experts, hidden, inter = cfg.num_local_experts, cfg.hidden_size, cfg.intermediate_size
    prefix = "model.layers.0.mlp.experts."
    assert tensors[prefix + "gate_up_proj_blocks"].shape == (experts, 2 * inter, hidden // 32, 16)
    assert tensors[prefix + "gate_up_proj_scales"].shape == (experts, 2 * inter, hidden // 32)
    assert tensors[prefix + "down_proj_blocks"].shape == (experts, hidden, inter // 32, 16)
    assert tensors[prefix + "down_proj_blocks"].dtype == torch.uint8
    assert tensors[prefix + "gate_up_proj_bias"].dtype == torch.bfloat16
    assert prefix + "gate_up_proj" not in tensors


def test_a_corrupted_export_is_caught_naming_the_first_differing_token(live, prompts, tmp_path):
    model, tokenizer = live
    folder = tmp_path / "bad"
    ex.export(model, tokenizer, "merged", folder, base_model="embedded:tiny", verify=False)
    reference = ex._greedy_reference(model, prompts[:1], ex.NEW_TOKENS)
    first = reference.sequences[0][reference.prompt_lengths[0]]
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    # The output row of the first answer token pushed far down: the export must pick something else there.
    tensors["lm_head.weight"][first] = -tensors["lm_head.weight"][first] * 50
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ex.ExportMismatch) as caught:
        ex.verify_export(model, tokenizer, "merged", folder, prompts[:1])
    message = str(caught.value)
    assert "generated token 1:" in message and f"(id {first})" in message and "picks" in message


def test_a_vllm_file_with_the_expert_stacks_swapped_is_caught(live, prompts, tmp_path):
    model, tokenizer = live
    folder = tmp_path / "v"
    ex.export(model, tokenizer, "vllm", folder, base_model="embedded:tiny", verify=False)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "adapter_model.safetensors"))
    outer, inner = (
        "base_model.model.model.layers.0.mlp.experts.",
        "base_model.model.model.layers.0.mlp.experts.base_layer.",
    )
    for part in ("lora_A.weight", "lora_B.weight"):
        tensors[outer + part], tensors[inner + part] = tensors[inner + part], tensors[outer + part]
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    with pytest.raises((ex.ExportMismatch, RuntimeError)):
        ex.verify_export(model, tokenizer, "vllm", folder, prompts[:1])


def test_vllm_layout_matches_the_fixture_derived_from_vllms_source(live, tmp_path):
    """vLLM cannot run here (it needs its CUDA build), so the layout is checked against what its source
    does with a gpt-oss adapter (ex.VLLM_SOURCE): LoRAModel.from_local_checkpoint keeps keys ending in
    lora_A.weight / lora_B.weight under base_model.model., the model's hf_to_vllm_mapper turns
    .self_attn. into .attn., packed_modules_mapping packs q/k/v into qkv_proj, and for the 3-D experts
    (is_3d_moe_weight) LoRAModelManager._stack_moe_lora_weights takes ``<experts>.base_layer`` as
    gate_up_proj and ``<experts>`` as down_proj, reshaping A (E*r, in) to (E, r, in) and B (out, r*E) to
    (out, r, E), then permuting B to (E, out, r). Here each expert's product B_e @ A_e must equal peft's
    own delta for that expert."""
    model, tokenizer = live
    ex.export(model, tokenizer, "vllm", tmp_path / "v", base_model="embedded:tiny", verify=False)
    from safetensors.torch import load_file

    tensors = load_file(str(tmp_path / "v" / "adapter_model.safetensors"))
    cfg = model.get_base_model().config
    rank, experts = 8, cfg.num_local_experts
    hidden, inter, heads, kv, head = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_attention_heads,
        cfg.num_key_value_heads,
        cfg.head_dim,
    )
    expected = {}
    for layer in range(cfg.num_hidden_layers):
        attn = f"base_model.model.model.layers.{layer}.self_attn."
        for proj, out_width, in_width in (
            ("q_proj", heads * head, hidden),
            ("k_proj", kv * head, hidden),
            ("v_proj", kv * head, hidden),
            ("o_proj", hidden, heads * head),
        ):
            expected[f"{attn}{proj}.lora_A.weight"] = (rank, in_width)
            expected[f"{attn}{proj}.lora_B.weight"] = (out_width, rank)
        moe = f"base_model.model.model.layers.{layer}.mlp.experts."
        expected[f"{moe}base_layer.lora_A.weight"] = (experts * rank, hidden)
        expected[f"{moe}base_layer.lora_B.weight"] = (2 * inter, rank * experts)
        expected[f"{moe}lora_A.weight"] = (experts * rank, inter)
        expected[f"{moe}lora_B.weight"] = (hidden, rank * experts)
    assert {k: tuple(v.shape) for k, v in tensors.items()} == expected
    config = json.loads((tmp_path / "v" / "adapter_config.json").read_text())
    assert config["r"] == rank and config["lora_alpha"] == 16 and config["base_model_name_or_path"] == "embedded:tiny"

    scaling = config["lora_alpha"] / config["r"]
    layers = ex._lora_layers(model)
    for stack, key in (("gate_up_proj", "base_layer."), ("down_proj", "")):
        moe = f"base_model.model.model.layers.1.mlp.experts.{key}"
        a = tensors[moe + "lora_A.weight"].reshape(experts, -1, tensors[moe + "lora_A.weight"].shape[-1])
        b = tensors[moe + "lora_B.weight"]
        b = b.reshape(b.shape[0], -1, experts).permute(2, 0, 1)  # (E, out, r)
        layer, adapters = layers[f"model.layers.1.mlp.experts.{stack}"]
        peft_delta = layer.get_delta_weight(adapters[0]).detach()  # (E, in, out), transformers' layout
        for e in range(experts):
            torch.testing.assert_close((b[e] @ a[e]).T * scaling, peft_delta[e], rtol=1e-5, atol=1e-6)


def test_vllm_refuses_what_vllm_cannot_map(tmp_path):
    loaded = load_model({"name_or_path": "embedded:tiny", "device": "cpu", "dtype": "float32"})
    model = apply_lora(loaded.model, {"target_modules": ["q_proj", "lm_head"]}, seed=0)
    with pytest.raises(ex.ExportError) as caught:
        ex.export(model, loaded.tokenizer, "vllm", tmp_path / "v", base_model="embedded:tiny")
    assert caught.value.path == "lora.target_modules" and "lm_head" in str(caught.value)
    assert "q_proj,k_proj,v_proj,o_proj" in str(caught.value)


def test_an_mxfp4_stack_round_trips_through_openais_and_ggmls_block_layouts():
    weight = torch.randn(3, 64, 96, generator=torch.Generator().manual_seed(0))
    blocks, scales = ex.mxfp4_pack(weight)
    rounded = ex.mxfp4_unpack(blocks, scales)
    assert rounded.shape == weight.shape
    assert float((rounded - weight).norm() / weight.norm()) < 0.2  # MXFP4's own error, about 10%
    gguf_quants = pytest.importorskip("gguf.quants")
    from gguf import GGMLQuantizationType

    rows = ex.gguf_mxfp4_blocks(blocks, scales)  # (experts, out, groups * 17)
    back = gguf_quants.dequantize(rows, GGMLQuantizationType.MXFP4)  # (experts, out, in)
    torch.testing.assert_close(torch.from_numpy(back).transpose(1, 2), rounded, rtol=0, atol=0)


def test_gguf_is_written_with_llama_cpps_names_and_verified(live, prompts, tmp_path):
    gguf = pytest.importorskip("gguf")
    model, tokenizer = live
    result = ex.export(model, tokenizer, "gguf", tmp_path / "g", base_model="embedded:tiny", prompts=prompts)
    reader = gguf.GGUFReader(str(tmp_path / "g" / "model.gguf"))
    names = {t.name: t for t in reader.tensors}
    assert names["blk.0.ffn_gate_exps.weight"].tensor_type == gguf.GGMLQuantizationType.MXFP4
    assert names["blk.0.attn_q.weight"].tensor_type == gguf.GGMLQuantizationType.BF16
    assert names["blk.1.attn_sinks.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    for expected in ("token_embd.weight", "output.weight", "output_norm.weight", "blk.0.post_attention_norm.weight"):
        assert expected in names
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "gpt-oss"
    assert "tokenizer.chat_template" in reader.fields
    check = result.verification
    assert check is not None
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        assert "no logits were compared" in check.note
    else:
        assert check.consumer.startswith("llama.cpp") and check.tokens >= int(0.9 * 2 * ex.NEW_TOKENS)


def test_the_chat_template_renders_what_core_harmony_renders(tokenizer):
    from oss_finetune.core import harmony
    from oss_finetune.core.chat_template import HARMONY_CHAT_TEMPLATE

    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "thinking": "Add them.", "content": "5"},
        {"role": "user", "content": "And 2 + 4?"},
    ]
    text = tokenizer.apply_chat_template(
        messages,
        chat_template=HARMONY_CHAT_TEMPLATE,
        tokenize=False,
        add_generation_prompt=True,
        reasoning_effort="low",
        current_date="2026-12-07",
    )
    conversation = harmony.Conversation(
        [
            harmony.Message("user", "What is 2 + 3?"),
            harmony.Message("assistant", "Add them.", channel="analysis"),
            harmony.Message("assistant", "5", channel="final"),
            harmony.Message("user", "And 2 + 4?"),
        ],
        reasoning_effort="low",
        developer_instructions="Answer briefly.",
    )
    rendered = harmony.render(conversation, mode="prompt", date="2026-12-07", tokenizer=tokenizer)
    assert text == rendered.decoded()


def test_the_magic_and_the_command_line_offer_every_format():
    from oss_finetune import __main__ as entry
    from oss_finetune.notebook import magics

    save = magics.SUBCOMMANDS["save"]
    option = next(a for a in save.arguments if a.flags == ["--format"])
    assert tuple(option.choices) == ex.FORMATS
    parser = entry.build_parser()
    args = parser.parse_args(["export", "vllm", "out", "--adapter", "a"])
    assert args.format == "vllm" and args.run.__name__ == "run_export"


def test_save_format_in_a_notebook_writes_verifies_and_says_so_in_one_line(shell, capsys, tmp_path):
    from oss_finetune.notebook import session as session_module

    session = session_module.reset_session(
        {"model": {"name_or_path": "embedded:tiny", "dtype": "float32"}, "training": {"output_dir": str(tmp_path)}}
    )
    session.lora()
    capsys.readouterr()
    result = shell.run_cell(f"%oss_finetune save --format peft {tmp_path / 'out'}")
    out = capsys.readouterr().out
    assert result.success, out
    assert f"peft: wrote {tmp_path / 'out'} (" in out and "verified with peft" in out
    assert session.saved["peft"] == str(tmp_path / "out")
    result = shell.run_cell("%oss_finetune save --format onnx")
    assert not result.success


def test_checking_an_adapter_leaves_the_live_one_active_and_as_trainable_as_it_was(live, prompts, tmp_path):
    model, tokenizer = live
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    ex.export(model, tokenizer, "vllm", tmp_path / "v", base_model="embedded:tiny", prompts=prompts[:1])
    assert model.active_adapter == "default" and list(model.peft_config) == ["default"]
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before


def test_the_mxfp4_export_loads_in_the_packages_own_mxfp4_loader_too(live, prompts, tmp_path):
    """modeling.mxfp4.load_checkpoint reads OpenAI's checkpoints as released (`load --mxfp4-experts`)."""
    from oss_finetune.modeling.mxfp4 import load_checkpoint

    model, tokenizer = live
    ex.export(model, tokenizer, "mxfp4", tmp_path / "q", base_model="embedded:tiny", verify=False)
    reloaded = load_checkpoint(tmp_path / "q", dtype=torch.float32, device="cpu")
    with ex.as_stored(model, ex._mxfp4_round) as stored:
        reference = ex._greedy_reference(stored, prompts[:1], ex.NEW_TOKENS)
    scores = ex._scores(reloaded, reference.sequences[0], reference.prompt_lengths[0])
    torch.testing.assert_close(scores, reference.logits[0], rtol=0, atol=ex._tolerance(torch.float32, scores))


def test_an_export_never_deletes_a_folder_it_did_not_write(live, tmp_path):
    model, tokenizer = live
    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    with pytest.raises(ex.ExportError) as caught:
        ex.export(model, tokenizer, "peft", tmp_path / "adapter", base_model="embedded:tiny", verify=False)
    assert caught.value.path == "path" and (tmp_path / "adapter" / "adapter_config.json").exists()


def test_llama_cpp_catches_a_gguf_with_the_experts_in_openais_nibble_order(live, prompts, tmp_path, monkeypatch):
    pytest.importorskip("llama_cpp")
    model, tokenizer = live

    def unrepacked(blocks, scales):  # OpenAI's two-consecutive-codes bytes, without ggml's reordering
        rows = torch.cat((scales.unsqueeze(-1), blocks), dim=-1)
        return rows.reshape(rows.shape[0], rows.shape[1], -1).numpy()

    monkeypatch.setattr(ex, "gguf_mxfp4_blocks", unrepacked)
    with pytest.raises(ex.ExportMismatch) as caught:
        ex.export(model, tokenizer, "gguf", tmp_path / "g", base_model="embedded:tiny", prompts=prompts[:1])
    message = str(caught.value)
    assert "gguf export at" in message and ("picks" in message or "logits differ" in message)
