"""`python -m oss_finetune render FILE`: Harmony text or token ids for scripts and CI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from oss_finetune.__main__ import main

ROWS = [
    {
        "messages": [
            {"role": "system", "content": "reasoning language: German\n\nBe brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hallo!", "thinking": "Kurz grüßen."},
        ]
    },
    {"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}]},
]


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "oss_finetune", *args], capture_output=True, text=True, timeout=180, cwd=cwd
    )


@pytest.fixture()
def rows_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def test_render_text_in_a_subprocess(rows_file):
    out = run_cli("render", str(rows_file), "--date", "2025-06-28", "--effort", "low")
    assert out.returncode == 0, out.stderr
    texts = out.stdout.split("\n\n<|start|>system")
    assert len(texts) == 2
    assert "Current date: 2025-06-28\n\nReasoning: low" in texts[0]
    assert "reasoning language: German\n\nBe brief.<|end|>" in texts[0]
    assert texts[0].rstrip().endswith("<|channel|>final<|message|>Hallo!<|return|>")


def test_bad_row_exits_non_zero_naming_row_and_field(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps([ROWS[1], {"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}])
    )
    out = run_cli("render", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert (
        out.stderr.strip()
        == "error: row 1, field messages[1].role: must be one of system, developer, user, assistant, tool"
    )


def test_ids_match_the_renderer(rows_file, capsys, tokenizer):
    from oss_finetune.core.data import to_row
    from oss_finetune.core.harmony import render

    assert main(["render", str(rows_file), "--ids", "--date", "2025-06-28"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    expected = render(to_row(ROWS[1], 1).conversation, date="2025-06-28", tokenizer=tokenizer).ids
    assert json.loads(lines[1]) == expected


def test_ids_with_a_loss_mask_print_it_below(rows_file, capsys, tokenizer):
    assert main(["render", str(rows_file), "--ids", "--loss-mask", "final", "--date", "2025-06-28"]) == 0
    ids_line, mask_line = capsys.readouterr().out.splitlines()[:2]
    ids = json.loads(ids_line)
    assert len(mask_line) == len(ids) and set(mask_line) == {"0", "1"}
    trained = [t for t, m in zip(ids, mask_line) if m == "1"]
    assert tokenizer.decode(trained) == "<|start|>assistant<|channel|>final<|message|>Hallo!<|return|>"


def test_prompt_mode_ends_ready_for_generation(rows_file, capsys):
    assert main(["render", str(rows_file), "--mode", "prompt", "--date", "2025-06-28"]) == 0
    first = capsys.readouterr().out.split("\n\n<|start|>system")[0]
    assert first.rstrip().endswith("<|start|>user<|message|>Hi<|end|><|start|>assistant")
    assert "Hallo" not in first


def test_usage_errors(tmp_path, capsys):
    assert main(["render", str(tmp_path / "none.jsonl")]) == 2
    assert "none.jsonl: no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["render", "x.json", "--date", "28/06/2025"])
    assert exit_.value.code == 2
    assert "is not a date as YYYY-MM-DD" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


TOOL = {
    "type": "function",
    "function": {
        "name": "convert",
        "description": "Converts units.",
        "parameters": {"type": "object", "properties": {"value": {"type": "number"}}, "required": ["value"]},
    },
}


def test_rows_with_tools_and_prompt_only_rows(tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    rows = [
        {"messages": [{"role": "user", "content": "3 km in miles?"}], "tools": [TOOL]},
        {"conversations": [{"from": "human", "value": "Paste: <|endoftext|>"}]},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["render", str(path), "--mode", "prompt", "--date", "2025-06-28"]) == 0
    first, second = capsys.readouterr().out.split("\n\n<|start|>system")
    assert "# Tools\n\n## functions\n\nnamespace functions {\n\n// Converts units.\ntype convert = (_: {\n" in first
    assert "Calls to these tools must go to the commentary channel: 'functions'." in first
    assert first.rstrip().endswith("<|start|>user<|message|>3 km in miles?<|end|><|start|>assistant")
    assert second.rstrip().endswith("<|message|>Paste: <|endoftext|><|end|><|start|>assistant")
    # A training render still wants something to learn from.
    assert main(["render", str(path)]) == 2
    assert "row 0, field messages: has no assistant message to learn from" in capsys.readouterr().err


def test_tools_for_every_row_and_the_strict_option(tmp_path, capsys, tokenizer):
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([TOOL]))
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(ROWS[1]) + "\n")
    assert main(["render", str(path), "--tools", str(tools), "--ids", "--date", "2025-06-28"]) == 0
    assert "type convert" in tokenizer.decode(json.loads(capsys.readouterr().out))
    path.write_text(
        json.dumps({"conversations": [{"from": "human", "value": "<|end|>"}, {"from": "gpt", "value": "ok"}]})
    )
    assert main(["render", str(path), "--special-tokens", "error"]) == 2
    assert (
        "row 0, field messages: message 1 (user): content contains the special token <|end|>" in capsys.readouterr().err
    )
    assert main(["render", str(path), "--tools", str(tmp_path / "missing.json")]) == 2
    assert "data.tools: cannot read" in capsys.readouterr().err
