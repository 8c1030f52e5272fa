"""``python -m oss_finetune kernel``: the ``oss-finetune`` Jupyter kernel, with ``%oss_finetune`` from the start.

A restarted kernel is a fresh process, and a fresh IPython knows no ``%oss_finetune`` until
``%load_ext oss_finetune`` runs again; IPython's own "UsageError: Line magic function not found"
cannot be reworded from outside. So this kernel registers the magics as it starts, through an
``exec_lines`` entry of its command line. Not ``--ext``: IPython would then count the extension as
loaded and print "already loaded" under every notebook's own ``%load_ext oss_finetune``, which
stays silent this way. The side panel's comm target is left to ``%load_ext`` or the first magic, so
the panel meets a fresh kernel the same way in this kernel as in any other.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
from pathlib import Path
from typing import TextIO

NAME = "oss-finetune"
DISPLAY_NAME = "Python (oss-finetune)"
STARTUP = "__import__('oss_finetune').register_magics(get_ipython())"


def kernel_argv(python: str) -> list[str]:
    """The kernel's command line: ipykernel's, plus the line that loads the extension."""
    # As ipykernel writes it: frozen modules off keeps the debugger able to step into the standard library.
    flags = ["-Xfrozen_modules=off"] if platform.python_implementation() == "CPython" else []
    return [
        python,
        *flags,
        "-m",
        "ipykernel_launcher",
        "-f",
        "{connection_file}",
        f"--IPKernelApp.exec_lines={STARTUP}",
    ]


def install(
    *,
    name: str = NAME,
    display_name: str = DISPLAY_NAME,
    python: str | None = None,
    user: bool = True,
    prefix: str | None = None,
) -> str:
    """Install the kernelspec (for this user, or under ``prefix``); returns its folder."""
    from ipykernel.kernelspec import write_kernel_spec
    from jupyter_client.kernelspec import KernelSpecManager

    argv = kernel_argv(python or sys.executable)
    staging = write_kernel_spec(overrides={"argv": argv, "display_name": display_name})
    try:
        return KernelSpecManager().install_kernel_spec(
            staging, kernel_name=name, user=user and prefix is None, prefix=prefix
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def is_current(folder: str | Path, python: str | None = None) -> bool:
    """Whether the kernelspec in ``folder`` is the one ``install`` would write for ``python``."""
    try:
        spec = json.loads((Path(folder) / "kernel.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return spec.get("argv") == kernel_argv(python or sys.executable)


def add_kernel_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="for this user (the default)")
    where.add_argument("--sys-prefix", action="store_true", help="in this Python environment (sys.prefix)")
    where.add_argument("--prefix", help="under this prefix (PREFIX/share/jupyter/kernels)")
    parser.add_argument("--name", default=NAME, help=f"the kernelspec's name (default {NAME})")
    parser.add_argument("--display-name", default=DISPLAY_NAME, help=f"the name JupyterLab shows ({DISPLAY_NAME})")
    parser.add_argument("--python", default=None, help="the interpreter the kernel runs (default: this one)")
    parser.add_argument(
        "--check", action="store_true", help="install nothing; exit 0 when the installed kernelspec is current, else 1"
    )


def run_kernel(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    prefix = sys.prefix if args.sys_prefix else args.prefix
    if args.check:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        try:
            folder = KernelSpecManager().get_kernel_spec(args.name).resource_dir
        except NoSuchKernel:
            return 1
        return 0 if is_current(folder, args.python) else 1
    folder = install(name=args.name, display_name=args.display_name, python=args.python, prefix=prefix)
    out.write(
        f"installed the {args.name} kernel in {folder}: %oss_finetune works from its first cell, restarts included\n"
    )
    return 0
