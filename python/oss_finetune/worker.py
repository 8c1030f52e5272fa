"""``python -m oss_finetune.worker``: one data-parallel worker, started by the notebook's kernel.

It loads the model and adapter the way the kernel's session does, joins the kernel's team
(training.parallel) and trains its share of every step. An entry point, like the command line: the
library never imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from .notebook.session import Session, pad_id
from .training.parallel import FAILED_LINE, join_team, read_examples
from .training.trainer import Trainer


def run_worker(rank: int, port: int, job_path: Path) -> int:
    """A worker's whole life: load what the job names, join, train, leave."""
    job = json.loads(job_path.read_text(encoding="utf-8"))
    config = job["config"]
    print(f"worker {rank} of {job['world']}: loading {config['model']['name_or_path']}", flush=True)
    session = Session(config)
    session.ensure_loaded()
    model = session.ensure_adapter()
    examples = read_examples(Path(job["examples"]))
    print(f"worker {rank}: {session.loaded.device}, {len(examples)} examples; joining", flush=True)
    team = join_team(rank, int(job["world"]), port, job["secret"])
    trainer = Trainer(
        model,
        examples,
        config["training"],
        run_config=config,
        run_id=job["run_id"],
        pad_token_id=pad_id(session.loaded.tokenizer),
        handle_sigint=False,
        team=team,
    )
    result = trainer.train(resume_from=job.get("resume_from"))
    print(f"worker {rank}: {result.status} at step {result.step}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m oss_finetune.worker",
        description="A data-parallel training worker, started by the notebook's kernel.",
    )
    parser.add_argument("--rank", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--job", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        return run_worker(args.rank, args.port, args.job)
    except BaseException as error:  # noqa: BLE001 - the kernel reads this log to say what went wrong
        traceback.print_exc()
        # The last line is the one the notebook shows; the traceback above stays in the log.
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        print(f"{FAILED_LINE.format(rank=args.rank)}{type(error).__name__}: {first}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
