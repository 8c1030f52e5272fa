"""Command-line tools. Each subcommand has an ``add_*_arguments`` and a ``run_*`` function, which
``__main__`` wires into argparse; both are importable for scripts and tests."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
from typing import TextIO

from .core.errors import UserError
from .core.harmony import EFFORTS, LOSS_MASKS, MODES, SPECIAL_TEXT_POLICIES, HarmonyRenderError, render_many


class CliError(UserError):
    """A user mistake: printed as one line, exit status 2."""


def _date(value: str) -> str:
    try:
        return _dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date as YYYY-MM-DD") from None


def add_render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="conversations: .json, .jsonl or .parquet, in any supported row format")
    parser.add_argument(
        "--ids", action="store_true", help="print token ids (one line per conversation) instead of text"
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="train",
        help="train: ends with <|return|>; prompt: leaves the answer out and ends with <|start|>assistant",
    )
    parser.add_argument(
        "--effort",
        choices=EFFORTS,
        default=None,
        help="reasoning effort for rows that do not set their own (default: medium)",
    )
    parser.add_argument("--date", type=_date, default=None, help="pin the 'Current date:' line (default: today)")
    parser.add_argument(
        "--loss-mask",
        choices=LOSS_MASKS,
        default=None,
        help="with --ids, print after each line of ids its loss mask as a line of 0/1 (default policy: assistant)",
    )
    parser.add_argument("--format", choices=("auto", "multilingual-thinking", "messages", "sharegpt"), default="auto")
    parser.add_argument(
        "--tools",
        default=None,
        help="function tools for rows without their own: a .json file holding the list, or the list as JSON",
    )
    parser.add_argument(
        "--special-tokens",
        choices=SPECIAL_TEXT_POLICIES,
        default="text",
        help="special-token text inside content: encode it as plain text (default) or refuse the row",
    )
    parser.add_argument("--tokenizer", default="embedded:tiny", help="embedded:tiny, a hub id or a local folder")


def run_render(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from .core.data import BadRowError, data_set_tools, read_rows, to_row
    from .core.tokenizer import load_tokenizer

    try:
        raw = read_rows(args.file)
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    tools = data_set_tools(getattr(args, "tools", None))
    # A prompt is what comes before the assistant's turn, so a row may end without one.
    prompt = args.mode == "prompt"
    rows = [
        to_row(r, i, args.format, args.effort or "medium", tools=tools, require_assistant=not prompt)
        for i, r in enumerate(raw)
    ]
    tokenizer = load_tokenizer(args.tokenizer)
    rendered = []
    for row in rows:
        try:
            rendered.extend(
                render_many(
                    [row.conversation],
                    mode=args.mode,
                    loss_mask=args.loss_mask or "assistant",
                    date=args.date,
                    tokenizer=tokenizer,
                    special_tokens=getattr(args, "special_tokens", "text"),
                )
            )
        except HarmonyRenderError as e:
            raise BadRowError(row.index, "messages", str(e)) from None
    for i, r in enumerate(rendered):
        if args.ids:
            out.write(json.dumps(r.ids) + "\n")
            if args.loss_mask:
                out.write("".join("1" if m else "0" for m in r.trained) + "\n")
        else:
            if i:
                out.write("\n")
            out.write(r.decoded() + "\n")
    return 0


def main_guarded(fn, args: argparse.Namespace) -> int:
    """Runs a subcommand; user mistakes become one line on stderr and a non-zero exit."""
    try:
        return fn(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head` closed the pipe: not an error
        return 0


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "format", choices=("peft", "merged", "mxfp4", "vllm", "gguf"), help="what to write (docs/export.md)"
    )
    parser.add_argument("out", help="the folder to write (an earlier export of ours there is replaced)")
    parser.add_argument(
        "--model", default=None, help="the base model: embedded:tiny-base (default), a hub id or a local folder"
    )
    parser.add_argument(
        "--adapter",
        default=None,
        help="a PEFT adapter folder to put on it (a run's adapter/ or checkpoint); none: the base as is",
    )
    parser.add_argument("--dtype", default="auto", choices=("auto", "bfloat16", "float16", "float32"))
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--no-verify", action="store_true", help="write only; the export is then not compared")


def run_export(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from . import embedded  # importing it registers the embedded models
    from .modeling import export as exports
    from .modeling.adapter import load_adapter
    from .modeling.model import ModelLoadError, load_model

    model_name = args.model or embedded.EMBEDDED_TINY_BASE
    if args.format in ("peft", "vllm") and not args.adapter:
        raise CliError(
            f"--adapter: {args.format} exports an adapter; name its folder (a run's adapter/ or a checkpoint)"
        )
    try:
        loaded = load_model({"name_or_path": model_name, "dtype": args.dtype, "device": args.device})
    except ModelLoadError as error:
        raise CliError(f"--model: {error}") from None
    model = loaded.model
    if args.adapter:
        try:
            model = load_adapter(model, args.adapter)
        except (OSError, ValueError) as error:
            raise CliError(f"--adapter: {args.adapter} is not a PEFT adapter for {model_name}: {error}") from None
    result = exports.export(
        model, loaded.tokenizer, args.format, args.out, base_model=model_name, verify=not args.no_verify
    )
    out.write(result.line() + "\n")
    return 0


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="a YAML or JSON config: the notebook's settings (model, data, lora, training)")
    parser.add_argument("--resume-from", help="a checkpoints/step-N folder of an earlier run; any number of ranks")
    parser.add_argument(
        "--adapter",
        help="start from this PEFT adapter's weights (a run's adapter/ or a checkpoint) instead of a fresh one",
    )
    parser.add_argument(
        "--run-id", help="the run folder's name under output_dir (default: the date, time and 4 hex digits)"
    )


def run_train(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """One process of a training run: alone, or one rank of those torchrun starts (one per GPU)."""
    out = out or sys.stdout
    from pathlib import Path

    import yaml

    from . import embedded  # noqa: F401 - importing it registers the embedded models
    from .modeling.adapter import load_adapter_weights
    from .modeling.model import load_model_on_meta
    from .notebook.session import RUN_ID_PATTERN, Session, pad_id
    from .training.distributed import RanksTeam, launched_by_torchrun
    from .training.job import reporting_to_run_folder
    from .training.sharding import load_shares, reads_shares
    from .training.trainer import Trainer

    try:
        config = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CliError(f"config: {args.config} could not be read: {error}") from None
    if not isinstance(config, dict):
        raise CliError(f"config: {args.config} must hold a mapping of sections (model, data, lora, training)")
    if args.adapter and args.resume_from:
        raise CliError("--adapter: a checkpoint holds its own adapter; give --adapter or --resume-from, not both")
    if args.run_id and not RUN_ID_PATTERN.match(args.run_id):
        raise CliError(f"--run-id: {args.run_id!r} is not a folder name (letters, digits, '.', '_' and '-')")
    team = RanksTeam() if launched_by_torchrun() and int(os.environ["WORLD_SIZE"]) > 1 else None
    try:
        session = Session(config)
        shares, sharding_line = (False, "") if team is None else reads_shares(session.get_config(), team.world)
        sharing = team if shares else None  # the ranks that each read only their share of the files
        if sharing is not None:
            # Built on the meta device: each rank reads only its slices of the files once sharded below.
            session.loaded = load_model_on_meta(session.settings.model)
            session.model = session.loaded.model
            if sharing.is_leader:
                out.write(session.loaded.description + "\n")
        session.ensure_loaded()
        prepared = session.ensure_data()
        model = session.ensure_adapter()
        started_from = args.adapter or (args.resume_from if shares else None)
        if started_from:
            # Sharded as it loads, the adapter takes a checkpoint's weights now, while it is whole.
            try:
                load_adapter_weights(model, started_from)
            except (OSError, ValueError) as error:
                raise CliError(f"{'--adapter' if args.adapter else '--resume-from'}: {error}") from None
        if sharing is not None:
            sharded, read = load_shares(model, session.loaded.weights, sharing.device)
            out.write(read.line() + "\n")
        trainer = Trainer(
            model,
            prepared.examples,
            session.settings.training,
            run_config=session.get_config(),
            run_id=args.run_id,
            pad_token_id=pad_id(session.loaded.tokenizer),
            handle_sigint=True,
            team=team,
        )
        if sharing is not None:
            trainer.use_shards(sharded, sharding_line)
        if team is not None:
            trainer.run_id = team.agree(trainer.run_id)
            trainer.run_dir = trainer.run_dir.parent / trainer.run_id
        leader = team is None or team.is_leader
        with reporting_to_run_folder(trainer, leader=leader, rank=0 if team is None else team.rank):
            result = trainer.train(resume_from=args.resume_from)
    finally:
        if team is not None:
            team.close()
    if team is None or team.is_leader:
        out.write(f"{result.status} at step {result.step}: {trainer.run_dir}\n")
    else:
        out.write(f"rank {team.rank}: {result.status} at step {result.step}\n")
    return 0 if result.status in ("completed", "stopped") else 1
