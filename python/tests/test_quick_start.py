"""The first hour, as the README's quick start walks it, in a real IPython InteractiveShell: a bare verb
acts, the default model is the trained base, every step taken on the way says so in one line, LoRA
targets land where they say or are refused, and a failed step changes nothing.

Only the embedded models load. Where the hub must be unreachable, the hub client is pointed at a
local port that nothing listens on: the real request fails the real way, at once.
"""

from __future__ import annotations

import re
import socket
import time
import warnings

import pytest
from IPython.core.error import UsageError

from oss_finetune.embedded import base as embedded_base
from oss_finetune.notebook import hub
from oss_finetune.notebook import session as session_module

TINY = "embedded:tiny"
SMALL_DATA = {"limit": 4, "max_seq_length": 256}
ONE_STEP = {"max_steps": 1, "batch_size": 2, "gradient_accumulation_steps": 1, "save_steps": 100}


@pytest.fixture
def session(tmp_path, one_torch_thread):
    return session_module.reset_session(
        {"model": {"name_or_path": TINY}, "data": SMALL_DATA, "training": {"output_dir": str(tmp_path / "runs")}}
    )


def run(shell, capsys, source):
    result = shell.run_cell(source)
    out, err = capsys.readouterr()
    return result, out, err


def refused(result, err: str, paragraph: str) -> None:
    assert isinstance(result.error_in_exec, UsageError), err
    assert err.startswith("UsageError: " + paragraph), err
    assert err.count("\n") == 1, err


# -- a verb acts ----------------------------------------------------------------------------------


def test_a_bare_verb_acts(shell, capsys, session):
    result, out, err = run(shell, capsys, "%oss_finetune load")
    assert result.success, err
    assert out.startswith("loaded embedded:tiny: GptOssForCausalLM") and session.loaded is not None
    result, out, err = run(shell, capsys, "%oss_finetune lora")
    assert result.success, err
    assert out.startswith("added LoRA: r 8, alpha 16 on q_proj ") and session.has_adapter()
    session.set_config({"training": ONE_STEP})
    result, out, err = run(shell, capsys, "%oss_finetune train")
    assert result.success, err
    assert "completed 1 step;" in out and session.last_result.status == "completed"
    assert "completed: completed" not in out, "the last line says the status once"


def test_show_lists_a_sections_settings_and_loads_nothing(shell, capsys, session):
    for verb, field in (("load", "name_or_path"), ("data", "max_seq_length"), ("lora", "target_modules")):
        result, out, err = run(shell, capsys, f"%oss_finetune {verb} --show")
        assert result.success, err
        assert f"  {field} " in out or f"* {field} " in out
    result, out, _ = run(shell, capsys, "%oss_finetune train --show")
    assert "max_steps" in out
    assert session.loaded is None and session.prepared is None


def test_model_is_a_spelling_of_name_or_path(shell, capsys, session):
    session.set_config({"model": {"name_or_path": "embedded:tiny-base"}})
    result, out, err = run(shell, capsys, "%oss_finetune load --model embedded:tiny")
    assert result.success, err
    assert session.loaded.name_or_path == TINY and session.config["model"]["name_or_path"] == TINY


def test_a_comment_after_a_magic_is_a_comment(shell, capsys, session):
    result, out, err = run(shell, capsys, "%oss_finetune load --show      # the settings only")
    assert result.success, err
    assert session.loaded is None


# -- the default model ----------------------------------------------------------------------------


@pytest.fixture
def quick_base(tmp_path, monkeypatch):
    """embedded:tiny-base built by its real code path into an empty cache, from a recipe of one step."""
    monkeypatch.setenv("OSS_FINETUNE_CACHE", str(tmp_path / "cache"))
    recipe = dict(embedded_base.BASE_RECIPE, steps=1, reading_per_cell=1, batch_size=2)
    monkeypatch.setattr(embedded_base, "BASE_RECIPE", recipe)


def test_a_person_gets_the_trained_base_by_default(shell, capsys, tmp_path, quick_base, one_torch_thread):
    session = session_module.reset_session({"training": {"output_dir": str(tmp_path / "runs")}})
    assert session.config["model"]["name_or_path"] == "embedded:tiny-base"
    result, out, err = run(shell, capsys, "%oss_finetune chat --max-new-tokens 2 Hello")
    assert result.success, err
    # The first use builds it (its own progress lines), then the one line of the load.
    assert "loaded embedded:tiny-base (the trained offline default) on cpu in float32" in out.splitlines()
    # No progress bars for a few local MiB: in a notebook without ipywidgets they are red stderr.
    assert err == ""
    result, out, err = run(shell, capsys, "%oss_finetune load")
    assert result.success and err == "", err
    assert out.splitlines()[0].startswith("loaded embedded:tiny-base: GptOssForCausalLM")
    assert out.splitlines()[0].endswith(" — the trained offline default")


