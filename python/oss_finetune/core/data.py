"""Conversations to train on: read rows, turn them into Harmony, tokenize, and summarize.

Rows come from a hub data set (through ``datasets``), a local ``.jsonl``, ``.json`` or ``.parquet``
file, or ``embedded:NAME`` (a sample that ships with the package). Three row formats are understood
and detected on their own:

- ``multilingual-thinking``: HuggingFaceH4/Multilingual-Thinking, with columns reasoning_language,
  developer, user, analysis, final (and messages); or only ``messages`` whose system turn reads
  ``reasoning language: X\\n\\n{developer}``.
- ``messages``: chat lists of ``{"role", "content", "thinking"}`` (the system turn becomes the
  developer's instructions, ``thinking`` the analysis channel, ``tool_calls`` commentary calls).
- ``sharegpt``: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``, with
  ``function_call`` turns (``{"name", "arguments"}`` as JSON) and ``observation`` turns (tool results).

Every format may carry ``tools``: OpenAI function tools as Hugging Face chat data sets store them,
``[{"type": "function", "function": {"name", "description", "parameters"}}]`` (a list, or that list
as a JSON string). A row's own tools win; a row without any gets the data set's (``data.tools``).

A malformed row raises `BadRowError` naming the row and the field; with ``on_bad_row="skip"`` it
is left out and listed in the summary with its reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

from .config import ConfigBase, DataConfig
from .errors import UserError
from .harmony import EFFORTS, Conversation, HarmonyRenderError, Message, Rendered, header_problem, render_many

FORMATS = ("multilingual-thinking", "messages", "sharegpt")
SAMPLE_DIR = Path(__file__).with_name("sample_data")
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet")
MESSAGE_ROLES = ("system", "developer", "user", "assistant", "tool")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
UNSPECIFIED_LANGUAGE = "unspecified"

# The data section's defaults, from the schema (through the generated config classes).
DATA_DEFAULTS: dict[str, Any] = DataConfig().to_dict()

_LANGUAGE_LINE = re.compile(r"^\s*reasoning language:\s*(?P<lang>[^\n]+?)\s*(?:\n|$)", re.I)


def _as_dict(data_config: ConfigBase | dict[str, Any]) -> dict[str, Any]:
    return data_config.to_dict() if isinstance(data_config, ConfigBase) else dict(data_config)


class DataFileError(UserError, ValueError):
    """A data file that cannot be read as a whole; the message names the file and the place in it."""


class BadRowError(UserError, ValueError):
    """A row that cannot become a conversation: ``row 3, field messages[1].role: must be one of ...``."""

    def __init__(self, row: int, field: str | None, reason: str):
        self.row = row
        self.field = field
        self.reason = reason
        where = f"row {row}" + (f", field {field}" if field else "")
        super().__init__(f"{where}: {reason}")


@dataclass
class Row:
    """A row that became a conversation; ``index`` is its position in the source."""

    index: int
    conversation: Conversation
    language: str | None
    format: str


# ---------------------------------------------------------------------------------------------
# Reading


def resolve_source(source: str) -> Path | str:
    """A local file as a Path, or a hub id as a string. ``embedded:NAME`` is the package's sample."""
    if source.startswith("embedded:"):
        name = source.split(":", 1)[1]
        path = SAMPLE_DIR / f"{name}.jsonl"
        if not path.is_file():
            known = sorted(p.stem for p in SAMPLE_DIR.glob("*.jsonl")) if SAMPLE_DIR.is_dir() else []
            raise FileNotFoundError(
                f"no embedded data set {name!r}: {path.name} is not in the package's sample_data folder"
                + (f" (it has: {', '.join(known)})" if known else " (the folder is empty or missing)")
            )
        return path
    path = Path(source).expanduser()
    if path.exists():
        if path.suffix.lower() not in LOCAL_SUFFIXES:
            raise ValueError(f"{source}: local data must be {', '.join(LOCAL_SUFFIXES)}")
        return path
    if path.suffix.lower() in LOCAL_SUFFIXES or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such file")
    return source


