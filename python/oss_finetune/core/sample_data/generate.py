"""Generate the project's multilingual reasoning sample (Multilingual-Thinking row format).

Run ``python -m oss_finetune.sample_data.generate`` to rewrite ``multilingual.jsonl`` and
``multilingual-heldout.jsonl`` next to this file. The output depends only on this file: every random
choice comes from a ``random.Random`` seeded with a string naming the split, family, language and
row, so the committed files can be checked against a fresh run.

Every number in a reasoning trace or answer is computed here; the templates only supply words.
Standard library only, so the generator runs before any dependency is installed.
"""

from __future__ import annotations

import argparse
import calendar
import datetime as dt
import json
import random
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRAIN_FILE = HERE / "multilingual.jsonl"
HELDOUT_FILE = HERE / "multilingual-heldout.jsonl"

LANGS = ["en", "fr", "es", "de", "it"]
LANG_NAMES = {"en": "English", "fr": "French", "es": "Spanish", "de": "German", "it": "Italian"}
FAMILIES = ["arithmetic", "units", "dates", "logic", "percentages", "equations"]

# A phrase table: language -> name -> a template, a list of templates to pick from, or a function.
Phrases = dict[str, dict[str, Any]]
# The values a template is formatted with.
Fields = dict[str, Any]
# A problem's language-independent key; two rows with one key are the same problem.
Key = tuple[Any, ...]
# render(rng, lang, user_lang) -> (user, analysis, final)
Render = Callable[[random.Random, str, str], tuple[str, str, str]]

TRAIN_PER_CELL = 12  # 5 languages x 6 families x 12 = 360 rows
HELDOUT_PER_CELL = 2  # 60 rows
# Multilingual-Thinking mostly asks in English and reasons in another language; one row in three
# asks in the reasoning language itself so both cases are seen.
NATIVE_QUESTION_EVERY = 3

DEVELOPERS = [
    "You are a patient maths tutor. Keep the final answer short.",
    "Answer in one short sentence.",
    "You are a careful assistant. Give the result without the working.",
    "Be brief and precise in your reply.",
    "You are a friendly tutor for school pupils. Reply concisely.",
    "State only the result, in a single sentence.",
    "You are a helpful assistant who double-checks every calculation.",
    "Keep your reply under twenty words.",
    "You are a precise assistant. No explanation in the answer.",
    "Reply briefly, like a calculator that can talk.",
]

# ---------------------------------------------------------------------------------------------
# Formatting helpers


def num(x: int | Fraction, lang: str) -> str:
    """A number as it is written in ``lang``: decimal comma outside English, no grouping."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    for places in (1, 2, 3):
        scaled = x * 10**places
        if scaled.denominator == 1:
            text = f"{float(x):.{places}f}"
            return text.replace(".", ",") if lang != "en" else text
    raise ValueError(f"{x} has no short decimal form")


def pct(x: int | Fraction, lang: str) -> str:
    # French, Spanish and German put a space before the percent sign.
    return f"{num(x, lang)} %" if lang in ("fr", "es", "de") else f"{num(x, lang)}%"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def it_il(n: object) -> str:
    """Italian article before a number: l'80%, l'8 marzo, but il 15%."""
    s = str(n)
    return "l'" if s[0] == "8" or s in ("1", "11") else "il "


def it_prep(prep: str, n: object) -> str:
    """Italian articulated preposition before a number: dall'8, all'11, del 20."""
    return f"{prep}ll'" if it_il(n) == "l'" else f"{prep}l "


def fr_de(word: str) -> str:
    """French "de" before a month: d'avril, d'août, d'octobre, de mai."""
    return f"d'{word}" if word[:1] in ("a", "o") else f"de {word}"


def fr_que(name: str) -> str:
    return f"qu'{name}" if name[0] in "AEIOU" else f"que {name}"


def pick(rng: random.Random, options: list[str], fields: Fields) -> str:
    return rng.choice(options).format(**fields)


# Every analysis opens with its language's word for "okay", one token of the tokenizer that no other
# language's analysis starts with, then one of the openers. The first token of the reasoning thus
# says which language it is in, as "Okay, ..." does in many real reasoning traces; a tiny model that
# must follow "reasoning language: X" decides at that token, instead of at a prefix shared by two
# languages ("Proced-" began Spanish and Italian openers alike) where it tended to mix them.
MARKERS = {"en": "Okay,", "fr": "Bon,", "es": "Bueno,", "de": "Gut,", "it": "Ora"}

OPENERS = {
    "en": [
        "let me work through this step by step.",
        "I'll solve this in small steps.",
        "let's break the problem down.",
        "step by step, then.",
    ],
    "fr": [
        "procédons étape par étape.",
        "je vais résoudre cela pas à pas.",
        "décomposons le problème.",
        "allons-y étape par étape.",
    ],
    "es": [
        "vamos a resolverlo paso a paso.",
        "lo resuelvo por partes.",
        "descompongamos el problema.",
        "procedamos paso a paso.",
    ],
    "de": [
        "ich gehe Schritt für Schritt vor.",
        "lösen wir das schrittweise.",
        "zerlegen wir die Aufgabe in Schritte.",
        "gehen wir das der Reihe nach durch.",
    ],
    "it": [
        "procediamo passo dopo passo.",
        "risolvo il problema un passo alla volta.",
        "scomponiamo il problema.",
        "andiamo per gradi.",
    ],
}

CONCLUSIONS = {
    "en": ["So the answer is {ans}.", "The answer is therefore {ans}.", "That gives {ans}."],
    "fr": ["La réponse est donc {ans}.", "Donc la réponse est {ans}.", "On obtient {ans}."],
    "es": ["Así que la respuesta es {ans}.", "Por lo tanto, la respuesta es {ans}.", "Resultado: {ans}."],
    "de": ["Die Antwort ist also {ans}.", "Also lautet die Antwort {ans}.", "Ergebnis: {ans}."],
    "it": ["Quindi la risposta è {ans}.", "La risposta è dunque {ans}.", "Risultato: {ans}."],
}


def assemble(rng: random.Random, lang: str, task: str, steps: list[str], ans: str) -> str:
    # The language's marker and an opener come first (see MARKERS), then the task restatement.
    opener = f"{MARKERS[lang]} {rng.choice(OPENERS[lang])}"
    tail = pick(rng, CONCLUSIONS[lang], {"ans": ans})
    return " ".join([opener, task] + steps + [tail])


# ---------------------------------------------------------------------------------------------
# Arithmetic: multi-step expressions and one word problem

ARITH: Phrases = {
    "en": {
        "q": ["What is {expr}?", "Compute {expr}.", "Calculate {expr}.", "Evaluate {expr}."],
        "task": [
            "The user wants the value of {expr}.",
            "We need to evaluate {expr}.",
            "The task is to compute {expr}.",
        ],
        "mul_first": [
            "Multiplication comes before addition and subtraction: {a} × {b} = {p}.",
            "First the product: {a} × {b} = {p}.",
        ],
        "add": ["Then add {y}: {x} + {y} = {z}.", "Adding {y} gives {x} + {y} = {z}."],
        "sub": ["Then subtract {y}: {x} - {y} = {z}.", "Taking away {y} leaves {x} - {y} = {z}."],
        "paren": ["Parentheses first: {a} + {b} = {s}.", "Start inside the brackets: {a} + {b} = {s}."],
        "mul_then": ["Then multiply by {y}: {x} × {y} = {z}.", "Multiplying by {y} gives {x} × {y} = {z}."],
        "two": [
            "Both products first: {a} × {b} = {p} and {c} × {d} = {q}.",
            "Work out the products: {a} × {b} = {p}, {c} × {d} = {q}.",
        ],
        "final": ["The result is {r}.", "{expr} = {r}.", "It comes to {r}."],
        "box_q": [
            "A shop receives {n} boxes of {k} bottles each. It sells {s} bottles and {g} break. "
            "How many bottles are left?"
        ],
        "box_task": ["We need the number of bottles left.", "The question asks how many bottles remain."],
        "box_total": ["In total there are {n} × {k} = {t} bottles.", "Total bottles: {n} × {k} = {t}."],
        "box_sold": ["Remove the sold ones: {t} - {s} = {u}.", "After the sales, {t} - {s} = {u} remain."],
        "box_broken": ["Remove the broken ones too: {u} - {g} = {r}.", "Then the broken bottles: {u} - {g} = {r}."],
        "box_final": ["{r} bottles are left.", "There are {r} bottles left."],
        "box_ans": "{r} bottles",
    },
    "fr": {
        "q": ["Combien font {expr} ?", "Calcule {expr}.", "Quelle est la valeur de {expr} ?"],
        "task": [
            "L'utilisateur veut la valeur de {expr}.",
            "Il faut calculer {expr}.",
            "On me demande d'évaluer {expr}.",
        ],
        "mul_first": [
            "La multiplication passe avant l'addition et la soustraction : {a} × {b} = {p}.",
            "D'abord le produit : {a} × {b} = {p}.",
        ],
        "add": ["Ensuite, on ajoute {y} : {x} + {y} = {z}.", "En ajoutant {y}, on obtient {x} + {y} = {z}."],
        "sub": ["Puis on retire {y} : {x} - {y} = {z}.", "En soustrayant {y}, il reste {x} - {y} = {z}."],
        "paren": ["D'abord la parenthèse : {a} + {b} = {s}.", "On commence par la parenthèse : {a} + {b} = {s}."],
        "mul_then": ["Puis on multiplie par {y} : {x} × {y} = {z}.", "En multipliant par {y} : {x} × {y} = {z}."],
        "two": [
            "D'abord les deux produits : {a} × {b} = {p} et {c} × {d} = {q}.",
            "On calcule les produits : {a} × {b} = {p}, {c} × {d} = {q}.",
        ],
        "final": ["Le résultat est {r}.", "{expr} = {r}.", "Cela fait {r}."],
        "box_q": [
            "Un magasin reçoit {n} cartons de {k} bouteilles chacun. Il vend {s} bouteilles et "
            "{g} se cassent. Combien de bouteilles reste-t-il ?"
        ],
        "box_task": [
            "Il faut trouver combien de bouteilles il reste.",
            "On cherche le nombre de bouteilles restantes.",
        ],
        "box_total": ["Au total, il y a {n} × {k} = {t} bouteilles.", "Nombre total de bouteilles : {n} × {k} = {t}."],
        "box_sold": [
            "On retire les bouteilles vendues : {t} - {s} = {u}.",
            "Après les ventes, il en reste {t} - {s} = {u}.",
        ],
        "box_broken": [
            "On enlève aussi les bouteilles cassées : {u} - {g} = {r}.",
            "Puis les bouteilles cassées : {u} - {g} = {r}.",
        ],
        "box_final": ["Il reste {r} bouteilles.", "Il y a encore {r} bouteilles."],
        "box_ans": "{r} bouteilles",
    },
    "es": {
        "q": ["¿Cuánto es {expr}?", "Calcula {expr}.", "¿Cuál es el valor de {expr}?"],
        "task": ["El usuario quiere el valor de {expr}.", "Hay que calcular {expr}.", "Me piden evaluar {expr}."],
        "mul_first": [
            "La multiplicación va antes que la suma y la resta: {a} × {b} = {p}.",
            "Primero el producto: {a} × {b} = {p}.",
        ],
        "add": ["Luego sumo {y}: {x} + {y} = {z}.", "Al sumar {y} queda {x} + {y} = {z}."],
        "sub": ["Después resto {y}: {x} - {y} = {z}.", "Al restar {y} quedan {x} - {y} = {z}."],
        "paren": [
            "Primero el paréntesis: {a} + {b} = {s}.",
            "Empiezo por lo que está entre paréntesis: {a} + {b} = {s}.",
        ],
        "mul_then": ["Luego multiplico por {y}: {x} × {y} = {z}.", "Al multiplicar por {y}: {x} × {y} = {z}."],
        "two": [
            "Primero los dos productos: {a} × {b} = {p} y {c} × {d} = {q}.",
            "Calculo los productos: {a} × {b} = {p}, {c} × {d} = {q}.",
        ],
        "final": ["El resultado es {r}.", "{expr} = {r}.", "Da {r}."],
        "box_q": [
            "Una tienda recibe {n} cajas de {k} botellas cada una. Vende {s} botellas y se rompen "
            "{g}. ¿Cuántas botellas quedan?"
        ],
        "box_task": ["Hay que saber cuántas botellas quedan.", "Se pregunta cuántas botellas sobran."],
        "box_total": ["En total hay {n} × {k} = {t} botellas.", "Total de botellas: {n} × {k} = {t}."],
        "box_sold": ["Quito las vendidas: {t} - {s} = {u}.", "Tras las ventas quedan {t} - {s} = {u}."],
        "box_broken": ["Quito también las rotas: {u} - {g} = {r}.", "Luego las rotas: {u} - {g} = {r}."],
        "box_final": ["Quedan {r} botellas.", "Sobran {r} botellas."],
        "box_ans": "{r} botellas",
    },
    "de": {
        "q": ["Was ergibt {expr}?", "Berechne {expr}.", "Welchen Wert hat {expr}?"],
        "task": [
            "Der Nutzer möchte den Wert von {expr} wissen.",
            "Es gilt, {expr} zu berechnen.",
            "Gesucht ist der Wert von {expr}.",
        ],
        "mul_first": ["Punkt vor Strich, also zuerst {a} × {b} = {p}.", "Zuerst das Produkt: {a} × {b} = {p}."],
        "add": ["Dann {y} addieren: {x} + {y} = {z}.", "Plus {y} ergibt {x} + {y} = {z}."],
        "sub": ["Dann {y} abziehen: {x} - {y} = {z}.", "Minus {y} ergibt {x} - {y} = {z}."],
        "paren": ["Zuerst die Klammer: {a} + {b} = {s}.", "Ich beginne mit der Klammer: {a} + {b} = {s}."],
        "mul_then": ["Dann mit {y} multiplizieren: {x} × {y} = {z}.", "Mal {y} ergibt {x} × {y} = {z}."],
        "two": [
            "Zuerst beide Produkte: {a} × {b} = {p} und {c} × {d} = {q}.",
            "Ich rechne die Produkte aus: {a} × {b} = {p}, {c} × {d} = {q}.",
        ],
        "final": ["Das Ergebnis ist {r}.", "{expr} = {r}.", "Es ergibt {r}."],
        "box_q": [
            "Ein Laden bekommt {n} Kisten mit je {k} Flaschen. Er verkauft {s} Flaschen, und {g} "
            "gehen kaputt. Wie viele Flaschen sind noch übrig?"
        ],
        "box_task": ["Gesucht ist die Zahl der übrigen Flaschen.", "Es geht darum, wie viele Flaschen übrig bleiben."],
        "box_total": ["Insgesamt sind es {n} × {k} = {t} Flaschen.", "Gesamtzahl der Flaschen: {n} × {k} = {t}."],
        "box_sold": ["Die verkauften abziehen: {t} - {s} = {u}.", "Nach dem Verkauf bleiben {t} - {s} = {u}."],
        "box_broken": ["Dann die kaputten abziehen: {u} - {g} = {r}.", "Zuletzt die zerbrochenen: {u} - {g} = {r}."],
        "box_final": ["Es bleiben {r} Flaschen übrig.", "Übrig sind {r} Flaschen."],
        "box_ans": "{r} Flaschen",
    },
    "it": {
        "q": ["Quanto fa {expr}?", "Calcola {expr}.", "Qual è il valore di {expr}?"],
        "task": [
            "L'utente vuole il valore di {expr}.",
            "Bisogna calcolare {expr}.",
            "Mi si chiede di calcolare {expr}.",
        ],
        "mul_first": [
            "La moltiplicazione viene prima di somma e sottrazione: {a} × {b} = {p}.",
            "Prima il prodotto: {a} × {b} = {p}.",
        ],
        "add": ["Poi aggiungo {y}: {x} + {y} = {z}.", "Sommando {y} si ottiene {x} + {y} = {z}."],
        "sub": ["Poi sottraggo {y}: {x} - {y} = {z}.", "Togliendo {y} resta {x} - {y} = {z}."],
        "paren": ["Prima la parentesi: {a} + {b} = {s}.", "Parto dalla parentesi: {a} + {b} = {s}."],
        "mul_then": ["Poi moltiplico per {y}: {x} × {y} = {z}.", "Moltiplicando per {y}: {x} × {y} = {z}."],
        "two": [
            "Prima i due prodotti: {a} × {b} = {p} e {c} × {d} = {q}.",
            "Calcolo i prodotti: {a} × {b} = {p}, {c} × {d} = {q}.",
        ],
        "final": ["Il risultato è {r}.", "{expr} = {r}.", "Fa {r}."],
        "box_q": [
            "Un negozio riceve {n} scatole da {k} bottiglie ciascuna. Ne vende {s} e {g} si rompono. "
            "Quante bottiglie restano?"
        ],
        "box_task": ["Bisogna trovare quante bottiglie restano.", "La domanda è quante bottiglie rimangono."],
        "box_total": ["In totale ci sono {n} × {k} = {t} bottiglie.", "Bottiglie totali: {n} × {k} = {t}."],
        "box_sold": ["Tolgo quelle vendute: {t} - {s} = {u}.", "Dopo le vendite ne restano {t} - {s} = {u}."],
        "box_broken": ["Tolgo anche quelle rotte: {u} - {g} = {r}.", "Poi quelle rotte: {u} - {g} = {r}."],
        "box_final": ["Restano {r} bottiglie.", "Rimangono {r} bottiglie."],
        "box_ans": "{r} bottiglie",
    },
}