def test_the_random_model_says_it_is_for_tests(shell, capsys, session):
    _, out, _ = run(shell, capsys, "%oss_finetune load embedded:tiny")
    assert out.splitlines()[0].endswith(
        " — the tiny GPT-OSS, seeded random weights, for tests and benches; embedded:tiny-base is the trained one"
    )


# -- every step on the way says what it did ---------------------------------------------------------


def test_each_step_taken_on_the_way_says_so_in_one_line(shell, capsys, session):
    session.set_config({"training": ONE_STEP})
    result, out, err = run(shell, capsys, "%oss_finetune train")
    assert result.success, err
    lines = out.splitlines()
    assert lines[0] == "loaded embedded:tiny (the tiny GPT-OSS, seeded random weights, for tests and benches; " + (
        "embedded:tiny-base is the trained one) on cpu in float32"
    )
    assert re.fullmatch(
        r"prepared embedded:multilingual: 4 rows, [\d,]+ of [\d,]+ tokens trained \(loss mask assistant\)", lines[1]
    )
    assert lines[2].startswith("added LoRA: r 8, alpha 16 on q_proj ")
    assert lines[3].startswith("memory plan")
    # Nothing is said twice, and what is done is not done again.
    assert sum(line.startswith(("loaded ", "prepared ", "added LoRA")) for line in lines) == 3
    result, out, err = run(shell, capsys, "%oss_finetune chat --max-new-tokens 2 Hi")
    assert result.success, err
    assert not any(line.startswith(("loaded ", "prepared ", "added ")) for line in out.splitlines())


def test_show_prepares_the_data_on_the_way_and_says_so(shell, capsys, session):
    result, out, err = run(shell, capsys, "%oss_finetune show 0")
    assert result.success, err
    lines = out.splitlines()
    assert lines[0].startswith("loaded embedded:tiny (") and lines[1].startswith(
        "prepared embedded:multilingual: 4 rows"
    )


# -- LoRA targets ---------------------------------------------------------------------------------

UNSLOTH_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def lora_counts(line: str) -> dict[str, int]:
    return {name: int(count.replace(",", "")) for name, count in re.findall(r"([\w.]+) ([\d,]+)(?= ·|;)", line)}


def expected_linear_count(model, suffix: str, r: int) -> int:
    return sum(
        r * (m.base_layer.in_features + m.base_layer.out_features)
        for name, m in model.named_modules()
        if name.endswith(suffix) and hasattr(m, "base_layer")
    )


def test_unsloths_mlp_targets_become_lora_on_the_experts_and_say_so(shell, capsys, session):
    result, out, err = run(shell, capsys, f"%oss_finetune lora --r 4 --alpha 8 --targets {UNSLOTH_TARGETS}")
    assert result.success, err
    lines = out.splitlines()
    assert lines[0].startswith("loaded embedded:tiny (")
    assert lines[1].startswith("lora.target_modules: gpt-oss has no gate_proj, up_proj, down_proj modules")
    assert "LoRA goes on the experts' gate_up_proj and down_proj" in lines[1]
    assert lines[2].startswith("added LoRA: r 4, alpha 8 on q_proj ")
    assert len(lines) == 3
    lora = session.config["lora"]
    assert lora["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"] and lora["target_experts"] is True
    trained = [name for name, p in session.model.named_parameters() if p.requires_grad]
    assert any(".mlp.experts." in name for name in trained)
    # The echo's counts are the adapter's: each target's own, and together every trainable parameter.
    counts = lora_counts(lines[2])
    assert list(counts) == ["q_proj", "k_proj", "v_proj", "o_proj", "experts.gate_up_proj", "experts.down_proj"]
    for target in ("q_proj", "k_proj", "v_proj", "o_proj"):
        assert counts[target] == expected_linear_count(session.model, target, 4)
    assert sum(counts.values()) == sum(p.numel() for p in session.model.parameters() if p.requires_grad)
    assert f"{sum(counts.values()):,} trainable parameters of " in lines[2]


def test_an_unknown_target_is_refused_with_the_fix_and_changes_nothing(shell, capsys, session):
    assert run(shell, capsys, "%oss_finetune lora")[0].success
    before, adapter = session.config["lora"], session.model
    result, _, err = run(shell, capsys, "%oss_finetune lora --targets q_proj,qproj")
    refused(result, err, "lora.target_modules: qproj is not a layer of embedded:tiny — did you mean q_proj? ")
    assert "e.g. --targets q_proj,k_proj,v_proj,o_proj" in err
    assert session.config["lora"] == before and session.model is adapter
    result, _, err = run(shell, capsys, "%oss_finetune lora --targets gate_proj,up_proj,down_proj")
    refused(
        result, err, "lora.target_modules: gate_proj, up_proj, down_proj name the MLP, which in gpt-oss is the experts"
    )
    assert "e.g. --targets q_proj,k_proj,v_proj,o_proj --target-experts" in err
    assert session.config["lora"] == before and session.model is adapter


