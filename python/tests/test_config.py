"""The typed config (oss_finetune.core.config), read as a manual.

Every section is a frozen dataclass generated from schema/finetune-config.schema.json: its fields,
defaults and help text are the schema's. A config is validated where it is made and only read after.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from oss_finetune.core import config
from oss_finetune.core.config import FinetuneConfig, LoraConfig, TrainingConfig
from oss_finetune.core.schema import SchemaError, load_schema

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_python_types_are_not_stale():
    """config_types.py and comm_types.py are what schema/scripts/gen_python.py makes of the schemas."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "schema" / "scripts" / "gen_python.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_an_empty_config_is_complete_and_equals_the_schemas_defaults():
    schema = load_schema("finetune-config")
    defaults = FinetuneConfig().to_dict()
    for name, section in schema["properties"].items():
        assert defaults[name] == {key: spec["default"] for key, spec in section["properties"].items()}


def test_each_field_carries_its_help_from_the_schema():
    described = {f.name: f.metadata["help"] for f in dataclasses.fields(LoraConfig)}
    assert described["r"] == load_schema("finetune-config")["properties"]["lora"]["properties"]["r"]["description"]


def test_a_config_is_frozen():
    cfg = FinetuneConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lora.r = 4  # type: ignore[misc]


def test_from_dict_validates_with_the_schemas_words():
    with pytest.raises(SchemaError, match=r"^lora\.r: must be >= 1"):
        FinetuneConfig.from_dict({"lora": {"r": 0}})
    # a section alone is checked at its place in the whole config, so the path is the same
    with pytest.raises(SchemaError, match=r"^training\.learning_rate: must be > 0"):
        TrainingConfig.from_dict({"learning_rate": 0})


def test_merged_lays_changes_over_and_validates_the_result():
    base = FinetuneConfig.from_dict({"lora": {"r": 16, "target_modules": ["q_proj"]}})
    changed = base.merged({"lora": {"alpha": 8}, "training": {"max_steps": 3}})
    assert (changed.lora.r, changed.lora.alpha, changed.training.max_steps) == (16, 8, 3)
    assert changed.lora.target_modules == ("q_proj",)  # lists become tuples: the config stays frozen
    assert base.lora.alpha == 16  # the original is untouched
    with pytest.raises(SchemaError, match=r"^data\.max_seq_length"):
        base.merged({"data": {"max_seq_length": 1}})


def test_to_dict_is_the_json_form():
    as_dict = FinetuneConfig.from_dict({"lora": {"target_modules": ["q_proj", "v_proj"]}}).to_dict()
    assert as_dict["lora"]["target_modules"] == ["q_proj", "v_proj"]
    assert json.loads(json.dumps(as_dict)) == as_dict
    assert FinetuneConfig.from_dict(as_dict) == FinetuneConfig.from_dict(as_dict).merged({})


def test_a_typed_section_is_not_validated_again():
    typed = LoraConfig.from_dict({"r": 4})
    assert config.section("lora", typed) is typed
    assert config.section_dict("lora", {"r": 4}) == typed.to_dict()
    with pytest.raises(TypeError, match="lora section"):
        config.section("lora", TrainingConfig())


def test_without_jsonschema_unknown_settings_are_still_refused(monkeypatch):
    # A bare GPU image may lack jsonschema: the defaults still come from the schema, unknown keys fail.
    from oss_finetune.core import _config_base

    monkeypatch.setattr(_config_base, "schema_module", lambda: None)
    assert LoraConfig.from_dict({"r": 4}).r == 4
    with pytest.raises(ValueError, match="lora: unknown setting"):
        LoraConfig.from_dict({"rank": 4})
    with pytest.raises(ValueError, match="unknown config section"):
        FinetuneConfig.from_dict({"loras": {}})
