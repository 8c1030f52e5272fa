"""The tutorial's parameters: a hub model gets the reference run, the embedded one its CPU-sized run."""

import json
from pathlib import Path

import pytest

from oss_finetune.core import schema
from oss_finetune.notebook import tutorial

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "gpt-oss-multilingual-reasoning.ipynb"


def test_a_hub_model_gets_the_reference_settings():
    config = tutorial.settings("openai/gpt-oss-20b", "HuggingFaceH4/Multilingual-Thinking")
    assert config["model"]["name_or_path"] == "openai/gpt-oss-20b"
    assert config["data"]["source"] == "HuggingFaceH4/Multilingual-Thinking"
    assert (config["lora"]["r"], config["lora"]["alpha"]) == (8, 16)
    assert config["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    training = config["training"]
    assert (training["max_steps"], training["batch_size"], training["gradient_accumulation_steps"]) == (60, 1, 16)
    assert training["learning_rate"] == 2e-4
    assert schema.schema_issues("finetune-config", config) == []


def test_parameters_override_and_none_keeps_the_default():
    config = tutorial.settings("openai/gpt-oss-20b", "d.jsonl", MAX_STEPS=2, LORA_R=None)
    assert config["training"]["max_steps"] == 2
    assert config["lora"]["r"] == 8


def test_gpus_sets_data_parallel_training():
    assert tutorial.settings("openai/gpt-oss-20b", "d.jsonl", GPUS=4)["training"]["gpus"] == 4
    assert tutorial.settings("openai/gpt-oss-20b", "d.jsonl", GPUS=None)["training"]["gpus"] == 1


def test_a_bad_parameter_is_named():
    with pytest.raises(ValueError, match="MAX_STEP"):
        tutorial.settings("openai/gpt-oss-20b", "d.jsonl", MAX_STEP=2)
    with pytest.raises(schema.SchemaError, match=r"^lora\.r: must be >= 1"):
        tutorial.settings("openai/gpt-oss-20b", "d.jsonl", LORA_R=0)


def test_the_embedded_model_gets_its_own_run():
    config = tutorial.settings("embedded:tiny-base", "embedded:multilingual")
    assert config["model"]["name_or_path"] == "embedded:tiny-base"
    assert config["training"]["max_steps"] < 60


def test_the_committed_notebook_has_no_outputs_and_a_parameters_cell():
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    for name in ("MODEL", "DATA", "MAX_STEPS", "MAX_SEQ_LENGTH"):
        assert f"{name} = " in source
    # Every parameter the notebook passes to tutorial.settings is one it knows.
    names = set(name.split(" = ")[0] for name in source.splitlines() if " = " in name)
    assert set(tutorial.LANGUAGE_PARAMETERS) <= names


def test_the_tutorial_watches_its_goal_at_a_cadence_the_cpu_affords():
    tiny = tutorial.settings("embedded:tiny-base", "embedded:multilingual")["training"]
    assert (tiny["watch_every"], tiny["watch_count"]) == (10, 4)
    assert tiny["watch_prompts"] == "embedded:multilingual-heldout"
    # Three watches in the 30-step CPU run; a hub model's 60 steps are watched three times too.
    assert tiny["max_steps"] // tiny["watch_every"] == 3
    hub = tutorial.settings("openai/gpt-oss-20b", "HuggingFaceH4/Multilingual-Thinking")["training"]
    assert hub["max_steps"] // hub["watch_every"] == 3
    # The notebook's held-out questions are the watch's; 0 switches the watch off.
    mine = tutorial.settings("embedded:tiny-base", "embedded:multilingual", HELDOUT="mine.jsonl", WATCH_EVERY=5)
    assert (mine["training"]["watch_prompts"], mine["training"]["watch_every"]) == ("mine.jsonl", 5)
    assert (
        tutorial.settings("embedded:tiny-base", "embedded:multilingual", WATCH_EVERY=0)["training"]["watch_every"]
        is None
    )
    # The tool-calling tutorial does not watch the language.
    assert tutorial.tool_settings("embedded:tiny-base", "embedded:tool-calls")["training"]["watch_every"] is None
