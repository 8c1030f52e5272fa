"""Watching the goal while training (``training.watch_every``).

The loss says how well the adapter predicts its training rows; the goal is what the run is for. Every
``watch_every`` optimizer steps (at the first logged step from there on, and at the last step), a few
held-out prompts are generated with the adapter as it stands, greedily and in eval mode, and judged by
the same code as the ``eval`` magic:

- ``language``: how many reason in the requested language (``training.language``), for rows that ask
  for a reasoning language;
- ``tool_calls``: how many call the right tool with arguments valid against its schema
  (``training.tool_calls``), for rows whose assistant calls a tool.

The measure goes into the step's row of metrics.jsonl (``goal``, schema training-run ``GoalMeasure``),
and so onto the dashboard's goal chart, and the run's message says in one line what was measured.

Nothing of the training changes: the random streams are put back as they were, the model goes back
to training mode, and the decoder kept for generation is freed before the next step. With a team of
GPUs only rank 0 watches (the others wait for it at the next step's sum); under FSDP sharding nobody
does, and the run's first line says so.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..core.errors import UserError

GOAL_LABELS = {
    "language": "reasoned in the requested language",
    "tool_calls": "called the right tool with valid arguments",
}
FUNCTIONS = "functions."


class WatchError(UserError, ValueError):
    """The watch cannot be set up as configured; the message names the field and the fix."""


@dataclass
class GoalWatch:
    """What to generate at each watch, and when the last one was."""

    every: int
    goal: str  # "language" or "tool_calls"
    rows: list[Any]  # data.Row objects, the same ones at every watch
    source: str
    tokenizer: Any = None
    effort: str = "medium"
    tools: list[dict[str, Any]] | None = None
    max_new_tokens: int | None = None  # None: the evaluation's own default
    last_step: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return GOAL_LABELS[self.goal]

    def due(self, step: int, max_steps: int) -> bool:
        """A multiple of ``every`` was reached since the last watch (logging may skip the multiple
        itself), or this is the run's last step."""
        if step <= self.last_step:
            return False
        return step // self.every > self.last_step // self.every or step == max_steps

    def measure(self, model: Any, step: int) -> dict:
        """Generate the held-out prompts with ``model`` as it stands; the GoalMeasure of the schema."""
        from ..modeling.decoding import release_decoder

        started = time.perf_counter()
        streams = _random_streams()
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                passed, total = self._generate_and_judge(model)
        finally:
            model.train(was_training)
            # The decoder's cache and joined weights are not in the training's memory plan.
            release_decoder(model)
            _restore_random_streams(streams)
        self.last_step = step
        measure = {
            "goal": self.goal,
            "label": self.label,
            "rate": passed / total,
            "passed": passed,
            "total": total,
            "seconds": round(time.perf_counter() - started, 3),
        }
        self.history.append({"step": step, **measure})
        return measure

    def _generate_and_judge(self, model: Any) -> tuple[int, int]:
        if self.goal == "language":
            from .language import DEFAULT_NEW_TOKENS, reasoning_language_rate

            rate = reasoning_language_rate(
                model,
                self.tokenizer,
                self.rows,
                self.effort,
                max_new_tokens=self.max_new_tokens or DEFAULT_NEW_TOKENS,
                batch_size=len(self.rows),
            )
            return sum(j.in_requested_language for j in rate.judged), len(rate.judged)
        from .tool_calls import DEFAULT_NEW_TOKENS as TOOL_NEW_TOKENS
        from .tool_calls import tool_call_rate

        calls = tool_call_rate(
            model,
            self.tokenizer,
            self.rows,
            tools=self.tools,
            effort=self.effort,
            max_new_tokens=self.max_new_tokens or TOOL_NEW_TOKENS,
            batch_size=len(self.rows),
        )
        return sum(j.right_and_valid for j in calls.judged), len(calls.judged)

    def line(self, step: int, measure: dict) -> str:
        """The run's one line about a watch."""
        return (
            f"step {step}: watched the goal on {measure['total']} held-out prompts of {self.source}: "
            f"{measure['passed']} {self.label} ({measure['rate']:.0%}), {measure['seconds']:.1f} s"
        )


def _random_streams() -> dict:
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_random_streams(state: dict) -> None:
    # Greedy decoding draws nothing, but the next step's dropout must not depend on whether we watched.
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def heldout_source(settings: dict, data_source: str | None) -> str:
    """``watch_prompts``, or the held-out split beside an embedded data set."""
    if settings.get("watch_prompts"):
        return str(settings["watch_prompts"])
    from ..core.data import SAMPLE_DIR

    if data_source and data_source.startswith("embedded:") and not data_source.endswith("-heldout"):
        candidate = f"{data_source}-heldout"
        if (SAMPLE_DIR / f"{candidate.removeprefix('embedded:')}.jsonl").is_file():
            return candidate
    raise WatchError(
        f"training.watch_prompts: the watch needs held-out rows and data.source {data_source!r} has no "
        "held-out split beside it; set training.watch_prompts to held-out rows (a .jsonl file, a hub id or "
        "embedded:multilingual-heldout), or training.watch_every to null"
    )


