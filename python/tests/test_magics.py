"""%oss_finetune in a real IPython InteractiveShell: parsing, settings shown with their defaults,
one-paragraph errors (a traceback only with --verbose) and tab completion.

Nothing here loads a model: these are the parts a person meets before anything heavy happens.
test_kernel.py drives the same magics through a real kernel, model and training included.
"""

import json

import pytest
from IPython.core.completer import provisionalcompleter
from IPython.core.error import UsageError

from oss_finetune.notebook import magics
from oss_finetune.notebook import session as session_module


@pytest.fixture(autouse=True)
def fresh_session(tmp_path):
    return session_module.reset_session({"training": {"output_dir": str(tmp_path / "runs")}})


def run(shell, capsys, source):
    result = shell.run_cell(source)
    out, err = capsys.readouterr()
    return result, out, err


def test_load_ext_registers_the_line_and_the_cell_magic(shell):
    assert shell.find_line_magic("oss_finetune") is not None
    assert shell.find_cell_magic("oss_finetune") is not None


def test_without_a_subcommand_the_overview_lists_every_subcommand(shell, capsys):
    result, out, _ = run(shell, capsys, "%oss_finetune")
    assert result.success
    for name in ("load", "data", "show", "lora", "train", "chat", "compare", "save", "status", "stop", "help"):
        assert f"\n  {name} " in out


@pytest.mark.parametrize("name", list(magics.SUBCOMMANDS))
def test_every_subcommand_has_help(shell, capsys, name):
    result, out, err = run(shell, capsys, f"%oss_finetune {name} --help")
    assert result.success, err
    assert out.startswith(f"%oss_finetune {name}: ")
    assert "--verbose" in out


def test_help_of_a_settings_command_names_the_schema_fields_and_defaults(shell, capsys):
    _, out, _ = run(shell, capsys, "%oss_finetune train --help")
    assert "--lr, --learning-rate  [training.learning_rate, default 0.0002]" in out
    assert "--max-steps  [training.max_steps, default 60]" in out
    assert "--gradient-checkpointing / --no-gradient-checkpointing" in out


def test_show_lists_the_settings_with_their_defaults_and_acts_on_nothing(shell, capsys):
    result, out, _ = run(shell, capsys, "%oss_finetune lora --show")
    assert result.success
    assert "lora settings" in out and "no adapter on the model yet" in out
    lines = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip()}
    assert lines["r"].split()[-1] == "8"
    assert lines["alpha"].split()[-1] == "16"
    assert '["q_proj", "k_proj", "v_proj", "o_proj"]' in lines["target_modules"]
    # Nothing was loaded just to show settings.
    assert session_module.get_session().loaded is None


def test_a_cell_sets_fields_and_the_settings_view_marks_what_changed(shell, capsys):
    result, out, _ = run(shell, capsys, "%%oss_finetune\nlora:\n  r: 16\n  alpha: 32\ntraining:\n  max_steps: 30\n")
    assert result.success
    shown = json.loads(out)
    assert shown["lora"]["r"] == 16 and shown["lora"]["dropout"] == 0  # defaults filled in
    _, out, _ = run(shell, capsys, "%oss_finetune lora --show")
    assert "* r               16   (default 8)" in out
    assert "  dropout         0" in out
    _, out, _ = run(shell, capsys, "%oss_finetune train --show")
    assert "* max_steps" in out and "(default 60)" in out
    _, out, _ = run(shell, capsys, "%oss_finetune load --show")
    assert "name_or_path" in out and '"embedded:tiny-base"' in out and "not loaded yet" in out


def test_a_cell_accepts_json_too(shell, capsys):
    result, _, _ = run(shell, capsys, '%%oss_finetune\n{"data": {"max_seq_length": 256, "limit": 4}}\n')
    assert result.success
    config = session_module.get_session().config
    assert config["data"]["max_seq_length"] == 256 and config["data"]["limit"] == 4
    assert config["data"]["loss_mask"] == "assistant"


