"""Writes python/oss_finetune/core/config_types.py from schema/finetune-config.schema.json: one frozen
dataclass per config section, each field with its type, its default and its help text from the schema.
The Python twin of gen-types.mjs. `--check` exits 1 when the committed file differs (the tests run it).

    python schema/scripts/gen_python.py [--check]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "schema" / "finetune-config.schema.json"
OUTPUT = ROOT / "python" / "oss_finetune" / "core" / "config_types.py"


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
        out += ["", "@dataclass(frozen=True)", f"class {section['title']}(ConfigBase):", f'    """{section["description"]}"""', "", f"    SECTION: ClassVar[str] = {quoted(name)}"]
        for key, spec in section["properties"].items():
            out.append(
                f"    {key}: {python_type(spec)} = field(default={python_value(spec['default'])}, "
                f"metadata={{\"help\": {quoted(spec['description'])}}})"
            )
        out.append("")
    out += ["", "@dataclass(frozen=True)", f"class {schema['title']}(ConfigBase):", f'    """{schema["description"]}"""', "", '    SECTION: ClassVar[str] = ""']
    for name, title in sections:
        out.append(f"    {name}: {title} = field(default_factory={title})")
    out += ["", "", "SECTIONS: dict[str, type[ConfigBase]] = {"]
    out += [f"    {quoted(name)}: {title}," for name, title in sections]
    out += ["}", ""]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.is_file() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run `python schema/scripts/gen_python.py`", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
