"""Training on several GPUs from the notebook: a torchrun job, followed through its run folder.

``%oss_finetune train --gpus N`` writes the session's config into the run folder and starts
``python -m torch.distributed.run --nproc-per-node N -m oss_finetune train config.yaml``: the very
command a person runs from a shell. The notebook then follows the run folder, where rank 0 writes what
the in-kernel Trainer would have sent (``state.json``: the Trainer's own snapshot, updated at every
logged step and status change), and asks for a stop by writing a ``STOP`` file that rank 0 reads and
shares with every rank at the next step's sum.

Both sides live here: ``TorchrunJob`` (the kernel's) and ``reporting_to_run_folder`` (rank 0's).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .runs import STATE_FILE, latest_checkpoint, write_state

STOP_FILE = "STOP"
CONFIG_FILE = "config.yaml"
LOGS = "logs"
LAUNCHER_LOG = "torchrun.log"
POLL_SECONDS = 0.25
# For tests only: "RANK:STEP" makes that rank leave at once (os._exit) after that step, as a crash would.
FAULT_INJECTION_ENV = "OSS_FINETUNE_TEST_RANK_EXITS_AT_STEP"
FAULT_EXIT_CODE = 3


# -- rank 0's side -----------------------------------------------------------------------------


@contextlib.contextmanager
def reporting_to_run_folder(trainer, *, leader: bool, rank: int = 0) -> Iterator[None]:
    """While a rank trains: rank 0 keeps ``state.json`` current and turns a ``STOP`` file into a stop
    request (the Trainer shares it with every rank at the next step's sum, so all stop at one step)."""
    _inject_fault(trainer, rank)
    if not leader:
        yield
        return
    lock = threading.Lock()

    def publish(*_: Any) -> None:
        # The watcher thread and the training loop both report; one writer at a time.
        with lock:
            write_state(Path(trainer.run_dir), trainer.snapshot())

    trainer.on_step(publish)
    trainer.on_status(publish)
    done = threading.Event()

    def watch() -> None:
        while not done.wait(POLL_SECONDS):
            stop_file = Path(trainer.run_dir) / STOP_FILE
            if stop_file.is_file() and not trainer.stop_requested and trainer.status == "running":
                reason = stop_file.read_text(encoding="utf-8", errors="replace").strip() or "stop requested"
                trainer.stop(reason)

    watcher = threading.Thread(target=watch, name="oss-finetune-stop-file", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        # Acted on (or the run ended anyway): a later resume in this folder must not stop at once.
        (Path(trainer.run_dir) / STOP_FILE).unlink(missing_ok=True)


def _inject_fault(trainer, rank: int) -> None:
    wanted = os.environ.get(FAULT_INJECTION_ENV)
    if not wanted:
        return
    fault_rank, fault_step = (int(part) for part in wanted.split(":"))
    if rank != fault_rank:
        return

    def leave(metrics) -> None:
        if metrics.step == fault_step:
            print(f"fault injected for a test: rank {rank} exits after step {fault_step}", file=sys.stderr, flush=True)
            os._exit(FAULT_EXIT_CODE)

    trainer.on_step(leave)


# -- the kernel's side ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def torchrun_command(
    config_path: Path,
    *,
    ranks: int,
    port: int,
    log_dir: Path,
    run_id: str,
    resume_from: str | None = None,
    adapter: str | None = None,
) -> list[str]:
    """The job's command line: one machine, the rendezvous on loopback, each rank's output in log_dir."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        str(ranks),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "--log-dir",
        str(log_dir),
        "--redirects",
        "3",
        "-m",
        "oss_finetune",
        "train",
        str(config_path),
        "--run-id",
        run_id,
    ]
    if resume_from:
        command += ["--resume-from", str(resume_from)]
    elif adapter:
        command += ["--adapter", str(adapter)]
    return command


def job_environment(ranks: int, cuda_visible: list[str] | None, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["PYTHONUNBUFFERED"] = "1"
    if cuda_visible is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(cuda_visible)
    # Ranks on CPUs share the cores; on GPUs one thread each is torchrun's own default.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // ranks)))
    # One machine: the ranks talk over loopback only.
    if sys.platform.startswith("linux"):
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")
        env.setdefault("NCCL_SOCKET_IFNAME", "lo")
    return env


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1] if lines else ""


def rank_log(log_dir: Path, rank: int) -> tuple[Path | None, str]:
    """The log of one rank that torchrun wrote (stderr first, where errors go) and its last line."""
    folders = sorted(log_dir.glob(f"*/attempt_*/{rank}"), key=lambda p: p.stat().st_mtime)
    if not folders:
        return None, ""
    for name in ("stderr.log", "stdout.log"):
        path = folders[-1] / name
        line = _last_line(path)
        if line:
            return path, line
    return folders[-1] / "stderr.log", ""


_ROOT_CAUSE = re.compile(r"Root Cause.*?rank\s*:\s*(\d+).*?exitcode\s*:\s*(-?\d+)", re.S)


def failure_message(launcher_log: Path, log_dir: Path, code: int, step: int) -> str:
    """Which rank ended the job, with its last line and where its log is; torchrun's own last line when
    no rank is named (it failed before starting any)."""
    text = launcher_log.read_text(encoding="utf-8", errors="replace") if launcher_log.is_file() else ""
    when = f"after step {step}" if step else "before the first step"
    found = _ROOT_CAUSE.search(text)
    if found is None:
        return (
            f"torchrun exited with code {code} {when}: {_last_line(launcher_log) or 'no output'} "
            f"(its log: {launcher_log})"
        )
    rank, rank_code = int(found.group(1)), int(found.group(2))
    path, line = rank_log(log_dir, rank)
    where = f"its log: {path}" if path is not None else f"torchrun's log: {launcher_log}"
    return f"rank {rank} exited with code {rank_code} {when}: {line or 'no output'} ({where})"


def _set_parent_death_signal() -> None:
    # A kernel that dies (restart, crash) takes the job with it instead of leaving GPUs busy.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def end_process_tree(process: subprocess.Popen, grace: float = 15.0) -> None:
    """End torchrun and every rank: torchrun passes a SIGTERM on to its ranks (each in a session of its
    own); whatever is left after ``grace`` seconds is killed."""
    try:
        import psutil  # type: ignore[import-untyped]  # ipykernel brings it; no stubs

        ranks = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
    except Exception:  # noqa: BLE001 - no psutil, or torchrun already gone: torchrun's own cleanup stands
        ranks = []
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for rank in ranks:
        with contextlib.suppress(Exception):
            if rank.is_running():
                rank.kill()


class TorchrunJob:
    """A run trained by ranks torchrun starts, seen from the notebook: the same status, step, message,
    checkpoint, ``snapshot()`` and ``stop()`` as an in-kernel Trainer, read from the run folder."""

    def __init__(
        self,
        config: dict,
        first_payload: dict,
        *,
        ranks: int,
        resume_from: str | None = None,
        adapter: str | None = None,
        cuda_visible: list[str] | None = None,
        on_update: Callable[[dict], Any] | None = None,
        handle_sigint: bool = True,
    ):
        self.config = config
        self.payload = dict(first_payload)
        self.run_id: str = first_payload["run_id"]
        self.run_dir = Path(first_payload["run_dir"])
        self.max_steps: int = first_payload["max_steps"]
        self.ranks = ranks
        self.resume_from = resume_from
        self.adapter = adapter
        self.cuda_visible = cuda_visible
        self.on_update = on_update
        self.handle_sigint = handle_sigint
        self.log_dir = self.run_dir / LOGS
        self.launcher_log = self.log_dir / LAUNCHER_LOG
        self.process: subprocess.Popen | None = None
        self._stop_reason: str | None = None
        self._stop_sent = False
        self._heard_from_ranks = False

    # -- what the session reads, as from a Trainer --------------------------------------------------
    status = property(lambda self: self.payload["status"])
    step = property(lambda self: int(self.payload.get("step") or 0))
    message = property(lambda self: self.payload.get("message"))
    checkpoint = property(lambda self: self.payload.get("checkpoint"))

    def snapshot(self) -> dict:
        return dict(self.payload)

    @property
    def stop_requested(self) -> bool:
        return self._stop_reason is not None

    def stop(self, reason: str = "stop requested") -> None:
        """Ask every rank to stop at the next step boundary and write a checkpoint. Safe from any thread."""
        self._stop_reason = reason
        if self.status == "running":
            self._show("stopping", f"{reason}; stopping after the current step")

    def _show(self, status: str, message: str | None, **more: Any) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.payload = {**self.payload, "status": status, "message": message, "updated_at": now, **more}
        if self.on_update is not None:
            self.on_update(self.snapshot())

    # -- the run ----------------------------------------------------------------------------------
    def run(self):
        """Start the job, follow it to its end and return a TrainResult; raises TrainingError when a rank
        fails. No process of the job outlives this call."""
        from .trainer import TrainingError

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        (self.run_dir / STOP_FILE).unlink(missing_ok=True)  # a stop that an earlier session left unread
        config_path = self.run_dir / CONFIG_FILE
        import yaml

        config_path.write_text(yaml.safe_dump(self.config, sort_keys=False), encoding="utf-8")
        command = torchrun_command(
            config_path,
            ranks=self.ranks,
            port=free_port(),
            log_dir=self.log_dir,
            run_id=self.run_id,
            resume_from=self.resume_from,
            adapter=self.adapter,
        )
        state_path = self.run_dir / STATE_FILE
        seen = _stamp(state_path)
        with open(self.launcher_log, "w", encoding="utf-8") as launcher_log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=launcher_log,
                stderr=subprocess.STDOUT,
                env=job_environment(self.ranks, self.cuda_visible),
                # Its own session: a kernel interrupt is the notebook's to handle, not torchrun's.
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform.startswith("linux") else None,
            )
        where = f"GPUs {','.join(self.cuda_visible)}" if self.cuda_visible else "this machine"
        self._show(
            "pending",
            f"started torchrun with {self.ranks} ranks on {where}; each loads the model (logs in {self.log_dir})",
            device=f"{self.ranks} ranks under torchrun",
        )
        ended_at_once = None
        try:
            with self._sigint_stops():
                try:
                    seen = self._follow(state_path, seen)
                except KeyboardInterrupt:
                    ended_at_once = "interrupted twice: the ranks were ended at once"
                if self._stop_reason is not None and not self._heard_from_ranks and ended_at_once is None:
                    ended_at_once = f"{self._stop_reason} while the ranks were loading; nothing was trained"
        finally:
            end_process_tree(self.process)
        self._read_state(state_path, seen)
        code = self.process.returncode
        if ended_at_once is not None:
            checkpoint = latest_checkpoint(self.run_dir)
            kept = f"; the last checkpoint is {checkpoint}" if checkpoint is not None else ""
            self._show("stopped", ended_at_once + kept, checkpoint=str(checkpoint) if checkpoint else None)
        elif code != 0 or self.status not in ("completed", "stopped"):
            message = failure_message(self.launcher_log, self.log_dir, code, self.step)
            self._show("failed", message)
            write_state(self.run_dir, self.snapshot())
            raise TrainingError(message)
        write_state(self.run_dir, self.snapshot())
        return self.result()

    def result(self):
        from .trainer import StepMetrics, TrainResult

        known = {f.name for f in fields(StepMetrics)}
        metrics = [StepMetrics(**{k: v for k, v in m.items() if k in known}) for m in self.payload.get("metrics") or []]
        return TrainResult(
            self.status, self.step, self.max_steps, str(self.run_dir), self.checkpoint, self.message, metrics
        )

    def _follow(self, state_path: Path, seen: tuple | None) -> tuple | None:
        assert self.process is not None
        while self.process.poll() is None:
            if self._stop_reason is not None and not self._stop_sent:
                if not self._heard_from_ranks:
                    return seen  # still loading: nothing to save, so the job just ends
                (self.run_dir / STOP_FILE).write_text(self._stop_reason + "\n", encoding="utf-8")
                self._stop_sent = True
            seen = self._read_state(state_path, seen)
            time.sleep(POLL_SECONDS)
        return seen

    def _read_state(self, state_path: Path, seen: tuple | None) -> tuple | None:
        """Forward rank 0's state.json when it changed since ``seen``."""
        stamp = _stamp(state_path)
        if stamp is None or stamp == seen:
            return seen
        try:
            payload = json.loads(state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return seen  # replaced while read: the next look has it
        self._heard_from_ranks = True
        if self._stop_reason is not None and payload.get("status") == "running":
            # The ranks have not seen the request yet; the dashboard says it was heard.
            payload = {
                **payload,
                "status": "stopping",
                "message": f"{self._stop_reason}; stopping after the current step",
            }
        self.payload = payload
        if self.on_update is not None:
            self.on_update(self.snapshot())
        return stamp

    @contextlib.contextmanager
    def _sigint_stops(self):
        """A first Ctrl-C / kernel interrupt asks for a graceful stop; a second ends the ranks at once."""
        if not self.handle_sigint or threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum, frame):
            if self._stop_reason is not None:
                raise KeyboardInterrupt
            self.stop("interrupted")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def _stamp(path: Path) -> tuple | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