def test_options_map_onto_config_fields_with_types():
    parsed = magics.parse(["train", "--max-steps", "30", "--lr", "2e-4", "--no-gradient-checkpointing"])
    assert parsed.command.name == "train"
    assert parsed.changes == {"max_steps": 30, "learning_rate": 0.0002, "gradient_checkpointing": False}
    parsed = magics.parse(
        ["lora", "--r", "16", "--alpha=32", "--target-modules", "q_proj", "v_proj", "--target-experts"]
    )
    assert parsed.changes == {"r": 16, "alpha": 32, "target_modules": ["q_proj", "v_proj"], "target_experts": True}
    assert magics.parse(["lora", "--targets", "q_proj,k_proj"]).changes == {"target_modules": ["q_proj", "k_proj"]}
    parsed = magics.parse(["data", "rows.jsonl", "--limit", "none", "--max-seq-length", "512", "--effort", "high"])
    assert parsed.changes == {"source": "rows.jsonl", "limit": None, "max_seq_length": 512, "reasoning_effort": "high"}
    parsed = magics.parse(["load", "openai/gpt-oss-20b", "--dtype", "bfloat16", "--load-in-4bit"])
    assert parsed.changes == {"name_or_path": "openai/gpt-oss-20b", "dtype": "bfloat16", "load_in_4bit": True}
    parsed = magics.parse(["chat", "--effort", "low", "--language", "French", "What's", "2", "+", "2?"])
    assert parsed.values == {"effort": "low", "language": "French"} and parsed.rest == ["What's", "2", "+", "2?"]
    parsed = magics.parse(["load", "--model", "openai/gpt-oss-20b"])
    assert parsed.changes == {"name_or_path": "openai/gpt-oss-20b"}
    assert magics.parse(["load", "--name-or-path", "x/y"]).changes == {"name_or_path": "x/y"}
    # A bare verb acts; --show only lists; --run, which acting used to need, is still accepted.
    assert magics.parse(["train"]).show is False and magics.parse(["train", "--show"]).show is True
    assert magics.parse(["train", "--run"]) == magics.parse(["train"])


def test_a_bare_section_in_a_cell_belongs_to_the_subcommand_on_the_line():
    assert magics.parse_body("r: 16\nalpha: 32\n", "lora") == {"lora": {"r": 16, "alpha": 32}}
    assert magics.parse_body("lora:\n  r: 16\n", "lora") == {"lora": {"r": 16}}
    assert magics.parse_body("", None) == {}


BAD_INPUT = [
    ("%oss_finetune lora --r 0", "lora.r: must be >= 1 — use an integer from 1 to 1024, e.g. --r 8"),
    ("%oss_finetune lora --r 1.5", "lora.r: must be integer — use an integer from 1 to 1024, e.g. --r 8"),
    (
        "%oss_finetune train --lr abc",
        "training.learning_rate: must be number — use a number above 0 and at most 1, e.g. --lr 0.0002",
    ),
    (
        "%oss_finetune load --dtype bf16",
        'model.dtype: must be one of: "auto", "bfloat16", "float16", "float32" — use one of auto, bfloat16, float16, '
        "float32, e.g. --dtype auto",
    ),
    ("%oss_finetune data --limit 0", "data.limit: must be >= 1 — use an integer of 1 or more, or none, e.g. --limit 1"),
    ("%oss_finetune lroa --r 8", "unknown subcommand 'lroa' — did you mean `%oss_finetune lora`?"),
    (
        "%oss_finetune fly",
        "unknown subcommand 'fly' — the subcommands are: env, load, data, show, lora, train, chat, "
        "eval, compare, save, status, runs, stop, help.",
    ),
    ("%oss_finetune lora --rr 3", "lora: unknown option --rr — did you mean --r?"),
    ("%oss_finetune train --max-step 3", "train: unknown option --max-step — did you mean --max-steps?"),
    ("%oss_finetune lora --r", "lora: --r needs a value — use an integer from 1 to 1024, e.g. --r 8"),
    (
        "%oss_finetune chat --effort extreme hi",
        "chat: --effort 'extreme' is not one of low, medium, high — e.g. --effort high",
    ),
    (
        "%oss_finetune chat --effort low",
        "chat: nothing to ask — write the question after the options, e.g. "
        "`%oss_finetune chat --effort low --language French What is 2 + 2?`",
    ),
    ("%oss_finetune show two", "row 'two' is not a whole number — e.g. `%oss_finetune show 0 3`"),
    (
        "%oss_finetune status now",
        "status: unexpected argument 'now' — `%oss_finetune status` takes only options; "
        "see `%oss_finetune status --help`.",
    ),
    ("%oss_finetune help lroa", "no help for 'lroa' — did you mean lora?"),
    (
        "%%oss_finetune\nlora:\n  alpah: 8\n",
        "lora.alpah: is not an allowed field — did you mean alpha? Known: r, alpha, dropout, target_modules, target_experts.",
    ),
    ("%%oss_finetune\nlora:\n  r: -1\n", "lora.r: must be >= 1 — use an integer from 1 to 1024, e.g. r: 8"),
    (
        "%%oss_finetune\noptimiser:\n  lr: 1\n",
        "optimiser: is not an allowed field — Known: model, data, lora, training.",
    ),
    ("%%oss_finetune\nlora: [r\n", "the cell is not valid YAML or JSON at line 2, column 1: "),
    ("%%oss_finetune\n- r: 8\n", "the cell must hold a mapping of config sections, not a list"),
]


