"""Harmony, the chat format of gpt-oss, at token level.

A conversation becomes token ids, and every token carries a label: which message it belongs to,
that message's role and channel, whether it is part of a header, the content or a special token,
and whether the loss is computed on it (the loss mask). The reverse direction, `StreamParser`,
labels generated tokens one at a time as they arrive.

The renderer is our own. openai-harmony and the chat template that TRL ships are the references the
tests compare against token by token; docs/harmony.md lists where those two disagree and which one
this module follows.

>>> conv = Conversation([Message("user", "Bonjour"), Message("assistant", "Salut", channel="final")],
...                     reasoning_effort="low")
>>> r = render(conv, date="2025-06-28")
>>> r.ids[-1] == RETURN
True
"""

from __future__ import annotations

import codecs
import datetime as _dt
import decimal
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import UserError
from .tokenizer import (
    CALL,
    CHANNEL,
    CONSTRAIN,
    END,
    FIRST_SPECIAL_ID,
    MESSAGE,
    RETURN,
    SPECIAL_TOKEN_NAMES,
    SPECIAL_TOKENS,
    START,
    load_tokenizer,
)

ROLES = ("system", "developer", "user", "assistant", "tool")
CHANNELS = ("analysis", "commentary", "final")
EFFORTS = ("low", "medium", "high")
LOSS_MASKS = ("assistant", "calls_and_final", "final", "all")
SPECIAL_TEXT_POLICIES = ("text", "error")
MODES = ("train", "prompt")
MODEL_IDENTITY = "You are ChatGPT, a large language model trained by OpenAI."
KNOWLEDGE_CUTOFF = "2024-06"
NO_DATE = ""  # pass as `date` to leave the "Current date:" line out, as openai-harmony does by default

_SPECIAL_SPLIT = re.compile("(" + "|".join(re.escape(t) for t in SPECIAL_TOKENS) + ")")
_TERMINATORS = (END, RETURN, CALL)


def special_token_in(text: str) -> str | None:
    """The first special token written out in ``text`` (``<|start|>``, ...), or None."""
    found = _SPECIAL_SPLIT.search(text)
    return found.group(0) if found else None


def header_problem(value: str, *, constrain: bool = False) -> str | None:
    """What is wrong with a header field (a recipient, a tool's name, a content type), or None.

    Header text becomes part of the message's header tokens, so special-token text there would turn
    into real structure (a new message, a channel); a content type may start with <|constrain|> only."""
    text = value[len("<|constrain|>") :] if constrain and value.startswith("<|constrain|>") else value
    token = special_token_in(text)
    if token:
        return f"contains the special token {token}; header fields are plain names"
    if not text.strip() or any(c.isspace() for c in text):
        return "must be one word without spaces"
    return None


class HarmonyRenderError(UserError, ValueError):
    """A conversation that cannot be written in Harmony (says which message and why)."""


class HarmonyParseError(ValueError):
    """A token stream that is not valid Harmony. ``position`` is the 0-based index of the bad token."""

    def __init__(self, position: int, token: int | None, expected: str, context: str = ""):
        self.position = position
        self.token = token
        self.expected = expected
        shown = "end of stream" if token is None else SPECIAL_TOKEN_NAMES.get(token, f"id {token}")
        where = f" {context}" if context else ""
        super().__init__(f"token {position} ({shown}){where}: expected {expected}")


# ---------------------------------------------------------------------------------------------
# Data model


@dataclass
class Message:
    """One Harmony message.

    ``channel`` is for assistant messages (and tool results, which answer on ``commentary``).
    ``recipient`` addresses a tool call (``functions.get_weather``); ``content_type`` tells the
    format of its arguments (``<|constrain|>json``). ``name`` is the author of a tool result,
    e.g. ``functions.get_weather``; left out, it is taken from the tool call before it.
    """

    role: str
    content: str
    channel: str | None = None
    recipient: str | None = None
    content_type: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise HarmonyRenderError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}")
        if not isinstance(self.content, str):
            raise HarmonyRenderError(
                f"content of a {self.role} message must be a string, got {type(self.content).__name__}"
            )
        if self.role == "assistant" and self.channel is None:
            # The system message promises a channel on every assistant message.
            self.channel = "commentary" if self.recipient else "final"
        if self.role == "tool":
            self.channel = self.channel or "commentary"
            self.recipient = self.recipient or "assistant"
        if self.channel is not None and self.channel not in CHANNELS:
            raise HarmonyRenderError(f"channel must be one of {', '.join(CHANNELS)}, got {self.channel!r}")
        for field_name in ("recipient", "content_type", "name"):
            value = getattr(self, field_name)
            if value is None:
                continue
            if not isinstance(value, str):
                raise HarmonyRenderError(f"{field_name} must be a string, got {type(value).__name__}")
            problem = header_problem(value, constrain=field_name == "content_type")
            if problem:
                raise HarmonyRenderError(f"{field_name} {value!r} {problem}")


