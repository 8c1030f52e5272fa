"""Run folders, read back: the newest complete checkpoint, the logged metrics, and what a folder says
about its run (for the session's status and the comm's list_runs), also after its kernel went away.

A run folder holds config.json, metrics.jsonl, checkpoints/step-N (written atomically by the
Trainer) and the session's state.json. ``comparison`` puts several runs side by side (the
runs-comparison payload of ``%oss_finetune runs``): their curves and the settings they differ in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import UserError

# The session's last word on a run, beside the trainer's files.
STATE_FILE = "state.json"


@dataclass
class RunInfo:
    """One run folder, as ``status`` and the comm's ``list_runs`` describe it."""

    run_id: str
    run_dir: str
    status: str
    step: int
    max_steps: int | None
    checkpoint: str | None
    last_loss: float | None
    started_at: str | None
    updated_at: str | None
    message: str | None
    adapter: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _checkpoint_step(path: Path) -> int:
    try:
        return int(path.name.split("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint of a run; half-written ones (``.tmp-*``) never count."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return None
    done = [p for p in folder.iterdir() if p.name.startswith("step-") and (p / "trainer_state.json").is_file()]
    return max(done, key=_checkpoint_step, default=None)


def read_metrics_file(run_dir: Path, since_step: int = 0) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash mid-write
        if row.get("step", 0) > since_step:
            rows.append(row)
    return rows


def describe_run_folder(run_dir: Path) -> RunInfo | None:
    """What a run folder says about its run, from the session's state.json or, failing that, its checkpoints."""
    config = read_json(run_dir / "config.json")
    if not isinstance(config, dict):
        return None
    state = read_json(run_dir / STATE_FILE)
    state = state if isinstance(state, dict) else {}
    metrics = read_metrics_file(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    trainer_state = read_json(checkpoint / "trainer_state.json") if checkpoint else None
    trainer_state = trainer_state if isinstance(trainer_state, dict) else {}
    max_steps = state.get("max_steps") or trainer_state.get("max_steps")
    if max_steps is None:
        max_steps = ((config.get("config") or {}).get("training") or {}).get("max_steps")
    step = max([state.get("step") or 0, trainer_state.get("step") or 0] + [m.get("step", 0) for m in metrics])
    status = state.get("status")
    message = state.get("message")
    if status in ("running", "stopping", "pending", None):
        # A run that was live when its kernel went away ended where its last checkpoint is: that is
        # the step a resume starts from, whatever metrics.jsonl logged after it.
        step = trainer_state.get("step") or 0
        if checkpoint is not None and max_steps is not None and step == max_steps:
            status = "completed"
        elif checkpoint is not None:
            status = "stopped"
            message = (
                f"the kernel went away during training; its last checkpoint is step {step} "
                f"(continue with `%oss_finetune train --resume {checkpoint}`)"
            )
        else:
            status = "failed"
            message = "the kernel went away during training, before the first checkpoint"
    adapter = run_dir / "adapter"
    return RunInfo(
        run_id=str(config.get("run_id") or run_dir.name),
        run_dir=str(run_dir),
        status=status,
        step=int(step),
        max_steps=max_steps,
        checkpoint=str(checkpoint) if checkpoint else None,
        last_loss=metrics[-1]["loss"] if metrics else None,
        started_at=state.get("started_at") or trainer_state.get("started_at"),
        updated_at=state.get("updated_at"),
        message=message,
        adapter=str(adapter) if (adapter / "adapter_config.json").is_file() else None,
    )


def write_state(run_dir: Path, payload: dict[str, Any]) -> None:
    """The run's last payload, beside the trainer's own files, so that a restarted kernel can say how
    the run ended. Replaced atomically; nothing is written for a run that never made its folder."""
    if not run_dir.is_dir():
        return
    tmp = run_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(payload, indent=1), encoding="utf-8")
    tmp.replace(run_dir / STATE_FILE)


# -- several runs side by side -------------------------------------------------------------------

NOT_SET = "(not set)"


class RunsError(UserError, ValueError):
    """A run asked for by name is not in the output folder, or the name fits several."""


def not_runs(output_dir: Path) -> list[str]:
    """The folders of ``output_dir`` that are not run folders, each with why (a view of the runs lists them)."""
    if not output_dir.is_dir():
        return []
    left_out = []
    for folder in sorted(p for p in output_dir.iterdir() if p.is_dir()):
        if describe_run_folder(folder) is None:
            why = "its config.json is unreadable" if (folder / "config.json").exists() else "it has no config.json"
            left_out.append(f"{folder.name}: not a run folder ({why})")
    return left_out


def pick_runs(infos: Sequence[RunInfo], wanted: Sequence[str], output_dir: Path) -> list[RunInfo]:
    """The runs ``wanted`` names, in that order: each an id, or a part of exactly one id."""
    chosen: list[RunInfo] = []
    known = ", ".join(info.run_id for info in infos[-8:]) or "none yet"
    for name in wanted:
        exact = [info for info in infos if info.run_id == name]
        matches = exact or [info for info in infos if name in info.run_id]
        if not matches:
            raise RunsError(f"runs --compare: no run in {output_dir} matches {name!r} (runs: {known})")
        if len(matches) > 1:
            ids = ", ".join(info.run_id for info in matches)
            raise RunsError(f"runs --compare: {name!r} fits {len(matches)} runs ({ids}); give more of the id")
        if matches[0] not in chosen:
            chosen.append(matches[0])
    return chosen


def flat_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config as {'training.learning_rate': 0.005, ...}; a list is one setting."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flat_settings(value, path))
        else:
            out[path] = value
    return out


def setting_differences(configs: Sequence[dict]) -> tuple[list[dict], int]:
    """The settings whose values are not alike in every config, each with every run's value as JSON
    text, and how many settings are alike. A setting a config lacks shows as '(not set)'."""
    flats = [flat_settings(c) for c in configs]
    order: list[str] = []
    for flat in flats:
        order += [path for path in flat if path not in order]
    missing = object()
    differences, same = [], 0
    for path in order:
        values = [flat.get(path, missing) for flat in flats]
        shown = [NOT_SET if v is missing else json.dumps(v, ensure_ascii=False) for v in values]
        if len(set(shown)) > 1:
            differences.append({"setting": path, "values": shown})
        else:
            same += 1
    return differences, same


def _curve(run_dir: Path) -> tuple[list[dict], str | None]:
    points, label = [], None
    for row in read_metrics_file(run_dir):
        loss, step = row.get("loss"), row.get("step")
        if not isinstance(step, int) or not isinstance(loss, (int, float)):
            continue
        point: dict[str, Any] = {"step": step, "loss": loss}
        goal = row.get("goal")
        if isinstance(goal, dict) and isinstance(goal.get("rate"), (int, float)):
            point["goal"] = goal["rate"]
            label = goal.get("label") or label
        points.append(point)
    return points, label


def comparison(output_dir: Path, infos: Sequence[RunInfo], left_out: Sequence[str] = ()) -> dict:
    """The runs-comparison payload of ``infos``: their curves and the settings in which they differ."""
    runs, configs = [], []
    for info in infos:
        run_dir = Path(info.run_dir)
        points, label = _curve(run_dir)
        runs.append(
            {
                "run_id": info.run_id,
                "status": info.status or "unknown",
                "step": info.step,
                "max_steps": info.max_steps,
                "started_at": info.started_at,
                "last_loss": points[-1]["loss"] if points else info.last_loss,
                "goal_label": label,
                "points": points,
            }
        )
        saved = read_json(run_dir / "config.json")
        configs.append((saved.get("config") if isinstance(saved, dict) else None) or {})
    differences, same = setting_differences(configs) if len(configs) > 1 else ([], 0)
    return {
        "version": 1,
        "output_dir": str(output_dir),
        "runs": runs,
        "differences": differences,
        "same_settings": same,
        "left_out": list(left_out),
    }
