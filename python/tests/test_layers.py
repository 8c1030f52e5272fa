"""The package's layers, as an executable rule (docs/architecture.md draws them).

    core < modeling < training < embedded < notebook < the entry points (cli, worker, __main__)

A module imports only from its own layer or the layers below, imports inside functions included, and
no two modules import each other, directly or around a loop. Loading the notebook extension imports
no torch, so `%load_ext oss_finetune` stays instant.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "oss_finetune"
LAYERS = ("core", "modeling", "training", "embedded", "notebook")
TOP = len(LAYERS)  # the package's own top-level modules: entry points and the old names' aliases


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py") if "labextension" not in p.parts}


def layer_of(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            candidates = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        for name in candidates:
            # `import a.b.c` also runs a and a.b; only the named module counts as the dependency.
            if name in known and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {m: imports_of(m, p, set(found)) for m, p in found.items()}


def test_every_import_points_down_or_sideways():
    upward = [
        f"{m} ({LAYERS[layer_of(m)] if layer_of(m) < TOP else 'top'}) imports {t} ({LAYERS[layer_of(t)] if layer_of(t) < TOP else 'top'})"
        for m, targets in sorted(graph().items())
        for t in sorted(targets)
        if layer_of(t) > layer_of(m)
    ]
    assert upward == []


def strongly_connected(g: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    assert strongly_connected(graph()) == []


def test_the_checks_catch_what_they_are_for():
    # An upward import and a loop, made up: the same functions must report both.
    g = {"oss_finetune.core.a": {"oss_finetune.notebook.b"}, "oss_finetune.notebook.b": {"oss_finetune.core.a"}}
    assert strongly_connected(g) == [["oss_finetune.core.a", "oss_finetune.notebook.b"]]
    assert layer_of("oss_finetune.notebook.b") > layer_of("oss_finetune.core.a")
    assert layer_of("oss_finetune.cli") == TOP


def test_a_function_level_import_counts(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("def f():\n    from ..training.trainer import Trainer\n", encoding="utf-8")
    found = imports_of("oss_finetune.core.x", source, {"oss_finetune.training.trainer"})
    assert found == {"oss_finetune.training.trainer"}


def run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("module", ["oss_finetune.core.harmony", "oss_finetune.core.data", "oss_finetune.core.config"])
def test_the_core_imports_no_torch(module):
    assert run_python(f"import sys, {module}; print('torch' in sys.modules)") == "False"


def test_load_ext_imports_no_torch():
    code = (
        "import sys\n"
        "from IPython.core.interactiveshell import InteractiveShell\n"
        "shell = InteractiveShell.instance()\n"
        "shell.run_line_magic('load_ext', 'oss_finetune')\n"
        "assert 'oss_finetune' in shell.magics_manager.magics['cell']\n"
        "print(sorted(m for m in ('torch', 'transformers', 'peft') if m in sys.modules))\n"
    )
    assert run_python(code) == "[]"