def read_rows(source: str, split: str = "train", limit: int | None = None) -> list[Any]:
    """Raw rows, at most ``limit`` of them. Rows are returned as found; `to_row` checks them."""
    where = resolve_source(source)
    if isinstance(where, str):
        return _read_hub(where, split, limit)
    suffix = where.suffix.lower()
    if suffix == ".jsonl":
        rows: list[Any] = []
        with where.open("rb") as f:
            for raw in f:
                if limit is not None and len(rows) >= limit:
                    break
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    # One bad line is that row's problem, named with its number, not the whole file's.
                    rows.append(_Unreadable(f"not valid UTF-8 (byte {e.start + 1} of the line)"))
                    continue
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    rows.append(_Unreadable(f"not valid JSON ({e.msg} at column {e.colno})"))
        return rows
    if suffix == ".json":
        try:
            data = json.loads(where.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise DataFileError(f"{where}: not valid UTF-8 (byte {e.start + 1})") from None
        except json.JSONDecodeError as e:
            raise DataFileError(
                f"{where}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
                "a file cut short, or JSON Lines saved as .json?"
            ) from None
        rows = data if isinstance(data, list) else [data]
        return rows[:limit] if limit is not None else rows
    import pyarrow.parquet as pq

    table = pq.read_table(where)
    if limit is not None:
        table = table.slice(0, limit)
    rows = table.to_pylist()
    return rows


def _read_hub(name: str, split: str, limit: int | None) -> list[dict[str, Any]]:
    # Needs the network (or the datasets cache); a slice keeps `limit` from downloading more than needed.
    from datasets import load_dataset

    ds = load_dataset(name, split=f"{split}[:{limit}]" if limit else split)
    return [dict(r) for r in ds]


@dataclass
class _Unreadable:
    reason: str


# ---------------------------------------------------------------------------------------------
# Rows to conversations


def detect_format(row: Any) -> str | None:
    if not isinstance(row, dict):
        return None
    if "conversations" in row:
        return "sharegpt"
    if "user" in row and "final" in row:
        return "multilingual-thinking"
    if "messages" in row:
        msgs = row["messages"]
        if isinstance(msgs, list) and msgs and isinstance(msgs[0], dict) and msgs[0].get("role") == "system":
            if _LANGUAGE_LINE.match(str(msgs[0].get("content") or "")):
                return "multilingual-thinking"
        return "messages"
    return None


@overload
def _need_str(value: Any, row: int, field: str, optional: Literal[False] = False) -> str: ...
@overload
def _need_str(value: Any, row: int, field: str, optional: bool) -> str | None: ...
def _need_str(value: Any, row: int, field: str, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str):
        shown = "missing" if value is None else f"a {type(value).__name__}"
        raise BadRowError(row, field, f"must be a string, got {shown}")
    return value


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__
    )


def _header_str(value: Any, row: int, field: str, *, optional: bool = False, constrain: bool = False) -> str:
    """A string that goes into a message header (a tool's name, a content type): plain text only."""
    text = _need_str(value, row, field, optional=optional)
    if text is None:
        return ""
    problem = header_problem(text, constrain=constrain)
    if problem:
        raise BadRowError(row, field, problem)
    return text


def _effort(row: dict[str, Any], default: str, index: int) -> str:
    effort = row.get("reasoning_effort") or default
    if effort not in EFFORTS:
        raise BadRowError(index, "reasoning_effort", f"must be one of {', '.join(EFFORTS)}")
    return effort


def _language_of(instructions: str | None) -> str | None:
    m = _LANGUAGE_LINE.match(instructions or "")
    return m.group("lang") if m else None