@pytest.mark.parametrize("source,paragraph", BAD_INPUT, ids=[s.split("\n")[0] + s[-12:] for s, _ in BAD_INPUT])
def test_a_mistake_is_one_paragraph_that_names_it_and_the_fix(shell, capsys, source, paragraph):
    result, out, err = run(shell, capsys, source)
    assert isinstance(result.error_in_exec, UsageError)
    assert "Traceback" not in out + err
    assert err.startswith("UsageError: " + paragraph)
    assert err.count("\n") == 1, err  # one paragraph, on one line
    # The shell is still fine.
    assert shell.run_cell("1 + 1").result == 2


def test_with_verbose_the_traceback_comes_back(shell, capsys):
    result, out, err = run(shell, capsys, "%oss_finetune lora --r 0 --verbose")
    assert not result.success and not isinstance(result.error_in_exec, UsageError)
    text = out + err
    assert "Traceback" in text and "lora.r: must be >= 1" in text and "magics.py" in text


def test_a_failure_inside_the_session_is_one_paragraph_too(shell, capsys, tmp_path):
    result, out, err = run(shell, capsys, "%oss_finetune save")
    assert isinstance(result.error_in_exec, UsageError)
    assert err == (
        "UsageError: there is no adapter to save; run `%oss_finetune lora` and `%oss_finetune train` first\n"
    )
    result, out, err = run(shell, capsys, "%oss_finetune train --resume latest --max-steps 2")
    assert err.startswith("UsageError: there is no checkpoint to resume from in ")


def test_stop_without_a_run_says_so(shell, capsys):
    result, out, _ = run(shell, capsys, "%oss_finetune stop")
    assert result.success and out.strip() == "no run is training"


def write_run(root, run_id, *, step, max_steps, state=None):
    run_dir = root / run_id
    (run_dir / "checkpoints" / f"step-{step}").mkdir(parents=True)
    (run_dir / "config.json").write_text(
        json.dumps({"run_id": run_id, "config": {"training": {"max_steps": max_steps}}})
    )
    (run_dir / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 2.0 - s / 10}) + "\n" for s in range(1, step + 1))
    )
    (run_dir / "checkpoints" / f"step-{step}" / "trainer_state.json").write_text(
        json.dumps({"step": step, "max_steps": max_steps, "run_id": run_id})
    )
    if state:
        (run_dir / "state.json").write_text(json.dumps(state))
    return run_dir


def test_status_lists_the_runs_on_disk_as_a_restarted_kernel_finds_them(shell, capsys, tmp_path):
    root = tmp_path / "runs"
    write_run(root, "20260101-100000-aaaa", step=10, max_steps=10)
    # A kernel that died mid-run left state.json saying "running": the last checkpoint tells how it ended.
    write_run(
        root,
        "20260101-110000-bbbb",
        step=3,
        max_steps=10,
        state={
            "version": 1,
            "run_id": "20260101-110000-bbbb",
            "status": "running",
            "step": 4,
            "max_steps": 10,
            "started_at": "2026-01-01T11:00:00+00:00",
            "metrics": [{"step": 1, "loss": 1.9}],
        },
    )
    (root / "not-a-run").mkdir()
    result, out, _ = run(shell, capsys, "%oss_finetune status")
    assert result.success
    assert "runs in " in out and ": 2" in out
    assert "20260101-100000-aaaa: completed at step 10/10, loss 1" in out
    assert "20260101-110000-bbbb: stopped at step 3/10, loss 1.7" in out
    # The newest run's last payload is shown again, with the status it really ended in.
    assert "20260101-110000-bbbb [stopped]" in out