@dataclass
class Conversation:
    """Messages plus what Harmony writes into the system and developer messages.

    The system message (model identity, knowledge cutoff, date, ``Reasoning: low|medium|high``) and
    the developer message (``# Instructions`` with ``reasoning language: X`` and the developer's
    instructions, then ``# Tools``) are built from these fields, unless ``messages`` already holds a
    system or developer message: that one is written verbatim instead.
    ``tools`` are function tools as in the OpenAI API: ``{"name", "description", "parameters"}``,
    optionally wrapped as ``{"type": "function", "function": {...}}``.
    """

    messages: list[Message]
    reasoning_effort: str = "medium"
    developer_instructions: str | None = None
    reasoning_language: str | None = None
    tools: list[dict[str, Any]] | None = None
    date: str | None = None
    model_identity: str = MODEL_IDENTITY
    knowledge_cutoff: str = KNOWLEDGE_CUTOFF

    def __post_init__(self) -> None:
        if self.reasoning_effort not in EFFORTS:
            raise HarmonyRenderError(
                f"reasoning_effort must be one of {', '.join(EFFORTS)}, got {self.reasoning_effort!r}"
            )

    def instructions(self) -> str | None:
        """The text under ``# Instructions``: the reasoning language first, as Multilingual-Thinking writes it."""
        parts = []
        dev = self.developer_instructions
        if self.reasoning_language and not (dev or "").lower().startswith("reasoning language:"):
            parts.append(f"reasoning language: {self.reasoning_language}")
        if dev:
            parts.append(dev)
        return "\n\n".join(parts) if parts else None


def system_text(conv: Conversation, date: str | None, function_tools: bool | None = None) -> str:
    lines = f"{conv.model_identity}\nKnowledge cutoff: {conv.knowledge_cutoff}\n"
    if date:
        lines += f"Current date: {date}\n"
    lines += f"\nReasoning: {conv.reasoning_effort}\n\n"
    lines += "# Valid channels: analysis, commentary, final. Channel must be included for every message."
    if conv.tools if function_tools is None else function_tools:
        lines += "\nCalls to these tools must go to the commentary channel: 'functions'."
    return lines


def developer_text(conv: Conversation) -> str | None:
    instructions = conv.instructions()
    sections = []
    if instructions:
        sections.append(f"# Instructions\n\n{instructions}")
    if conv.tools:
        sections.append("# Tools\n\n" + tools_namespace(conv.tools))
    return "\n\n".join(sections) if sections else None


# ---------------------------------------------------------------------------------------------
# Function tools as the TypeScript-like namespace the model was trained on
#
# The layout follows openai-harmony's rendering of JSON Schema byte for byte (docs/harmony.md lists
# the quirks kept on purpose): the model saw exactly this text, so a cleaner rendering would be a
# prompt it never trained on.


def tool_function(tool: Any) -> dict[str, Any]:
    """The function of a tool given bare (``{"name", ...}``) or wrapped (``{"type": "function", "function": {...}}``)."""
    if not isinstance(tool, dict):
        raise HarmonyRenderError(f"a tool must be an object, got {type(tool).__name__}")
    fn = tool.get("function")
    return fn if isinstance(fn, dict) else tool


def _lines(text: str) -> list[str]:
    # Rust's str::lines, as openai-harmony splits descriptions: "\n" or "\r\n" end a line, a bare
    # "\r" at the very end stays, and a final line ending adds no empty line.
    pieces = text.split("\n")
    last = pieces.pop()
    lines = [p[:-1] if p.endswith("\r") else p for p in pieces]
    return lines + [last] if last else lines


def _float_text(x: float) -> str:
    # The shortest digits that read back as x (Python's repr finds them), laid out as serde_json
    # writes floats (ryu): "1e20" and "0.00001" where Python writes "1e+20" and "1e-05".
    sign, digits, exponent = decimal.Decimal(repr(x)).as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    k = int(exponent) + (len(digits) - len(text)) if text != "0" else 0
    n = len(text)
    kk = n + k
    minus = "-" if sign else ""
    if 0 <= k and kk <= 16:
        return f"{minus}{text}{'0' * k}.0"
    if 0 < kk <= 16:
        return f"{minus}{text[:kk]}.{text[kk:]}"
    if -5 < kk <= 0:
        return f"{minus}0.{'0' * -kk}{text}"
    mantissa = text if n == 1 else f"{text[0]}.{text[1:]}"
    return f"{minus}{mantissa}e{kk - 1}"


