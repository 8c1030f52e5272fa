"""The Python twin of gen-types.mjs: types generated from the schemas, never written by hand.

- python/oss_finetune/core/config_types.py from finetune-config.schema.json: one frozen dataclass per
  config section, each field with its type, its default and its help text from the schema;
- python/oss_finetune/core/comm_types.py from comm-operations.schema.json: one TypedDict per request,
  result, reply and event of the widgets' comm.

`--check` exits 1 when a committed file differs from what the schemas produce (the tests run it).

    python schema/scripts/gen_python.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "finetune-config.schema.json"
OUTPUT = ROOT / "python" / "oss_finetune" / "core" / "config_types.py"
COMM_SCHEMA = ROOT / "schema" / "comm-operations.schema.json"
COMM_OUTPUT = ROOT / "python" / "oss_finetune" / "core" / "comm_types.py"


def python_type(spec: dict) -> str:
    if "enum" in spec:
        return "Literal[" + ", ".join(json.dumps(v) for v in spec["enum"]) + "]"
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    names = []
    for kind in kinds:
        if kind == "array":
            names.append(f"tuple[{python_type(spec['items'])}, ...]")
        elif kind != "null":
            names.append({"string": "str", "integer": "int", "number": "float", "boolean": "bool"}[kind])
    text = " | ".join(names)
    return f"{text} | None" if "null" in kinds else text


def python_value(value: object) -> str:
    if isinstance(value, list):
        return "(" + "".join(f"{python_value(v)}, " for v in value).rstrip(" ") + ")"
    if value is None or isinstance(value, bool):
        return repr(value)
    return json.dumps(value)


def quoted(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def render() -> str:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    out = [
        f'"""Generated from schema/{SCHEMA.name} by schema/scripts/gen_python.py; do not edit.',
        "",
        f"{schema['description']}",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from dataclasses import dataclass, field",
        "from typing import ClassVar, Literal",
        "",
        "from ._config_base import ConfigBase",
        "",
    ]
    sections = []
    for name, section in schema["properties"].items():
        sections.append((name, section["title"]))
        out += [
            "",
            "@dataclass(frozen=True)",
            f"class {section['title']}(ConfigBase):",
            f'    """{section["description"]}"""',
            "",
            f"    SECTION: ClassVar[str] = {quoted(name)}",
        ]
        for key, spec in section["properties"].items():
            out.append(
                f"    {key}: {python_type(spec)} = field(default={python_value(spec['default'])}, "
                f'metadata={{"help": {quoted(spec["description"])}}})'
            )
        out.append("")
    out += [
        "",
        "@dataclass(frozen=True)",
        f"class {schema['title']}(ConfigBase):",
        f'    """{schema["description"]}"""',
        "",
        '    SECTION: ClassVar[str] = ""',
    ]
    for name, title in sections:
        out.append(f"    {name}: {title} = field(default_factory={title})")
    out += ["", "", "SECTIONS: dict[str, type[ConfigBase]] = {"]
    out += [f"    {quoted(name)}: {title}," for name, title in sections]
    out += ["}", ""]
    return "\n".join(out)


def _load(name: str) -> dict:
    return json.loads((ROOT / "schema" / name).read_text(encoding="utf-8"))


def _pointer(document: dict, pointer: str) -> dict:
    node = document
    for part in [p for p in pointer.split("/") if p]:
        node = node[part]
    return node


def python_literal(value: object) -> str:
    return repr(value) if isinstance(value, bool) else json.dumps(value)


def typed_dict_type(spec: dict, own: dict) -> str:
    """The annotation of one comm field: a class of this file, a literal, or a JSON type."""
    if "$ref" in spec:
        target, _, pointer = spec["$ref"].partition("#")
        if not target:
            return _pointer(own, pointer)["title"]
        resolved = _pointer(_load(target), pointer)
        if resolved.get("type") == "object" or "properties" in resolved or not pointer:
            return "dict[str, Any]"
        return typed_dict_type(resolved, own)
    if "const" in spec:
        return f"Literal[{python_literal(spec['const'])}]"
    if "enum" in spec:
        return "Literal[" + ", ".join(python_literal(v) for v in spec["enum"]) + "]"
    kinds = spec.get("type", "object")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    names = []
    for kind in kinds:
        if kind == "array":
            names.append(f"list[{typed_dict_type(spec.get('items', {}), own)}]")
        elif kind != "null":
            names.append(
                {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "object": "dict[str, Any]"}[
                    kind
                ]
            )
    text = " | ".join(names)
    return f"{text} | None" if "null" in kinds else text


def render_comm() -> str:
    schema = _load(COMM_SCHEMA.name)
    out = [
        f'"""Generated from schema/{COMM_SCHEMA.name} by schema/scripts/gen_python.py; do not edit.',
        "",
        "The widgets' comm, one operation at a time: what each request carries, what its reply's result",
        "holds, and the training_update events. The kernel validates what it receives against",
        "comm-message.schema.json; these are the shapes that code in both languages is written against.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import TYPE_CHECKING, Any, Literal, TypedDict, Union",
        "",
        "if TYPE_CHECKING:",
        "    from typing_extensions import NotRequired",
        "",
    ]
    unions = []
    for spec in schema["$defs"].values():
        if "oneOf" in spec:
            members = [typed_dict_type(m, schema) for m in spec["oneOf"]]
            unions.append(f"{spec['title']} = Union[" + ", ".join(members) + "]")
            continue
        out += ["", f"class {spec['title']}(TypedDict):"]
        if spec.get("description"):
            out.append(f'    """{spec["description"]}"""')
            out.append("")
        required = set(spec.get("required", []))
        for key, field_spec in spec.get("properties", {}).items():
            annotation = typed_dict_type(field_spec, schema)
            out.append(f"    {key}: {annotation if key in required else f'NotRequired[{annotation}]'}")
        if not spec.get("properties"):
            out.append("    pass")
        out.append("")
    out += [""] + unions + [""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    outputs = {OUTPUT: render(), COMM_OUTPUT: render_comm()}
    if "--check" in argv:
        stale = [
            path for path, text in outputs.items() if not path.is_file() or path.read_text(encoding="utf-8") != text
        ]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run `python schema/scripts/gen_python.py`", file=sys.stderr)
        return 1 if stale else 0
    for path, text in outputs.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
