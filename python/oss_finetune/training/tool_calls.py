"""How well a model calls tools: held-out requests, one greedy generation each, judged as Harmony.

Each held-out row is a conversation whose assistant calls a function tool (``to=functions.NAME`` on
the commentary channel). The model is given the conversation up to that assistant turn, tools
included, and generates until ``<|call|>`` or ``<|return|>``. ``tool_call_rate`` then reports:

- ``well_formed``: the generation is valid Harmony whose last message is a call: an assistant message
  on the commentary channel to ``functions.NAME``, with a JSON content type (``<|constrain|>json``),
  ended by ``<|call|>``, holding a JSON object. Reasoning before it is allowed, as the format has it.
- ``right_tool``: well-formed and calling the tool the row calls.
- ``valid_arguments``: well-formed, calling one of the offered tools, with arguments that validate
  against that tool's JSON Schema (``jsonschema``).
- ``right_and_valid``: both of the last two; the tutorial's goal.
- ``exact_arguments``: the right tool with exactly the row's arguments.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

# Prompts generated at once, as in the language evaluation (training.language.DEFAULT_BATCH).
DEFAULT_BATCH = 64
# Room for a short reasoning and one call; a model that reasons at length is cut off and counts as no call.
DEFAULT_NEW_TOKENS = 128
FUNCTIONS = "functions."


@dataclass
class CallRequest:
    """One held-out request: the prompt and the call the row makes."""

    row: int
    language: str | None
    prompt: list[int]
    tool: str
    arguments: Any
    schemas: dict[str, dict]  # offered tool -> its parameters' JSON Schema


@dataclass
class JudgedCall:
    """One held-out request: what was expected, what the model called, and the verdicts."""

    row: int
    language: str | None
    expected_tool: str
    expected_arguments: Any
    tool: str | None = None
    arguments: Any = None
    well_formed: bool = False
    right_tool: bool = False
    valid_arguments: bool = False
    exact_arguments: bool = False
    failure: str | None = None  # the kind of failure, e.g. "answered without a call"
    error: str | None = None  # the failure with its specifics
    generated_tokens: int = 0
    generated: list[int] = field(default_factory=list, repr=False)

    @property
    def right_and_valid(self) -> bool:
        return self.right_tool and self.valid_arguments

    def to_dict(self) -> dict:
        return {
            "row": self.row,
            "language": self.language,
            "expected_tool": self.expected_tool,
            "expected_arguments": self.expected_arguments,
            "tool": self.tool,
            "arguments": self.arguments,
            "well_formed": self.well_formed,
            "right_tool": self.right_tool,
            "valid_arguments": self.valid_arguments,
            "exact_arguments": self.exact_arguments,
            "failure": self.failure,
            "error": self.error,
            "generated_tokens": self.generated_tokens,
        }


@dataclass
class ToolCallRate:
    """Fractions of the held-out requests (see the module's docstring for each)."""

    requests: int
    well_formed: float
    right_tool: float
    valid_arguments: float
    right_and_valid: float
    exact_arguments: float
    per_tool: dict[str, float] = field(default_factory=dict)  # expected tool -> right_and_valid
    per_language: dict[str, float] = field(default_factory=dict)  # language -> right_and_valid
    failures: dict[str, int] = field(default_factory=dict)  # what went wrong, by kind, most frequent first
    skipped: int = 0  # rows without a tool call, not counted
    seconds: float = 0.0
    judged: list[JudgedCall] = field(default_factory=list)

    def summary(self) -> str:
        tools = ", ".join(f"{k} {v:.0%}" for k, v in self.per_tool.items())
        text = (
            f"tool calls on {self.requests} held-out requests: well-formed {self.well_formed:.0%}, right tool "
            f"{self.right_tool:.0%}, valid arguments {self.valid_arguments:.0%}, right tool with valid arguments "
            f"{self.right_and_valid:.0%} (exactly the expected arguments {self.exact_arguments:.0%})"
        )
        if tools:
            text += f"; right with valid arguments by tool: {tools}"
        if self.failures:
            text += "; failures: " + ", ".join(f"{k} {v}" for k, v in self.failures.items())
        if self.skipped:
            text += f"; {self.skipped} row{'' if self.skipped == 1 else 's'} without a tool call left out"
        return text + f"; {self.seconds:.0f} s"

    def to_dict(self) -> dict:
        return {
            "requests": self.requests,
            "well_formed": self.well_formed,
            "right_tool": self.right_tool,
            "valid_arguments": self.valid_arguments,
            "right_and_valid": self.right_and_valid,
            "exact_arguments": self.exact_arguments,
            "per_tool": self.per_tool,
            "per_language": self.per_language,
            "failures": self.failures,
            "skipped": self.skipped,
            "seconds": self.seconds,
        }


# ---------------------------------------------------------------------------------------------
# From rows to requests


def _schemas(tools: Sequence[Any] | None, row: int) -> dict[str, dict]:
    """Each offered tool's parameters as a checked JSON Schema; a broken schema is the row's error."""
    from jsonschema import SchemaError, validators

    from ..core.data import BadRowError
    from ..core.harmony import tool_function

    out: dict[str, dict] = {}
    for i, tool in enumerate(tools or []):
        fn = tool_function(tool)
        parameters = fn.get("parameters") or {"type": "object"}
        try:
            validators.validator_for(parameters).check_schema(parameters)
        except SchemaError as error:
            raise BadRowError(
                row, f"tools[{i}].function.parameters", f"not a valid JSON Schema: {error.message}"
            ) from None
        out[str(fn.get("name"))] = parameters
    return out


def call_requests(
    rows: Iterable[Any],
    tokenizer: Any,
    *,
    tools: list[dict[str, Any]] | None = None,
    effort: str = "medium",
    date: Any = "2025-06-28",
) -> tuple[list[CallRequest], int]:
    """The requests of ``rows`` (raw rows in any format ``core.data`` reads, or ``Row`` objects) and how
    many rows had no tool call. ``tools``: the data set's tools, for rows without their own."""
    from ..core.data import BadRowError, Row, to_row
    from ..core.harmony import render

    requests: list[CallRequest] = []
    skipped = 0
    for index, raw in enumerate(rows):
        row = raw if isinstance(raw, Row) else to_row(raw, index, reasoning_effort=effort, tools=tools)
        messages = row.conversation.messages
        at = next(
            (i for i, m in enumerate(messages) if m.role == "assistant" and (m.recipient or "").startswith(FUNCTIONS)),
            None,
        )
        if at is None:
            skipped += 1
            continue
        call = messages[at]
        name = (call.recipient or "")[len(FUNCTIONS) :]
        try:
            arguments = json.loads(call.content)
        except json.JSONDecodeError as error:
            raise BadRowError(
                row.index, f"the call to {call.recipient}", f"its arguments are not JSON ({error.msg})"
            ) from None
        schemas = _schemas(row.conversation.tools, row.index)
        if name not in schemas:
            offered = ", ".join(schemas) or "none"
            raise BadRowError(
                row.index, "tools", f"the row calls {name}, which its tools do not offer (offered: {offered})"
            )
        conversation = replace(row.conversation, messages=list(messages[:at]))
        prompt = render(conversation, mode="prompt", date=date, tokenizer=tokenizer).ids
        language = raw.get("language") if isinstance(raw, dict) else row.language
        requests.append(CallRequest(row.index, language, list(prompt), name, arguments, schemas))
    return requests, skipped


# ---------------------------------------------------------------------------------------------
# Judging one generation


def judge(generated: Sequence[int], request: CallRequest, tokenizer: Any = None) -> JudgedCall:
    """Parse one generation (the tokens after ``<|start|>assistant``) and judge its tool call."""
    from jsonschema import validators

    from ..core.harmony import HarmonyParseError, parse
    from ..core.tokenizer import CALL

    ids = list(generated)
    verdict = JudgedCall(
        request.row, request.language, request.tool, request.arguments, generated_tokens=len(ids), generated=ids
    )

    def fail(kind: str, detail: str | None = None) -> JudgedCall:
        verdict.failure = kind
        verdict.error = f"{kind}: {detail}" if detail else kind
        return verdict

    try:
        parsed = parse(ids, tokenizer=tokenizer, role="assistant", partial=True)
    except HarmonyParseError as error:
        return fail("not Harmony", str(error))
    calls = [m for m in parsed.messages if m.recipient and m.role == "assistant"]
    if not calls:
        finals = [m for m in parsed.messages if m.channel == "final"]
        return fail("answered without a call" if finals else "no call before the token limit")
    call = calls[0]
    recipient = call.recipient or ""
    verdict.tool = recipient[len(FUNCTIONS) :] if recipient.startswith(FUNCTIONS) else recipient
    if not (parsed.complete and ids and ids[-1] == CALL and parsed.messages[-1] is call):
        return fail("a call not ended by <|call|>")
    if not recipient.startswith(FUNCTIONS):
        return fail("not addressed to functions.NAME", recipient)
    if call.channel != "commentary":
        return fail("not on the commentary channel", str(call.channel))
    if "json" not in (call.content_type or ""):
        return fail("no JSON content type", call.content_type or "none")
    try:
        arguments = json.loads(call.content)
    except json.JSONDecodeError as error:
        return fail("arguments that are not JSON", error.msg)
    if not isinstance(arguments, dict):
        return fail("arguments that are not a JSON object")
    verdict.arguments = arguments
    verdict.well_formed = True
    verdict.right_tool = verdict.tool == request.tool
    verdict.exact_arguments = verdict.right_tool and arguments == request.arguments
    schema = request.schemas.get(verdict.tool)
    if schema is None:
        return fail("a tool that is not offered", verdict.tool)
    problem = next(iter(validators.validator_for(schema)(schema).iter_errors(arguments)), None)
    verdict.valid_arguments = problem is None
    if problem is not None:
        where = ".".join(str(p) for p in problem.absolute_path) or "arguments"
        return fail("arguments off the schema", f"{where}: {problem.message}")
    if not verdict.right_tool:
        return fail("the wrong tool", verdict.tool)
    return verdict


# ---------------------------------------------------------------------------------------------
# The rate


def tool_call_rate(
    model,
    tokenizer,
    heldout_rows: Iterable[Any],
    *,
    tools: list[dict[str, Any]] | None = None,
    effort: str = "medium",
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    date: Any = "2025-06-28",
    batch_size: int = DEFAULT_BATCH,
    use_adapter: bool = True,
    on_progress: Callable[[int, int], Any] | None = None,
) -> ToolCallRate:
    """Generate a call for each held-out request and judge it (see the module's docstring).

    ``use_adapter=False`` measures the base under a LoRA model. ``batch_size`` prompts generate at once
    (``generation.generate_many``). ``on_progress(done, total)`` is called with 0 first, then as
    requests finish, and last with ``total``.
    """
    from ..core.tokenizer import CALL, RETURN
    from .generation import generate_many

    started = time.perf_counter()
    requests, skipped = call_requests(heldout_rows, tokenizer, tools=tools, effort=effort, date=date)
    total = len(requests)
    stops = (CALL, RETURN)
    done = 0
    if on_progress is not None:
        on_progress(0, total)

    def finished(_row: int, token: int) -> None:
        nonlocal done
        if token in stops and on_progress is not None:
            done += 1
            on_progress(min(done, total), total)

    judged: list[JudgedCall] = []
    step = max(1, batch_size)
    for start in range(0, total, step):
        chunk = requests[start : start + step]
        outs = generate_many(
            model,
            [r.prompt for r in chunk],
            max_new_tokens,
            tokenizer=tokenizer,
            use_adapter=use_adapter,
            stop_token_ids=stops,
            on_token=finished if on_progress is not None else None,
        )
        # Requests that ran to the token limit finish with their batch.
        if on_progress is not None and done < start + len(chunk):
            done = start + len(chunk)
            on_progress(min(done, total), total)
        judged.extend(judge(generated, request, tokenizer) for request, generated in zip(chunk, outs))

    def share(flags: Iterable[bool], n: int) -> float:
        return sum(flags) / max(n, 1)

    def by(key: Callable[[JudgedCall], str | None]) -> dict[str, float]:
        groups: dict[str, list[JudgedCall]] = {}
        for j in judged:
            name = key(j)
            if name is not None:
                groups.setdefault(name, []).append(j)
        return {name: share((j.right_and_valid for j in group), len(group)) for name, group in groups.items()}

    failures = Counter(j.failure for j in judged if j.failure)
    n = len(judged)
    return ToolCallRate(
        requests=n,
        well_formed=share((j.well_formed for j in judged), n),
        right_tool=share((j.right_tool for j in judged), n),
        valid_arguments=share((j.valid_arguments for j in judged), n),
        right_and_valid=share((j.right_and_valid for j in judged), n),
        exact_arguments=share((j.exact_arguments for j in judged), n),
        per_tool=by(lambda j: j.expected_tool),
        per_language=by(lambda j: j.language),
        failures=dict(failures.most_common()),
        skipped=skipped,
        seconds=time.perf_counter() - started,
        judged=judged,
    )