def _call_tool(row: Any) -> str | None:
    """The tool the row's assistant calls, or None."""
    for message in row.conversation.messages:
        if message.role == "assistant" and (message.recipient or "").startswith(FUNCTIONS):
            return str(message.recipient)[len(FUNCTIONS) :]
    return None


def _in_turn(rows: Sequence[Any], key, count: int) -> list[Any]:
    """``count`` rows taken in turn from each group (``key``), groups in order of first appearance, so that
    a small watch still covers every language or tool."""
    groups: dict[Any, list[Any]] = {}
    for row in rows:
        groups.setdefault(key(row), []).append(row)
    chosen: list[Any] = []
    while len(chosen) < count and any(groups.values()):
        for members in groups.values():
            if members and len(chosen) < count:
                chosen.append(members.pop(0))
    return chosen


def choose_rows(raw_rows: Sequence[Any], count: int, effort: str, tools: list | None, source: str) -> tuple[str, list]:
    """The goal the rows are for and the ``count`` rows the watch generates from."""
    from ..core.data import BadRowError, to_row

    rows = []
    for index, raw in enumerate(raw_rows):
        try:
            rows.append(to_row(raw, index, reasoning_effort=effort, tools=tools))
        except BadRowError as error:
            raise WatchError(f"training.watch_prompts: {source}: {error}") from None
    calling = [row for row in rows if _call_tool(row) is not None]
    if calling:
        return "tool_calls", _in_turn(calling, _call_tool, count)
    asking = [row for row in rows if row.language not in (None, "English")]
    if asking:
        return "language", _in_turn(asking, lambda row: row.language, count)
    raise WatchError(
        f"training.watch_prompts: {source} has neither rows that ask for a reasoning language other than "
        "English nor rows that call a tool, so there is no goal to watch; give held-out rows of either kind"
    )


def _model_tokenizer(name: str | None) -> Any:
    """The tokenizer the model was loaded with: the package's gpt-oss tokenizer for every embedded model,
    a folder's or hub id's own otherwise (as ``load_model`` picks it)."""
    if not name or name.startswith("embedded:"):
        from ..core.tokenizer import load_tokenizer

        return load_tokenizer()
    from ..modeling.model import _load_tokenizer

    return _load_tokenizer(name)


def watch_for(trainer: Any, *, tokenizer: Any = None, max_new_tokens: int | None = None) -> GoalWatch | None:
    """The trainer's watch as its settings ask (None when ``watch_every`` is null, and on every rank but
    rank 0 of a team). Raises WatchError before training when the held-out rows are missing or have no goal."""
    settings = trainer.settings
    every = settings.get("watch_every")
    if not every:
        return None
    team = getattr(trainer, "team", None)
    if team is not None and not team.is_leader:
        return None
    if getattr(trainer, "_sharded", None) is not None:
        # Rank 0 alone cannot generate from weights that every rank holds a share of.
        line = "training.watch_every: the goal is not watched while FSDP shards the model; run eval after training"
        trainer.sharding_line = f"{trainer.sharding_line}; {line}" if trainer.sharding_line else line
        return None
    from ..core.data import data_set_tools, read_rows

    config = trainer.run_config or {}
    data = config.get("data") or {}
    source = heldout_source(settings, data.get("source"))
    effort = data.get("reasoning_effort") or "medium"
    tools = data_set_tools(data.get("tools"))
    try:
        raw_rows = read_rows(source)
    except (OSError, ValueError) as error:
        raise WatchError(f"training.watch_prompts: cannot read {source}: {error}") from None
    goal, rows = choose_rows(raw_rows, int(settings.get("watch_count") or 6), effort, tools, source)
    if tokenizer is None:
        tokenizer = _model_tokenizer((config.get("model") or {}).get("name_or_path"))
    return GoalWatch(
        every=int(every),
        goal=goal,
        rows=rows,
        source=source,
        tokenizer=tokenizer,
        effort=effort,
        tools=tools,
        max_new_tokens=max_new_tokens,
        last_step=int(trainer.step),
    )


def after_step(trainer: Any, metrics: Any) -> None:
    """The trainer's hook at each logged step: watch when due, into ``metrics.goal`` and the run's message."""
    watch = getattr(trainer, "goal_watch", None)
    if watch is None or not watch.due(metrics.step, trainer.max_steps):
        return
    measure = watch.measure(trainer.model, metrics.step)
    metrics.goal = measure
    trainer.message = watch.line(metrics.step, measure)