ARITH_KINDS = ["mul_add_sub", "paren_mul_sub", "two_products", "boxes"]


def make_arithmetic(rng: random.Random, kind: str) -> tuple[Key, Render]:
    if kind == "mul_add_sub":
        a, b, c = rng.randint(6, 29), rng.randint(3, 12), rng.randint(11, 150)
        p = a * b
        d = rng.randint(5, p + c - 1)
        values: Fields = dict(a=a, b=b, c=c, d=d, expr=f"{a} × {b} + {c} - {d}", r=p + c - d)
    elif kind == "paren_mul_sub":
        a, b, c = rng.randint(5, 40), rng.randint(3, 30), rng.randint(3, 9)
        s = a + b
        d = rng.randint(4, s * c - 1)
        values = dict(a=a, b=b, c=c, d=d, expr=f"({a} + {b}) × {c} - {d}", r=s * c - d)
    elif kind == "two_products":
        while True:
            a, b, c, d = (rng.randint(6, 25), rng.randint(4, 12), rng.randint(3, 15), rng.randint(2, 9))
            if a * b > c * d:
                break
        values = dict(a=a, b=b, c=c, d=d, expr=f"{a} × {b} - {c} × {d}", r=a * b - c * d)
    else:
        n, k = rng.randint(3, 12), rng.choice([6, 8, 10, 12, 15, 20, 24])
        t = n * k
        s = rng.randint(t // 4, t // 2)
        g = rng.randint(1, 9)
        values = dict(n=n, k=k, s=s, g=g, t=t, u=t - s, r=t - s - g)
    key = ("arithmetic", kind) + tuple(sorted((k, v) for k, v in values.items() if k != "expr"))

    def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        v = values
        T, U = ARITH[lang], ARITH[user_lang]
        if kind == "boxes":
            user = pick(rng, U["box_q"], v)
            steps = [pick(rng, T["box_total"], v), pick(rng, T["box_sold"], v), pick(rng, T["box_broken"], v)]
            analysis = assemble(rng, lang, pick(rng, T["box_task"], v), steps, T["box_ans"].format(**v))
            return user, analysis, pick(rng, U["box_final"], v)
        user = pick(rng, U["q"], v)
        a, b, c, d = v["a"], v["b"], v["c"], v["d"]
        if kind == "mul_add_sub":
            p = a * b
            steps = [
                pick(rng, T["mul_first"], dict(a=a, b=b, p=p)),
                pick(rng, T["add"], dict(x=p, y=c, z=p + c)),
                pick(rng, T["sub"], dict(x=p + c, y=d, z=v["r"])),
            ]
        elif kind == "paren_mul_sub":
            s = a + b
            steps = [
                pick(rng, T["paren"], dict(a=a, b=b, s=s)),
                pick(rng, T["mul_then"], dict(x=s, y=c, z=s * c)),
                pick(rng, T["sub"], dict(x=s * c, y=d, z=v["r"])),
            ]
        else:
            steps = [
                pick(rng, T["two"], dict(a=a, b=b, c=c, d=d, p=a * b, q=c * d)),
                pick(rng, T["sub"], dict(x=a * b, y=c * d, z=v["r"])),
            ]
        analysis = assemble(rng, lang, pick(rng, T["task"], v), steps, str(v["r"]))
        return user, analysis, pick(rng, U["final"], v)

    return key, render


# ---------------------------------------------------------------------------------------------
# Unit conversions

# Per language: (singular, plural, "one <unit>" with its article).
UNIT_NAMES = {
    "km": {
        "en": ("kilometer", "kilometers", "one kilometer"),
        "fr": ("kilomètre", "kilomètres", "un kilomètre"),
        "es": ("kilómetro", "kilómetros", "un kilómetro"),
        "de": ("Kilometer", "Kilometer", "ein Kilometer"),
        "it": ("chilometro", "chilometri", "un chilometro"),
    },
    "m": {
        "en": ("meter", "meters", "one meter"),
        "fr": ("mètre", "mètres", "un mètre"),
        "es": ("metro", "metros", "un metro"),
        "de": ("Meter", "Meter", "ein Meter"),
        "it": ("metro", "metri", "un metro"),
    },
    "cm": {
        "en": ("centimeter", "centimeters", "one centimeter"),
        "fr": ("centimètre", "centimètres", "un centimètre"),
        "es": ("centímetro", "centímetros", "un centímetro"),
        "de": ("Zentimeter", "Zentimeter", "ein Zentimeter"),
        "it": ("centimetro", "centimetri", "un centimetro"),
    },
    "kg": {
        "en": ("kilogram", "kilograms", "one kilogram"),
        "fr": ("kilogramme", "kilogrammes", "un kilogramme"),
        "es": ("kilogramo", "kilogramos", "un kilogramo"),
        "de": ("Kilogramm", "Kilogramm", "ein Kilogramm"),
        "it": ("chilogrammo", "chilogrammi", "un chilogrammo"),
    },
    "g": {
        "en": ("gram", "grams", "one gram"),
        "fr": ("gramme", "grammes", "un gramme"),
        "es": ("gramo", "gramos", "un gramo"),
        "de": ("Gramm", "Gramm", "ein Gramm"),
        "it": ("grammo", "grammi", "un grammo"),
    },
    "L": {
        "en": ("liter", "liters", "one liter"),
        "fr": ("litre", "litres", "un litre"),
        "es": ("litro", "litros", "un litro"),
        "de": ("Liter", "Liter", "ein Liter"),
        "it": ("litro", "litri", "un litro"),
    },
    "mL": {
        "en": ("milliliter", "milliliters", "one milliliter"),
        "fr": ("millilitre", "millilitres", "un millilitre"),
        "es": ("mililitro", "mililitros", "un mililitro"),
        "de": ("Milliliter", "Milliliter", "ein Milliliter"),
        "it": ("millilitro", "millilitri", "un millilitro"),
    },
    "h": {
        "en": ("hour", "hours", "one hour"),
        "fr": ("heure", "heures", "une heure"),
        "es": ("hora", "horas", "una hora"),
        "de": ("Stunde", "Stunden", "eine Stunde"),
        "it": ("ora", "ore", "un'ora"),
    },
    "min": {
        "en": ("minute", "minutes", "one minute"),
        "fr": ("minute", "minutes", "une minute"),
        "es": ("minuto", "minutos", "un minuto"),
        "de": ("Minute", "Minuten", "eine Minute"),
        "it": ("minuto", "minuti", "un minuto"),
    },
    "s": {
        "en": ("second", "seconds", "one second"),
        "fr": ("seconde", "secondes", "une seconde"),
        "es": ("segundo", "segundos", "un segundo"),
        "de": ("Sekunde", "Sekunden", "eine Sekunde"),
        "it": ("secondo", "secondi", "un secondo"),
    },
}
# German plurals after "in" asking "wie viel": in Metern, in Litern; the rest do not change.
GERMAN_DATIVE = {
    "Kilometer": "Kilometern",
    "Meter": "Metern",
    "Zentimeter": "Zentimetern",
    "Liter": "Litern",
    "Milliliter": "Millilitern",
}
FEMININE_UNITS = {"h"}  # hora / ora: cuántas, quante
CONVERSIONS = [
    ("km", "m", 1000),
    ("m", "cm", 100),
    ("kg", "g", 1000),
    ("L", "mL", 1000),
    ("h", "min", 60),
    ("min", "s", 60),
]

UNITS: Phrases = {
    "en": {
        "q": ["How many {to_pl} are in {v} {frm}?", "Convert {v} {frm} to {to_pl}.", "What is {v} {frm} in {to_pl}?"],
        "task": ["We need to convert {v} {frm} into {to_pl}.", "The user wants {v} {frm} expressed in {to_pl}."],
        "factor": ["{One} equals {f} {small_pl}.", "There are {f} {small_pl} in {one}."],
        "mul": [
            "Going to the smaller unit means multiplying by {f}: {v} × {f} = {r}.",
            "So multiply: {v} × {f} = {r}.",
        ],
        "div": ["Going to the larger unit means dividing by {f}: {v} ÷ {f} = {r}.", "So divide: {v} ÷ {f} = {r}."],
        "check": ["Check: {r} {op} {f} = {v}.", "Going back, {r} {op} {f} gives {v} again."],
        "final": ["{v} {frm} is {r} {to}.", "That is {r} {to}."],
    },
    "fr": {
        "q": [
            "Combien {de_to} y a-t-il dans {v} {frm} ?",
            "Convertis {v} {frm} en {to_pl}.",
            "Combien font {v} {frm} en {to_pl} ?",
        ],
        "task": ["Il faut convertir {v} {frm} en {to_pl}.", "L'utilisateur veut exprimer {v} {frm} en {to_pl}."],
        "factor": ["{One} vaut {f} {small_pl}.", "Il y a {f} {small_pl} dans {one}."],
        "mul": [
            "On passe à une unité plus petite, donc on multiplie par {f} : {v} × {f} = {r}.",
            "Il suffit de multiplier : {v} × {f} = {r}.",
        ],
        "div": [
            "On passe à une unité plus grande, donc on divise par {f} : {v} ÷ {f} = {r}.",
            "Il suffit de diviser : {v} ÷ {f} = {r}.",
        ],
        "check": ["Vérification : {r} {op} {f} = {v}.", "En sens inverse, {r} {op} {f} redonne {v}."],
        "final": ["{v} {frm} font {r} {to}.", "Cela fait {r} {to}."],
    },
    "es": {
        "q": [
            "¿{Cuantos} {to_pl} hay en {v} {frm}?",
            "Convierte {v} {frm} a {to_pl}.",
            "¿A cuánto equivalen {v} {frm} en {to_pl}?",
        ],
        "task": ["Hay que convertir {v} {frm} a {to_pl}.", "El usuario quiere expresar {v} {frm} en {to_pl}."],
        "factor": ["{One} equivale a {f} {small_pl}.", "En {one} hay {f} {small_pl}."],
        "mul": [
            "Paso a una unidad más pequeña, así que multiplico por {f}: {v} × {f} = {r}.",
            "Basta con multiplicar: {v} × {f} = {r}.",
        ],
        "div": [
            "Paso a una unidad más grande, así que divido entre {f}: {v} ÷ {f} = {r}.",
            "Basta con dividir: {v} ÷ {f} = {r}.",
        ],
        "check": ["Compruebo: {r} {op} {f} = {v}.", "Al revés, {r} {op} {f} vuelve a dar {v}."],
        "final": ["{v} {frm} son {r} {to}.", "Son {r} {to}."],
    },
    "de": {
        "q": [
            "Wie viele {to_pl} sind {v} {frm}?",
            "Rechne {v} {frm} in {to_pl} um.",
            "Wie viel sind {v} {frm} in {to_dat}?",
        ],
        "task": [
            "{v} {frm} sollen in {to_pl} umgerechnet werden.",
            "Der Nutzer will {v} {frm} in {to_dat} ausdrücken.",
        ],
        "factor": ["{One} hat {f} {small_pl}.", "{One} sind {f} {small_pl}."],
        "mul": [
            "Zur kleineren Einheit wird mit {f} multipliziert: {v} × {f} = {r}.",
            "Also multiplizieren: {v} × {f} = {r}.",
        ],
        "div": ["Zur größeren Einheit wird durch {f} geteilt: {v} ÷ {f} = {r}.", "Also dividieren: {v} ÷ {f} = {r}."],
        "check": ["Probe: {r} {op} {f} = {v}.", "Rückwärts ergibt {r} {op} {f} wieder {v}."],
        "final": ["{v} {frm} sind {r} {to}.", "Das sind {r} {to}."],
    },
    "it": {
        "q": [
            "{Quanti} {to_pl} ci sono in {v} {frm}?",
            "Converti {v} {frm} in {to_pl}.",
            "A quanto corrispondono {v} {frm} in {to_pl}?",
        ],
        "task": ["Bisogna convertire {v} {frm} in {to_pl}.", "L'utente vuole esprimere {v} {frm} in {to_pl}."],
        "factor": ["{One} equivale a {f} {small_pl}.", "In {one} ci sono {f} {small_pl}."],
        "mul": [
            "Si passa a un'unità più piccola, quindi si moltiplica per {f}: {v} × {f} = {r}.",
            "Basta moltiplicare: {v} × {f} = {r}.",
        ],
        "div": [
            "Si passa a un'unità più grande, quindi si divide per {f}: {v} ÷ {f} = {r}.",
            "Basta dividere: {v} ÷ {f} = {r}.",
        ],
        "check": ["Verifica: {r} {op} {f} = {v}.", "Al contrario, {r} {op} {f} ridà {v}."],
        "final": ["{v} {frm} sono {r} {to}.", "Sono {r} {to}."],
    },
}

UNIT_KINDS = ["down", "up"]  # down: large unit to small (multiply); up: small to large (divide)


def _short_decimal(rng: random.Random, low: int, high: int) -> Fraction:
    while True:
        den = rng.choice([1, 1, 2, 4, 10])
        value = Fraction(rng.randint(low * den, high * den), den)
        if value != 1:
            return value


def make_units(rng: random.Random, kind: str) -> tuple[Key, Render]:
    big, small, f = rng.choice(CONVERSIONS)
    big_value = _short_decimal(rng, 2 if kind == "down" else 0, 9)
    if big_value == 0:
        big_value = Fraction(1, 2)
    small_value = big_value * f
    if kind == "down":
        frm, to, v, r = big, small, big_value, small_value
    else:
        frm, to, v, r = small, big, small_value, big_value
    key = ("units", kind, frm, to, v)

    def fields(lang: str) -> Fields:
        to_pl = UNIT_NAMES[to][lang][1]
        one = UNIT_NAMES[big][lang][2]
        fem = to in FEMININE_UNITS
        return dict(
            v=num(v, lang),
            r=num(r, lang),
            f=f,
            frm=frm,
            to=to,
            to_pl=to_pl,
            small_pl=UNIT_NAMES[small][lang][1],
            one=one,
            One=cap(one),
            op="÷" if kind == "down" else "×",
            de_to=("d'" + to_pl) if to_pl[0] in "aeiouh" else ("de " + to_pl),
            to_dat=GERMAN_DATIVE.get(to_pl, to_pl),
            Cuantos="Cuántas" if fem else "Cuántos",
            Quanti="Quante" if fem else "Quanti",
        )

    def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        T, U = UNITS[lang], UNITS[user_lang]
        fl = fields(lang)
        steps = [pick(rng, T["factor"], fl), pick(rng, T["mul" if kind == "down" else "div"], fl)]
        if rng.random() < 0.5:
            steps.append(pick(rng, T["check"], fl))
        analysis = assemble(rng, lang, pick(rng, T["task"], fl), steps, f"{fl['r']} {to}")
        fu = fields(user_lang)
        return pick(rng, U["q"], fu), analysis, pick(rng, U["final"], fu)

    return key, render


# ---------------------------------------------------------------------------------------------
# Dates: weekdays after/before n days, days between two dates, duration between two times

WEEKDAYS = {
    "en": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "fr": ["lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche"],
    "es": ["lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo"],
    "de": ["Montag", "Dienstag", "Mittwoch", "Donnerstag", "Freitag", "Samstag", "Sonntag"],
    "it": ["lunedì", "martedì", "mercoledì", "giovedì", "venerdì", "sabato", "domenica"],
}
MONTHS = {
    "en": [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    "fr": [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    "es": [
        "enero",
        "febrero",
        "marzo",
        "abril",
        "mayo",
        "junio",
        "julio",
        "agosto",
        "septiembre",
        "octubre",
        "noviembre",
        "diciembre",
    ],
    "de": [
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
    ],
    "it": [
        "gennaio",
        "febbraio",
        "marzo",
        "aprile",
        "maggio",
        "giugno",
        "luglio",
        "agosto",
        "settembre",
        "ottobre",
        "novembre",
        "dicembre",
    ],
}


def day_month(d: dt.date, lang: str) -> str:
    m = MONTHS[lang][d.month - 1]
    return {
        "en": f"{m} {d.day}",
        "fr": f"{d.day} {m}",
        "es": f"{d.day} de {m}",
        "de": f"{d.day}. {m}",
        "it": f"{d.day} {m}",
    }[lang]


def with_year(d: dt.date, lang: str) -> str:
    sep = {"en": ", ", "es": " de "}.get(lang, " ")
    return f"{day_month(d, lang)}{sep}{d.year}"


def clock(h: int, m: int, lang: str) -> str:
    return f"{h} h {m:02d}" if lang == "fr" else f"{h}:{m:02d}"


DURATION_WORDS = {
    "en": (("hour", "hours"), ("minute", "minutes"), "and"),
    "fr": (("heure", "heures"), ("minute", "minutes"), "et"),
    "es": (("hora", "horas"), ("minuto", "minutos"), "y"),
    "de": (("Stunde", "Stunden"), ("Minute", "Minuten"), "und"),
    "it": (("ora", "ore"), ("minuto", "minuti"), "e"),
}


def duration(hours: int, minutes: int, lang: str) -> str:
    (h1, hn), (m1, mn), conj = DURATION_WORDS[lang]
    return f"{hours} {h1 if hours == 1 else hn} {conj} {minutes} {m1 if minutes == 1 else mn}"


DATES: Phrases = {
    "en": {
        "wd_q_fwd": [
            "Today is {day}. What day of the week will it be in {n} days?",
            "If today is {day}, which weekday is it {n} days from now?",
        ],
        "wd_q_back": [
            "Today is {day}. What day of the week was it {n} days ago?",
            "If today is {day}, which weekday was it {n} days ago?",
        ],
        "wd_task_fwd": [
            "We start on {day} and go {n} days forward.",
            "The question is which weekday comes {n} days after {day}.",
        ],
        "wd_task_back": [
            "We start on {day} and go {n} days back.",
            "The question is which weekday was {n} days before {day}.",
        ],
        "wd_weeks": [
            "A week has 7 days and {n} = {w} × 7 + {k}.",
            "Since {n} = {w} × 7 + {k}, only the remainder {k} matters.",
        ],
        "wd_full": ["Whole weeks land on {day} again.", "After the full weeks it is still {day}."],
        "wd_count_fwd": ["Then {k} more: {seq}.", "Counting on {k}: {seq}."],
        "wd_count_back": ["Then {k} back: {seq}.", "Counting back {k}: {seq}."],
        "wd_final_fwd": ["It will be {ans}.", "In {n} days it will be {ans}."],
        "wd_final_back": ["It was {ans}.", "{n} days ago it was {ans}."],
        "db_q": ["How many days are there from {d1} to {d2y}?", "How many days pass between {d1} and {d2y}?"],
        "db_task": ["We count the days from {d1} to {d2}.", "The user wants the number of days between {d1} and {d2}."],
        "db_first": [
            "{M1} has {dim} days, so {dim} - {a1} = {x} days remain after {d1}.",
            "From {d1} to the end of {m1}: {dim} - {a1} = {x} days.",
        ],
        "db_mid": ["All of {mm} adds {mdays} days.", "{MM} contributes its {mdays} days."],
        "db_last": ["Then {a2} days of {m2} up to {d2}.", "In {m2} we count {a2} days up to {d2}."],
        "db_sum": ["Total: {expr} = {r} days.", "Adding up: {expr} = {r}."],
        "db_ans": "{r} days",
        "db_final": ["There are {r} days.", "{r} days."],
        "tm_q": [
            "A train leaves at {t1} and arrives at {t2}. How long is the trip?",
            "A meeting starts at {t1} and ends at {t2}. How long does it last?",
        ],
        "tm_task": ["We need the time between {t1} and {t2}.", "The user wants the length of time from {t1} to {t2}."],
        "tm_minutes": [
            "In minutes after midnight, {t1} is {h1} × 60 + {m1} = {a} and {t2} is {h2} × 60 + {m2} = {b}.",
            "Converting both times to minutes: {t1} → {h1} × 60 + {m1} = {a}, {t2} → {h2} × 60 + {m2} = {b}.",
        ],
        "tm_diff": ["The difference is {b} - {a} = {d} minutes.", "Subtracting: {b} - {a} = {d} minutes."],
        "tm_split": ["{d} minutes = {H} × 60 + {M}, that is {dur}.", "Since {H} × 60 = {H60}, {d} minutes make {dur}."],
        "tm_final": ["It lasts {dur}.", "The duration is {dur}."],
    },
    "fr": {
        "wd_q_fwd": [
            "Aujourd'hui, c'est {day}. Quel jour de la semaine serons-nous dans {n} jours ?",
            "Si nous sommes {day}, quel jour serons-nous dans {n} jours ?",
        ],
        "wd_q_back": [
            "Aujourd'hui, c'est {day}. Quel jour de la semaine était-ce il y a {n} jours ?",
            "Si nous sommes {day}, quel jour était-ce il y a {n} jours ?",
        ],
        "wd_task_fwd": [
            "On part d'un {day} et on avance de {n} jours.",
            "On cherche le jour qui tombe {n} jours après un {day}.",
        ],
        "wd_task_back": [
            "On part d'un {day} et on recule de {n} jours.",
            "On cherche le jour qui tombait {n} jours avant un {day}.",
        ],
        "wd_weeks": [
            "Une semaine compte 7 jours et {n} = {w} × 7 + {k}.",
            "Comme {n} = {w} × 7 + {k}, seul le reste {k} compte.",
        ],
        "wd_full": [
            "Des semaines entières ramènent toujours à un {day}.",
            "Après les semaines complètes, on est toujours {day}.",
        ],
        "wd_count_fwd": ["Puis encore {k} : {seq}.", "On compte {k} de plus : {seq}."],
        "wd_count_back": ["Puis {k} en arrière : {seq}.", "On recule de {k} : {seq}."],
        "wd_final_fwd": ["Ce sera {ans}.", "Dans {n} jours, ce sera {ans}."],
        "wd_final_back": ["C'était {ans}.", "Il y a {n} jours, c'était {ans}."],
        "db_q": ["Combien de jours y a-t-il du {d1} au {d2y} ?", "Combien de jours s'écoulent du {d1} au {d2y} ?"],
        "db_task": [
            "On compte les jours du {d1} au {d2}.",
            "L'utilisateur veut le nombre de jours entre le {d1} et le {d2}.",
        ],
        "db_first": [
            "{M1} compte {dim} jours, donc il reste {dim} - {a1} = {x} jours après le {d1}.",
            "Du {d1} à la fin du mois {de_m1} : {dim} - {a1} = {x} jours.",
        ],
        "db_mid": ["Le mois {de_mm} entier ajoute {mdays} jours.", "Puis tout le mois {de_mm} : {mdays} jours."],
        "db_last": ["Ensuite, {a2} jours en {m2} jusqu'au {d2}.", "En {m2}, on compte {a2} jours jusqu'au {d2}."],
        "db_sum": ["Total : {expr} = {r} jours.", "En additionnant : {expr} = {r}."],
        "db_ans": "{r} jours",
        "db_final": ["Il y a {r} jours.", "Cela fait {r} jours."],
        "tm_q": [
            "Un train part à {t1} et arrive à {t2}. Combien de temps dure le trajet ?",
            "Une réunion commence à {t1} et se termine à {t2}. Combien de temps dure-t-elle ?",
        ],
        "tm_task": ["Il faut la durée entre {t1} et {t2}.", "On cherche le temps écoulé de {t1} à {t2}."],
        "tm_minutes": [
            "En minutes depuis minuit, {t1} donne {h1} × 60 + {m1} = {a} et {t2} donne {h2} × 60 + {m2} = {b}.",
            "Je convertis en minutes : {t1} → {h1} × 60 + {m1} = {a}, {t2} → {h2} × 60 + {m2} = {b}.",
        ],
        "tm_diff": ["La différence est {b} - {a} = {d} minutes.", "On soustrait : {b} - {a} = {d} minutes."],
        "tm_split": ["{d} minutes = {H} × 60 + {M}, soit {dur}.", "Comme {H} × 60 = {H60}, {d} minutes font {dur}."],
        "tm_final": ["Cela dure {dur}.", "La durée est de {dur}."],
    },
    "es": {
        "wd_q_fwd": [
            "Hoy es {day}. ¿Qué día de la semana será dentro de {n} días?",
            "Si hoy es {day}, ¿qué día será dentro de {n} días?",
        ],
        "wd_q_back": [
            "Hoy es {day}. ¿Qué día de la semana fue hace {n} días?",
            "Si hoy es {day}, ¿qué día fue hace {n} días?",
        ],
        "wd_task_fwd": [
            "Parto de un {day} y avanzo {n} días.",
            "Se pregunta qué día cae {n} días después de un {day}.",
        ],
        "wd_task_back": [
            "Parto de un {day} y retrocedo {n} días.",
            "Se pregunta qué día fue {n} días antes de un {day}.",
        ],
        "wd_weeks": [
            "Una semana tiene 7 días y {n} = {w} × 7 + {k}.",
            "Como {n} = {w} × 7 + {k}, solo importa el resto {k}.",
        ],
        "wd_full": ["Las semanas completas vuelven a caer en {day}.", "Tras las semanas completas sigue siendo {day}."],
        "wd_count_fwd": ["Luego {k} más: {seq}.", "Cuento {k} hacia delante: {seq}."],
        "wd_count_back": ["Luego {k} hacia atrás: {seq}.", "Cuento {k} hacia atrás: {seq}."],
        "wd_final_fwd": ["Será {ans}.", "Dentro de {n} días será {ans}."],
        "wd_final_back": ["Fue {ans}.", "Hace {n} días fue {ans}."],
        "db_q": ["¿Cuántos días hay del {d1} al {d2y}?", "¿Cuántos días pasan del {d1} al {d2y}?"],
        "db_task": [
            "Cuento los días del {d1} al {d2}.",
            "El usuario quiere saber cuántos días hay entre el {d1} y el {d2}.",
        ],
        "db_first": [
            "{M1} tiene {dim} días, así que después del {d1} quedan {dim} - {a1} = {x} días.",
            "Del {d1} al final de {m1}: {dim} - {a1} = {x} días.",
        ],
        "db_mid": ["Todo {mm} suma {mdays} días.", "Luego {mm} completo: {mdays} días."],
        "db_last": ["Después, {a2} días de {m2} hasta el {d2}.", "En {m2} cuento {a2} días hasta el {d2}."],
        "db_sum": ["Total: {expr} = {r} días.", "Sumando: {expr} = {r}."],
        "db_ans": "{r} días",
        "db_final": ["Hay {r} días.", "Son {r} días."],
        "tm_q": [
            "Un tren sale a las {t1} y llega a las {t2}. ¿Cuánto dura el viaje?",
            "Una reunión empieza a las {t1} y termina a las {t2}. ¿Cuánto dura?",
        ],
        "tm_task": ["Hay que hallar el tiempo entre las {t1} y las {t2}.", "Busco cuánto pasa de las {t1} a las {t2}."],
        "tm_minutes": [
            "En minutos desde medianoche, las {t1} son {h1} × 60 + {m1} = {a} y las {t2} son {h2} × 60 + {m2} = {b}.",
            "Paso ambas horas a minutos: {t1} → {h1} × 60 + {m1} = {a}, {t2} → {h2} × 60 + {m2} = {b}.",
        ],
        "tm_diff": ["La diferencia es {b} - {a} = {d} minutos.", "Resto: {b} - {a} = {d} minutos."],
        "tm_split": ["{d} minutos = {H} × 60 + {M}, es decir, {dur}.", "Como {H} × 60 = {H60}, {d} minutos son {dur}."],
        "tm_final": ["Dura {dur}.", "La duración es de {dur}."],
    },
    "de": {
        "wd_q_fwd": [
            "Heute ist {day}. Welcher Wochentag ist in {n} Tagen?",
            "Wenn heute {day} ist, welcher Wochentag ist dann in {n} Tagen?",
        ],
        "wd_q_back": [
            "Heute ist {day}. Welcher Wochentag war vor {n} Tagen?",
            "Wenn heute {day} ist, welcher Wochentag war dann vor {n} Tagen?",
        ],
        "wd_task_fwd": [
            "Wir starten am {day} und gehen {n} Tage vorwärts.",
            "Gesucht ist der Wochentag {n} Tage nach einem {day}.",
        ],
        "wd_task_back": [
            "Wir starten am {day} und gehen {n} Tage zurück.",
            "Gesucht ist der Wochentag {n} Tage vor einem {day}.",
        ],
        "wd_weeks": [
            "Eine Woche hat 7 Tage, und {n} = {w} × 7 + {k}.",
            "Da {n} = {w} × 7 + {k} ist, zählt nur der Rest {k}.",
        ],
        "wd_full": ["Volle Wochen landen wieder auf einem {day}.", "Nach den vollen Wochen ist wieder {day}."],
        "wd_count_fwd": ["Dann noch {k} weiter: {seq}.", "Ich zähle {k} weiter: {seq}."],
        "wd_count_back": ["Dann {k} zurück: {seq}.", "Ich zähle {k} zurück: {seq}."],
        "wd_final_fwd": ["Es ist dann {ans}.", "In {n} Tagen ist {ans}."],
        "wd_final_back": ["Es war {ans}.", "Vor {n} Tagen war {ans}."],
        "db_q": [
            "Wie viele Tage liegen zwischen dem {d1} und dem {d2y}?",
            "Wie viele Tage sind es vom {d1} bis zum {d2y}?",
        ],
        "db_task": [
            "Ich zähle die Tage vom {d1} bis zum {d2}.",
            "Gesucht ist die Anzahl der Tage zwischen dem {d1} und dem {d2}.",
        ],
        "db_first": [
            "Der {m1} hat {dim} Tage, also bleiben nach dem {d1} noch {dim} - {a1} = {x} Tage.",
            "Vom {d1} bis Ende {m1}: {dim} - {a1} = {x} Tage.",
        ],
        "db_mid": ["Der ganze {mm} bringt {mdays} Tage.", "Dann der volle {mm} mit {mdays} Tagen."],
        "db_last": ["Dann {a2} Tage im {m2} bis zum {d2}.", "Im {m2} zähle ich {a2} Tage bis zum {d2}."],
        "db_sum": ["Insgesamt: {expr} = {r} Tage.", "Zusammen: {expr} = {r}."],
        "db_ans": "{r} Tage",
        "db_final": ["Es sind {r} Tage.", "Dazwischen liegen {r} Tage."],
        "tm_q": [
            "Ein Zug fährt um {t1} Uhr ab und kommt um {t2} Uhr an. Wie lange dauert die Fahrt?",
            "Eine Besprechung beginnt um {t1} Uhr und endet um {t2} Uhr. Wie lange dauert sie?",
        ],
        "tm_task": ["Gesucht ist die Zeit zwischen {t1} und {t2} Uhr.", "Es geht um die Dauer von {t1} bis {t2} Uhr."],
        "tm_minutes": [
            "In Minuten nach Mitternacht sind {t1} Uhr {h1} × 60 + {m1} = {a} und {t2} Uhr {h2} × 60 + {m2} = {b}.",
            "Beide Zeiten in Minuten: {t1} → {h1} × 60 + {m1} = {a}, {t2} → {h2} × 60 + {m2} = {b}.",
        ],
        "tm_diff": ["Die Differenz ist {b} - {a} = {d} Minuten.", "Subtrahiert: {b} - {a} = {d} Minuten."],
        "tm_split": ["{d} Minuten = {H} × 60 + {M}, also {dur}.", "Da {H} × 60 = {H60} ist, sind {d} Minuten {dur}."],
        "tm_final": ["Es dauert {dur}.", "Die Dauer beträgt {dur}."],
    },
    "it": {
        "wd_q_fwd": [
            "Oggi è {day}. Che giorno della settimana sarà tra {n} giorni?",
            "Se oggi è {day}, che giorno sarà tra {n} giorni?",
        ],
        "wd_q_back": [
            "Oggi è {day}. Che giorno della settimana era {n} giorni fa?",
            "Se oggi è {day}, che giorno era {n} giorni fa?",
        ],
        "wd_task_fwd": [
            "Si parte da {day} e si va avanti di {n} giorni.",
            "Si chiede che giorno cade {n} giorni dopo {day}.",
        ],
        "wd_task_back": [
            "Si parte da {day} e si torna indietro di {n} giorni.",
            "Si chiede che giorno era {n} giorni prima di {day}.",
        ],
        "wd_weeks": [
            "Una settimana ha 7 giorni e {n} = {w} × 7 + {k}.",
            "Poiché {n} = {w} × 7 + {k}, conta solo il resto {k}.",
        ],
        "wd_full": ["Le settimane intere riportano a {day}.", "Dopo le settimane complete è di nuovo {day}."],
        "wd_count_fwd": ["Poi altri {k}: {seq}.", "Conto {k} in avanti: {seq}."],
        "wd_count_back": ["Poi {k} indietro: {seq}.", "Conto {k} all'indietro: {seq}."],
        "wd_final_fwd": ["Sarà {ans}.", "Tra {n} giorni sarà {ans}."],
        "wd_final_back": ["Era {ans}.", "{n} giorni fa era {ans}."],
        "db_q": ["Quanti giorni ci sono {dal_d1} {al_d2y}?", "Quanti giorni passano {dal_d1} {al_d2y}?"],
        "db_task": [
            "Conto i giorni {dal_d1} {al_d2}.",
            "L'utente vuole sapere quanti giorni ci sono tra {il_d1} e {il_d2}.",
        ],
        "db_first": [
            "{M1} ha {dim} giorni, quindi dopo {il_d1} ne restano {dim} - {a1} = {x}.",
            "{Dal_d1} alla fine di {m1}: {dim} - {a1} = {x} giorni.",
        ],
        "db_mid": ["Tutto {mm} aggiunge {mdays} giorni.", "Poi {mm} intero: {mdays} giorni."],
        "db_last": ["Poi {a2} giorni di {m2} fino {al_d2}.", "In {m2} conto {a2} giorni fino {al_d2}."],
        "db_sum": ["Totale: {expr} = {r} giorni.", "Sommando: {expr} = {r}."],
        "db_ans": "{r} giorni",
        "db_final": ["Ci sono {r} giorni.", "Sono {r} giorni."],
        "tm_q": [
            "Un treno parte alle {t1} e arriva alle {t2}. Quanto dura il viaggio?",
            "Una riunione inizia alle {t1} e finisce alle {t2}. Quanto dura?",
        ],
        "tm_task": ["Serve il tempo tra le {t1} e le {t2}.", "Cerco quanto passa dalle {t1} alle {t2}."],
        "tm_minutes": [
            "In minuti dalla mezzanotte, le {t1} sono {h1} × 60 + {m1} = {a} e le {t2} sono {h2} × 60 + {m2} = {b}.",
            "Converto entrambi gli orari in minuti: {t1} → {h1} × 60 + {m1} = {a}, {t2} → {h2} × 60 + {m2} = {b}.",
        ],
        "tm_diff": ["La differenza è {b} - {a} = {d} minuti.", "Sottraggo: {b} - {a} = {d} minuti."],
        "tm_split": ["{d} minuti = {H} × 60 + {M}, cioè {dur}.", "Poiché {H} × 60 = {H60}, {d} minuti sono {dur}."],
        "tm_final": ["Dura {dur}.", "La durata è di {dur}."],
    },
}

DATE_KINDS = ["weekday_fwd", "days_between", "time_span", "weekday_back"]


def make_dates(rng: random.Random, kind: str) -> tuple[Key, Render]:
    if kind.startswith("weekday"):
        start = rng.randrange(7)
        n = rng.choice([k for k in range(8, 46) if k % 7])
        w, k = divmod(n, 7)
        sign = 1 if kind == "weekday_fwd" else -1
        path = [(start + sign * i) % 7 for i in range(1, k + 1)]
        key: Key = ("dates", kind, start, n)

        def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
            T, U = DATES[lang], DATES[user_lang]
            d = "fwd" if sign == 1 else "back"
            fl = dict(day=WEEKDAYS[lang][start], n=n, w=w, k=k, seq=", ".join(WEEKDAYS[lang][i] for i in path))
            steps = [pick(rng, T["wd_weeks"], fl), pick(rng, T["wd_full"], fl), pick(rng, T[f"wd_count_{d}"], fl)]
            ans = WEEKDAYS[lang][path[-1]]
            analysis = assemble(rng, lang, pick(rng, T[f"wd_task_{d}"], fl), steps, ans)
            fu = dict(day=WEEKDAYS[user_lang][start], n=n, ans=WEEKDAYS[user_lang][path[-1]])
            return pick(rng, U[f"wd_q_{d}"], fu), analysis, cap(pick(rng, U[f"wd_final_{d}"], fu))

        return key, render

    if kind == "days_between":
        year = rng.choice([2025, 2026, 2027])  # none is a leap year; February is left out anyway
        m1 = rng.randint(3, 10)
        m2 = min(12, m1 + rng.choice([1, 1, 2]))
        d1 = dt.date(year, m1, rng.randint(2, 28))
        d2 = dt.date(year, m2, rng.randint(2, 28))
        dim = calendar.monthrange(year, m1)[1]
        parts = [dim - d1.day] + [calendar.monthrange(year, m)[1] for m in range(m1 + 1, m2)] + [d2.day]
        total = (d2 - d1).days
        assert sum(parts) == total
        key = ("dates", kind, d1.isoformat(), d2.isoformat())

        def fields(lang: str) -> Fields:
            names = MONTHS[lang]
            mm = names[m1] if m2 - m1 == 2 else ""
            fl: Fields = dict(
                d1=day_month(d1, lang),
                d2=day_month(d2, lang),
                d2y=with_year(d2, lang),
                m1=names[m1 - 1],
                M1=cap(names[m1 - 1]),
                m2=names[m2 - 1],
                mm=mm,
                MM=cap(mm),
                de_mm=fr_de(mm),
                de_m1=fr_de(names[m1 - 1]),
                dim=dim,
                a1=d1.day,
                x=parts[0],
                a2=d2.day,
                r=total,
                mdays=parts[1] if len(parts) == 3 else 0,
                expr=" + ".join(str(p) for p in parts),
            )
            if lang == "it":
                fl.update(
                    dal_d1=it_prep("da", d1.day) + fl["d1"],
                    Dal_d1=cap(it_prep("da", d1.day) + fl["d1"]),
                    al_d2=it_prep("a", d2.day) + fl["d2"],
                    al_d2y=it_prep("a", d2.day) + fl["d2y"],
                    il_d1=it_il(d1.day) + fl["d1"],
                    il_d2=it_il(d2.day) + fl["d2"],
                )
            return fl

        def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
            T, U = DATES[lang], DATES[user_lang]
            fl = fields(lang)
            steps = [pick(rng, T["db_first"], fl)]
            if len(parts) == 3:
                steps.append(pick(rng, T["db_mid"], fl))
            steps += [pick(rng, T["db_last"], fl), pick(rng, T["db_sum"], fl)]
            analysis = assemble(rng, lang, pick(rng, T["db_task"], fl), steps, T["db_ans"].format(**fl))
            fu = fields(user_lang)
            return pick(rng, U["db_q"], fu), analysis, pick(rng, U["db_final"], fu)

        return key, render

    # time_span: both times on one day, at least an hour apart, never on the hour
    while True:
        h1, mi1 = rng.randint(6, 16), rng.choice(range(0, 60, 5))
        span = rng.randint(65, 400)
        start = h1 * 60 + mi1
        end = start + span
        if end < 23 * 60 and span % 60 and end % 5 == 0:
            break
    h2, mi2 = divmod(end, 60)
    H, M = divmod(span, 60)
    scenario = rng.randrange(2)
    key = ("dates", kind, start, end)

    def render_span(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        T, U = DATES[lang], DATES[user_lang]
        fl: Fields = dict(
            t1=clock(h1, mi1, lang),
            t2=clock(h2, mi2, lang),
            h1=h1,
            m1=mi1,
            h2=h2,
            m2=mi2,
            a=start,
            b=end,
            d=span,
            H=H,
            M=M,
            H60=H * 60,
            dur=duration(H, M, lang),
        )
        steps = [pick(rng, T["tm_minutes"], fl), pick(rng, T["tm_diff"], fl), pick(rng, T["tm_split"], fl)]
        analysis = assemble(rng, lang, pick(rng, T["tm_task"], fl), steps, fl["dur"])
        fu = dict(t1=clock(h1, mi1, user_lang), t2=clock(h2, mi2, user_lang), dur=duration(H, M, user_lang))
        return U["tm_q"][scenario].format(**fu), analysis, pick(rng, U["tm_final"], fu)

    return key, render_span


# ---------------------------------------------------------------------------------------------
# Logic: rebuild an order from pairwise clues

NAMES = [
    ("Anna", "f"),
    ("Ben", "m"),
    ("Clara", "f"),
    ("David", "m"),
    ("Elena", "f"),
    ("Felix", "m"),
    ("Greta", "f"),
    ("Hugo", "m"),
    ("Ines", "f"),
    ("Jonas", "m"),
    ("Lara", "f"),
    ("Marco", "m"),
    ("Nora", "f"),
    ("Oscar", "m"),
    ("Paula", "f"),
    ("Leo", "m"),
    ("Sara", "f"),
    ("Tom", "m"),
    ("Vera", "f"),
    ("Luca", "m"),
]
GENDER = dict(NAMES)


def _fr_age(a: str, b: str) -> str:
    return f"{a} est plus âgé{'e' if GENDER[a] == 'f' else ''} {fr_que(b)}"


# clue: the sentence in a question; link: the same fact inside the reasoning.
LOGIC_PHRASES: Phrases = {
    "en": {
        "race_clue": lambda a, b: f"{a} finishes before {b}.",
        "race_link": lambda a, b: f"{a} is ahead of {b}",
        "age_clue": lambda a, b: f"{a} is older than {b}.",
        "age_link": lambda a, b: f"{a} is older than {b}",
    },
    "fr": {
        "race_clue": lambda a, b: f"{a} arrive avant {b}.",
        "race_link": lambda a, b: f"{a} devance {b}",
        "age_clue": lambda a, b: _fr_age(a, b) + ".",
        "age_link": _fr_age,
    },
    "es": {
        "race_clue": lambda a, b: f"{a} llega antes que {b}.",
        "race_link": lambda a, b: f"{a} va por delante de {b}",
        "age_clue": lambda a, b: f"{a} es mayor que {b}.",
        "age_link": lambda a, b: f"{a} es mayor que {b}",
    },
    "de": {
        "race_clue": lambda a, b: f"{a} kommt vor {b} ins Ziel.",
        "race_link": lambda a, b: f"{a} liegt vor {b}",
        "age_clue": lambda a, b: f"{a} ist älter als {b}.",
        "age_link": lambda a, b: f"{a} ist älter als {b}",
    },
    "it": {
        "race_clue": lambda a, b: f"{a} arriva prima di {b}.",
        "race_link": lambda a, b: f"{a} è davanti a {b}",
        "age_clue": lambda a, b: f"{a} è più grande di {b}.",
        "age_link": lambda a, b: f"{a} è più grande di {b}",
    },
}

LOGIC: Phrases = {
    "en": {
        "race_intro": "In a race: ",
        "age_intro": "",
        "race_first_q": "Who finishes first?",
        "race_last_q": "Who finishes last?",
        "age_first_q": "Who is the oldest?",
        "age_last_q": "Who is the youngest?",
        "race_task": [
            "We need to order the runners from the clues.",
            "The clues describe a race; let me rebuild the order.",
        ],
        "age_task": ["We need to sort the people by age.", "The clues compare ages; let me rebuild the order."],
        "race_top": ["Nobody finishes before {top}, so {top} is in front.", "No clue puts anyone ahead of {top}."],
        "age_top": ["Nobody is older than {top}, so {top} heads the list.", "No clue names anyone older than {top}."],
        "chain": ["Then follow the clues: {links}.", "Chaining the clues: {links}."],
        "race_order": ["Finishing order: {order}.", "So the order from first to last is {order}."],
        "age_order": ["From oldest to youngest: {order}.", "So by age, oldest first: {order}."],
        "race_first_final": "{x} finishes first.",
        "race_last_final": "{x} finishes last.",
        "age_first_final": "{x} is the oldest.",
        "age_last_final": "{x} is the youngest.",
    },
    "fr": {
        "race_intro": "Lors d'une course : ",
        "age_intro": "",
        "race_first_q": "Qui termine à la première place ?",
        "race_last_q": "Qui termine à la dernière place ?",
        "age_first_q": "Qui est le plus âgé ?",
        "age_last_q": "Qui est le plus jeune ?",
        "race_task": [
            "Il faut retrouver l'ordre d'arrivée à partir des indices.",
            "Les indices décrivent une course ; je reconstitue l'ordre.",
        ],
        "age_task": [
            "Il faut classer les personnes par âge.",
            "Les indices comparent des âges ; je reconstitue l'ordre.",
        ],
        "race_top": [
            "Personne n'arrive avant {top}, donc {top} est en tête.",
            "Aucun indice ne place quelqu'un devant {top}.",
        ],
        "age_top": [
            "Personne n'est plus âgé {que_top}, donc {top} vient en tête.",
            "Aucun indice ne désigne quelqu'un de plus âgé {que_top}.",
        ],
        "chain": ["Ensuite, on suit les indices : {links}.", "En enchaînant les indices : {links}."],
        "race_order": ["Ordre d'arrivée : {order}.", "L'ordre du premier au dernier est donc {order}."],
        "age_order": ["Du plus âgé au plus jeune : {order}.", "Par âge décroissant : {order}."],
        "race_first_final": "{x} termine à la première place.",
        "race_last_final": "{x} termine à la dernière place.",
        "age_first_final": "{x} est {le} plus âgé{e}.",
        "age_last_final": "{x} est {le} plus jeune.",
    },
    "es": {
        "race_intro": "En una carrera: ",
        "age_intro": "",
        "race_first_q": "¿Quién queda en primer lugar?",
        "race_last_q": "¿Quién queda en último lugar?",
        "age_first_q": "¿Quién es el mayor?",
        "age_last_q": "¿Quién es el menor?",
        "race_task": [
            "Hay que ordenar a los corredores con las pistas.",
            "Las pistas describen una carrera; reconstruyo el orden.",
        ],
        "age_task": ["Hay que ordenar a las personas por edad.", "Las pistas comparan edades; reconstruyo el orden."],
        "race_top": [
            "Nadie llega antes que {top}, así que {top} va en cabeza.",
            "Ninguna pista pone a alguien por delante de {top}.",
        ],
        "age_top": [
            "Nadie es mayor que {top}, así que {top} encabeza la lista.",
            "Ninguna pista dice que alguien sea mayor que {top}.",
        ],
        "chain": ["Luego sigo las pistas: {links}.", "Encadenando las pistas: {links}."],
        "race_order": ["Orden de llegada: {order}.", "Así que el orden del primero al último es {order}."],
        "age_order": ["De mayor a menor: {order}.", "Por edad, de mayor a menor: {order}."],
        "race_first_final": "{x} queda en primer lugar.",
        "race_last_final": "{x} queda en último lugar.",
        "age_first_final": "{x} es {el} mayor.",
        "age_last_final": "{x} es {el} menor.",
    },
    "de": {
        "race_intro": "Bei einem Wettlauf: ",
        "age_intro": "",
        "race_first_q": "Wer belegt den ersten Platz?",
        "race_last_q": "Wer belegt den letzten Platz?",
        "age_first_q": "Wer ist am ältesten?",
        "age_last_q": "Wer ist am jüngsten?",
        "race_task": [
            "Aus den Hinweisen muss die Reihenfolge im Ziel folgen.",
            "Die Hinweise beschreiben ein Rennen; ich rekonstruiere die Reihenfolge.",
        ],
        "age_task": [
            "Die Personen sollen nach Alter sortiert werden.",
            "Die Hinweise vergleichen das Alter; ich rekonstruiere die Reihenfolge.",
        ],
        "race_top": [
            "Niemand kommt vor {top} ins Ziel, also liegt {top} vorne.",
            "Kein Hinweis setzt jemanden vor {top}.",
        ],
        "age_top": [
            "Niemand ist älter als {top}, also steht {top} an der Spitze.",
            "Kein Hinweis nennt jemanden, der älter als {top} ist.",
        ],
        "chain": ["Dann folge ich den Hinweisen: {links}.", "Die Hinweise als Kette: {links}."],
        "race_order": ["Reihenfolge im Ziel: {order}.", "Vom ersten bis zum letzten Platz also: {order}."],
        "age_order": ["Nach Alter absteigend: {order}.", "Vom Ältesten zum Jüngsten also: {order}."],
        "race_first_final": "{x} belegt den ersten Platz.",
        "race_last_final": "{x} belegt den letzten Platz.",
        "age_first_final": "{x} ist am ältesten.",
        "age_last_final": "{x} ist am jüngsten.",
    },
    "it": {
        "race_intro": "In una gara: ",
        "age_intro": "",
        "race_first_q": "Chi si classifica al primo posto?",
        "race_last_q": "Chi si classifica all'ultimo posto?",
        "age_first_q": "Chi è il più grande?",
        "age_last_q": "Chi è il più piccolo?",
        "race_task": [
            "Bisogna ricostruire l'ordine di arrivo dagli indizi.",
            "Gli indizi descrivono una gara; ricostruisco l'ordine.",
        ],
        "age_task": ["Bisogna ordinare le persone per età.", "Gli indizi confrontano le età; ricostruisco l'ordine."],
        "race_top": [
            "Nessuno arriva prima di {top}, quindi {top} è in testa.",
            "Nessun indizio mette qualcuno davanti a {top}.",
        ],
        "age_top": [
            "Nessuno è più grande di {top}, quindi {top} è in cima alla lista.",
            "Nessun indizio indica qualcuno più grande di {top}.",
        ],
        "chain": ["Poi seguo gli indizi: {links}.", "Concatenando gli indizi: {links}."],
        "race_order": ["Ordine di arrivo: {order}.", "Quindi l'ordine dal primo all'ultimo è {order}."],
        "age_order": ["Dal più grande al più piccolo: {order}.", "Per età, in ordine decrescente: {order}."],
        "race_first_final": "{x} si classifica al primo posto.",
        "race_last_final": "{x} si classifica all'ultimo posto.",
        "age_first_final": "{x} è {il} più grande.",
        "age_last_final": "{x} è {il} più piccol{o}.",
    },
}

LOGIC_KINDS = ["race_first", "age_last", "race_last", "age_first"]


def _gender_fields(name: str) -> Fields:
    fem = GENDER[name] == "f"
    return dict(
        le="la" if fem else "le",
        e="e" if fem else "",
        el="la" if fem else "el",
        il="la" if fem else "il",
        o="a" if fem else "o",
    )


def make_logic(rng: random.Random, kind: str) -> tuple[Key, Render]:
    rel, ask = kind.split("_")
    size = rng.choice([3, 4, 4])
    order = [name for name, _ in rng.sample(NAMES, size)]
    pairs = list(zip(order, order[1:]))
    shown = pairs[:]
    rng.shuffle(shown)
    answer = order[0] if ask == "first" else order[-1]
    key = ("logic", kind, tuple(order))

    def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        T, U = LOGIC[lang], LOGIC[user_lang]
        P, PU = LOGIC_PHRASES[lang], LOGIC_PHRASES[user_lang]
        clues = " ".join(PU[f"{rel}_clue"](a, b) for a, b in shown)
        user = f"{U[f'{rel}_intro']}{clues} {U[f'{kind}_q']}"
        # French sets a space before the semicolon.
        fl = dict(
            top=order[0],
            que_top=fr_que(order[0]),
            links=(" ; " if lang == "fr" else "; ").join(P[f"{rel}_link"](a, b) for a, b in pairs),
            order=", ".join(order),
        )
        steps = [pick(rng, T[f"{rel}_top"], fl), pick(rng, T["chain"], fl), pick(rng, T[f"{rel}_order"], fl)]
        analysis = assemble(rng, lang, pick(rng, T[f"{rel}_task"], fl), steps, answer)
        final = U[f"{kind}_final"].format(x=answer, **_gender_fields(answer))
        return user, analysis, final

    return key, render


# ---------------------------------------------------------------------------------------------
# Percentages: a share of a number, a discounted price, what percentage a part is

ITEMS = {
    "en": ["A jacket", "A lamp", "A backpack", "A pair of shoes"],
    "fr": ["Une veste", "Une lampe", "Un sac à dos", "Une paire de chaussures"],
    "es": ["Una chaqueta", "Una lámpara", "Una mochila", "Un par de zapatos"],
    "de": ["Eine Jacke", "Eine Lampe", "Ein Rucksack", "Ein Paar Schuhe"],
    "it": ["Una giacca", "Una lampada", "Uno zaino", "Un paio di scarpe"],
}

PERCENT: Phrases = {
    "en": {
        "of_q": ["What is {p}% of {b}?", "Find {p}% of {b}.", "How much is {p} percent of {b}?"],
        "of_task": ["We need {p}% of {b}.", "The user asks for {p} percent of {b}."],
        "of_rule": [
            "Percent means per hundred, so {p}% of {b} is {b} × {p} ÷ 100.",
            "{p}% is {p}/100, so I compute {b} × {p} ÷ 100.",
        ],
        "of_calc": [
            "{b} × {p} = {bp}, and {bp} ÷ 100 = {r}.",
            "First {b} × {p} = {bp}, then dividing by 100 gives {r}.",
        ],
        "of_final": ["{p}% of {b} is {r}.", "It is {r}."],
        "disc_q": [
            "{item} costs {price} euros and is {p}% off. What is the sale price?",
            "{item} priced at {price} euros gets a {p}% discount. How much does it cost now?",
        ],
        "disc_task": [
            "We need the price after a {p}% discount on {price} euros.",
            "The item costs {price} euros and loses {p}% of its price.",
        ],
        "disc_amount": ["The discount is {price} × {p} ÷ 100 = {d} euros.", "{p}% of {price} euros is {d} euros."],
        "disc_sub": ["Subtract it: {price} - {d} = {r} euros.", "New price: {price} - {d} = {r} euros."],
        "disc_check": ["Check: paying {q}% of {price} also gives {r}.", "Same result as {q}% of {price}: {r}."],
        "disc_final": ["The sale price is {r} euros.", "It now costs {r} euros."],
        "euros": "{r} euros",
        "share_q": [
            "What percentage of {b} is {a}?",
            "In a class of {b} students, {a} passed the exam. What percentage passed?",
        ],
        "share_task": [
            "We need to express {a} out of {b} as a percentage.",
            "The question is what percentage {a} is of {b}.",
        ],
        "share_div": ["Divide the part by the whole: {a} ÷ {b} = {q}.", "The share is {a} ÷ {b} = {q}."],
        "share_mul": ["Times 100 gives the percentage: {q} × 100 = {r}.", "As a percentage: {q} × 100 = {r}."],
        "share_check": ["Check: {rp} of {b} is {a}.", "Indeed, {b} × {r} ÷ 100 = {a}."],
        "share_final": ["{a} is {rp} of {b}.", "{rp} of the students passed."],
    },
    "fr": {
        "of_q": ["Combien font {p} % de {b} ?", "Calcule {p} % de {b}."],
        "of_task": ["Il faut calculer {p} % de {b}.", "On cherche {p} % de {b}."],
        "of_rule": [
            "Pour cent veut dire sur cent, donc {p} % de {b} vaut {b} × {p} ÷ 100.",
            "{p} % correspond à {p}/100, je calcule donc {b} × {p} ÷ 100.",
        ],
        "of_calc": [
            "{b} × {p} = {bp}, puis {bp} ÷ 100 = {r}.",
            "D'abord {b} × {p} = {bp}, puis la division par 100 donne {r}.",
        ],
        "of_final": ["{p} % de {b} font {r}.", "Cela fait {r}."],
        "disc_q": ["{item} coûte {price} euros et bénéficie d'une remise de {p} %. Quel est le nouveau prix ?"],
        "disc_task": [
            "Il faut le prix après une remise de {p} % sur {price} euros.",
            "L'article coûte {price} euros et perd {p} % de son prix.",
        ],
        "disc_amount": ["La remise vaut {price} × {p} ÷ 100 = {d} euros.", "{p} % de {price} euros, c'est {d} euros."],
        "disc_sub": ["On la retire : {price} - {d} = {r} euros.", "Nouveau prix : {price} - {d} = {r} euros."],
        "disc_check": [
            "Vérification : payer {q} % de {price} donne aussi {r}.",
            "Même résultat que {q} % de {price} : {r}.",
        ],
        "disc_final": ["Le nouveau prix est de {r} euros.", "Le prix réduit est de {r} euros."],
        "euros": "{r} euros",
        "share_q": [
            "Quel pourcentage de {b} représente {a} ?",
            "Dans une classe de {b} élèves, {a} ont réussi l'examen. Quel pourcentage a réussi ?",
        ],
        "share_task": [
            "Il faut exprimer {a} sur {b} en pourcentage.",
            "On cherche quel pourcentage {a} représente sur {b}.",
        ],
        "share_div": ["On divise la partie par le total : {a} ÷ {b} = {q}.", "La proportion vaut {a} ÷ {b} = {q}."],
        "share_mul": ["Fois 100 pour avoir le pourcentage : {q} × 100 = {r}.", "En pourcentage : {q} × 100 = {r}."],
        "share_check": ["Vérification : {rp} de {b} font bien {a}.", "En effet, {b} × {r} ÷ 100 = {a}."],
        "share_final": ["{a} représente {rp} de {b}.", "{rp} des élèves ont réussi."],
    },
    "es": {
        "of_q": ["¿Cuánto es el {p} % de {b}?", "Calcula el {p} % de {b}."],
        "of_task": ["Hay que calcular el {p} % de {b}.", "Se busca el {p} % de {b}."],
        "of_rule": [
            "Por ciento significa de cada cien, así que el {p} % de {b} es {b} × {p} ÷ 100.",
            "El {p} % es {p}/100, así que calculo {b} × {p} ÷ 100.",
        ],
        "of_calc": [
            "{b} × {p} = {bp}, y {bp} ÷ 100 = {r}.",
            "Primero {b} × {p} = {bp}, y al dividir entre 100 sale {r}.",
        ],
        "of_final": ["El {p} % de {b} es {r}.", "Es {r}."],
        "disc_q": ["{item} cuesta {price} euros y tiene un descuento del {p} %. ¿Cuál es el precio final?"],
        "disc_task": [
            "Hay que hallar el precio tras un descuento del {p} % sobre {price} euros.",
            "El artículo cuesta {price} euros y baja un {p} %.",
        ],
        "disc_amount": ["El descuento es {price} × {p} ÷ 100 = {d} euros.", "El {p} % de {price} euros son {d} euros."],
        "disc_sub": ["Lo resto: {price} - {d} = {r} euros.", "Precio nuevo: {price} - {d} = {r} euros."],
        "disc_check": [
            "Compruebo: pagar el {q} % de {price} también da {r}.",
            "Coincide con el {q} % de {price}: {r}.",
        ],
        "disc_final": ["El precio final es de {r} euros.", "Ahora cuesta {r} euros."],
        "euros": "{r} euros",
        "share_q": [
            "¿Qué porcentaje de {b} es {a}?",
            "En una clase de {b} alumnos, {a} aprobaron el examen. ¿Qué porcentaje aprobó?",
        ],
        "share_task": ["Hay que expresar {a} de {b} como porcentaje.", "Se pregunta qué porcentaje es {a} de {b}."],
        "share_div": ["Divido la parte entre el total: {a} ÷ {b} = {q}.", "La proporción es {a} ÷ {b} = {q}."],
        "share_mul": ["Por 100 da el porcentaje: {q} × 100 = {r}.", "En porcentaje: {q} × 100 = {r}."],
        "share_check": ["Compruebo: el {rp} de {b} es {a}.", "En efecto, {b} × {r} ÷ 100 = {a}."],
        "share_final": ["{a} es el {rp} de {b}.", "Aprobó el {rp} de los alumnos."],
    },
    "de": {
        "of_q": ["Wie viel sind {p} % von {b}?", "Berechne {p} % von {b}."],
        "of_task": ["Gesucht sind {p} % von {b}.", "Es sollen {p} % von {b} berechnet werden."],
        "of_rule": [
            "Prozent heißt von hundert, also sind {p} % von {b} gleich {b} × {p} ÷ 100.",
            "{p} % sind {p}/100, also rechne ich {b} × {p} ÷ 100.",
        ],
        "of_calc": [
            "{b} × {p} = {bp}, und {bp} ÷ 100 = {r}.",
            "Zuerst {b} × {p} = {bp}, geteilt durch 100 ergibt das {r}.",
        ],
        "of_final": ["{p} % von {b} sind {r}.", "Das sind {r}."],
        "disc_q": ["{item} kostet {price} Euro und ist um {p} % reduziert. Wie hoch ist der neue Preis?"],
        "disc_task": [
            "Gesucht ist der Preis nach {p} % Rabatt auf {price} Euro.",
            "Der Artikel kostet {price} Euro und wird um {p} % billiger.",
        ],
        "disc_amount": ["Der Rabatt beträgt {price} × {p} ÷ 100 = {d} Euro.", "{p} % von {price} Euro sind {d} Euro."],
        "disc_sub": ["Abziehen: {price} - {d} = {r} Euro.", "Neuer Preis: {price} - {d} = {r} Euro."],
        "disc_check": [
            "Probe: {q} % von {price} ergeben ebenfalls {r}.",
            "Gleiches Ergebnis wie {q} % von {price}: {r}.",
        ],
        "disc_final": ["Der neue Preis beträgt {r} Euro.", "Der reduzierte Preis ist {r} Euro."],
        "euros": "{r} Euro",
        "share_q": [
            "Wie viel Prozent von {b} sind {a}?",
            "In einer Klasse mit {b} Schülern haben {a} die Prüfung bestanden. Wie viel Prozent haben bestanden?",
        ],
        "share_task": [
            "Gesucht ist, wie viel Prozent {a} von {b} sind.",
            "{a} von {b} soll als Prozentsatz angegeben werden.",
        ],
        "share_div": ["Teil durch Ganzes: {a} ÷ {b} = {q}.", "Der Anteil ist {a} ÷ {b} = {q}."],
        "share_mul": ["Mal 100 ergibt den Prozentsatz: {q} × 100 = {r}.", "In Prozent: {q} × 100 = {r}."],
        "share_check": ["Probe: {rp} von {b} sind {a}.", "Tatsächlich ist {b} × {r} ÷ 100 = {a}."],
        "share_final": ["{a} sind {rp} von {b}.", "{rp} haben bestanden."],
    },
    "it": {
        "of_q": ["Quanto fa {il_p}{p}% di {b}?", "Calcola {il_p}{p}% di {b}."],
        "of_task": ["Bisogna calcolare {il_p}{p}% di {b}.", "Si cerca {il_p}{p}% di {b}."],
        "of_rule": [
            "Per cento significa su cento, quindi {il_p}{p}% di {b} è {b} × {p} ÷ 100.",
            "{Il_p}{p}% equivale a {p}/100, quindi calcolo {b} × {p} ÷ 100.",
        ],
        "of_calc": ["{b} × {p} = {bp}, e {bp} ÷ 100 = {r}.", "Prima {b} × {p} = {bp}, poi diviso 100 fa {r}."],
        "of_final": ["{Il_p}{p}% di {b} è {r}.", "Fa {r}."],
        "disc_q": ["{item} costa {price} euro, con uno sconto del {p}%. Qual è il prezzo scontato?"],
        "disc_task": [
            "Serve il prezzo dopo uno sconto del {p}% su {price} euro.",
            "L'articolo costa {price} euro e cala del {p}%.",
        ],
        "disc_amount": ["Lo sconto è {price} × {p} ÷ 100 = {d} euro.", "Il {p}% di {price} euro sono {d} euro."],
        "disc_sub": ["Lo sottraggo: {price} - {d} = {r} euro.", "Nuovo prezzo: {price} - {d} = {r} euro."],
        "disc_check": [
            "Verifica: pagare {il_q}{q}% di {price} dà ancora {r}.",
            "Stesso risultato {del_q}{q}% di {price}: {r}.",
        ],
        "disc_final": ["Il prezzo scontato è di {r} euro.", "Ora costa {r} euro."],
        "euros": "{r} euro",
        "share_q": [
            "Che percentuale di {b} è {a}?",
            "In una classe di {b} studenti, {a} hanno superato l'esame. Che percentuale l'ha superato?",
        ],
        "share_task": ["Bisogna esprimere {a} su {b} in percentuale.", "Si chiede che percentuale è {a} di {b}."],
        "share_div": ["Divido la parte per il totale: {a} ÷ {b} = {q}.", "La quota è {a} ÷ {b} = {q}."],
        "share_mul": ["Per 100 si ha la percentuale: {q} × 100 = {r}.", "In percentuale: {q} × 100 = {r}."],
        "share_check": ["Verifica: {il_r}{rp} di {b} è {a}.", "Infatti {b} × {r} ÷ 100 = {a}."],
        "share_final": ["{a} è {il_r}{rp} di {b}.", "Ha superato l'esame {il_r}{rp} degli studenti."],
    },
}

PERCENT_KINDS = ["of", "discount", "share"]


def make_percentages(rng: random.Random, kind: str) -> tuple[Key, Render]:
    if kind == "of":
        while True:
            p = rng.choice([5, 10, 12, 15, 20, 25, 30, 35, 40, 45, 60, 75])
            b = rng.randrange(20, 901, 10)
            if (b * p) % 100 == 0:
                break
        values: Fields = dict(p=p, b=b, bp=b * p, r=b * p // 100)
        key: Key = ("percentages", kind, p, b)
    elif kind == "discount":
        while True:
            p = rng.choice([10, 15, 20, 25, 30, 40, 50, 60])
            price = rng.randrange(20, 401, 5)
            if (price * p) % 100 == 0:
                break
        d = price * p // 100
        values = dict(p=p, price=price, d=d, r=price - d, q=100 - p, item_i=rng.randrange(4))
        key = ("percentages", kind, p, price)
    else:
        scenario = rng.randrange(2)
        # A class has a plausible size; the abstract question may use larger totals.
        totals = [20, 25, 40, 50] if scenario else [20, 25, 40, 50, 80, 200, 250, 400]
        while True:
            b = rng.choice(totals)
            a = rng.randint(2, b - 1)
            if (a * 100) % b == 0:
                break
        r = a * 100 // b
        values = dict(a=a, b=b, r=r, q=Fraction(a, b), scenario=scenario)
        key = ("percentages", kind, a, b)

    def fields(lang: str) -> Fields:
        v = values
        if kind == "of":
            return dict(p=v["p"], b=v["b"], bp=v["bp"], r=v["r"], il_p=it_il(v["p"]), Il_p=cap(it_il(v["p"])))
        if kind == "discount":
            return dict(
                p=v["p"],
                price=v["price"],
                d=v["d"],
                r=v["r"],
                q=v["q"],
                item=ITEMS[lang][v["item_i"]],
                il_q=it_il(v["q"]),
                del_q=it_prep("de", v["q"]),
            )
        return dict(a=v["a"], b=v["b"], r=v["r"], q=num(v["q"], lang), rp=pct(v["r"], lang), il_r=it_il(v["r"]))

    def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        T, U = PERCENT[lang], PERCENT[user_lang]
        fl, fu = fields(lang), fields(user_lang)
        if kind == "of":
            steps = [pick(rng, T["of_rule"], fl), pick(rng, T["of_calc"], fl)]
            analysis = assemble(rng, lang, pick(rng, T["of_task"], fl), steps, str(fl["r"]))
            return pick(rng, U["of_q"], fu), analysis, pick(rng, U["of_final"], fu)
        if kind == "discount":
            steps = [pick(rng, T["disc_amount"], fl), pick(rng, T["disc_sub"], fl)]
            if rng.random() < 0.5:
                steps.append(pick(rng, T["disc_check"], fl))
            analysis = assemble(rng, lang, pick(rng, T["disc_task"], fl), steps, T["euros"].format(**fl))
            return pick(rng, U["disc_q"], fu), analysis, pick(rng, U["disc_final"], fu)
        steps = [pick(rng, T["share_div"], fl), pick(rng, T["share_mul"], fl)]
        if rng.random() < 0.5:
            steps.append(pick(rng, T["share_check"], fl))
        analysis = assemble(rng, lang, pick(rng, T["share_task"], fl), steps, fl["rp"])
        s = values["scenario"]
        return U["share_q"][s].format(**fu), analysis, U["share_final"][s].format(**fu)

    return key, render


# ---------------------------------------------------------------------------------------------
# Linear equations with one integer solution

EQUATIONS: Phrases = {
    "en": {
        "q": ["Solve {eq}.", "Solve for x: {eq}.", "Find x if {eq}."],
        "task": ["We need to solve {eq} for x.", "The goal is to isolate x in {eq}."],
        "sub_both": [
            "Subtract {b} from both sides: {a}x = {c} - {b} = {cb}.",
            "Moving {b} to the right: {a}x = {c} - {b} = {cb}.",
        ],
        "add_both": [
            "Add {b} to both sides: {a}x = {c} + {b} = {cb}.",
            "Moving -{b} to the right: {a}x = {c} + {b} = {cb}.",
        ],
        "div": ["Divide by {a}: x = {cb} ÷ {a} = {x}.", "Then x = {cb} ÷ {a} = {x}."],
        "div_first": [
            "Divide both sides by {a}: x + {b} = {c} ÷ {a} = {cd}.",
            "Dividing by {a} first: x + {b} = {cd}.",
        ],
        "sub_last": ["Subtract {b}: x = {cd} - {b} = {x}.", "So x = {cd} - {b} = {x}."],
        "gather": ["Move the x terms to the left: {a}x - {c}x = {ac}x.", "Collect x on one side: {a}x - {c}x = {ac}x."],
        "consts": ["Constants to the right: {ac}x = {d} - {b} = {cb}.", "Then the numbers: {ac}x = {d} - {b} = {cb}."],
        "check": ["Check: {chk}.", "Substituting x = {x}: {chk}."],
        "final": ["x = {x}", "The solution is x = {x}."],
    },
    "fr": {
        "q": ["Résous {eq}.", "Résous l'équation {eq}.", "Trouve x tel que {eq}."],
        "task": ["Il faut résoudre {eq}.", "Le but est d'isoler x dans {eq}."],
        "sub_both": [
            "On soustrait {b} des deux côtés : {a}x = {c} - {b} = {cb}.",
            "En passant {b} à droite : {a}x = {c} - {b} = {cb}.",
        ],
        "add_both": [
            "On ajoute {b} des deux côtés : {a}x = {c} + {b} = {cb}.",
            "En passant -{b} à droite : {a}x = {c} + {b} = {cb}.",
        ],
        "div": ["On divise par {a} : x = {cb} ÷ {a} = {x}.", "Donc x = {cb} ÷ {a} = {x}."],
        "div_first": [
            "On divise les deux côtés par {a} : x + {b} = {c} ÷ {a} = {cd}.",
            "En divisant d'abord par {a} : x + {b} = {cd}.",
        ],
        "sub_last": ["On soustrait {b} : x = {cd} - {b} = {x}.", "Donc x = {cd} - {b} = {x}."],
        "gather": [
            "On regroupe les x à gauche : {a}x - {c}x = {ac}x.",
            "Les termes en x passent à gauche : {a}x - {c}x = {ac}x.",
        ],
        "consts": [
            "Les constantes à droite : {ac}x = {d} - {b} = {cb}.",
            "Puis les nombres : {ac}x = {d} - {b} = {cb}.",
        ],
        "check": ["Vérification : {chk}.", "En remplaçant x par {x} : {chk}."],
        "final": ["x = {x}", "La solution est x = {x}."],
    },
    "es": {
        "q": ["Resuelve {eq}.", "Resuelve la ecuación {eq}.", "Halla x si {eq}."],
        "task": ["Hay que resolver {eq}.", "El objetivo es despejar x en {eq}."],
        "sub_both": [
            "Resto {b} en ambos lados: {a}x = {c} - {b} = {cb}.",
            "Paso {b} al otro lado: {a}x = {c} - {b} = {cb}.",
        ],
        "add_both": [
            "Sumo {b} en ambos lados: {a}x = {c} + {b} = {cb}.",
            "Paso -{b} al otro lado: {a}x = {c} + {b} = {cb}.",
        ],
        "div": ["Divido entre {a}: x = {cb} ÷ {a} = {x}.", "Entonces x = {cb} ÷ {a} = {x}."],
        "div_first": [
            "Divido ambos lados entre {a}: x + {b} = {c} ÷ {a} = {cd}.",
            "Al dividir primero entre {a}: x + {b} = {cd}.",
        ],
        "sub_last": ["Resto {b}: x = {cd} - {b} = {x}.", "Así que x = {cd} - {b} = {x}."],
        "gather": [
            "Agrupo las x a la izquierda: {a}x - {c}x = {ac}x.",
            "Paso los términos con x a la izquierda: {a}x - {c}x = {ac}x.",
        ],
        "consts": [
            "Las constantes a la derecha: {ac}x = {d} - {b} = {cb}.",
            "Luego los números: {ac}x = {d} - {b} = {cb}.",
        ],
        "check": ["Compruebo: {chk}.", "Sustituyendo x = {x}: {chk}."],
        "final": ["x = {x}", "La solución es x = {x}."],
    },
    "de": {
        "q": ["Löse {eq}.", "Löse die Gleichung {eq}.", "Bestimme x, wenn {eq}."],
        "task": ["Die Gleichung {eq} soll nach x aufgelöst werden.", "Ziel ist, x in {eq} zu isolieren."],
        "sub_both": [
            "Auf beiden Seiten {b} abziehen: {a}x = {c} - {b} = {cb}.",
            "{b} auf die rechte Seite bringen: {a}x = {c} - {b} = {cb}.",
        ],
        "add_both": [
            "Auf beiden Seiten {b} addieren: {a}x = {c} + {b} = {cb}.",
            "-{b} auf die rechte Seite bringen: {a}x = {c} + {b} = {cb}.",
        ],
        "div": ["Durch {a} teilen: x = {cb} ÷ {a} = {x}.", "Also x = {cb} ÷ {a} = {x}."],
        "div_first": [
            "Beide Seiten durch {a} teilen: x + {b} = {c} ÷ {a} = {cd}.",
            "Zuerst durch {a} teilen: x + {b} = {cd}.",
        ],
        "sub_last": ["{b} abziehen: x = {cd} - {b} = {x}.", "Also x = {cd} - {b} = {x}."],
        "gather": ["Die x-Terme nach links: {a}x - {c}x = {ac}x.", "x auf eine Seite bringen: {a}x - {c}x = {ac}x."],
        "consts": [
            "Die Zahlen nach rechts: {ac}x = {d} - {b} = {cb}.",
            "Dann die Konstanten: {ac}x = {d} - {b} = {cb}.",
        ],
        "check": ["Probe: {chk}.", "Einsetzen von x = {x}: {chk}."],
        "final": ["x = {x}", "Die Lösung ist x = {x}."],
    },
    "it": {
        "q": ["Risolvi {eq}.", "Risolvi l'equazione {eq}.", "Trova x sapendo che {eq}."],
        "task": ["Bisogna risolvere {eq}.", "L'obiettivo è isolare x in {eq}."],
        "sub_both": [
            "Sottraggo {b} da entrambi i membri: {a}x = {c} - {b} = {cb}.",
            "Porto {b} a destra: {a}x = {c} - {b} = {cb}.",
        ],
        "add_both": [
            "Aggiungo {b} a entrambi i membri: {a}x = {c} + {b} = {cb}.",
            "Porto -{b} a destra: {a}x = {c} + {b} = {cb}.",
        ],
        "div": ["Divido per {a}: x = {cb} ÷ {a} = {x}.", "Quindi x = {cb} ÷ {a} = {x}."],
        "div_first": [
            "Divido entrambi i membri per {a}: x + {b} = {c} ÷ {a} = {cd}.",
            "Dividendo prima per {a}: x + {b} = {cd}.",
        ],
        "sub_last": ["Sottraggo {b}: x = {cd} - {b} = {x}.", "Quindi x = {cd} - {b} = {x}."],
        "gather": [
            "Porto i termini in x a sinistra: {a}x - {c}x = {ac}x.",
            "Raccolgo la x da una parte: {a}x - {c}x = {ac}x.",
        ],
        "consts": ["Le costanti a destra: {ac}x = {d} - {b} = {cb}.", "Poi i numeri: {ac}x = {d} - {b} = {cb}."],
        "check": ["Verifica: {chk}.", "Sostituendo x = {x}: {chk}."],
        "final": ["x = {x}", "La soluzione è x = {x}."],
    },
}

EQUATION_KINDS = ["plus", "minus", "bracket", "both_sides"]


def _times(a: int, x: int) -> str:
    return f"{a} × ({x})" if x < 0 else f"{a} × {x}"


def make_equations(rng: random.Random, kind: str) -> tuple[Key, Render]:
    x = rng.choice([k for k in range(-6, 16) if k != 0])
    a, b = rng.randint(2, 9), rng.randint(1, 20)
    f: Fields = dict(a=a, b=b, x=x)
    if kind == "plus":
        c = a * x + b
        f.update(c=c, cb=c - b, eq=f"{a}x + {b} = {c}", chk=f"{_times(a, x)} + {b} = {c}")
    elif kind == "minus":
        c = a * x - b
        f.update(c=c, cb=c + b, eq=f"{a}x - {b} = {c}", chk=f"{_times(a, x)} - {b} = {c}")
    elif kind == "bracket":
        c = a * (x + b)
        f.update(c=c, cd=x + b, eq=f"{a}(x + {b}) = {c}", chk=f"{a} × ({x} + {b}) = {_times(a, x + b)} = {c}")
    else:
        a = rng.randint(4, 9)
        c = rng.randint(2, a - 2)  # a coefficient of 1 would print as "1x"
        while b + (a - c) * x <= 0:
            b = rng.randint(1, 20)
            x = rng.choice([k for k in range(-6, 16) if k != 0])
        d = b + (a - c) * x
        f.update(
            a=a,
            b=b,
            x=x,
            c=c,
            d=d,
            ac=a - c,
            cb=d - b,
            eq=f"{a}x + {b} = {c}x + {d}",
            chk=f"{_times(a, x)} + {b} = {a * x + b} = {_times(c, x)} + {d}",
        )
    key = ("equations", kind, f["eq"])

    def render(rng: random.Random, lang: str, user_lang: str) -> tuple[str, str, str]:
        T, U = EQUATIONS[lang], EQUATIONS[user_lang]
        if kind == "plus":
            steps = [pick(rng, T["sub_both"], f), pick(rng, T["div"], f)]
        elif kind == "minus":
            steps = [pick(rng, T["add_both"], f), pick(rng, T["div"], f)]
        elif kind == "bracket":
            steps = [pick(rng, T["div_first"], f), pick(rng, T["sub_last"], f)]
        else:
            steps = [pick(rng, T["gather"], f), pick(rng, T["consts"], f), pick(rng, T["div"], dict(f, a=f["ac"]))]
        steps.append(pick(rng, T["check"], f))
        analysis = assemble(rng, lang, pick(rng, T["task"], f), steps, f"x = {x}")
        return pick(rng, U["q"], f), analysis, pick(rng, U["final"], f)

    return key, render


# ---------------------------------------------------------------------------------------------
# Rows

MAKERS = {
    "arithmetic": (make_arithmetic, ARITH_KINDS),
    "units": (make_units, UNIT_KINDS),
    "dates": (make_dates, DATE_KINDS),
    "logic": (make_logic, LOGIC_KINDS),
    "percentages": (make_percentages, PERCENT_KINDS),
    "equations": (make_equations, EQUATION_KINDS),
}


def make_row(lang: str, developer: str, user: str, analysis: str, final: str) -> dict[str, Any]:
    name = LANG_NAMES[lang]
    return {
        "reasoning_language": name,
        "developer": developer,
        "user": user,
        "analysis": analysis,
        "final": final,
        "messages": [
            {"role": "system", "content": f"reasoning language: {name}\n\n{developer}", "thinking": None},
            {"role": "user", "content": user, "thinking": None},
            {"role": "assistant", "content": final, "thinking": analysis},
        ],
    }


def draw_problems(
    name: str, per_cell: int, used: set[Key], *, strict: bool = True
) -> Iterator[tuple[int, str, random.Random, Key, Render]]:
    """Yield ``(i, lang, rng, key, render)`` for each fresh problem of the draw called ``name``, in file
    order; ``used`` holds the keys already taken and grows. ``render(rng, lang, user_lang)`` writes the
    row from ``rng``'s state. Without ``strict``, a cell whose problems run out is skipped, not fatal.

    Outer loop over the row index, inner over family and language, so any prefix of the file is
    balanced across languages and families. embedded.py replays these draws, so they live here once.
    """
    for i in range(per_cell):
        for family in FAMILIES:
            maker, kinds = MAKERS[family]
            for li, lang in enumerate(LANGS):
                kind = kinds[(i + li) % len(kinds)]
                for attempt in range(1000):
                    rng = random.Random(f"{name}:{family}:{lang}:{i}:{attempt}")
                    key, render = maker(rng, kind)
                    if key not in used:
                        break
                else:
                    if strict:
                        raise RuntimeError(f"no fresh {family}/{kind} problem for {name} {lang} {i}")
                    continue
                used.add(key)
                yield i, lang, rng, key, render


def _generate_split(
    split: str, per_cell: int, used: set[Key], native_rows: set[int]
) -> tuple[list[dict[str, Any]], list[Key]]:
    rows, keys = [], []
    for i, lang, rng, key, render in draw_problems(split, per_cell, used):
        keys.append(key)
        user_lang = lang if lang != "en" and i % NATIVE_QUESTION_EVERY in native_rows else "en"
        user, analysis, final = render(rng, lang, user_lang)
        rows.append(make_row(lang, rng.choice(DEVELOPERS), user, analysis, final))
    return rows, keys


def generate_with_keys() -> dict[str, tuple[list[dict[str, Any]], list[Key]]]:
    """Rows and, row for row, the language-independent key of each problem, per split."""
    used: set[Key] = set()
    # Held-out first, so its problems are reserved before training draws from the same space.
    heldout = _generate_split("heldout", HELDOUT_PER_CELL, used, native_rows={1})
    train = _generate_split("train", TRAIN_PER_CELL, used, native_rows={NATIVE_QUESTION_EVERY - 1})
    return {"train": train, "heldout": heldout}


def generate() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Return (training rows, held-out rows); no problem appears in both or twice."""
    splits = generate_with_keys()
    return splits["train"][0], splits["heldout"][0]


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_splits(
    description: str,
    make: Callable[[], tuple[list[dict[str, Any]], list[dict[str, Any]]]],
    files: tuple[Path, Path],
    argv: list[str] | None = None,
) -> None:
    """The command line of a sample-data generator: ``make()``'s training and held-out rows into ``files``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out-dir", type=Path, default=files[0].parent, help="where to write the two .jsonl files")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path, rows in zip(files, make()):
        (args.out_dir / path.name).write_text(to_jsonl(rows), encoding="utf-8")
        print(f"wrote {len(rows)} rows to {args.out_dir / path.name}")


def main(argv: list[str] | None = None) -> None:
    write_splits(__doc__.splitlines()[0], generate, (TRAIN_FILE, HELDOUT_FILE), argv)


if __name__ == "__main__":
    main()