def _json_or(value: Any, index: int, field: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise BadRowError(index, field, f"a string that is not JSON ({e.msg} at column {e.colno})") from None


def check_tools(value: Any, index: int, field: str = "tools") -> list[dict[str, Any]]:
    """Function tools in the wrapped form ``{"type": "function", "function": {...}}``, checked.

    Accepts the wrapped or the bare form (``{"name", "description", "parameters"}``), and the list or
    its parameters as JSON strings: hub data sets often store them so, as one column needs one type.
    """
    value = _json_or(value, index, field)
    if not isinstance(value, list):
        raise BadRowError(index, field, f"must be a list of function tools, not {_kind(value)}")
    tools = []
    for i, tool in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(tool, dict):
            raise BadRowError(index, where, f"must be an object, not {_kind(tool)}")
        if tool.get("type", "function") != "function":
            raise BadRowError(index, f"{where}.type", f"only function tools are supported, got {tool.get('type')!r}")
        fn, fwhere = (tool["function"], f"{where}.function") if "function" in tool else (tool, where)
        if not isinstance(fn, dict):
            raise BadRowError(
                index, fwhere, f"must be an object with name, description and parameters, not {_kind(fn)}"
            )
        out: dict[str, Any] = {"name": _header_str(fn.get("name"), index, f"{fwhere}.name")}
        description = _need_str(fn.get("description"), index, f"{fwhere}.description", optional=True)
        if description is not None:
            out["description"] = description
        params = _json_or(fn.get("parameters"), index, f"{fwhere}.parameters")
        if params is not None:
            if not isinstance(params, dict):
                raise BadRowError(index, f"{fwhere}.parameters", f"must be a JSON Schema object, not {_kind(params)}")
            out["parameters"] = params
        tools.append({"type": "function", "function": out})
    return tools


def _row_tools(row: dict[str, Any], index: int, default: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    own = row.get("tools")
    if own is None or own == "" or own == []:
        return default
    return check_tools(own, index) or default


def _from_columns(row: dict[str, Any], index: int, effort: str, tools: list[dict[str, Any]] | None = None) -> Row:
    lang = _need_str(row.get("reasoning_language"), index, "reasoning_language", optional=True)
    developer = _need_str(row.get("developer"), index, "developer", optional=True)
    user = _need_str(row.get("user"), index, "user")
    analysis = _need_str(row.get("analysis"), index, "analysis", optional=True)
    final = _need_str(row.get("final"), index, "final")
    msgs = [Message("user", user)]
    if analysis:
        msgs.append(Message("assistant", analysis, channel="analysis"))
    msgs.append(Message("assistant", final, channel="final"))
    conv = Conversation(
        msgs,
        reasoning_effort=effort,
        developer_instructions=developer or None,
        reasoning_language=lang,
        tools=_row_tools(row, index, tools),
    )
    return Row(index, conv, lang, "multilingual-thinking")


def _tool_call_message(call: Any, index: int, where: str) -> Message:
    if not isinstance(call, dict):
        raise BadRowError(index, where, "must be an object with a function name and arguments")
    fn = call.get("function", call)
    if not isinstance(fn, dict):
        raise BadRowError(index, f"{where}.function", "must be an object with a name and arguments")
    name = _header_str(fn.get("name"), index, f"{where}.function.name")
    args = fn.get("arguments", {})
    content = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    content_type = _header_str(
        fn.get("content_type", "<|constrain|>json"), index, f"{where}.function.content_type", constrain=True
    )
    return Message("assistant", content, channel="commentary", recipient=f"functions.{name}", content_type=content_type)


def _from_messages(
    row: dict[str, Any],
    index: int,
    effort: str,
    key: str = "messages",
    *,
    tools: list[dict[str, Any]] | None = None,
    require_assistant: bool = True,
) -> Row:
    raw = row.get(key)
    if not isinstance(raw, list) or not raw:
        raise BadRowError(index, key, "must be a non-empty list of messages")
    instructions: list[str] = []
    msgs: list[Message] = []
    last_call: str | None = None
    call_ids: dict[str, str] = {}  # a call's id -> its recipient, for results of parallel calls
    for i, m in enumerate(raw):
        where = f"{key}[{i}]"
        if not isinstance(m, dict):
            raise BadRowError(index, where, "must be an object with role and content")
        role = m.get("role")
        if role not in MESSAGE_ROLES:
            raise BadRowError(index, f"{where}.role", f"must be one of {', '.join(MESSAGE_ROLES)}")
        if role in ("system", "developer"):
            instructions.append(_need_str(m.get("content"), index, f"{where}.content"))
            continue
        if role == "user":
            msgs.append(Message("user", _need_str(m.get("content"), index, f"{where}.content")))
            continue
        if role == "tool":
            content = m.get("content")
            if isinstance(content, (dict, list)):
                content = json.dumps(content, ensure_ascii=False)
            content = _need_str(content, index, f"{where}.content")
            name = _header_str(m.get("name"), index, f"{where}.name", optional=True)
            by_id = call_ids.get(str(m.get("tool_call_id"))) if m.get("tool_call_id") is not None else None
            author = (name if name.startswith("functions.") else f"functions.{name}") if name else by_id or last_call
            if not author:
                raise BadRowError(
                    index, f"{where}.name", "a tool result needs the tool's name, and no tool call comes before it"
                )
            msgs.append(Message("tool", content, name=author))
            continue
        thinking = _need_str(m.get("thinking", m.get("reasoning_content")), index, f"{where}.thinking", optional=True)
        calls = m.get("tool_calls") or []
        if not isinstance(calls, list):
            raise BadRowError(index, f"{where}.tool_calls", f"must be a list of tool calls, not {_kind(calls)}")
        content = _need_str(m.get("content"), index, f"{where}.content", optional=bool(calls))
        if thinking:
            msgs.append(Message("assistant", thinking, channel="analysis"))
        if content or (content is not None and not calls):
            # An empty answer is still an answer: dropping it would teach the model to stop after
            # its reasoning. Beside tool calls an empty content is only the absence of a preamble.
            msgs.append(Message("assistant", content, channel="commentary" if calls else "final"))
        for j, call in enumerate(calls):
            msg = _tool_call_message(call, index, f"{where}.tool_calls[{j}]")
            last_call = msg.recipient
            if isinstance(call, dict) and call.get("id") is not None:
                call_ids[str(call["id"])] = str(msg.recipient)
            msgs.append(msg)
    if require_assistant and not any(m.role == "assistant" for m in msgs):
        raise BadRowError(index, key, "has no assistant message to learn from")
    dev = "\n\n".join(instructions) or None
    lang = _language_of(dev)
    conv = Conversation(
        msgs,
        reasoning_effort=effort,
        developer_instructions=dev,
        reasoning_language=lang,
        tools=_row_tools(row, index, tools),
    )
    fmt = "multilingual-thinking" if lang else "messages"
    return Row(index, conv, lang, fmt)


def _sharegpt_calls(value: str, index: int, where: str) -> list[Any]:
    calls = _json_or(value, index, f"{where}.value")
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        raise BadRowError(
            index, f"{where}.value", 'a function_call turn holds {"name", "arguments"} as JSON, or a list of them'
        )
    return calls


def _from_sharegpt(
    row: dict[str, Any],
    index: int,
    effort: str,
    *,
    tools: list[dict[str, Any]] | None = None,
    require_assistant: bool = True,
) -> Row:
    raw = row.get("conversations")
    if not isinstance(raw, list) or not raw:
        raise BadRowError(index, "conversations", "must be a non-empty list of turns")
    messages = []
    for i, turn in enumerate(raw):
        where = f"conversations[{i}]"
        if not isinstance(turn, dict):
            raise BadRowError(index, where, "must be an object with from and value")
        who = turn.get("from")
        if who not in SHAREGPT_ROLES:
            raise BadRowError(index, f"{where}.from", f"must be one of {', '.join(SHAREGPT_ROLES)}")
        value = _need_str(turn.get("value"), index, f"{where}.value")
        message: dict[str, Any] = {"role": SHAREGPT_ROLES[who], "content": value, "thinking": turn.get("thinking")}
        if who == "function_call":
            message["content"] = None
            message["tool_calls"] = _sharegpt_calls(value, index, where)
        elif who in ("observation", "tool") and turn.get("name") is not None:
            message["name"] = turn["name"]
        messages.append(message)
    out = _from_messages(
        {"conversations": messages, "tools": row.get("tools")},
        index,
        effort,
        key="conversations",
        tools=tools,
        require_assistant=require_assistant,
    )
    out.format = "sharegpt"
    return out


def to_row(
    raw: Any,
    index: int,
    format: str = "auto",
    reasoning_effort: str = "medium",
    *,
    tools: list[dict[str, Any]] | None = None,
    require_assistant: bool = True,
) -> Row:
    """One raw row as a conversation, or `BadRowError`.

    ``tools`` are the data set's function tools, for rows that have none of their own.
    ``require_assistant=False`` accepts a row with no assistant turn: a prompt to complete.
    """
    if isinstance(raw, _Unreadable):
        raise BadRowError(index, None, raw.reason)
    if not isinstance(raw, dict):
        raise BadRowError(index, None, f"must be an object, got {type(raw).__name__}")
    fmt = detect_format(raw) if format == "auto" else format
    if fmt is None:
        raise BadRowError(
            index,
            None,
            "unknown format: expected messages, conversations (ShareGPT) or user/final columns (Multilingual-Thinking)",
        )
    if fmt not in FORMATS:
        raise ValueError(f"format must be auto or one of {', '.join(FORMATS)}, got {format!r}")
    effort = _effort(raw, reasoning_effort, index)
    try:
        if fmt == "sharegpt":
            return _from_sharegpt(raw, index, effort, tools=tools, require_assistant=require_assistant)
        if fmt == "multilingual-thinking" and "user" in raw and "final" in raw:
            return _from_columns(raw, index, effort, tools)
        return _from_messages(raw, index, effort, tools=tools, require_assistant=require_assistant)
    except HarmonyRenderError as e:
        raise BadRowError(index, None, str(e)) from None


class DataToolsError(UserError, ValueError):
    """``data.tools`` that are not function tools; the message names the entry and the field."""


def data_set_tools(value: Any) -> list[dict[str, Any]] | None:
    """The data set's tools (``data.tools``), checked as a row's are, or None.

    ``value`` is a .json file holding the list, the list as JSON text, or (from Python) the list."""
    if value is None or value == "" or value == [] or value == ():
        return None
    if isinstance(value, str) and not value.lstrip().startswith("["):
        path = Path(value).expanduser()
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as e:
            raise DataToolsError(f"data.tools: cannot read {value} ({e.strerror or e})") from None
        except UnicodeDecodeError as e:
            raise DataToolsError(f"data.tools: {value} is not valid UTF-8 (byte {e.start + 1})") from None
    try:
        return check_tools(list(value) if isinstance(value, tuple) else value, -1, "data.tools")
    except BadRowError as e:
        raise DataToolsError(f"{e.field}: {e.reason}") from None


def load_rows(data_config: ConfigBase | dict[str, Any]) -> tuple[list[Row], list[dict[str, Any]], int]:
    """Rows as conversations, the skipped ones (``{"row", "field", "error"}``), and how many were read."""
    cfg = {**DATA_DEFAULTS, **_as_dict(data_config)}
    tools = data_set_tools(cfg.get("tools"))
    raw_rows = read_rows(cfg["source"], cfg["split"], cfg["limit"])
    rows, skipped = [], []
    for i, raw in enumerate(raw_rows):
        try:
            rows.append(to_row(raw, i, cfg["format"], cfg["reasoning_effort"], tools=tools))
        except BadRowError as e:
            if cfg["on_bad_row"] != "skip":
                raise
            skipped.append({"row": e.row, "field": e.field, "error": e.reason})
    return rows, skipped, len(raw_rows)


# ---------------------------------------------------------------------------------------------
# Tokenized examples and the summary


@dataclass
class Example:
    """One training example: token ids, the loss mask (``trained[i]``: token i is predicted with a
    loss), and where it came from (-1 and None for examples made in code rather than read from a row)."""

    input_ids: list[int]
    trained: list[bool]
    row: int = -1
    language: str | None = None
    truncated: bool = False

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.trained):
            raise ValueError(f"input_ids has {len(self.input_ids)} tokens but the loss mask has {len(self.trained)}")

    @property
    def labels(self) -> list[int]:
        """Targets as transformers expects them: -100 where the loss is not computed."""
        return [t if m else -100 for t, m in zip(self.input_ids, self.trained)]


@dataclass
class Prepared:
    examples: list[Example]
    summary: dict[str, Any]
    rows: list[Row] = field(default_factory=list)


def histogram(lengths: list[int], max_seq_length: int, bins_to_limit: int = 8) -> dict[str, Any]:
    """Equal bins from 0 with one edge at max_seq_length, so rows over the limit stand apart."""
    width = max(1, math.ceil(max_seq_length / bins_to_limit))
    longest = max(lengths, default=0)
    n_bins = max(bins_to_limit, math.ceil(longest / width))
    n_bins = min(n_bins, bins_to_limit * 4)
    edges = [i * width for i in range(n_bins + 1)]
    edges[-1] = max(edges[-1], longest)  # the last bin reaches the longest row
    counts = [0] * n_bins
    for n in lengths:
        counts[min(n_bins - 1, max(0, math.ceil(n / width) - 1))] += 1
    return {
        "edges": edges,
        "counts": counts,
        "min": min(lengths) if lengths else None,
        "max": longest if lengths else None,
        "mean": (sum(lengths) / len(lengths)) if lengths else None,
    }


def prepare(
    data_config: ConfigBase | dict[str, Any], tokenizer: Any, *, date: Any = None, batch_size: int = 256
) -> Prepared:
    """Read, convert, render and tokenize a data set as the ``data`` section of a config says.

    Rows longer than ``max_seq_length`` are truncated or dropped (``overflow``), and counted in the
    summary either way. ``date`` pins the system message's date line (default: today). Special-token
    text inside a message is encoded as plain text and the rows where that happened are counted
    (``rows_with_special_text``), unless ``special_tokens`` is ``error``: then such a row is a bad row.
    """
    cfg = {**DATA_DEFAULTS, **_as_dict(data_config)}
    rows, skipped, read = load_rows(cfg)
    max_len = int(cfg["max_seq_length"])
    rendered: list[Rendered | None] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        try:
            rendered.extend(
                render_many(
                    [r.conversation for r in chunk],
                    mode="train",
                    loss_mask=cfg["loss_mask"],
                    date=date,
                    tokenizer=tokenizer,
                    special_tokens=cfg["special_tokens"],
                )
            )
        except HarmonyRenderError:
            # One bad row spoils the batch; find it (and any others) one by one.
            for r in chunk:
                try:
                    rendered.extend(
                        render_many(
                            [r.conversation],
                            mode="train",
                            loss_mask=cfg["loss_mask"],
                            date=date,
                            tokenizer=tokenizer,
                            special_tokens=cfg["special_tokens"],
                        )
                    )
                except HarmonyRenderError as e:
                    if cfg["on_bad_row"] != "skip":
                        raise BadRowError(r.index, "messages", str(e)) from None
                    skipped.append({"row": r.index, "field": "messages", "error": str(e)})
                    rendered.append(None)
    kept_rows, examples, lengths, over = [], [], [], []
    special_text = 0
    for row, rd in zip(rows, rendered):
        if rd is None:
            continue
        special_text += bool(rd.special_text)
        n = len(rd.ids)
        lengths.append(n)
        ids, trained, cut = rd.ids, rd.trained, False
        if n > max_len:
            over.append(row.index)
            if cfg["overflow"] == "drop":
                continue
            ids, trained, cut = ids[:max_len], trained[:max_len], True
        examples.append(Example(list(ids), list(trained), row.index, row.language, cut))
        kept_rows.append(row)
    languages: dict[str, int] = {}
    for row in kept_rows:
        key = row.language or UNSPECIFIED_LANGUAGE
        languages[key] = languages.get(key, 0) + 1
    formats = {r.format for r in rows}
    summary = {
        "version": 1,
        "source": cfg["source"],
        "rows": len(examples),
        "rows_read": read,
        "skipped_rows": sorted(skipped, key=lambda s: s["row"]),
        "languages": dict(sorted(languages.items())),
        "token_lengths": histogram(lengths, max_len),
        "max_seq_length": max_len,
        "over_limit": {"rows": len(over), "action": cfg["overflow"], "row_indices": over},
        "loss_mask": cfg["loss_mask"],
        "tokens_total": sum(len(e.input_ids) for e in examples),
        "tokens_trained": sum(sum(e.trained) for e in examples),
        "rows_with_special_text": special_text,
    }
    if len(formats) == 1:
        summary["format"] = formats.pop()
    elif cfg["format"] != "auto":
        summary["format"] = cfg["format"]
    return Prepared(examples, summary, kept_rows)


def conversations_from(rows: Iterable[Row]) -> list[Conversation]:
    return [r.conversation for r in rows]
