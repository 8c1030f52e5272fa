"""The tool-calling tutorial: its settings, the committed notebook, and the notebook run headless by
kernel-bridge's runner (`npm run tutorial:tools` runs it the same way), with fewer held-out requests."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from oss_finetune.core import schema
from oss_finetune.notebook import tutorial

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "gpt-oss-tool-calling.ipynb"
RUNNER = REPO / "kernel-bridge" / "lib" / "cli.js"


def code_cells() -> list[dict]:
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    return [c for c in notebook["cells"] if c["cell_type"] == "code"]


def test_the_embedded_model_gets_the_tool_run():
    config = tutorial.tool_settings("embedded:tiny-base", "embedded:tool-calls")
    assert config["data"]["source"] == "embedded:tool-calls"
    assert config["data"]["loss_mask"] == "assistant"
    assert "lm_head" in config["lora"]["target_modules"]
    # The tiny model's whole width: a lower rank mixes up the tokens the output layer has to learn.
    assert config["lora"]["r"] == 64 and config["training"]["max_steps"] == 150
    # The fast engine's chunked output loss trains the output layer's LoRA too, at twice the speed.
    assert config["training"]["engine"] == "fast"
    assert schema.schema_issues("finetune-config", config) == []


def test_a_hub_model_gets_the_reference_run_on_calls_and_answers():
    config = tutorial.tool_settings("openai/gpt-oss-20b", "my-org/tool-calls")
    assert config["lora"]["target_modules"] == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert config["data"]["loss_mask"] == "calls_and_final"
    assert config["training"]["learning_rate"] == 2e-4
    # The first tutorial's reference run is not changed by it.
    assert tutorial.settings("openai/gpt-oss-20b", "d.jsonl")["data"]["loss_mask"] == "assistant"


def test_parameters_override_and_are_checked():
    config = tutorial.tool_settings("embedded:tiny-base", "embedded:tool-calls", LOSS_MASK="final", MAX_STEPS=3)
    assert config["data"]["loss_mask"] == "final" and config["training"]["max_steps"] == 3
    with pytest.raises(ValueError, match="LOSS_MASKS"):
        tutorial.tool_settings("embedded:tiny-base", "embedded:tool-calls", LOSS_MASKS="final")
    with pytest.raises(ValueError, match="LOSS_MASK"):
        tutorial.settings("embedded:tiny-base", "embedded:multilingual", LOSS_MASK="final")


def test_the_committed_notebook_has_no_outputs_and_every_parameter():
    cells = code_cells()
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells)
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    source = "".join(tagged[0]["source"])
    names = {line.split(" = ")[0] for line in source.splitlines() if " = " in line}
    assert set(tutorial.TOOL_PARAMETERS) | {"MODEL", "DATA", "HELDOUT", "EVAL_LIMIT", "REQUEST"} <= names
    text = "\n".join("".join(c["source"]) for c in cells)
    for line in (
        "%oss_finetune eval --tools --no-adapter",
        "%oss_finetune eval --tools",
        "chat --before-after --tools",
    ):
        assert line in text
    # Nothing of this machine is in it.
    assert not re.search(r"/(root|home|work|tmp)/", NOTEBOOK.read_text(encoding="utf-8"))


def _runner_or_skip() -> str:
    node = shutil.which("node")
    if node is None or not RUNNER.is_file():
        pytest.skip("the headless runner is kernel-bridge's (node kernel-bridge/lib/cli.js), built by `npm run setup`")
    return node


@pytest.mark.slow
def test_the_notebook_runs_headless_and_training_beats_the_base(tmp_path):
    """The notebook's own 150-step training run, on 24 held-out requests (about 225 s of training on the
    fast engine on a quiet 2-core CPU)."""
    node = _runner_or_skip()
    out = tmp_path / "tool-calling.ipynb"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    command = [
        node,
        str(RUNNER),
        "run",
        str(NOTEBOOK),
        "-o",
        str(out),
        "--python",
        sys.executable,
        "--timeout",
        "1200",
        "-p",
        "EVAL_LIMIT=24",
        "-p",
        f"OUTPUT_DIR={tmp_path / 'runs'}",
    ]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    cells = [c for c in json.loads(out.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    errors = [o for c in cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    # A saved notebook may keep a stream's text as one string or as a list of lines.
    summary = "".join("".join(o.get("text", "")) for o in cells[-1]["outputs"] if o.get("output_type") == "stream")
    rates = dict(
        re.findall(r"tool calls, (base model|with adapter): right tool with valid arguments (\d+)% of 24", summary)
    )
    assert set(rates) == {"base model", "with adapter"}, summary
    assert int(rates["with adapter"]) > int(rates["base model"]), summary
    assert "saved adapter:" in summary
