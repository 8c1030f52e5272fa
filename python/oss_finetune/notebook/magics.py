"""``%oss_finetune`` and ``%%oss_finetune``: fine-tuning from notebook cells.

``%load_ext oss_finetune`` registers both (the ``oss-finetune`` kernel does it at start). The line
magic takes a subcommand and options that map one-to-one onto the fields of
``schema/finetune-config.schema.json`` (``--max-seq-length`` is ``data.max_seq_length``); the cell
magic's body is a YAML or JSON config, checked against the same schema. Both only change and read
the kernel's one Session (``session.get_session()``), which the comm serves to the widgets too.

A verb acts (``load`` loads, ``lora`` adds the adapter, ``train`` trains); ``--show`` lists a
section's settings instead, and ``status`` the main ones. What a verb needs and is missing (a model,
the data, the adapter) is done on the way, each said in one line.

A mistake costs one short paragraph that names the field or word at fault and how to fix it, never
a traceback; ``--verbose`` brings the traceback back for bug reports.
"""

from __future__ import annotations

import difflib
import html
import importlib
import json
import shlex
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..core import schema
from ..core.errors import UserError
from . import display
from .session import EFFORTS, SECTIONS, Session, get_session, loaded_line, memory_refusal, reporting

MAGIC = "oss_finetune"


class MagicError(UserError, ValueError):
    """A mistake in a magic's input; the magic shows it as an IPython UsageError: one paragraph, no traceback."""


# -- options generated from the config schema ---------------------------------------------------