def test_mlp_targets_on_experts_kept_in_mxfp4_are_refused(shell, capsys, session):
    assert run(shell, capsys, "%oss_finetune load embedded:tiny --mxfp4-experts")[0].success
    result, _, err = run(shell, capsys, f"%oss_finetune lora --targets {UNSLOTH_TARGETS}")
    refused(result, err, "lora.target_modules: gate_proj, up_proj, down_proj would put LoRA on the experts, but")
    assert "use --targets q_proj,k_proj,v_proj,o_proj, or load without --mxfp4-experts" in err
    assert not session.has_adapter()


def test_preparing_and_training_warn_about_nothing_that_is_not_the_persons(shell, capsys, session):
    session.set_config({"training": dict(ONE_STEP, gradient_checkpointing=True, engine="transformers")})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result, _, err = run(shell, capsys, "%oss_finetune train")
    assert result.success, err
    assert [str(w.message) for w in caught if issubclass(w.category, FutureWarning)] == []


# -- a failed step changes nothing ----------------------------------------------------------------


@pytest.fixture
def hub_unreachable(monkeypatch, tmp_path):
    """The hub client pointed at a local port nothing listens on, with an empty cache of its own."""
    from huggingface_hub import constants

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_a_failed_load_keeps_the_loaded_model_and_says_what_to_do_at_once(shell, capsys, session, hub_unreachable):
    assert run(shell, capsys, "%oss_finetune load")[0].success
    loaded = session.loaded
    started = time.monotonic()
    result, _, err = run(shell, capsys, "%oss_finetune load --model openai/gpt-oss-20b")
    assert time.monotonic() - started < hub.PROBE_SECONDS
    refused(result, err, "model.name_or_path: the Hugging Face hub (http://127.0.0.1:")
    assert "openai/gpt-oss-20b is not in its cache — give a local folder that holds the checkpoint" in err
    assert "`%oss_finetune load --model /path/to/gpt-oss-20b`" in err and "HF_HUB_OFFLINE=1" in err
    assert session.config["model"]["name_or_path"] == TINY and session.loaded is loaded
    _, out, _ = run(shell, capsys, "%oss_finetune status")
    assert out.startswith("model: embedded:tiny: ") and "  model: embedded:tiny\n" in out
    # The next step goes on with the model that is loaded; it does not try the hub again.
    result, out, err = run(shell, capsys, "%oss_finetune lora")
    assert result.success, err
    assert out.startswith("added LoRA") and session.loaded is loaded


def test_a_hub_model_in_the_cache_is_pointed_at_hf_hub_offline(shell, capsys, session, hub_unreachable, monkeypatch):
    from huggingface_hub import constants

    snapshot = hub_unreachable / "models--openai--gpt-oss-20b" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (hub_unreachable / "models--openai--gpt-oss-20b" / "refs").mkdir()
    (hub_unreachable / "models--openai--gpt-oss-20b" / "refs" / "main").write_text("0123abcd")
    result, _, err = run(shell, capsys, "%oss_finetune load --model openai/gpt-oss-20b")
    assert "but openai/gpt-oss-20b is in its cache — restart the kernel with HF_HUB_OFFLINE=1" in err
    assert session.loaded is None and session.config["model"]["name_or_path"] == TINY
    # With HF_HUB_OFFLINE the cached model is let through to the loader, and a missing one is said at once.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hub.check("openai/gpt-oss-20b")
    result, _, err = run(shell, capsys, "%oss_finetune load --model openai/gpt-oss-120b")
    refused(result, err, "model.name_or_path: openai/gpt-oss-120b is not in the Hugging Face cache (")
    assert "HF_HUB_OFFLINE is set" in err


def test_a_failed_data_step_keeps_the_data_settings(shell, capsys, session, tmp_path):
    result, _, err = run(shell, capsys, f"%oss_finetune data {tmp_path / 'missing.jsonl'}")
    assert not result.success
    assert session.config["data"]["source"] == "embedded:multilingual" and session.prepared is None


def test_local_names_are_never_sent_to_the_hub():
    assert hub.is_hub_id("openai/gpt-oss-20b") and hub.is_hub_id("gpt2")
    for name in ("embedded:tiny", "./models/gpt-oss", "/models/gpt-oss", "~/gpt-oss", "a/b/c"):
        assert not hub.is_hub_id(name)
