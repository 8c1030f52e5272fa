"""Run the tutorial notebook headless with chosen parameters and report where the time went.

    python bench/gpu_tutorial.py -o out.ipynb \\
        -p MODEL='"embedded:gpt-oss-20b-random"' -p MAX_STEPS=2 -p MAX_SEQ_LENGTH=1024 -p EVAL_LIMIT=4

Each -p value is a Python literal. The values go into a cell inserted right after the notebook's
`parameters` cell, so the committed defaults stay visible above the ones that ran. The script needs
only nbclient and a kernelspec (--kernel) whose Python can import oss_finetune; it exists so that a
bare GPU machine, where the kernel-bridge runner and node are absent, can still run the notebook.

It prints one line per code cell (seconds, first line of source, error if any), the training
dashboard's last metrics per step, the summary cell's text, and exits 1 if any cell failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from datetime import datetime
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "gpt-oss-multilingual-reasoning.ipynb"
TRAINING_MIME = "application/vnd.oss-finetune.training+json"


def parse_parameters(pairs: list[str]) -> dict:
    values = {}
    for pair in pairs:
        name, sep, literal = pair.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"-p wants NAME=LITERAL, got {pair!r}")
        try:
            values[name] = ast.literal_eval(literal)
        except (ValueError, SyntaxError):
            # A bare word is meant as a string; saves quoting through two shells.
            values[name] = literal
    return values


def inject(nb, values: dict) -> None:
    import nbformat

    code = [
        i
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(code) != 1:
        raise SystemExit(f"expected one cell tagged 'parameters', found {len(code)}")
    known = {
        node.targets[0].id
        for node in ast.parse(nb.cells[code[0]].source).body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise SystemExit(f"not in the parameters cell: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    source = "# Injected by bench/gpu_tutorial.py\n" + "".join(f"{k} = {v!r}\n" for k, v in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(code[0] + 1, cell)


def _seconds(cell) -> float | None:
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not start or not end:
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _error(cell) -> str | None:
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}"
    return None


def _training_payload(nb) -> dict | None:
    """The dashboard's final state: the last training payload in any output, display updates included."""
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(TRAINING_MIME)
            if payload is not None:
                found = json.loads(payload) if isinstance(payload, str) else payload
    return found


def _text(cell) -> str:
    return "".join("".join(o.get("text", "")) for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def report(nb, wall: float) -> int:
    failed = 0
    print(f"\n{'cell':>4} {'seconds':>8}  source")
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        seconds = _seconds(cell)
        first = next(
            (line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")),
            cell.source.splitlines()[0] if cell.source else "",
        )
        error = _error(cell)
        failed += error is not None
        shown = f"{seconds:8.1f}" if seconds is not None else "       -"
        print(f"{index:>4} {shown}  {first[:90]}" + (f"\n             ERROR {error}" if error else ""))
    print(f"notebook wall time: {wall:.1f} s; cells with errors: {failed}")

    run = _training_payload(nb)
    if run:
        print(
            f"\ntraining: {run.get('status')} {run.get('step')}/{run.get('max_steps')} on {run.get('device')}; "
            f"{run.get('trainable_parameters')} trainable; {run.get('message')}"
        )
        previous = 0.0
        for m in run.get("metrics", []):
            elapsed = m.get("elapsed_seconds")
            step_s = elapsed - previous if elapsed is not None else None
            previous = elapsed or previous
            print(
                f"  step {m['step']}: loss {m['loss']:.4f}, "
                f"step {step_s if step_s is None else round(step_s, 2)} s (from elapsed), "
                f"{m.get('tokens_per_second') and round(m['tokens_per_second'])} tokens/s, "
                f"peak GPU memory {m.get('gpu_memory_gib')} GiB"
            )
    summary = [c for c in nb.cells if c.cell_type == "code"][-1]
    print("\nsummary cell:\n" + _text(summary).rstrip())
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(NOTEBOOK))
    parser.add_argument("-o", "--output", required=True, help="where to write the executed notebook")
    parser.add_argument("-p", "--param", action="append", default=[], help="NAME=LITERAL, repeatable")
    parser.add_argument("--kernel", default="oss-finetune", help="kernelspec name")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per cell")
    args = parser.parse_args(argv)

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(args.notebook, as_version=4)
    inject(nb, parse_parameters(args.param))
    client = NotebookClient(
        nb,
        timeout=args.timeout,
        kernel_name=args.kernel,
        allow_errors=False,
        record_timing=True,
        resources={"metadata": {"path": str(Path(args.notebook).resolve().parent)}},
    )
    started = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as error:
        print(f"stopped at a failing cell: {str(error).splitlines()[0] if str(error) else error}", file=sys.stderr)
    finally:
        wall = time.perf_counter() - started
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, args.output)
        print(f"executed notebook written to {args.output}")
    failed = report(nb, wall)
    unrun = sum(1 for c in nb.cells if c.cell_type == "code" and c.get("execution_count") is None)
    if unrun:
        print(f"{unrun} code cell(s) never ran")
    return 1 if failed or unrun else 0


if __name__ == "__main__":
    sys.exit(main())