def complete(shell, line):
    with provisionalcompleter():
        return sorted(c.text for c in shell.Completer.completions(line, len(line)))


def test_tab_completes_subcommands(shell):
    assert complete(shell, "%oss_finetune lo") == ["load", "lora"]
    assert complete(shell, "%oss_finetune s") == ["save", "show", "status", "stop"]
    assert complete(shell, "%%oss_finetune tr") == ["train"]
    assert "compare" in complete(shell, "%oss_finetune ")


def test_tab_completes_options_and_their_values(shell):
    assert complete(shell, "%oss_finetune train --max") == ["--max-steps"]
    assert complete(shell, "%oss_finetune lora --tar") == ["--target-experts", "--target-modules", "--targets"]
    assert complete(shell, "%oss_finetune load --dtype ") == ["auto", "bfloat16", "float16", "float32"]
    assert complete(shell, "%oss_finetune chat --effort ") == ["high", "low", "medium"]
    assert complete(shell, "%oss_finetune save --m") == ["--merged"]
    assert complete(shell, "%oss_finetune help st") == ["status", "stop"]
    # Python names never get mixed in on our line, and other lines are left alone.
    assert "abs" not in complete(shell, "%oss_finetune lora --")
    assert "abs" in complete(shell, "ab")


def test_the_old_complete_api_agrees(shell):
    assert shell.complete(None, "%oss_finetune train --lr")[1] == ["--lr", "--lr-scheduler"]


def test_env_shows_the_environment_check(shell, capsys):
    shell.run_line_magic("oss_finetune", "env")
    out = capsys.readouterr().out
    assert "CPUs" in out and "torch " in out


def test_status_shows_the_main_settings_without_loading_anything(shell, capsys):
    session_module.get_session().set_config({"lora": {"r": 16}, "training": {"max_steps": 30}})
    result, out, _ = run(shell, capsys, "%oss_finetune status")
    assert result.success
    assert "  model: embedded:tiny-base\n" in out
    assert "  lora: r 16, alpha 16, targets q_proj, k_proj, v_proj, o_proj\n" in out
    assert "  training: 30 steps of 1 x 16, lr 0.0002, runs in " in out
    assert session_module.get_session().loaded is None


def test_a_comment_ends_the_magic_line_but_not_a_word_or_a_quote():
    assert magics.split_line("load      # the default") == ["load"]
    assert magics.split_line("chat What is C#? # asked twice") == ["chat", "What", "is", "C#?"]
    assert magics.split_line('chat "what does # mean" --effort low') == ["chat", "what does # mean", "--effort", "low"]
    assert magics.split_line("chat what's 2 + 2?  # an apostrophe opens no quote") == ["chat", "what's", "2", "+", "2?"]


def readme_quick_start(repo_root) -> list[str]:
    text = (repo_root / "README.md").read_text(encoding="utf-8")
    block = text.split("## In a notebook", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    return [line for line in block.strip().splitlines() if line.strip()]


def test_the_readme_quick_start_parses_as_written(repo_root, shell):
    lines = readme_quick_start(repo_root)
    # IPython hands %load_ext its whole line: a comment there would be read as part of the module's name.
    assert lines[0] == "%load_ext oss_finetune"
    verbs = []
    for line in lines[1:]:
        assert line.startswith("%oss_finetune "), line
        parsed = magics.parse(magics.split_line(line.removeprefix("%oss_finetune ")))
        assert not parsed.show and not parsed.help
        verbs.append(parsed.command.name)
    assert verbs[:5] == ["load", "data", "show", "lora", "train"]
    # What the README promises of the options holds: --model is load's, and r and alpha reach the config.
    assert magics.parse(["load", "--model", "openai/gpt-oss-20b"]).changes == {"name_or_path": "openai/gpt-oss-20b"}
    lora_line = next(line for line in lines if line.startswith("%oss_finetune lora"))
    assert magics.parse(magics.split_line(lora_line.removeprefix("%oss_finetune "))).changes == {"r": 8, "alpha": 16}