@dataclass
class ConfigOption:
    """One command-line option that sets one config field."""

    section: str
    key: str
    flags: list[str]
    prop: dict

    @property
    def path(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def flag(self) -> str:
        return self.flags[0]

    @property
    def types(self) -> list[str | None]:
        declared = self.prop.get("type")
        if declared is None and "enum" in self.prop:
            return ["string"]
        return declared if isinstance(declared, list) else [declared]


# Short spellings people type; the schema's name (dashed) always works too.
ALIASES = {
    "model.name_or_path": ["--model"],
    "training.learning_rate": ["--lr"],
    "lora.alpha": ["--lora-alpha"],
    "lora.target_modules": ["--targets"],
    "data.max_seq_length": ["--max-len"],
    "data.reasoning_effort": ["--effort"],
}
# Spellings shown first in help and fixes: the words every trainer uses.
PREFERRED = {"model.name_or_path": "--model", "training.learning_rate": "--lr"}
# Positional arguments, so that `load openai/gpt-oss-20b` and `data rows.jsonl` read naturally.
POSITIONAL = {"model": "name_or_path", "data": "source"}
# A subcommand that acts on one section; the cell magic's body may be just that section.
SECTION_OF = {"load": "model", "data": "data", "lora": "lora", "train": "training"}


def config_options(section: str) -> list[ConfigOption]:
    props = schema.load_schema("finetune-config")["properties"][section]["properties"]
    options = []
    for key, prop in props.items():
        path = f"{section}.{key}"
        aliases = ALIASES.get(path, [])
        flags = ([PREFERRED[path]] if path in PREFERRED else []) + ["--" + key.replace("_", "-")]
        flags += [f for f in aliases if f not in flags]
        options.append(ConfigOption(section, key, flags, prop))
    return options


def option_for(path: str) -> ConfigOption | None:
    section, _, key = path.partition(".")
    if section not in SECTIONS:
        return None
    key = key.split(".", 1)[0].split("[", 1)[0]
    return next((o for o in config_options(section) if o.key == key), None)


def convert(option: ConfigOption, raw: Any) -> Any:
    """A typed value from the text a person typed; anything unconvertible goes on as text so the schema names the rule."""
    if not isinstance(raw, str):
        return raw
    types = option.types
    text = raw.strip()
    if "null" in types and text.lower() in ("null", "none", "~"):
        return None
    if "boolean" in types:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        return raw
    if "array" in types:
        return [part for part in text.replace(",", " ").split() if part]
    if "integer" in types or "number" in types:
        try:
            return int(text)
        except ValueError:
            pass
        try:
            return float(text)
        except ValueError:
            return raw
    return raw


def _example_value(option: ConfigOption) -> str:
    default = option.prop.get("default")
    if isinstance(default, list):
        # An empty default shows nothing to copy; the allowed names do.
        choices = option.prop.get("items", {}).get("enum", [])
        return ",".join(str(v) for v in default) if default or not choices else str(choices[0])
    if isinstance(default, bool):
        return "true" if default else "false"
    if default is None:
        return str(option.prop.get("minimum", 1))
    return str(default)


def _range_words(prop: dict, noun: str) -> str:
    low, high = prop.get("minimum"), prop.get("maximum")
    above = prop.get("exclusiveMinimum")
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    if above is not None and high is not None:
        return f"{noun} above {fmt(above)} and at most {fmt(high)}"
    if above is not None:
        return f"{noun} above {fmt(above)}"
    if low is not None and high is not None:
        return f"{noun} from {fmt(low)} to {fmt(high)}"
    if low is not None:
        return f"{noun} of {fmt(low)} or more"
    return noun


def fix_hint(option: ConfigOption, *, style: str = "flag") -> str:
    """How to write a good value for ``option``: '--flag value' for the line magic, 'key: value' for a cell."""
    prop, types = option.prop, option.types
    example = _example_value(option)
    shown = f"{option.flag} {example}" if style == "flag" else f"{option.key}: {json.dumps(option.prop.get('default'))}"
    if "enum" in prop:
        what = "one of " + ", ".join(str(v) for v in prop["enum"])
    elif "integer" in types:
        what = _range_words(prop, "an integer")
    elif "number" in types:
        what = _range_words(prop, "a number")
    elif "boolean" in types:
        what = "true or false"
        if style == "flag":
            return f"use {option.flag} or --no-{option.flag[2:]}"
    elif "array" in types:
        choices = prop.get("items", {}).get("enum")
        what = "names separated by commas" + (f" from {', '.join(str(v) for v in choices)}" if choices else "")
    else:
        what = "a non-empty text"
    if "null" in types:
        what += ", or none"
    return f"use {what}, e.g. {shown}"


def schema_paragraph(error: schema.SchemaError, *, style: str = "flag") -> str:
    """``lora.r: must be >= 1 — use an integer of 1 or more, e.g. --r 8``."""
    text = str(error)
    segments = error.issues[0].segments
    if error.keyword == "additionalProperties":
        name = str(segments[-1])
        parent = segments[:-1]
        if not parent:
            known = list(SECTIONS)
        elif len(parent) == 1 and parent[0] in SECTIONS:
            known = list(schema.load_schema("finetune-config")["properties"][parent[0]]["properties"])
        else:
            known = []
        close = difflib.get_close_matches(name, known, n=1)
        fix = f"did you mean {close[0]}?" if close else ""
        if known:
            fix += (" " if fix else "") + f"Known: {', '.join(known)}."
        return f"{text} — {fix}" if fix else text
    option = option_for(error.path) if error.path != "(root)" else None
    if option is None:
        return text
    return f"{text} — {fix_hint(option, style=style)}"


# -- parsing --------------------------------------------------------------------------------------


@dataclass
class Argument:
    """A non-config argument of a subcommand (positional or option)."""

    flags: list[str]
    help: str
    kind: str = "value"  # value | flag | positional | rest
    choices: list[str] | None = None
    default: Any = None
    dest: str | None = None

    @property
    def name(self) -> str:
        return self.dest or self.flags[0].lstrip("-").replace("-", "_")


@dataclass
class Subcommand:
    name: str
    summary: str
    section: str | None = None
    arguments: list[Argument] = field(default_factory=list)

    def options(self) -> list[ConfigOption]:
        return config_options(self.section) if self.section else []

    def all_flags(self) -> list[str]:
        flags = ["--help", "--verbose"]
        if self.section:
            flags.append("--show")
        for option in self.options():
            flags += option.flags
            if "boolean" in option.types:
                flags.append("--no-" + option.flags[0][2:])
        for argument in self.arguments:
            if argument.kind != "positional" and argument.kind != "rest":
                flags += argument.flags
        return flags


SUBCOMMANDS: dict[str, Subcommand] = {
    s.name: s
    for s in [
        Subcommand("env", "the environment check: GPU, memory, library versions and what fits"),
        Subcommand(
            "load",
            "load the base model (config section model)",
            "model",
            [
                Argument(
                    ["name_or_path"],
                    "a hub id, a local folder or an embedded model (the default: embedded:tiny-base); "
                    "the same as --model",
                    "positional",
                ),
                Argument(["--force"], "load even when the memory plan predicts the GPU cannot hold it", "flag"),
            ],
        ),
        Subcommand(
            "data",
            "read and tokenize the data set and show its summary (config section data)",
            "data",
            [
                Argument(
                    ["source"], "a hub data set id, a .jsonl/.json/.parquet file or embedded:multilingual", "positional"
                ),
            ],
        ),
        Subcommand(
            "show",
            "the Harmony token view of data rows, with the loss mask",
            None,
            [
                Argument(["rows"], "row numbers, e.g. 0 3 7 (default 0)", "rest"),
            ],
        ),
        Subcommand("lora", "put a LoRA adapter on the model and say where it went (config section lora)", "lora"),
        Subcommand(
            "train",
            "train the adapter; one live output shows progress (config section training)",
            "training",
            [
                Argument(["--resume"], "continue from a checkpoint folder, a run folder or 'latest'"),
                Argument(["--force"], "train even when the memory plan predicts the GPU will run out", "flag"),
            ],
        ),
        Subcommand(
            "chat",
            "ask the model something, with a reasoning effort and language",
            None,
            [
                Argument(["--effort"], "reasoning effort", choices=list(EFFORTS)),
                Argument(["--language"], "the language the model should reason in, e.g. French"),
                Argument(["--max-new-tokens"], "how many tokens to generate at most", default="64"),
                Argument(["--no-adapter"], "answer with the base model, adapter off", "flag"),
                Argument(["--before-after"], "answer twice, base model and with the adapter, side by side", "flag"),
                Argument(["--tools"], "offer the data set's function tools (data.tools, or its first row's)", "flag"),
                Argument(["message"], "what to ask", "rest"),
            ],
        ),
        Subcommand(
            "eval",
            "how often the model reasons in the requested language on held-out questions; with --tools, how "
            "well it calls tools",
            None,
            [
                Argument(["--effort"], "reasoning effort", choices=list(EFFORTS)),
                Argument(["--limit"], "use at most this many held-out questions"),
                Argument(["--no-adapter"], "measure the base model, adapter off", "flag"),
                Argument(
                    ["--tools"],
                    "measure the held-out rows' tool calls instead: well-formed, the right tool, arguments valid "
                    "against its JSON Schema (default source embedded:tool-calls-heldout)",
                    "flag",
                ),
                Argument(["source"], "held-out rows (default embedded:multilingual-heldout)", "rest"),
            ],
        ),
        Subcommand(
            "compare",
            "one data row scored token by token before and after the adapter",
            None,
            [
                Argument(["row"], "the row number (default 0)", "rest"),
            ],
        ),
        Subcommand(
            "save",
            "save the adapter (PEFT format) or, with --merged, full merged weights",
            None,
            [
                Argument(["--merged"], "fold the adapter into the base weights and save those", "flag"),
                Argument(
                    ["--format"],
                    "export for serving, read back and compared with this model (docs/export.md)",
                    choices=["peft", "merged", "mxfp4", "vllm", "gguf"],  # modeling.export.FORMATS, without torch
                ),
                Argument(["path"], "where to save (default: the run folder)", "rest"),
            ],
        ),
        Subcommand("status", "what is loaded, the main settings, the current run and every run on disk"),
        Subcommand(
            "runs",
            "the runs in the output folder side by side: loss (and goal) curves overlaid, and the settings "
            "in which their configs differ",
            None,
            [
                Argument(["--compare"], "compare only the runs named after it (each an id or a part of one)", "flag"),
                Argument(["run_ids"], "with --compare: two or more runs, e.g. --compare 0930-ab12 1015-cd34", "rest"),
            ],
        ),
        Subcommand("stop", "stop the current run after its current step, with a checkpoint"),
        Subcommand(
            "help",
            "this overview, or `help SUBCOMMAND`",
            None,
            [
                Argument(["topic"], "a subcommand", "rest"),
            ],
        ),
    ]
}


@dataclass
class Parsed:
    command: Subcommand
    changes: dict = field(default_factory=dict)  # partial config for the command's section
    values: dict = field(default_factory=dict)  # non-config arguments
    rest: list[str] = field(default_factory=list)
    help: bool = False
    show: bool = False  # list the section's settings instead of acting
    verbose: bool = False


def strip_comment(line: str) -> str:
    """The line up to a ``#`` that starts a word outside quotes. IPython hands a line magic the rest of its
    line, comment included, and a quick start written `%oss_finetune load   # the default` would load '#'."""
    quote = None
    for i, char in enumerate(line):
        starts_word = i == 0 or line[i - 1].isspace()
        if quote:
            if char == quote:
                quote = None
        elif char in "'\"" and starts_word:
            quote = char
        elif char == "#" and starts_word:
            return line[:i]
    return line


def split_line(line: str) -> list[str]:
    line = strip_comment(line)
    try:
        return shlex.split(line, posix=True)
    except ValueError:
        # An apostrophe in a chat message ("what's ...") is text, not an open quote.
        return line.split()


def _unknown_option(command: Subcommand, flag: str) -> MagicError:
    close = difflib.get_close_matches(flag.split("=", 1)[0], command.all_flags(), n=1, cutoff=0.5)
    fix = f"did you mean {close[0]}?" if close else f"see `%{MAGIC} {command.name} --help` for its options."
    return MagicError(f"{command.name}: unknown option {flag} — {fix}")


def parse(argv: list[str]) -> Parsed:
    """Parse a subcommand and its options; raises MagicError with the one paragraph to show."""
    verbose = "--verbose" in argv
    argv = [a for a in argv if a != "--verbose"]
    if not argv:
        return Parsed(SUBCOMMANDS["help"], verbose=verbose)
    name, args = argv[0], argv[1:]
    if name in ("-h", "--help"):
        return Parsed(SUBCOMMANDS["help"], verbose=verbose)
    if name not in SUBCOMMANDS:
        close = difflib.get_close_matches(name, list(SUBCOMMANDS), n=1, cutoff=0.5)
        fix = f"did you mean `%{MAGIC} {close[0]}`?" if close else f"the subcommands are: {', '.join(SUBCOMMANDS)}."
        raise MagicError(f"unknown subcommand {name!r} — {fix}")
    command = SUBCOMMANDS[name]
    parsed = Parsed(command, verbose=verbose)
    by_flag: dict[str, tuple[str, Any]] = {}
    for option in command.options():
        for flag in option.flags:
            by_flag[flag] = ("config", option)
        if "boolean" in option.types:
            by_flag["--no-" + option.flags[0][2:]] = ("config-off", option)
    for argument in command.arguments:
        if argument.kind in ("value", "flag"):
            for flag in argument.flags:
                by_flag[flag] = (argument.kind, argument)
    positional = next((a for a in command.arguments if a.kind in ("positional", "rest")), None)

    i = 0
    while i < len(args):
        token = args[i]
        i += 1
        if token in ("-h", "--help"):
            parsed.help = True
            continue
        if token == "--run" and command.section in ("model", "lora", "training"):
            # Acting is what a bare verb does now; notebooks written with --run keep working.
            continue
        if token == "--show" and command.section:
            parsed.show = True
            continue
        if token.startswith("--") and len(token) > 2:
            flag, has_value, inline = token.partition("=")
            if flag not in by_flag:
                raise _unknown_option(command, flag)
            kind, target = by_flag[flag]
            if kind == "config-off":
                parsed.changes[target.key] = False
                continue
            if kind == "flag":
                parsed.values[target.name] = True
                continue
            if kind == "config" and "boolean" in target.types and not has_value:
                # A bare boolean flag turns the setting on; `--flag false` is accepted too.
                if i < len(args) and args[i].lower() in ("true", "false", "yes", "no", "on", "off"):
                    parsed.changes[target.key] = convert(target, args[i])
                    i += 1
                else:
                    parsed.changes[target.key] = True
                continue
            if has_value:
                value = inline
            elif i < len(args) and not (args[i].startswith("--") and len(args[i]) > 2):
                value = args[i]
                i += 1
            else:
                fix = (
                    fix_hint(target)
                    if kind == "config"
                    else f"e.g. {flag} {target.choices[0] if target.choices else '...'}"
                )
                raise MagicError(f"{command.name}: {flag} needs a value — {fix}")
            if kind == "config":
                if "array" in target.types:
                    # `--target-modules q_proj v_proj` and `--target-modules q_proj,v_proj` both work.
                    items = [value]
                    while i < len(args) and not args[i].startswith("--"):
                        items.append(args[i])
                        i += 1
                    value = ",".join(items)
                parsed.changes[target.key] = convert(target, value)
            else:
                if target.choices and value not in target.choices:
                    close = difflib.get_close_matches(value, target.choices, n=1)
                    fix = f"did you mean {close[0]}? " if close else ""
                    raise MagicError(
                        f"{command.name}: {flag} {value!r} is not one of "
                        f"{', '.join(target.choices)} — {fix}e.g. {flag} {target.choices[-1]}"
                    )
                parsed.values[target.name] = value
            continue
        if positional is None:
            raise MagicError(
                f"{command.name}: unexpected argument {token!r} — "
                f"`%{MAGIC} {command.name}` takes only options; see `%{MAGIC} {command.name} --help`."
            )
        if positional.kind == "positional":
            if positional.name in parsed.changes:
                raise MagicError(f"{command.name}: unexpected argument {token!r} — give one {positional.name} only.")
            option = next(o for o in command.options() if o.key == positional.name)
            parsed.changes[option.key] = token
        else:
            parsed.rest.append(token)

    if parsed.changes and command.section:
        try:
            schema.validate("finetune-config", {command.section: parsed.changes})
        except schema.SchemaError as error:
            raise MagicError(schema_paragraph(error)) from None
    return parsed


# A config is a few sections deep; a deeper body is a mistake or an attack on the parser's recursion.
MAX_YAML_DEPTH = 32


def _check_yaml_shape(body: str) -> None:
    """Refuse YAML aliases and deep nesting before anything is built. A config never needs `*alias`,
    and a few hundred bytes of nested aliases expand to gigabytes (a "billion laughs")."""
    import yaml

    depth = 0
    for event in yaml.parse(body, Loader=yaml.SafeLoader):
        mark = event.start_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "the cell"
        if isinstance(event, yaml.AliasEvent):
            raise MagicError(
                f"the cell uses a YAML alias (*{event.anchor}) at {where}; "
                "aliases are not allowed in a config cell — write the value out"
            )
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise MagicError(
                    f"the cell nests more than {MAX_YAML_DEPTH} levels deep ({where}); "
                    "a config has a section and its fields"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def parse_body(body: str, section: str | None) -> dict:
    """A cell's YAML or JSON as a partial config; a bare section's fields when the line names its subcommand."""
    import yaml

    if not body.strip():
        return {}
    try:
        _check_yaml_shape(body)
        data = yaml.safe_load(body)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise MagicError(
            f"the cell is not valid YAML or JSON{where}: {problem} — "
            "write one `field: value` per line, indented under its section (e.g. `lora:` then `  r: 16`)."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise MagicError(
            f"the cell must hold a mapping of config sections, not a {type(data).__name__} — "
            "e.g. `lora:` then `  r: 16` on the next line."
        )
    if section and data and not set(data) <= set(SECTIONS):
        data = {section: data}
    try:
        schema.validate("finetune-config", data)
    except schema.SchemaError as error:
        raise MagicError(schema_paragraph(error, style="field")) from None
    return data


# -- help and settings views ----------------------------------------------------------------------


def overview() -> str:
    width = max(len(n) for n in SUBCOMMANDS)
    lines = [f"%{MAGIC} SUBCOMMAND [options]   (each subcommand has --help; --verbose shows tracebacks)", ""]
    lines += [f"  {name.ljust(width)}  {c.summary}" for name, c in SUBCOMMANDS.items()]
    lines += [
        "",
        f"%%{MAGIC} [SUBCOMMAND] with a YAML or JSON config as the cell body sets several fields at once.",
        "load, data, lora and train act on the current settings; with --show they list that section's settings",
        "instead (value, default, what each does). status shows what is loaded and the main settings.",
        "A word starting with # ends the line, as a comment in Python does.",
    ]
    return "\n".join(lines)


def command_help(command: Subcommand) -> str:
    lines = [f"%{MAGIC} {command.name}: {command.summary}", ""]
    for argument in command.arguments:
        label = argument.name.upper() if argument.kind in ("positional", "rest") else ", ".join(argument.flags)
        extra = f" (one of {', '.join(argument.choices)})" if argument.choices else ""
        lines.append(f"  {label}: {argument.help}{extra}")
    if command.section:
        lines.append(
            f"  --show: list the {command.section} settings (value, default, what each does) instead of acting"
        )
        for option in command.options():
            default = json.dumps(option.prop.get("default"))
            if "boolean" in option.types:
                flags = f"{option.flag} / --no-{option.flag[2:]}"
            else:
                flags = ", ".join(option.flags)
            lines.append(f"  {flags}  [{option.path}, default {default}]: {option.prop.get('description', '')}")
    lines.append("  --verbose: show the full traceback of an error")
    return "\n".join(lines)


def settings_bundle(session: Session, section: str, note: str = "") -> dict:
    """The section's fields: current value, default, description; changed values marked."""
    current = session.config[section]
    defaults = session.defaults()[section]
    props = schema.load_schema("finetune-config")["properties"][section]["properties"]
    rows = []
    for key, prop in props.items():
        value, default = current.get(key), defaults.get(key)
        rows.append((key, json.dumps(value), json.dumps(default), value != default, prop.get("description", "")))
    width = max(len(r[0]) for r in rows)
    text = [f"{section} settings (* = changed from the default){': ' + note if note else ''}"]
    text += [
        f"{'*' if changed else ' '} {key.ljust(width)}  {value}" + (f"   (default {default})" if changed else "")
        for key, value, default, changed, _ in rows
    ]
    esc = html.escape
    cells = "".join(
        f"<tr><td><code>{esc(key)}</code></td><td>{'<b>' if changed else ''}<code>{esc(value)}</code>"
        f"{'</b>' if changed else ''}</td><td><code>{esc(default)}</code></td><td>{esc(desc)}</td></tr>"
        for key, value, default, changed, desc in rows
    )
    table = (
        f'<div class="oss-finetune-settings"><div><b>{esc(section)}</b> settings'
        f"{esc(': ' + note) if note else ''}</div><table><tr><th>field</th><th>value</th><th>default</th>"
        f"<th>what it does</th></tr>{cells}</table></div>"
    )
    return {"text/plain": "\n".join(text), "text/html": table}


def _publish(data: dict) -> None:
    from IPython.display import display as ipy_display

    ipy_display(data, raw=True)


def _say(text: str) -> None:
    # The HTML twin keeps line breaks and escapes paths and model output, as every bundle's fallback must.
    _publish({"text/plain": text, "text/html": f'<pre class="oss-finetune-text">{html.escape(text)}</pre>'})


def runs_text(status: dict) -> str:
    lines = [f"model: {status['model'] or 'not loaded'}"]
    data = status["data"]
    if data:
        lines.append(f"data: {data.get('source')}, {data.get('rows')} rows")
    else:
        lines.append("data: not prepared")
    lines.append(f"adapter: {status['adapter'] or 'none'}")
    if status["training"]:
        lines.append(f"training now: {status['training']}")
    for kind, path in status["saved"].items():
        lines.append(f"saved {kind}: {path}")
    runs = status["runs"]
    lines.append(f"runs in {status['output_dir']}: {len(runs) if runs else 'none yet'}")
    for run in runs:
        loss = f", loss {run['last_loss']:.4g}" if run.get("last_loss") is not None else ""
        total = run["max_steps"] if run["max_steps"] is not None else "?"
        where = f", checkpoint {run['checkpoint']}" if run.get("checkpoint") else ""
        adapter = f", adapter {run['adapter']}" if run.get("adapter") else ""
        lines.append(f"  {run['run_id']}: {run['status']} at step {run['step']}/{total}{loss}{where}{adapter}")
    return "\n".join(lines)


def settings_summary(session: Session) -> str:
    """The settings people change most, one line a section."""
    config = session.config
    model, data, lora, training = config["model"], config["data"], config["lora"], config["training"]
    steps = f"{training['max_steps']} steps" if training["max_steps"] is not None else f"{training['epochs']:g} epochs"
    limit = f", first {data['limit']} rows" if data["limit"] else ""
    experts = " + the experts" if lora["target_experts"] else ""
    return "\n".join(
        [
            f"settings (`%{MAGIC} load --show`, and data, lora or train --show, list every field):",
            f"  model: {model['name_or_path']}",
            f"  data: {data['source']}{limit}, max_seq_length {data['max_seq_length']}, "
            f"loss mask {data['loss_mask']}, effort {data['reasoning_effort']}",
            f"  lora: r {lora['r']}, alpha {lora['alpha']:g}, targets {', '.join(lora['target_modules'])}{experts}",
            f"  training: {steps} of {training['batch_size']} x {training['gradient_accumulation_steps']}, "
            f"lr {training['learning_rate']:g}, runs in {training['output_dir']}",
        ]
    )


# -- the magics -----------------------------------------------------------------------------------


class _EvalProgress:
    """One line saying what an eval measures, then done/total with an ETA, then its result in place."""

    def __init__(self, session: Session, verb: str, noun: str, source: str, what: str, use_adapter: bool, batch: int):
        self.session, self.verb, self.noun, self.source = session, verb, noun, source
        self.what, self.use_adapter, self.batch = what, use_adapter, batch
        self.line: display.ProgressLine | None = None

    def update(self, done: int, total: int) -> None:
        if self.line is None:
            adapter = "with the adapter" if self.use_adapter and self.session.has_adapter() else "base model"
            _say(
                f"{self.verb}: {total} held-out {self.noun}{'' if total == 1 else 's'} from {self.source}, "
                f"{self.what}{adapter}, {min(self.batch, max(total, 1))} at a time"
            )
            self.line = display.ProgressLine("eval", f"{self.noun}s")
        self.line.update(done, total)

    def finish(self, result: str) -> None:
        if self.line is not None:
            self.line.finish(result)
        else:
            _say(result)


@magics_class
class FinetuneMagics(Magics):
    """``%oss_finetune`` / ``%%oss_finetune``."""

    @line_cell_magic
    def oss_finetune(self, line: str = "", cell: str | None = None):
        argv = split_line(line)
        verbose = "--verbose" in argv
        try:
            return self._run(argv, cell)
        except KeyboardInterrupt:
            raise
        except MagicError as error:
            if verbose:
                raise RuntimeError(str(error)) from error
            # IPython prints exactly UsageError (not subclasses) as one line without a traceback.
            raise UsageError(str(error)) from None
        except Exception as error:  # noqa: BLE001 - every failure becomes one paragraph unless --verbose
            if verbose:
                raise
            raise UsageError(error_paragraph(error)) from None

    def _run(self, argv: list[str], cell: str | None):
        # A kernel that had the magics from its start gets the side panel's channel with its first magic.
        _register_comm(self.shell)
        parsed = parse(argv)
        session = get_session()
        command = parsed.command
        if cell is not None:
            changes = parse_body(cell, command.section if argv else None)
            if changes:
                session.set_config(changes)
            if not argv or (command.name == "help" and not parsed.rest):
                _publish(full_config_bundle(session))
                return None
        if parsed.help:
            _say(command_help(command))
            return None
        if parsed.show:
            _publish(settings_bundle(session, cast(str, command.section), _state_of(session, command.section)))
            return None
        handler: Callable[[Session, Parsed], Any] = getattr(self, f"_do_{command.name}")
        # Each step the session takes on the way (a load, the data, the adapter) says so in one line.
        with reporting(_say):
            return handler(session, parsed)

    # Each handler shows its result; none returns a value, so the cell has no Out[] echo.
    def _do_help(self, session: Session, parsed: Parsed):
        topic = parsed.rest[0] if parsed.rest else None
        if topic is None:
            _say(overview())
        elif topic in SUBCOMMANDS:
            _say(command_help(SUBCOMMANDS[topic]))
        else:
            close = difflib.get_close_matches(topic, list(SUBCOMMANDS), n=1)
            raise MagicError(
                f"no help for {topic!r} — "
                + (f"did you mean {close[0]}?" if close else f"the subcommands are: {', '.join(SUBCOMMANDS)}.")
            )

    def _do_env(self, session: Session, parsed: Parsed):
        from . import environment

        environment.show()

    def _do_load(self, session: Session, parsed: Parsed):
        force = bool(parsed.values.get("force"))
        changes = {k: v for k, v in parsed.changes.items()}
        # A hub that cannot be reached is said at once, before the plan asks it for the architecture.
        session.check_model_source(changes.get("name_or_path"))
        # Before minutes of download and loading: will the weights fit where they are going?
        before = _plan_or_none(session, {"model": changes} if changes else None)
        if before is not None and before.loads is False and not force:
            raise MagicError(memory_refusal(before, "loading"))
        loaded = session.load(changes)
        plan = _plan_or_none(session)
        text = loaded_line(loaded)
        if plan is None:
            _say(text)
            return
        _publish(display.memory_bundle(plan, lead=text, title="memory plan (training with the current settings)"))

    def _do_data(self, session: Session, parsed: Parsed):
        prepared = session.data(parsed.changes)
        display.show("dataset-summary", prepared.summary)

    def _do_show(self, session: Session, parsed: Parsed):
        rows = [_int_arg(v, "row", "show 0 3") for v in parsed.rest]
        display.show("harmony-tokens", session.show(rows))

    def _do_lora(self, session: Session, parsed: Parsed):
        replacing = session.has_adapter()
        session.lora(parsed.changes)
        _say(f"{'replaced the adapter with' if replacing else 'added'} {session.describe_adapter()}")

    def _do_train(self, session: Session, parsed: Parsed):
        force = bool(parsed.values.get("force"))
        resume = parsed.values.get("resume")
        if parsed.changes:
            session.set_config({"training": parsed.changes})
        if resume:
            session.resolve_checkpoint(resume)  # a wrong folder is reported before the model loads
        session.ensure_loaded()
        session.ensure_data()
        # The adapter goes on before the plan, so the plan counts the targets it really has.
        session.ensure_adapter()
        plan, adjusted = session.fit_training_to_memory()
        if plan.fits is False and not force:
            raise MagicError(memory_refusal(plan, "training"))
        _publish(
            display.memory_bundle(
                plan,
                lead=adjusted or None,
                title="memory plan" + (" (--force: not checked)" if force and plan.fits is False else ""),
            )
        )
        live = display.LiveOutput("training-run")
        result = session.train(None, resume_from=resume, on_update=live.update, memory_checked=True)
        message = result.message or ""
        # Most messages already open with their status ("completed 60 steps; ..."): say it once.
        _say(message if message.startswith(result.status) else f"{result.status}: {message}")

    def _do_chat(self, session: Session, parsed: Parsed):
        message = " ".join(parsed.rest).strip()
        if not message:
            raise MagicError(
                "chat: nothing to ask — write the question after the options, e.g. "
                f"`%{MAGIC} chat --effort low --language French What is 2 + 2?`"
            )
        max_new = _int_arg(
            parsed.values.get("max_new_tokens", "64"), "--max-new-tokens", "chat --max-new-tokens 64 ..."
        )
        session.ensure_loaded()
        tokenizer = session.loaded.tokenizer
        tools = session.data_tools() if parsed.values.get("tools") else None
        if parsed.values.get("tools") and not tools:
            raise MagicError("chat --tools: the data set has no tools — set data.tools or use rows that carry tools")

        def decode(ids: list[int]) -> str:
            return tokenizer.decode(ids)

        if parsed.values.get("before_after"):
            # Shown from the first token on; the final view takes its place.
            stream = display.TokenStream("chat", decode, ("base model", "with adapter"))
            both = session.chat_before_after(
                message,
                effort=parsed.values.get("effort"),
                language=parsed.values.get("language"),
                max_new_tokens=max_new,
                tools=tools,
                on_token=stream.add,
            )
            stream.finish(display.bundle("harmony-tokens", both["payload"]))
            _say(
                "\n\n".join(
                    f"{label}:\n{_reply_text(both[key])}"
                    for key, label in (("before", "base model"), ("after", "with adapter"))
                )
            )
            return
        stream = display.TokenStream("chat", decode)
        reply = session.chat(
            message,
            effort=parsed.values.get("effort"),
            language=parsed.values.get("language"),
            max_new_tokens=max_new,
            use_adapter=not parsed.values.get("no_adapter"),
            tools=tools,
            on_token=lambda token: stream.add(0, token),
        )
        stream.finish(display.bundle("harmony-tokens", reply["payload"]))
        _say(_reply_text(reply))

    def _do_eval(self, session: Session, parsed: Parsed):
        if parsed.values.get("tools"):
            return self._eval_tools(session, parsed)
        source = " ".join(parsed.rest).strip() or "embedded:multilingual-heldout"
        limit = parsed.values.get("limit")
        effort = parsed.values.get("effort")
        use_adapter = not parsed.values.get("no_adapter")
        count = _int_arg(limit, "--limit", "eval --limit 20") if limit else None
        session.ensure_loaded()
        from ..training.language import DEFAULT_BATCH

        what = f"effort {effort or session.settings.data.reasoning_effort}, "
        progress = _EvalProgress(session, "eval", "question", source, what, use_adapter, DEFAULT_BATCH)
        rate = session.evaluate(
            source, effort=effort, use_adapter=use_adapter, limit=count, on_progress=progress.update
        )
        progress.finish(f"eval: {rate.summary()}")

    def _eval_tools(self, session: Session, parsed: Parsed):
        from ..training.tool_calls import DEFAULT_BATCH

        source = " ".join(parsed.rest).strip() or "embedded:tool-calls-heldout"
        limit = parsed.values.get("limit")
        count = _int_arg(limit, "--limit", "eval --tools --limit 20") if limit else None
        use_adapter = not parsed.values.get("no_adapter")
        session.ensure_loaded()
        progress = _EvalProgress(session, "eval --tools", "request", source, "", use_adapter, DEFAULT_BATCH)
        rate = session.evaluate_tools(
            source,
            effort=parsed.values.get("effort"),
            use_adapter=use_adapter,
            limit=count,
            on_progress=progress.update,
        )
        progress.finish(f"eval --tools: {rate.summary()}")

    def _do_compare(self, session: Session, parsed: Parsed):
        row = _int_arg(parsed.rest[0], "row", "compare 0") if parsed.rest else 0
        display.show("harmony-tokens", session.compare(row))

    def _do_save(self, session: Session, parsed: Parsed):
        path = " ".join(parsed.rest) or None
        merged = bool(parsed.values.get("merged"))
        if parsed.values.get("format"):
            from ..modeling.export import serve_command

            result = session.export(parsed.values["format"], path)
            _say(result.line())
            verb = "load" if result.format == "peft" else "serve"
            _say(f"{verb} it with: {serve_command(result.format, result.path, session.loaded.name_or_path)}")
            return
        where = session.save(path, merged=merged)
        if merged:
            _say(
                f"merged weights saved to {where} (adapter also saved to {session.saved.get('adapter')}); "
                "the model in this kernel is now the merged one"
            )
        else:
            _say(f"adapter saved to {where} (PEFT format: PeftModel.from_pretrained(base_model, path))")

    def _do_status(self, session: Session, parsed: Parsed):
        _say(runs_text(session.status()) + "\n" + settings_summary(session))
        payload = session.last_run_payload()
        if payload is not None:
            display.show("training-run", payload)

    def _do_runs(self, session: Session, parsed: Parsed):
        from ..training.runs import comparison, not_runs, pick_runs

        wanted = list(parsed.rest)
        if wanted and not parsed.values.get("compare"):
            raise MagicError(
                f"runs: unexpected argument {wanted[0]!r} — to choose runs, write --compare before their ids, "
                f"e.g. `%{MAGIC} runs --compare {' '.join(wanted[:2])}`"
            )
        if parsed.values.get("compare") and len(wanted) < 2:
            raise MagicError(
                f"runs --compare: name two runs or more (ids, or parts of them), e.g. `%{MAGIC} runs --compare "
                f"0930-ab12 1015-cd34`; `%{MAGIC} runs` alone shows every run"
            )
        output = session.output_dir()
        infos = session.list_runs()
        if wanted:
            infos = pick_runs(infos, wanted, output)
        display.show("runs-comparison", comparison(output, infos, [] if wanted else not_runs(output)))

    def _do_stop(self, session: Session, parsed: Parsed):
        run_id = session.stop("stopped from %oss_finetune stop")
        _say(
            f"stopping {run_id} after its current step; a checkpoint will be written"
            if run_id
            else "no run is training"
        )


def _state_of(session: Session, section: str | None) -> str:
    """The note beside a section's settings: what of it is in effect now."""
    if section == "model":
        return session.loaded.description if session.loaded is not None else "not loaded yet"
    if section == "lora":
        return session.describe_adapter() or "no adapter on the model yet"
    if section == "training":
        return f"run {session.trainer.run_id} is training" if session.is_training() else ""
    if section == "data":
        return "prepared" if session.prepared is not None else "not prepared yet"
    return ""


def _plan_or_none(session: Session, changes: dict | None = None):
    """The memory plan, or None for a model whose architecture the planner cannot tell before loading it."""
    from ..training.memory import PlanError

    try:
        return session.memory_plan(changes)
    except PlanError:
        return None


def _reply_text(reply: dict) -> str:
    lines = []
    if reply.get("analysis"):
        lines.append(f"analysis: {reply['analysis']}")
    for call in reply.get("calls") or []:
        lines.append(f"call: {call}")
    if reply.get("final"):
        lines.append(f"final: {reply['final']}")
    if not lines:
        lines.append(f"(no complete message) {reply['text']}")
    if reply.get("error"):
        lines.append(f"note: the reply is not well-formed Harmony: {reply['error']}")
    return "\n".join(lines)


def _int_arg(value: str, name: str, example: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MagicError(f"{name} {value!r} is not a whole number — e.g. `%{MAGIC} {example}`") from None
    if number < 0:
        raise MagicError(f"{name} {value!r} is negative — e.g. `%{MAGIC} {example}`")
    return number


def full_config_bundle(session: Session) -> dict:
    config = session.get_config()
    text = json.dumps(config, indent=2)
    return {"text/plain": text, "application/json": config}


def error_paragraph(error: BaseException) -> str:
    """One paragraph for a failure: the schema rule with its fix, or the message the raising code wrote for a person."""
    if isinstance(error, schema.SchemaError):
        return schema_paragraph(error)
    message = str(error).strip() or type(error).__name__
    if isinstance(error, (UserError, FileNotFoundError)):
        return message.replace("\n", " ")
    first = message.splitlines()[0]
    return f"{type(error).__name__}: {first} — run the line again with --verbose for the full traceback."


# -- tab completion -------------------------------------------------------------------------------


def completions(text_until_cursor: str) -> list[str]:
    """What may come next after ``text_until_cursor`` (a line starting with %oss_finetune or %%oss_finetune)."""
    words = text_until_cursor.split()
    if not words:
        return []
    ends_with_space = text_until_cursor.endswith((" ", "\t"))
    done = words[1:] if ends_with_space else words[1:-1]
    if not done:
        return list(SUBCOMMANDS) + ["--help"]
    command = SUBCOMMANDS.get(done[0])
    if command is None:
        return []
    previous = done[-1] if len(done) > 1 else None
    if previous is not None and previous.startswith("--"):
        for option in command.options():
            if previous in option.flags and "boolean" not in option.types:
                if "enum" in option.prop:
                    return [str(v) for v in option.prop["enum"]]
                return []
        for argument in command.arguments:
            if previous in argument.flags and argument.kind == "value":
                return list(argument.choices or [])
    if command.name == "help":
        return list(SUBCOMMANDS)
    return command.all_flags()


def _complete_hook(shell, event) -> list[str]:
    return completions(event.text_until_cursor)


def _matcher():
    """An IPython >= 8.6 matcher: on our magic's line it answers alone, so no Python names get mixed in."""
    from IPython.core.completer import SimpleCompletion, context_matcher

    @context_matcher()
    def oss_finetune_matcher(context):
        line = context.text_until_cursor
        if not line.lstrip().startswith((f"%{MAGIC}", f"%%{MAGIC}", MAGIC + " ")):
            return {"completions": []}
        token = context.token
        found = [c for c in completions(line) if c.startswith(token)]
        return {"completions": [SimpleCompletion(text=c, type="oss_finetune") for c in found], "suppress": bool(found)}

    return oss_finetune_matcher


def register_completer(ipython) -> None:
    completer = getattr(ipython, "Completer", None)
    try:
        matcher = _matcher()
    except ImportError:  # IPython before 8.6: the legacy hook alone
        matcher = None
    if matcher is not None and completer is not None and hasattr(completer, "custom_matchers"):
        if not any(getattr(m, "__name__", "") == matcher.__name__ for m in completer.custom_matchers):
            completer.custom_matchers.append(matcher)
        return
    for key in (f"%{MAGIC}", f"%%{MAGIC}"):
        ipython.set_hook("complete_command", _complete_hook, str_key=key)


def _import_tqdm_quietly() -> None:
    """tqdm.auto, on its first import in a kernel without ipywidgets, warns "IProgress not found" in red, in
    whichever cell first loads transformers. Imported here with that warning filtered, it picks the same
    console bars and says nothing."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="IProgress not found")
            importlib.import_module("tqdm.auto")
    except ImportError:
        pass


def register(ipython) -> None:
    """The magics and their tab completion: what the oss-finetune kernel sets up as it starts."""
    _import_tqdm_quietly()
    ipython.register_magics(FinetuneMagics)
    register_completer(ipython)


_comm_registered = False


def _register_comm(ipython) -> None:
    global _comm_registered
    if not _comm_registered:
        from . import comm

        _comm_registered = comm.register(ipython)


def load_ipython_extension(ipython) -> None:
    register(ipython)
    _register_comm(ipython)