def _json(value: Any) -> str:
    """Compact JSON as serde_json writes it (openai-harmony prints non-string defaults so)."""
    if isinstance(value, float) and math.isfinite(value):
        return _float_text(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _is_enum(spec: dict[str, Any]) -> bool:
    values = spec.get("enum")
    return isinstance(values, list) and bool(values)


def _default_comment(spec: dict[str, Any], *, quote_enum: bool) -> str:
    # A string default is quoted unless the property is an enum, whose values already read as
    # literals; a oneOf variant's enum default is written as JSON (quote_enum).
    value = spec["default"]
    if isinstance(value, str) and not _is_enum(spec):
        return f'default: "{value}"'
    if isinstance(value, str) and not quote_enum:
        return f"default: {value}"
    return f"default: {_json(value)}"


def _nullable(spec: dict[str, Any], text: str) -> str:
    return f"{text} | null" if spec.get("nullable") is True and "null" not in text else text


def _string(spec: dict[str, Any], key: str) -> str | None:
    value = spec.get(key)
    return value if isinstance(value, str) else None


def _ts_variants(variants: list[Any], indent: str) -> str:
    out = ""
    for variant in variants:
        spec = variant if isinstance(variant, dict) else {}
        out += f"\n{indent} | " + _nullable(spec, _ts_type(variant, indent + "   "))
        notes = [d] if (d := _string(spec, "description")) is not None else []
        if "default" in spec:
            notes.append(_default_comment(spec, quote_enum=True))
        if notes:
            out += " // " + " ".join(notes)
    return out


def _ts_property(key: str, spec: Any, required: set[str], indent: str) -> str:
    val = spec if isinstance(spec, dict) else {}
    mark = "" if key in required else "?"
    out = ""
    if (title := _string(val, "title")) is not None:
        out += f"{indent}// {title}\n{indent}//\n"
    one_of = val.get("oneOf")
    if "oneOf" not in val and (desc := _string(val, "description")) is not None:
        out += f"{indent}// {desc}\n"
    examples = val.get("examples")
    if isinstance(examples, list) and examples:
        out += f"{indent}// Examples:\n"
        out += "".join(f'{indent}// - "{ex}"\n' for ex in examples if isinstance(ex, str))
    if isinstance(one_of, list):
        prop_desc = _string(val, "description")
        first = one_of[0] if one_of and isinstance(one_of[0], dict) else {}
        desc_above = prop_desc is not None and _string(first, "description") != prop_desc
        if desc_above:
            out += f"{indent}// {prop_desc}\n"
        if "default" in val:
            out += f"{indent}// {_default_comment(val, quote_enum=False)}\n"
        out += f"{indent}{key}{mark}:\n"
        for i, variant in enumerate(one_of):
            vspec = variant if isinstance(variant, dict) else {}
            out += f"{indent} | " + _nullable(vspec, _ts_type(variant, indent + "   "))
            notes = []
            vdesc = _string(vspec, "description")
            if not (i == 0 and desc_above) and vdesc is not None and vdesc != prop_desc:
                notes.append(vdesc)
            if "default" in vspec:
                notes.append(_default_comment(vspec, quote_enum=False))
            if notes:
                out += " // " + " ".join(notes)
            out += "\n"
        return out + f"{indent},\n"
    out += f"{indent}{key}{mark}: " + _nullable(val, _ts_type(val, indent + "    ")) + ","
    if "oneOf" not in val and "default" in val:
        out += " // " + _default_comment(val, quote_enum=False)
    return out + "\n"


def _ts_type(schema: Any, indent: str = "") -> str:
    """A JSON Schema as the TypeScript-like type gpt-oss reads."""
    spec = schema if isinstance(schema, dict) else {}
    if isinstance(spec.get("oneOf"), list):
        return _ts_variants(spec["oneOf"], indent)
    kind = spec.get("type")
    if isinstance(kind, list):
        names = ["number" if k == "integer" else k for k in kind if isinstance(k, str)]
        if names:
            return " | ".join(names)
    if kind == "object":
        out = f"{indent}// {desc}\n" if (desc := _string(spec, "description")) is not None else ""
        out += "{\n"
        props = spec.get("properties")
        if isinstance(props, dict):
            req = spec.get("required")
            required = {r for r in req if isinstance(r, str)} if isinstance(req, list) else set()
            for key, val in props.items():
                out += _ts_property(key, val, required, indent)
        return out + f"{indent}}}"
    if kind == "string":
        values = spec.get("enum")
        literals = [f'"{v}"' for v in values if isinstance(v, str)] if isinstance(values, list) else []
        return " | ".join(literals) if literals else "string"
    if kind in ("number", "integer"):
        return "number"
    if kind == "boolean":
        return "boolean"
    if kind == "array":
        return _ts_type(spec["items"], indent) + "[]" if "items" in spec else "Array<any>"
    return "any"


def tools_namespace(tools: Sequence[Any]) -> str:
    """The ``functions`` namespace of the developer message for these function tools."""
    lines = ["## functions\n", "namespace functions {\n"]
    for i, tool in enumerate(tools):
        fn = tool_function(tool)
        name = fn.get("name")
        if not isinstance(name, str):
            raise HarmonyRenderError(f"tools[{i}]: a function tool needs a name (a string)")
        problem = header_problem(name)
        if problem:
            raise HarmonyRenderError(f"tools[{i}]: name {name!r} {problem}")
        description = fn.get("description")
        if description is not None and not isinstance(description, str):
            raise HarmonyRenderError(f"tools[{i}] ({name}): description must be a string")
        lines += [f"// {line}" for line in _lines(description or "")]
        params = fn.get("parameters")
        if params is None:
            lines.append(f"type {name} = () => any;\n")
        else:
            lines.append(f"type {name} = (_: {_ts_type(params)}) => any;\n")
    lines.append("} // namespace functions")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Rendering


@dataclass
class Rendered:
    """A rendered conversation: parallel per-token lists plus the messages they point into.

    ``message`` is an index into ``messages`` (-1 for the ``<|start|>assistant`` that ends a prompt).
    ``channel`` is ``"none"`` outside channelled messages. ``part`` is header, content or special.
    ``trained`` is the loss mask. ``text`` decodes each token on first use (a token that ends in
    the middle of a UTF-8 character shows ``""``; the next one carries the character), so that
    ``"".join(text)`` is the rendered string. ``special_text`` lists the messages whose content held
    special-token text (``<|end|>`` typed out) that was encoded as ordinary text.
    """

    ids: list[int]
    message: list[int]
    role: list[str]
    channel: list[str]
    part: list[str]
    trained: list[bool]
    messages: list[dict[str, Any]]
    mode: str
    loss_mask: str
    tokenizer: Any = field(default=None, repr=False)
    _text: list[str] | None = field(default=None, repr=False)
    special_text: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def text(self) -> list[str]:
        if self._text is None:
            self._text = token_texts(self.ids, self.tokenizer)
        return self._text

    def decoded(self) -> str:
        """The whole conversation as Harmony text, special tokens written out."""
        return "".join(self.text)

    @property
    def tokens_trained(self) -> int:
        return sum(self.trained)

    def to_payload(self, title: str | None = None) -> dict[str, Any]:
        """One item of ``conversations`` in schema/harmony-tokens.schema.json."""
        item: dict[str, Any] = {}
        if title is not None:
            item["title"] = title
        item["loss_mask"] = self.loss_mask
        item["messages"] = [dict(m) for m in self.messages]
        item["tokens"] = {
            "ids": list(self.ids),
            "text": list(self.text),
            "message": list(self.message),
            "role": list(self.role),
            "channel": list(self.channel),
            "part": list(self.part),
            "trained": list(self.trained),
        }
        return item


def payload(rendered: Iterable[Rendered], title: str | None = None) -> dict[str, Any]:
    """A whole application/vnd.oss-finetune.harmony+json payload."""
    out: dict[str, Any] = {"version": 1}
    if title is not None:
        out["title"] = title
    out["conversations"] = [r.to_payload() for r in rendered]
    return out


# Piece: (text or special id, message index, role, channel, part, trained)
_Piece = tuple[str | int, int, str, str, str, bool]


class _Encoder:
    """Tokenizes text pieces in one batch; header pieces and system messages repeat across rows, so
    their ids are remembered."""

    _CACHE_LIMIT = 4096

    def __init__(self, tokenizer: Any):
        self.backend = tokenizer.backend_tokenizer
        # encode_batch_fast skips character offsets, which we never use (tokenizers >= 0.21).
        self.encode_batch = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        self.cache: dict[str, list[int]] = {}
        self.ordinary: Any = None

    def encode(self, texts: list[str], cacheable: list[bool]) -> list[list[int]]:
        out: list[list[int] | None] = [None] * len(texts)
        todo_idx, todo_txt = [], []
        for i, (t, c) in enumerate(zip(texts, cacheable)):
            hit = self.cache.get(t) if c else None
            if hit is not None:
                out[i] = hit
            else:
                todo_idx.append(i)
                todo_txt.append(t)
        if todo_txt:
            encs = self.encode_batch(todo_txt, add_special_tokens=False)
            if len(self.cache) > self._CACHE_LIMIT:
                self.cache.clear()
            for i, e in zip(todo_idx, encs):
                out[i] = e.ids
                if cacheable[i]:
                    self.cache[texts[i]] = e.ids
        return out  # type: ignore[return-value]

    def encode_ordinary(self, text: str) -> list[int]:
        """``text`` with special-token text read as plain characters, as openai-harmony encodes content."""
        if self.ordinary is None:
            # A copy, because the flag is the tokenizer's own state and the shared one must keep
            # recognising special tokens for everyone else.
            from tokenizers import Tokenizer

            ordinary = Tokenizer.from_str(self.backend.to_str())
            ordinary.encode_special_tokens = True
            self.ordinary = ordinary
        ids: list[int] = self.ordinary.encode(text, add_special_tokens=False).ids
        return ids


_ENCODERS: dict[int, _Encoder] = {}


def _encoder(tokenizer: Any) -> _Encoder:
    enc = _ENCODERS.get(id(tokenizer))
    if enc is None or enc.backend is not tokenizer.backend_tokenizer:
        enc = _ENCODERS[id(tokenizer)] = _Encoder(tokenizer)
    return enc


def _date_text(date: Any, conv: Conversation) -> str | None:
    if date is None:
        date = conv.date
    if date is None:
        return _dt.date.today().isoformat()
    if isinstance(date, (_dt.date, _dt.datetime)):
        return date.strftime("%Y-%m-%d")
    return str(date) or None


def visible_messages(messages: Sequence[Message], mode: str) -> list[Message]:
    """The messages Harmony shows, in order.

    In a prompt the trailing assistant messages are left out: they are what the model is asked to
    write. Then an analysis message is dropped once a later final answer exists, since the model
    never sees its earlier reasoning after it answered. When training, the last turn (everything after
    the last user message) keeps all its analysis: that is the reasoning being taught, and while the
    model wrote it, nothing of it had been dropped yet.
    """
    msgs = list(messages)
    if mode == "prompt":
        while msgs and msgs[-1].role == "assistant":
            msgs.pop()
    last_final = max((i for i, m in enumerate(msgs) if m.role == "assistant" and m.channel == "final"), default=-1)
    last_user = max((i for i, m in enumerate(msgs) if m.role in ("user", "system", "developer")), default=-1)
    keep = []
    for i, m in enumerate(msgs):
        if m.role == "assistant" and m.channel == "analysis" and i < last_final:
            if not (mode == "train" and i > last_user):
                continue
        keep.append(m)
    return keep


def _covered(loss_mask: str, role: str, channel: str | None) -> bool:
    if loss_mask == "all":
        return True
    if loss_mask == "assistant":
        return role == "assistant"
    if loss_mask == "calls_and_final":
        return role == "assistant" and channel != "analysis"
    return role == "assistant" and channel == "final"


def _split_specials(text: str) -> list[str | int]:
    return [SPECIAL_TOKENS[p] if p in SPECIAL_TOKENS else p for p in _SPECIAL_SPLIT.split(text) if p]


def _conversation_pieces(
    conv: Conversation, mode: str, loss_mask: str, date: Any
) -> tuple[list[_Piece], list[dict[str, Any]]]:
    pieces: list[_Piece] = []
    infos: list[dict[str, Any]] = []
    has_system = any(m.role == "system" for m in conv.messages)
    has_developer = any(m.role == "developer" for m in conv.messages)
    rendered: list[Message] = []
    if not has_system:
        # A developer message given verbatim carries no tools, so the system message promises none.
        function_tools = bool(conv.tools) and not has_developer
        rendered.append(Message("system", system_text(conv, _date_text(date, conv), function_tools)))
    dev = None if has_developer else developer_text(conv)
    if dev is not None:
        rendered.append(Message("developer", dev))
    rendered.extend(visible_messages(conv.messages, mode))

    last_call_name: str | None = None
    prev_end: tuple[str, int] | None = None  # (role, terminator) of the message before
    n = len(rendered)
    for idx, m in enumerate(rendered):
        role = m.role
        channel_label = m.channel or "none"
        covered = _covered(loss_mask, role, m.channel)
        # The model writes `<|start|>assistant` itself only when it goes on after its own <|end|>;
        # after a user turn or a tool result the prompt supplies it.
        start_trained = loss_mask == "all" or (covered and prev_end == ("assistant", END))
        if role == "tool":
            author = m.name or last_call_name
            if not author:
                raise HarmonyRenderError(
                    f"message {idx}: a tool result needs the tool's name (e.g. functions.get_weather), "
                    "and no tool call comes before it"
                )
            role_text = author
        else:
            role_text = role
        if role == "assistant" and m.recipient:
            last_call_name = m.recipient
        if m.recipient:
            terminator = CALL if role == "assistant" else END
        elif mode == "train" and idx == n - 1 and role == "assistant" and m.channel == "final":
            terminator = RETURN
        else:
            terminator = END
        rest = ""
        if m.recipient:
            rest += f" to={m.recipient}"
        if m.channel is not None and role in ("assistant", "tool"):
            rest += f"<|channel|>{m.channel}"
        if m.content_type:
            rest += f" {m.content_type}"
        pieces.append((START, idx, role, channel_label, "special", start_trained))
        pieces.append((role_text, idx, role, channel_label, "header", start_trained))
        for p in _split_specials(rest):
            pieces.append((p, idx, role, channel_label, "special" if isinstance(p, int) else "header", covered))
        pieces.append((MESSAGE, idx, role, channel_label, "special", covered))
        pieces.append((m.content, idx, role, channel_label, "content", covered))
        pieces.append((terminator, idx, role, channel_label, "special", covered))
        prev_end = (role, terminator)
        infos.append(
            {
                "index": idx,
                "role": role,
                "channel": channel_label,
                "recipient": m.recipient,
                "content_type": m.content_type,
                "author_name": m.name or (role_text if role == "tool" else None),
            }
        )
    if mode == "prompt":
        tail = loss_mask == "all"
        pieces.append((START, -1, "assistant", "none", "special", tail))
        pieces.append(("assistant", -1, "assistant", "none", "header", tail))
    return pieces, infos


def render_many(
    conversations: Sequence[Conversation],
    mode: str = "train",
    loss_mask: str = "assistant",
    date: Any = None,
    tokenizer: Any = None,
    special_tokens: str = "text",
) -> list[Rendered]:
    """`render` for many conversations at once: all their text goes to the tokenizer in one batch."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if loss_mask not in LOSS_MASKS:
        raise ValueError(f"loss_mask must be one of {', '.join(LOSS_MASKS)}, got {loss_mask!r}")
    if special_tokens not in SPECIAL_TEXT_POLICIES:
        raise ValueError(f"special_tokens must be one of {', '.join(SPECIAL_TEXT_POLICIES)}, got {special_tokens!r}")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    encoder = _encoder(tokenizer)

    all_pieces, all_infos = [], []
    texts, cacheable, where = [], [], []
    for c, conv in enumerate(conversations):
        pieces, infos = _conversation_pieces(conv, mode, loss_mask, date)
        all_pieces.append(pieces)
        all_infos.append(infos)
        for p, piece in enumerate(pieces):
            value = piece[0]
            if isinstance(value, str):
                texts.append(value)
                # Content changes from row to row; headers, the system message and, in most data
                # sets, the developer's instructions do not.
                cacheable.append(piece[4] == "header" or piece[2] in ("system", "developer"))
                where.append((c, p))
    encoded = encoder.encode(texts, cacheable)
    ids_of: list[dict[int, list[int]]] = [dict() for _ in conversations]
    for (c, p), piece_ids in zip(where, encoded):
        ids_of[c][p] = piece_ids

    out = []
    for c, pieces in enumerate(all_pieces):
        ids: list[int] = []
        msg: list[int] = []
        role: list[str] = []
        chan: list[str] = []
        part: list[str] = []
        trained: list[bool] = []
        lookup = ids_of[c]
        special_text: list[int] = []
        for p, (value, m_idx, m_role, m_chan, m_part, m_trained) in enumerate(pieces):
            if isinstance(value, int):
                tok = [value]
            else:
                tok = lookup[p]
                if tok and max(tok) >= FIRST_SPECIAL_ID:
                    bad = next(t for t in tok if t >= FIRST_SPECIAL_ID)
                    name = SPECIAL_TOKEN_NAMES.get(bad, tokenizer.convert_ids_to_tokens(bad) or f"id {bad}")
                    if m_part != "content":
                        raise HarmonyRenderError(
                            f"message {m_idx} ({m_role}): the header contains the special token {name}; "
                            "header fields are plain names"
                        )
                    if special_tokens == "error":
                        raise HarmonyRenderError(
                            f"message {m_idx} ({m_role}): content contains the special token {name}; "
                            "with special_tokens='error' such text is refused ('text' encodes it as plain text)"
                        )
                    # As text the model reads it as characters and cannot mistake it for structure.
                    tok = encoder.encode_ordinary(value)
                    special_text.append(m_idx)
            k = len(tok)
            ids.extend(tok)
            msg.extend([m_idx] * k)
            role.extend([m_role] * k)
            chan.extend([m_chan] * k)
            part.extend([m_part] * k)
            trained.extend([m_trained] * k)
        rendered = Rendered(ids, msg, role, chan, part, trained, all_infos[c], mode, loss_mask, tokenizer)
        rendered.special_text = special_text
        out.append(rendered)
    return out


def render(
    conversation: Conversation,
    mode: str = "train",
    loss_mask: str = "assistant",
    date: Any = None,
    tokenizer: Any = None,
    special_tokens: str = "text",
) -> Rendered:
    """Render one conversation to labelled tokens.

    ``mode="train"`` ends the last assistant final answer with ``<|return|>``; ``mode="prompt"``
    leaves out the trailing assistant messages and ends with ``<|start|>assistant`` for generation.
    ``loss_mask``: ``assistant`` trains every token the model writes in assistant messages (reasoning
    and answer, their channel headers and terminators); ``calls_and_final`` the same without the
    analysis-channel reasoning (tool calls, commentary, final answers); ``final`` only those of
    final-channel messages; ``all`` every token. ``date`` pins the ``Current date:`` line (``YYYY-MM-DD`` or a date; default:
    the conversation's date, else today; ``NO_DATE`` leaves the line out). ``special_tokens``: ``text``
    encodes special-token text written inside a message (``<|end|>`` in a pasted log) as ordinary
    characters, as openai-harmony does, and lists those messages in ``special_text``; ``error`` raises
    `HarmonyRenderError` instead.
    """
    return render_many(
        [conversation], mode=mode, loss_mask=loss_mask, date=date, tokenizer=tokenizer, special_tokens=special_tokens
    )[0]


# ---------------------------------------------------------------------------------------------
# Token text


def _bytes_to_unicode() -> dict[str, int]:
    # The byte-level BPE alphabet: printable bytes stand for themselves, the others are shifted
    # above 255 so that every byte has a visible character.
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


_BYTE_OF = _bytes_to_unicode()


def token_texts(ids: Sequence[int], tokenizer: Any = None) -> list[str]:
    """Each token's text; special tokens as written (``<|start|>``)."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
    pieces = tokenizer.convert_ids_to_tokens(list(ids))
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    out: list[str] = []
    for tid, piece in zip(ids, pieces):
        if tid >= FIRST_SPECIAL_ID or piece is None:
            tail = decoder.decode(b"", final=True)
            if tail and out:
                out[-1] += tail
            decoder.reset()
            out.append(piece if piece is not None else tokenizer.decode([tid]))
            continue
        try:
            raw = bytes(_BYTE_OF[ch] for ch in piece)
        except KeyError:  # not a byte-level vocabulary
            out.append(tokenizer.decode([tid]))
            continue
        out.append(decoder.decode(raw))
    tail = decoder.decode(b"", final=True)
    if tail and out:
        out[-1] += tail
    return out


# ---------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class TokenLabel:
    message: int
    role: str
    channel: str
    part: str


_KNOWN_ROLES = ("system", "developer", "user", "assistant")
_HEADER_RE = re.compile(r"^(?P<author>[^\s<]+)(?: to=(?P<to1>[^\s<]+))?$")
_CHANNEL_RE = re.compile(r"^(?P<channel>[^\s<]+)(?:\s*to=(?P<to2>[^\s<]+))?\s*(?P<ctype>.*)$", re.S)


class StreamParser:
    """Labels tokens one by one as a model generates them.

    >>> p = StreamParser(role="assistant")   # the prompt ended with <|start|>assistant
    >>> label = p.feed(CHANNEL)              # each call returns the new token's label

    ``feed`` returns what is known when the token arrives: the header tokens before the channel name
    are labelled channel ``"none"``. ``labels`` is corrected once each message is complete, and
    ``messages`` holds the complete messages. A token that breaks the format raises
    `HarmonyParseError` with its position.
    """

    def __init__(self, tokenizer: Any = None, role: str | None = None):
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        # The model's embedding has padding rows past the tokenizer's entries; those ids are no token.
        self.vocab_size = len(self.tokenizer)
        self.messages: list[Message] = []
        self.labels: list[TokenLabel] = []
        self.position = 0
        self._state = "outside"
        self._reset_message()
        if role is not None:
            if role not in ROLES:
                raise ValueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
            # The prompt already wrote `<|start|>{role}`; the stream goes on inside that header.
            self._state = "header"
            self._header = role if role != "tool" else ""
            self._role = role

    def _reset_message(self) -> None:
        self._header = ""
        self._saw_channel = False
        self._content_ids: list[int] = []
        self._role = "assistant"
        self._channel = "none"
        self._first_label = len(self.labels)

    def _text(self, token: int) -> str:
        text: str = self.tokenizer.decode([token])
        return text

    def _guess_role(self) -> str:
        author = self._header.split("<|channel|>")[0].split(" to=")[0]
        for r in _KNOWN_ROLES:
            if author == r or (author and r.startswith(author) and not self._saw_channel):
                return r
        return "tool" if author else self._role

    def _guess_channel(self) -> str:
        if not self._saw_channel:
            return "none"
        name = self._header.split("<|channel|>", 1)[1].split(" ")[0].split("<|")[0]
        matches = [c for c in CHANNELS if name and c.startswith(name)]
        return matches[0] if len(matches) == 1 else "none"

    def _error(self, token: int | None, expected: str) -> HarmonyParseError:
        context = f"in message {len(self.messages)}" if self._state != "outside" else ""
        return HarmonyParseError(self.position, token, expected, context)

    def feed(self, token: int) -> TokenLabel:
        token = int(token)
        if not 0 <= token < self.vocab_size:
            raise self._error(token, f"a token id from 0 to {self.vocab_size - 1}")
        index = len(self.messages)
        state = self._state
        if state == "outside":
            if token != START:
                raise self._error(token, "<|start|> to begin a message")
            self._reset_message()
            self._state = "header"
            label = TokenLabel(index, "assistant", "none", "special")
        elif state == "header":
            if token == MESSAGE:
                self._finish_header(token)
                label = TokenLabel(index, self._role, self._channel, "special")
            elif token == CHANNEL:
                if self._saw_channel:
                    raise self._error(token, "one <|channel|> per header, then <|message|>")
                if not self._header:
                    raise self._error(token, "a role before <|channel|>")
                self._saw_channel = True
                self._header += "<|channel|>"
                label = TokenLabel(index, self._guess_role(), "none", "special")
            elif token == CONSTRAIN:
                self._header += "<|constrain|>"
                label = TokenLabel(index, self._guess_role(), self._guess_channel(), "special")
            elif token >= FIRST_SPECIAL_ID:
                raise self._error(token, "<|message|> to end the header")
            else:
                self._header += self._text(token)
                label = TokenLabel(index, self._guess_role(), self._guess_channel(), "header")
        else:  # content
            if token in _TERMINATORS:
                label = TokenLabel(index, self._role, self._channel, "special")
                self.labels.append(label)
                self.position += 1
                self._finish_message()
                return label
            if token >= FIRST_SPECIAL_ID:
                raise self._error(token, "content or <|end|>, <|return|>, <|call|> to end it")
            self._content_ids.append(token)
            label = TokenLabel(index, self._role, self._channel, "content")
        self.labels.append(label)
        self.position += 1
        return label

    def _finish_header(self, token: int) -> None:
        header = self._header
        before, _, after = header.partition("<|channel|>")
        m = _HEADER_RE.match(before.strip())
        if not m:
            raise self._error(token, "a role (system, developer, user, assistant or a tool name) before <|message|>")
        author = m.group("author")
        recipient = m.group("to1")
        channel = None
        content_type = None
        if self._saw_channel:
            c = _CHANNEL_RE.match(after.strip())
            if not c or c.group("channel") not in CHANNELS:
                raise self._error(token, f"a channel ({', '.join(CHANNELS)}) after <|channel|>, got {after.strip()!r}")
            channel = c.group("channel")
            recipient = recipient or c.group("to2")
            content_type = c.group("ctype").strip() or None
        self._role = author if author in _KNOWN_ROLES else "tool"
        self._author = author
        self._recipient = recipient
        self._msg_channel = channel
        self._content_type = content_type
        self._channel = channel or "none"
        self._state = "content"

    def _finish_message(self) -> None:
        self.messages.append(self._message_so_far())
        self._state = "outside"
        self._first_label = len(self.labels)

    def _message_so_far(self) -> Message:
        """The message whose content is being read, as it stands; its header labels are corrected."""
        content = self.tokenizer.decode(self._content_ids)
        if self._role == "tool":
            msg = Message(
                "tool",
                content,
                channel=self._msg_channel,
                recipient=self._recipient,
                content_type=self._content_type,
                name=self._author,
            )
        else:
            msg = Message(
                self._role,
                content,
                channel=self._msg_channel,
                recipient=self._recipient,
                content_type=self._content_type,
            )
        index = len(self.messages)
        # Now that the header is complete, relabel its tokens with the message's role and channel.
        for i in range(self._first_label, len(self.labels)):
            old = self.labels[i]
            self.labels[i] = TokenLabel(index, self._role, self._channel, old.part)
        return msg

    def finish(self, partial: bool = False) -> list[Message]:
        """The parsed messages. A stream that stops inside a message is an error unless ``partial``.

        With ``partial``, a message cut off in its content is returned with the content it has so far
        (openai-harmony's parser does the same at the end of a stream); one cut off in its header has
        no content yet and is left out. The parser's own state is unchanged, so feeding may go on.
        """
        if self._state != "outside" and not partial:
            expected = "<|message|> to end the header" if self._state == "header" else "<|end|>, <|return|> or <|call|>"
            raise self._error(None, expected)
        if self._state == "content":
            return [*self.messages, self._message_so_far()]
        return list(self.messages)


@dataclass
class Parsed:
    messages: list[Message]
    labels: list[TokenLabel]
    complete: bool


def parse(ids: Iterable[int], tokenizer: Any = None, role: str | None = None, partial: bool = False) -> Parsed:
    """Parse a whole token stream (a render, or a generation with ``role="assistant"``)."""
    parser = StreamParser(tokenizer, role=role)
    for t in ids:
        parser.feed(t)
    messages = parser.finish(partial=partial)
    return Parsed(messages, parser.labels, parser._state == "outside")
