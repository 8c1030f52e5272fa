"""``python -m oss_finetune COMMAND``: each subcommand lives in cli.py; add one to SUBCOMMANDS."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import cli, kernelspec

# name -> (help, add_arguments, run)
SUBCOMMANDS = {
    "render": ("render conversations in Harmony and print text or token ids", cli.add_render_arguments, cli.run_render),
    "export": (
        "write a model (and adapter) for serving: peft, merged, mxfp4, vllm or gguf, read back and compared",
        cli.add_export_arguments,
        cli.run_export,
    ),
    "train": (
        "train as the config says; torchrun --nproc-per-node N starts one of these per GPU",
        cli.add_train_arguments,
        cli.run_train,
    ),
    "kernel": (
        "install the oss-finetune Jupyter kernel, which registers the magics as it starts",
        kernelspec.add_kernel_arguments,
        kernelspec.run_kernel,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m oss_finetune", description="oss-finetune command line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (help_text, add_arguments, run) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return cli.main_guarded(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
