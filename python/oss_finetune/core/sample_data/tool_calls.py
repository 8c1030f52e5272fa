"""Generate the project's tool-calling sample: requests in five languages, each answered through a tool.

Run ``python -m oss_finetune.core.sample_data.tool_calls`` to rewrite ``tool-calls.jsonl`` and
``tool-calls-heldout.jsonl`` next to this file (``embedded:tool-calls`` and
``embedded:tool-calls-heldout``). Every random choice comes from a ``random.Random`` seeded with a
string naming the split, tool, language, row and attempt, so the committed files can be checked
against a fresh run.

Three tools: a calculator, a unit converter and a lookup of capital cities in a fixed table. Each row
is a chat in the ``messages`` format with its ``tools``, as Hugging Face chat data sets store them: in
some rows a system turn (the developer's instructions), then the user's request, the assistant's
short reasoning with one call of a tool (JSON arguments), the tool's result, and the final answer in
the language of the request. The tools' results are computed here, so every number in a result or an
answer is right. Standard library only, like the multilingual sample's generator.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .generate import write_splits

HERE = Path(__file__).resolve().parent
TRAIN_FILE = HERE / "tool-calls.jsonl"
HELDOUT_FILE = HERE / "tool-calls-heldout.jsonl"

LANGS = ["en", "fr", "es", "de", "it"]
LANG_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian"}

TRAIN_PER_CELL = 20  # 3 tools x 5 languages x 20 = 300 rows
HELDOUT_PER_CELL = 4  # 60 rows

# A request's language-independent key; two rows with one key ask the same thing.
Key = tuple[Any, ...]
# A drawn request: the user's text, the call's arguments, the tool's result, the reasoning, the answer.
Drawn = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# The tools, as OpenAI function tools


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


# Three tools, few units, short descriptions: the tiny base reads a request well only within about the
# first 250 tokens of a conversation (it was trained on shorter ones), and the tools come before it.
UNITS = ["km", "mi", "kg", "lb", "C", "F"]

TOOLS: list[dict[str, Any]] = [
    _function(
        "calculate", "Evaluate arithmetic, e.g. (12 + 30) * 4.", {"expression": {"type": "string"}}, ["expression"]
    ),
    _function(
        "convert_units",
        "Convert a value to another unit.",
        {
            "value": {"type": "number"},
            "from_unit": {"type": "string", "enum": UNITS},
            "to_unit": {"type": "string", "enum": UNITS},
        },
        ["value", "from_unit", "to_unit"],
    ),
    _function(
        "get_capital",
        "Capital city of a country, named in English.",
        {"country": {"type": "string"}},
        ["country"],
    ),
]
TOOL_NAMES = [tool["function"]["name"] for tool in TOOLS]

# None: a row with no system turn, only the tools, as a chat with tools and no instructions is; most
# rows are so, to keep the prompt short.
SYSTEM_PROMPTS: list[str | None] = [
    "Use a tool when a request needs one. Answer in the user's language.",
    "Call the right tool, then reply briefly.",
    None,
    None,
    None,
    None,
]

# ---------------------------------------------------------------------------------------------
# Numbers


def number(x: float, lang: str) -> str:
    """A result as written in ``lang``: at most two decimals, a decimal comma outside English."""
    rounded = round(x, 2)
    if rounded == int(rounded):
        return str(int(rounded))
    text = f"{rounded:.2f}".rstrip("0")
    return text if lang == "en" else text.replace(".", ",")


def json_number(x: float) -> int | float:
    """A result as the tools return it: an integer when it is one, else rounded to two decimals."""
    rounded = round(x, 2)
    return int(rounded) if rounded == int(rounded) else rounded


def pick(rng: random.Random, options: list[str], **fields: Any) -> str:
    return rng.choice(options).format(**fields)


# ---------------------------------------------------------------------------------------------
# calculate

CALC_KINDS = ["symbols", "words", "percent", "share"]

CALC_WORDS = {
    "en": ("times", "plus", "minus"),
    "fr": ("fois", "plus", "moins"),
    "es": ("por", "más", "menos"),
    "de": ("mal", "plus", "minus"),
    "it": ("per", "più", "meno"),
}

CALC_REQUESTS = {
    "symbols": {
        "en": ["What is {shown}?", "Compute {shown}.", "Can you work out {shown}?"],
        "fr": ["Combien font {shown} ?", "Calcule {shown}.", "Peux-tu calculer {shown} ?"],
        "es": ["¿Cuánto es {shown}?", "Calcula {shown}.", "¿Puedes calcular {shown}?"],
        "de": ["Was ist {shown}?", "Berechne {shown}.", "Kannst du {shown} ausrechnen?"],
        "it": ["Quanto fa {shown}?", "Calcola {shown}.", "Puoi calcolare {shown}?"],
    },
    "words": {
        "en": ["What is {shown}?", "How much is {shown}?"],
        "fr": ["Combien font {shown} ?", "Ça fait combien, {shown} ?"],
        "es": ["¿Cuánto es {shown}?", "¿Cuánto son {shown}?"],
        "de": ["Was ist {shown}?", "Wie viel ist {shown}?"],
        "it": ["Quanto fa {shown}?", "Quanto è {shown}?"],
    },
    "percent": {
        "en": ["What is {p}% of {n}?", "How much is {p} percent of {n}?"],
        "fr": ["Combien font {p} % de {n} ?", "Que vaut {p} % de {n} ?"],
        "es": ["¿Cuánto es el {p} % de {n}?", "¿Cuál es el {p} % de {n}?"],
        "de": ["Wie viel sind {p} % von {n}?", "Was sind {p} % von {n}?"],
        "it": ["Quanto fa il {p}% di {n}?", "Quanto è il {p}% di {n}?"],
    },
    "share": {
        "en": ["We spent {n} euros and split it between {k} people. How much does each pay?"],
        "fr": ["On a dépensé {n} euros à partager entre {k} personnes. Combien paie chacun ?"],
        "es": ["Gastamos {n} euros y lo dividimos entre {k} personas. ¿Cuánto paga cada uno?"],
        "de": ["Wir haben {n} Euro ausgegeben und teilen durch {k} Personen. Wie viel zahlt jeder?"],
        "it": ["Abbiamo speso {n} euro da dividere tra {k} persone. Quanto paga ciascuno?"],
    },
}

CALC_ANSWERS = {
    "en": "The result is {r}.",
    "fr": "Le résultat est {r}.",
    "es": "El resultado es {r}.",
    "de": "Das Ergebnis ist {r}.",
    "it": "Il risultato è {r}.",
}
SHARE_ANSWERS = {
    "en": "Each person pays {r} euros.",
    "fr": "Chacun paie {r} euros.",
    "es": "Cada uno paga {r} euros.",
    "de": "Jeder zahlt {r} Euro.",
    "it": "Ciascuno paga {r} euro.",
}

# One sentence per tool in the base model's own words: its English reasoning opens with "Okay," and
# goes on "we need to evaluate ..." for arithmetic and "we need to convert ..." for units, so the words
# that choose the tool are ones it already writes for such requests.
CALC_REASONING = "Okay, we need to evaluate {expr}. Call calculate."


def draw_calculate(rng: random.Random, kind: str, lang: str) -> tuple[Key, Callable[[str], Drawn]]:
    if kind in ("symbols", "words"):
        a, b = rng.randint(2, 60), rng.randint(2, 40)
        op2 = rng.choice(["+", "-"])
        c = rng.randint(1, min(200, a * b - 1))
        expr = f"{a} * {b} {op2} {c}"
        value: float = a * b + (c if op2 == "+" else -c)
        key: Key = ("calculate", kind, a, b, op2, c)
    elif kind == "percent":
        p, n = rng.choice([5, 10, 12, 15, 20, 25, 30, 40, 50, 75]), rng.randint(2, 90) * 10
        expr, value, key = f"{n} * {p} / 100", n * p / 100, ("calculate", kind, p, n)
    else:
        k = rng.randint(2, 8)
        n = k * rng.randint(5, 60) + rng.choice([0, 0, 2, 4])
        expr, value, key = f"{n} / {k}", n / k, ("calculate", kind, n, k)
    reasoning = CALC_REASONING.format(expr=expr)

    def write(lang: str) -> Drawn:
        if kind == "symbols":
            shown = expr.replace("*", rng.choice(["×", "*"]))
            user = pick(rng, CALC_REQUESTS[kind][lang], shown=shown)
        elif kind == "words":
            times, plus, minus = CALC_WORDS[lang]
            shown = f"{a} {times} {b} {plus if op2 == '+' else minus} {c}"
            user = pick(rng, CALC_REQUESTS[kind][lang], shown=shown)
        elif kind == "percent":
            user = pick(rng, CALC_REQUESTS[kind][lang], p=p, n=n)
        else:
            user = pick(rng, CALC_REQUESTS[kind][lang], n=n, k=k)
        answer = (SHARE_ANSWERS if kind == "share" else CALC_ANSWERS)[lang].format(r=number(value, lang))
        return {
            "user": user,
            "reasoning": reasoning,
            "arguments": {"expression": expr},
            "result": {"result": json_number(value)},
            "final": answer,
        }

    return key, write


# ---------------------------------------------------------------------------------------------
# convert_units

# unit -> (how it follows a number, its name as a target, grammatical gender where it matters)
UNIT_WORDS: dict[str, dict[str, tuple[str, str, str]]] = {
    "en": {
        "km": ("km", "kilometres", ""),
        "mi": ("miles", "miles", ""),
        "kg": ("kg", "kilograms", ""),
        "lb": ("pounds", "pounds", ""),
        "C": ("°C", "degrees Celsius", ""),
        "F": ("°F", "degrees Fahrenheit", ""),
    },
    "fr": {
        "km": ("km", "kilomètres", ""),
        "mi": ("miles", "miles", ""),
        "kg": ("kg", "kilos", ""),
        "lb": ("livres", "livres", ""),
        "C": ("°C", "degrés Celsius", ""),
        "F": ("°F", "degrés Fahrenheit", ""),
    },
    "es": {
        "km": ("km", "kilómetros", "m"),
        "mi": ("millas", "millas", "f"),
        "kg": ("kg", "kilos", "m"),
        "lb": ("libras", "libras", "f"),
        "C": ("°C", "grados Celsius", "m"),
        "F": ("°F", "grados Fahrenheit", "m"),
    },
    "de": {
        "km": ("km", "Kilometer", ""),
        "mi": ("Meilen", "Meilen", ""),
        "kg": ("kg", "Kilogramm", ""),
        "lb": ("Pfund", "Pfund", ""),
        "C": ("°C", "Grad Celsius", ""),
        "F": ("°F", "Grad Fahrenheit", ""),
    },
    "it": {
        "km": ("km", "chilometri", "m"),
        "mi": ("miglia", "miglia", "f"),
        "kg": ("kg", "chili", "m"),
        "lb": ("libbre", "libbre", "f"),
        "C": ("°C", "gradi Celsius", "m"),
        "F": ("°F", "gradi Fahrenheit", "m"),
    },
}

# (from, to) -> (conversion, the range of whole values asked about)
CONVERSIONS: dict[tuple[str, str], tuple[Callable[[float], float], tuple[int, int]]] = {
    ("km", "mi"): (lambda x: x * 0.621371, (1, 500)),
    ("mi", "km"): (lambda x: x * 1.609344, (1, 300)),
    ("kg", "lb"): (lambda x: x * 2.204623, (1, 200)),
    ("lb", "kg"): (lambda x: x * 0.453592, (1, 400)),
    ("C", "F"): (lambda x: x * 9 / 5 + 32, (-20, 45)),
    ("F", "C"): (lambda x: (x - 32) * 5 / 9, (-10, 110)),
}

UNIT_REQUESTS = {
    "en": ["How many {to} is {v} {fa}?", "Convert {v} {fa} to {to}.", "What is {v} {fa} in {to}?"],
    "fr": ["Combien de {to} font {v} {fa} ?", "Convertis {v} {fa} en {to}.", "{v} {fa}, ça fait combien en {to} ?"],
    "es": ["¿{howmany} {to} son {v} {fa}?", "Convierte {v} {fa} a {to}.", "¿A cuánto equivalen {v} {fa} en {to}?"],
    "de": ["Wie viele {to} sind {v} {fa}?", "Rechne {v} {fa} in {to} um.", "Was sind {v} {fa} in {to}?"],
    "it": ["{howmany} {to} sono {v} {fa}?", "Converti {v} {fa} in {to}.", "A quanto corrispondono {v} {fa} in {to}?"],
}
HOW_MANY = {"es": {"m": "Cuántos", "f": "Cuántas"}, "it": {"m": "Quanti", "f": "Quante"}}
UNIT_ANSWERS = {
    "en": "{v} {fa} is {r} {ta}.",
    "fr": "{v} {fa} font {r} {ta}.",
    "es": "{v} {fa} son {r} {ta}.",
    "de": "{v} {fa} sind {r} {ta}.",
    "it": "{v} {fa} corrispondono a {r} {ta}.",
}
UNIT_REASONING = "Okay, we need to convert {v} {f} to {t}. Call convert_units."


def draw_convert_units(rng: random.Random, kind: str, lang: str) -> tuple[Key, Callable[[str], Drawn]]:
    pair = list(CONVERSIONS)[int(kind)]
    convert, (low, high) = CONVERSIONS[pair]
    frm, to = pair
    value = rng.randint(low, high)
    result = convert(value)
    reasoning = UNIT_REASONING.format(v=value, f=frm, t=to)

    def write(lang: str) -> Drawn:
        words = UNIT_WORDS[lang]
        fields = {
            "v": value,
            "fa": words[frm][0],
            "to": words[to][1],
            "ta": words[to][0],
            "howmany": HOW_MANY.get(lang, {}).get(words[to][2], ""),
        }
        user = pick(rng, UNIT_REQUESTS[lang], **fields)
        return {
            "user": user,
            "reasoning": reasoning,
            "arguments": {"value": value, "from_unit": frm, "to_unit": to},
            "result": {"value": json_number(result), "unit": to},
            "final": UNIT_ANSWERS[lang].format(r=number(result, lang), **fields),
        }

    return ("convert_units", frm, to, value), write


# ---------------------------------------------------------------------------------------------
# get_capital

# English name (the argument), capital, then the country as each language's request writes it:
# English, French and Italian with their "of" (de la / du / della ...), Spanish after "de", German after "von".
COUNTRIES: list[tuple[str, str, dict[str, str]]] = [
    (
        "France",
        "Paris",
        {"en": "France", "fr": "de la France", "es": "Francia", "de": "Frankreich", "it": "della Francia"},
    ),
    (
        "Germany",
        "Berlin",
        {"en": "Germany", "fr": "de l'Allemagne", "es": "Alemania", "de": "Deutschland", "it": "della Germania"},
    ),
    ("Spain", "Madrid", {"en": "Spain", "fr": "de l'Espagne", "es": "España", "de": "Spanien", "it": "della Spagna"}),
    ("Italy", "Rome", {"en": "Italy", "fr": "de l'Italie", "es": "Italia", "de": "Italien", "it": "dell'Italia"}),
    (
        "Portugal",
        "Lisbon",
        {"en": "Portugal", "fr": "du Portugal", "es": "Portugal", "de": "Portugal", "it": "del Portogallo"},
    ),
    ("Japan", "Tokyo", {"en": "Japan", "fr": "du Japon", "es": "Japón", "de": "Japan", "it": "del Giappone"}),
    ("Canada", "Ottawa", {"en": "Canada", "fr": "du Canada", "es": "Canadá", "de": "Kanada", "it": "del Canada"}),
    (
        "Australia",
        "Canberra",
        {"en": "Australia", "fr": "de l'Australie", "es": "Australia", "de": "Australien", "it": "dell'Australia"},
    ),
    ("Brazil", "Brasília", {"en": "Brazil", "fr": "du Brésil", "es": "Brasil", "de": "Brasilien", "it": "del Brasile"}),
    (
        "Argentina",
        "Buenos Aires",
        {"en": "Argentina", "fr": "de l'Argentine", "es": "Argentina", "de": "Argentinien", "it": "dell'Argentina"},
    ),
    (
        "Mexico",
        "Mexico City",
        {"en": "Mexico", "fr": "du Mexique", "es": "México", "de": "Mexiko", "it": "del Messico"},
    ),
    ("Egypt", "Cairo", {"en": "Egypt", "fr": "de l'Égypte", "es": "Egipto", "de": "Ägypten", "it": "dell'Egitto"}),
    ("Kenya", "Nairobi", {"en": "Kenya", "fr": "du Kenya", "es": "Kenia", "de": "Kenia", "it": "del Kenya"}),
    ("India", "New Delhi", {"en": "India", "fr": "de l'Inde", "es": "India", "de": "Indien", "it": "dell'India"}),
    ("China", "Beijing", {"en": "China", "fr": "de la Chine", "es": "China", "de": "China", "it": "della Cina"}),
    (
        "Norway",
        "Oslo",
        {"en": "Norway", "fr": "de la Norvège", "es": "Noruega", "de": "Norwegen", "it": "della Norvegia"},
    ),
    (
        "Sweden",
        "Stockholm",
        {"en": "Sweden", "fr": "de la Suède", "es": "Suecia", "de": "Schweden", "it": "della Svezia"},
    ),
    (
        "Finland",
        "Helsinki",
        {"en": "Finland", "fr": "de la Finlande", "es": "Finlandia", "de": "Finnland", "it": "della Finlandia"},
    ),
    (
        "Poland",
        "Warsaw",
        {"en": "Poland", "fr": "de la Pologne", "es": "Polonia", "de": "Polen", "it": "della Polonia"},
    ),
    (
        "Greece",
        "Athens",
        {"en": "Greece", "fr": "de la Grèce", "es": "Grecia", "de": "Griechenland", "it": "della Grecia"},
    ),
    (
        "Austria",
        "Vienna",
        {"en": "Austria", "fr": "de l'Autriche", "es": "Austria", "de": "Österreich", "it": "dell'Austria"},
    ),
    (
        "Switzerland",
        "Bern",
        {"en": "Switzerland", "fr": "de la Suisse", "es": "Suiza", "de": "der Schweiz", "it": "della Svizzera"},
    ),
    (
        "Netherlands",
        "Amsterdam",
        {
            "en": "the Netherlands",
            "fr": "des Pays-Bas",
            "es": "los Países Bajos",
            "de": "den Niederlanden",
            "it": "dei Paesi Bassi",
        },
    ),
    (
        "Ireland",
        "Dublin",
        {"en": "Ireland", "fr": "de l'Irlande", "es": "Irlanda", "de": "Irland", "it": "dell'Irlanda"},
    ),
    (
        "Turkey",
        "Ankara",
        {"en": "Turkey", "fr": "de la Turquie", "es": "Turquía", "de": "der Türkei", "it": "della Turchia"},
    ),
    ("Morocco", "Rabat", {"en": "Morocco", "fr": "du Maroc", "es": "Marruecos", "de": "Marokko", "it": "del Marocco"}),
    ("Chile", "Santiago", {"en": "Chile", "fr": "du Chili", "es": "Chile", "de": "Chile", "it": "del Cile"}),
    ("Peru", "Lima", {"en": "Peru", "fr": "du Pérou", "es": "Perú", "de": "Peru", "it": "del Perù"}),
    (
        "Thailand",
        "Bangkok",
        {"en": "Thailand", "fr": "de la Thaïlande", "es": "Tailandia", "de": "Thailand", "it": "della Thailandia"},
    ),
    ("Vietnam", "Hanoi", {"en": "Vietnam", "fr": "du Viêt Nam", "es": "Vietnam", "de": "Vietnam", "it": "del Vietnam"}),
    (
        "South Korea",
        "Seoul",
        {
            "en": "South Korea",
            "fr": "de la Corée du Sud",
            "es": "Corea del Sur",
            "de": "Südkorea",
            "it": "della Corea del Sud",
        },
    ),
    (
        "Hungary",
        "Budapest",
        {"en": "Hungary", "fr": "de la Hongrie", "es": "Hungría", "de": "Ungarn", "it": "dell'Ungheria"},
    ),
    (
        "Czechia",
        "Prague",
        {"en": "Czechia", "fr": "de la Tchéquie", "es": "Chequia", "de": "Tschechien", "it": "della Cechia"},
    ),
    (
        "Denmark",
        "Copenhagen",
        {"en": "Denmark", "fr": "du Danemark", "es": "Dinamarca", "de": "Dänemark", "it": "della Danimarca"},
    ),
    (
        "Romania",
        "Bucharest",
        {"en": "Romania", "fr": "de la Roumanie", "es": "Rumanía", "de": "Rumänien", "it": "della Romania"},
    ),
    (
        "Nigeria",
        "Abuja",
        {"en": "Nigeria", "fr": "du Nigeria", "es": "Nigeria", "de": "Nigeria", "it": "della Nigeria"},
    ),
]

CAPITAL_REQUESTS = {
    "en": ["What is the capital of {c}?", "Which city is the capital of {c}?", "Tell me the capital of {c}."],
    "fr": ["Quelle est la capitale {c} ?", "Quelle ville est la capitale {c} ?"],
    "es": ["¿Cuál es la capital de {c}?", "¿Qué ciudad es la capital de {c}?"],
    "de": ["Was ist die Hauptstadt von {c}?", "Wie heißt die Hauptstadt von {c}?"],
    "it": ["Qual è la capitale {c}?", "Quale città è la capitale {c}?"],
}
CAPITAL_ANSWERS = {
    "en": "The capital of {c} is {capital}.",
    "fr": "La capitale {c} est {capital}.",
    "es": "La capital de {c} es {capital}.",
    "de": "Die Hauptstadt von {c} ist {capital}.",
    "it": "La capitale {c} è {capital}.",
}
CAPITAL_REASONING = "Okay, we need the capital of {country}. Call get_capital."


def draw_capital(rng: random.Random, kind: str, lang: str) -> tuple[Key, Callable[[str], Drawn]]:
    country, capital, names = rng.choice(COUNTRIES)
    reasoning = CAPITAL_REASONING.format(country=country)

    def write(lang: str) -> Drawn:
        user = pick(rng, CAPITAL_REQUESTS[lang], c=names[lang])
        return {
            "user": user,
            "reasoning": reasoning,
            "arguments": {"country": country},
            "result": {"capital": capital},
            "final": CAPITAL_ANSWERS[lang].format(c=names[lang], capital=capital),
        }

    # The same country asked in another language is another request: there are only so many countries.
    return ("get_capital", country, lang), write


# ---------------------------------------------------------------------------------------------
# Rows

DRAWERS: dict[str, tuple[Callable[[random.Random, str, str], tuple[Key, Callable[[str], Drawn]]], list[str]]] = {
    "calculate": (draw_calculate, CALC_KINDS),
    "convert_units": (draw_convert_units, [str(i) for i in range(len(CONVERSIONS))]),
    "get_capital": (draw_capital, ["country"]),
}


def make_row(lang: str, system: str | None, tool: str, drawn: Drawn) -> dict[str, Any]:
    """One conversation in the messages format, with every tool offered."""
    instructions = [{"role": "system", "content": system}] if system else []
    return {
        "language": LANG_NAMES[lang],
        "messages": [
            *instructions,
            {"role": "user", "content": drawn["user"]},
            {
                "role": "assistant",
                "thinking": drawn["reasoning"],
                "content": "",
                "tool_calls": [{"type": "function", "function": {"name": tool, "arguments": drawn["arguments"]}}],
            },
            {"role": "tool", "name": tool, "content": json.dumps(drawn["result"], ensure_ascii=False)},
            {"role": "assistant", "content": drawn["final"]},
        ],
        "tools": TOOLS,
    }


def draw_requests(name: str, per_cell: int, used: set[Key]) -> Iterator[tuple[str, str, random.Random, Key, Drawn]]:
    """Yield ``(tool, lang, rng, key, drawn)`` for each fresh request of the draw called ``name``.

    Outer loop over the row index, inner over tool and language, so any prefix of a file is balanced.
    A request is keyed by its tool and values whatever the language, except a capital, keyed with the
    language too.
    """
    for i in range(per_cell):
        for tool in TOOL_NAMES:
            drawer, kinds = DRAWERS[tool]
            for li, lang in enumerate(LANGS):
                kind = kinds[(i + li) % len(kinds)]
                for attempt in range(1000):
                    rng = random.Random(f"{name}:{tool}:{lang}:{i}:{attempt}")
                    key, write = drawer(rng, kind, lang)
                    if key not in used:
                        break
                else:
                    raise RuntimeError(f"no fresh {tool}/{kind} request for {name} {lang} {i}")
                used.add(key)
                yield tool, lang, rng, key, write(lang)


def _generate_split(split: str, per_cell: int, used: set[Key]) -> tuple[list[dict[str, Any]], list[Key]]:
    rows, keys = [], []
    for tool, lang, rng, key, drawn in draw_requests(split, per_cell, used):
        keys.append(key)
        rows.append(make_row(lang, rng.choice(SYSTEM_PROMPTS), tool, drawn))
    return rows, keys


def generate_with_keys() -> dict[str, tuple[list[dict[str, Any]], list[Key]]]:
    """Rows and, row for row, the key of each request, per split."""
    used: set[Key] = set()
    # Held-out first, so its requests are reserved before training draws from the same space.
    heldout = _generate_split("heldout", HELDOUT_PER_CELL, used)
    train = _generate_split("train", TRAIN_PER_CELL, used)
    return {"train": train, "heldout": heldout}


def generate() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (training rows, held-out rows); no request appears in both or twice."""
    splits = generate_with_keys()
    return splits["train"][0], splits["heldout"][0]


def main(argv: list[str] | None = None) -> None:
    write_splits((__doc__ or "").splitlines()[0], generate, (TRAIN_FILE, HELDOUT_FILE), argv)


if __name__ == "__main__":
    main()
