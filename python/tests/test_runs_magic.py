"""%oss_finetune train with the goal watched, and %oss_finetune runs, in a real IPython InteractiveShell:
two short runs of the embedded tiny model, the goal on the dashboard's payload and fallbacks, then the
runs side by side with the settings that differ."""

import json

import pytest
from IPython.utils.capture import capture_output

from oss_finetune.core import schema
from oss_finetune.notebook import display
from oss_finetune.notebook import session as session_module
from oss_finetune.training import watch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAINING = display.mime_type("training-run")
RUNS = display.mime_type("runs-comparison")

SETUP = """%%oss_finetune
model:
  name_or_path: embedded:tiny
data:
  source: embedded:multilingual
  limit: 8
  max_seq_length: 256
lora:
  r: 4
  alpha: 8
training:
  max_steps: 2
  batch_size: 2
  gradient_accumulation_steps: 1
  warmup_steps: 0
  gradient_checkpointing: false
  save_steps: 100
"""


def cell(shell, source):
    with capture_output() as captured:
        result = shell.run_cell(source)
    assert result.success, result.error_in_exec or result.error_before_exec
    return captured


def bundles(captured, mime):
    return [out.data for out in captured.outputs if mime in out.data]


@pytest.fixture(scope="module")
def two_runs(shell, tmp_path_factory):
    """Run A watches the goal at every step; run B has another learning rate and does not watch."""
    output = tmp_path_factory.mktemp("runs")
    session_module.reset_session({"training": {"output_dir": str(output)}})
    original = watch.watch_for
    # The tiny random model never ends an answer; a few tokens each keep the test short.
    watch.watch_for = lambda trainer, **kw: original(trainer, max_new_tokens=8, **kw)
    try:
        cell(shell, SETUP)
        first = cell(shell, "%oss_finetune train --lr 0.005 --watch-every 1 --watch-count 2")
        second = cell(shell, "%oss_finetune train --lr 0.001 --watch-every null")
    finally:
        watch.watch_for = original
    runs = session_module.get_session().list_runs()
    (output / "notes").mkdir()  # a folder that is not a run
    return output, first, second, [r.run_id for r in runs]


def test_the_dashboard_carries_the_goal_in_its_payload_and_fallbacks(two_runs):
    _, first, _, _ = two_runs
    last = bundles(first, TRAINING)[-1]
    payload = schema.validate("training-run", last[TRAINING])
    goals = [m["goal"] for m in payload["metrics"] if "goal" in m]
    assert len(goals) == 2 and all(g["goal"] == "language" and g["total"] == 2 for g in goals)
    assert "goal, reasoned in the requested language: " in last["text/plain"]
    assert "at step 1" in last["text/plain"] and "at step 2" in last["text/plain"]
    assert 'aria-label="goal curve"' in last["text/html"]
    # While it ran, the run's message said what the watch measured.
    said = [b[TRAINING]["message"] for b in bundles(first, TRAINING)]
    assert any(m and m.startswith("step 1: watched the goal on 2 held-out prompts") for m in said)


def test_runs_shows_every_run_with_its_curves_and_the_settings_that_differ(shell, two_runs):
    output, _, _, ids = two_runs
    captured = cell(shell, "%oss_finetune runs")
    [data] = bundles(captured, RUNS)
    payload = schema.validate("runs-comparison", data[RUNS])
    assert [r["run_id"] for r in payload["runs"]] == ids
    first, second = payload["runs"]
    assert [p["step"] for p in first["points"]] == [1, 2] and all("goal" in p for p in first["points"])
    assert first["goal_label"] == "reasoned in the requested language"
    assert second["goal_label"] is None and all("goal" not in p for p in second["points"])
    differences = {d["setting"]: d["values"] for d in payload["differences"]}
    assert differences == {
        "training.learning_rate": ["0.005", "0.001"],
        "training.watch_every": ["1", "null"],
    }
    assert payload["same_settings"] > 20
    assert payload["left_out"] == ["notes: not a run folder (it has no config.json)"]
    text = data["text/plain"]
    assert text.startswith(f"2 runs in {output}")
    assert "settings that differ" in text and "training.learning_rate" in text and "0.005" in text
    assert "left out: notes" in text
    html = data["text/html"]
    assert html.count("<polyline") == 3  # two loss curves and one goal curve
    assert "<script" not in html and "training.learning_rate" in html


def test_runs_compare_picks_runs_by_a_part_of_their_id(shell, two_runs):
    _, _, _, ids = two_runs
    captured = cell(shell, f"%oss_finetune runs --compare {ids[1][-4:]} {ids[0]}")
    [data] = bundles(captured, RUNS)
    assert [r["run_id"] for r in data[RUNS]["runs"]] == [ids[1], ids[0]]
    assert data[RUNS]["left_out"] == []


def test_runs_compare_says_what_is_wrong_in_one_paragraph(shell, two_runs, capsys):
    result = shell.run_cell("%oss_finetune runs --compare nosuchrun other")
    assert not result.success
    err = capsys.readouterr().err
    assert "runs --compare: no run in" in err and "matches 'nosuchrun'" in err and "Traceback" not in err
    result = shell.run_cell("%oss_finetune runs --compare one")
    assert "name two runs or more" in capsys.readouterr().err
    result = shell.run_cell("%oss_finetune runs abc")
    assert "write --compare before their ids" in capsys.readouterr().err


def test_runs_in_an_empty_folder_says_so(shell, tmp_path):
    session_module.get_session().set_config({"training": {"output_dir": str(tmp_path / "none")}})
    captured = cell(shell, "%oss_finetune runs")
    [data] = bundles(captured, RUNS)
    assert data["text/plain"] == f"no runs in {tmp_path / 'none'} yet"
    assert json.loads(json.dumps(data[RUNS]))["runs"] == []
