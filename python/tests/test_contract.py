"""The Python half of the contract between the kernel and the browser.

Every fixture under ``tests/contract/fixtures/<schema>/{valid,invalid}`` is checked with
``oss_finetune.core.schema``; invalid ones must fail with exactly the first error recorded in
``tests/contract/expected-first-errors.json``. The TypeScript suite (tests/contract/contract.test.ts)
asserts the same manifest, so both languages agree on what is invalid and on the JSON path.
"""

import json
from pathlib import Path

import pytest

from oss_finetune.core import config as config_module
from oss_finetune.core import schema

CONTRACT = Path(__file__).resolve().parents[2] / "tests" / "contract"
EXPECTED = json.loads((CONTRACT / "expected-first-errors.json").read_text(encoding="utf-8"))


def fixtures(kind):
    return sorted(
        f"{name}/{kind}/{path.name}"
        for name in schema.NAMES
        for path in (CONTRACT / "fixtures" / name / kind).glob("*.json")
    )


def load(relative):
    return json.loads((CONTRACT / "fixtures" / relative).read_text(encoding="utf-8"))


def test_every_invalid_fixture_has_a_recorded_first_error():
    assert fixtures("invalid") == sorted(EXPECTED)


@pytest.mark.parametrize("relative", fixtures("valid"))
def test_valid_fixture_passes(relative):
    assert schema.schema_issues(relative.split("/")[0], load(relative)) == []


@pytest.mark.parametrize("relative", fixtures("invalid"))
def test_invalid_fixture_fails_with_recorded_first_error(relative):
    with pytest.raises(schema.SchemaError) as caught:
        schema.validate(relative.split("/")[0], load(relative))
    assert str(caught.value) == EXPECTED[relative]


def test_error_names_path_and_rule():
    with pytest.raises(schema.SchemaError) as caught:
        schema.validate("finetune-config", {"lora": {"r": 0}})
    assert caught.value.path == "lora.r"
    assert caught.value.message == "must be >= 1"
    assert str(caught.value) == "lora.r: must be >= 1"


def test_all_issues_are_kept_in_the_shared_order():
    issues = schema.schema_issues("finetune-config", {"lora": {"r": 0.5, "bogus": True}})
    assert [str(i) for i in issues] == [
        "lora.bogus: is not an allowed field",
        "lora.r: must be >= 1",
        "lora.r: must be integer",
    ]


def test_defaults_fill_a_partial_config_without_touching_given_values():
    config = config_module.with_defaults({"lora": {"r": 16}})
    assert config["lora"]["r"] == 16
    assert config["lora"]["alpha"] == 16
    assert config["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config["training"]["max_steps"] == 60
    assert config["training"]["gradient_accumulation_steps"] == 16
    assert config["model"]["name_or_path"] == "embedded:tiny-base"
    assert schema.schema_issues("finetune-config", config) == []


def test_defaults_refuse_an_invalid_config():
    with pytest.raises(schema.SchemaError, match=r"training\.learning_rate: must be > 0"):
        config_module.with_defaults({"training": {"learning_rate": 0}})


def test_mime_types_name_the_four_payloads():
    assert schema.mime_types() == {
        "harmony-tokens": "application/vnd.oss-finetune.harmony+json",
        "training-run": "application/vnd.oss-finetune.training+json",
        "dataset-summary": "application/vnd.oss-finetune.dataset+json",
        "runs-comparison": "application/vnd.oss-finetune.runs+json",
    }
