"""Which language a model reasons in, and how often it is the one asked for.

``identify_language(text)`` is a small stopword identifier for the five languages of the project's
sample (English, French, Spanish, German, Italian). Each list holds common function words and
reasoning words that belong to one of the five languages only: words shared by two of them
("la", "il", "de", "in", "un", "es", "con") are left out, so a hit is evidence for one language.
It is meant for reasoning traces of a few dozen words, and says ``None`` rather than guess when the
evidence is thin or split.

``reasoning_language_rate(model, tokenizer, heldout_rows, effort)`` asks the model the held-out
questions with ``reasoning language: X`` in the developer message, greedily, parses each generation
as Harmony, and reports how many are well-formed (an analysis message, then a final answer ended by
``<|return|>``) and how many of the non-English requests reason in the requested language.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

LANGUAGES = ("English", "French", "Spanish", "German", "Italian")

# Prompts generated at once by the evaluation: a GPU decodes 64 rows in little more time than 16
# (bench/generation_speed.py), and on a CPU the larger batch is faster too.
DEFAULT_BATCH = 64
# Room for an analysis and a final answer of the held-out questions' kind.
DEFAULT_NEW_TOKENS = 160

_WORDS: dict[str, str] = {
    "English": """the and is are was of to we then so first that this which with from for by what how many
        gives give answer days day after before each total left need needs step steps multiply divide
        means therefore check both sides wants user it be there comes back again result value question
        let let's work through break down small problem solve find going unit equals into leaves
        taking away adding subtract add parentheses brackets start inside products product remain
        remains sales broken bottles later earlier week weeks percent price discount part whole first
        last ages older younger race finished ahead behind behind than who""",
    "French": """les des du est et une donc puis pour avec au aux ensuite abord réponse jours cela obtient
        fait font vérification étape étapes pas deux côtés faut calculer reste restent divise multiplie
        ajoute retire soustrait sont donne redonne passe plus petite cherche demande demandé
        utilisateur veut valeur nombre bouteilles cartons vendues cassées semaine semaines après avant
        jour prix remise pourcentage partie arrivé premier dernier âgé jeune que qu procédons décomposons
        allons-y vais résoudre cela commence parenthèse produit produits ensuite mois nous avons""",
    "Spanish": """el los las y del por hay lo luego entonces días respuesta sumo resto divido multiplico
        así primero después quedan queda ambos lados paso compruebo son para como resultado hace hacer
        vamos resolverlo partes descompongamos procedamos calcular usuario quiere valor piden evaluar
        producto productos paréntesis empiezo está entre botellas cajas vendidas rotas semana semanas
        día antes precio descuento porcentaje llegó primera último mayor menor más pequeña
        revés vuelve dar despejar objetivo sustituyendo agrupo izquierda derecha números""",
    "German": """der die das und ist ein eine einer mit auf zu nach dann zuerst tage antwort wird werden sind
        durch beide seiten ergibt ich wir den dem von nicht für probe sich geht bleiben bleibt
        schritt schritten schrittweise lösen löse zerlegen aufgabe gehen reihe also lautet ergebnis
        soll sollen nutzer will wert berechnen zuerst produkt produkte klammer flaschen kisten verkauft
        kaputt woche wochen tag später früher preis rabatt prozent anteil ziel rechte linke seite
        zahlen konstanten einsetzen teilen abziehen addieren multiplizieren dividieren kleineren
        größeren einheit umgerechnet rückwärts wieder insgesamt übrig älter jünger rennen zuletzt""",
    "Italian": """gli della delle dei degli è e di che per quindi poi giorni risposta moltiplico sottraggo
        aggiungo prima allora entrambi membri verifica risultato ci si alla dalla nel nella anche
        procediamo passo dopo volta scomponiamo andiamo gradi risolvo problema bisogna calcolare
        utente vuole valore chiede valutare prodotto prodotti parentesi comincio bottiglie scatole
        vendute rotte settimana settimane giorno prezzo sconto percentuale arrivato primo ultimo
        più piccola contrario ridà obiettivo isolare sostituendo porto raccolgo
        sinistra destra numeri costanti dunque quanti quante sono ore""",
}

STOPWORDS: dict[str, frozenset[str]] = {lang: frozenset(words.split()) for lang, words in _WORDS.items()}

_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)?", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-case words; apostrophes split them (d'abord -> d, abord; l'utente -> l, utente)."""
    return _WORD.findall(text.lower().replace("’", "'").replace("'", " "))


def language_scores(text: str) -> dict[str, int]:
    """How many words of ``text`` are in each language's list."""
    counts = Counter(words(text))
    return {lang: sum(n for w, n in counts.items() if w in STOPWORDS[lang]) for lang in LANGUAGES}


def identify_language(text: str, *, min_hits: int = 2, min_share: float = 0.6) -> str | None:
    """The language of ``text`` among the five, or None when it has under ``min_hits`` list words or
    no language holds ``min_share`` of them."""
    scores = language_scores(text)
    total = sum(scores.values())
    best = max(LANGUAGES, key=lambda lang: scores[lang])
    if scores[best] < min_hits or scores[best] < min_share * total:
        return None
    return best


def overlapping_stopwords() -> dict[str, list[str]]:
    """Words listed under more than one language (none, when the lists are as intended)."""
    seen: dict[str, list[str]] = {}
    for lang in LANGUAGES:
        for w in STOPWORDS[lang]:
            seen.setdefault(w, []).append(lang)
    return {w: langs for w, langs in sorted(seen.items()) if len(langs) > 1}


# ---------------------------------------------------------------------------------------------
# The rate


@dataclass
class Judged:
    """One held-out question: what was asked, what came back, and the verdict."""

    row: int
    requested: str
    well_formed: bool
    analysis: str | None
    final: str | None
    identified: str | None
    error: str | None = None
    generated_tokens: int = 0

    @property
    def in_requested_language(self) -> bool:
        return self.analysis is not None and self.identified == self.requested


@dataclass
class LanguageRate:
    """``in_language``: the fraction of non-English requests whose analysis is in the requested language.
    ``well_formed``: the fraction of all generations that are complete Harmony with an analysis message."""

    effort: str
    in_language: float
    well_formed: float
    requests: int
    non_english_requests: int
    per_language: dict[str, float] = field(default_factory=dict)
    identified: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    judged: list[Judged] = field(default_factory=list)

    def summary(self) -> str:
        langs = ", ".join(f"{k} {v:.2f}" for k, v in self.per_language.items())
        seen = ", ".join(f"{k} {v}" for k, v in self.identified.items())
        return (
            f"effort {self.effort}: in the requested language {self.in_language:.2f} of "
            f"{self.non_english_requests} non-English requests ({langs}); well-formed {self.well_formed:.2f} "
            f"of {self.requests}; analyses identified as: {seen}; {self.seconds:.0f} s"
        )

    def to_dict(self) -> dict:
        return {
            "effort": self.effort,
            "in_language": self.in_language,
            "well_formed": self.well_formed,
            "requests": self.requests,
            "non_english_requests": self.non_english_requests,
            "per_language": self.per_language,
            "identified": self.identified,
            "seconds": self.seconds,
        }


def judge(generated: Sequence[int], requested: str, row: int = 0, tokenizer: Any = None) -> Judged:
    """Parse one generation (the tokens after ``<|start|>assistant``) and identify its analysis language."""
    from ..core.harmony import HarmonyParseError, parse
    from ..core.tokenizer import RETURN

    ids = list(generated)
    try:
        parsed = parse(ids, tokenizer=tokenizer, role="assistant", partial=True)
    except HarmonyParseError as parse_error:
        return Judged(row, requested, False, None, None, None, str(parse_error), len(ids))
    messages = [m for m in parsed.messages if m.role == "assistant"]
    analyses = [m.content for m in messages if m.channel == "analysis"]
    finals = [m.content for m in messages if m.channel == "final"]
    analysis = " ".join(analyses) if analyses else None
    error = None
    well_formed = (
        bool(analyses)
        and bool(finals)
        and parsed.complete
        and bool(ids)
        and ids[-1] == RETURN
        and messages[-1].channel == "final"
    )
    if not well_formed:
        if not parsed.complete or not ids or ids[-1] != RETURN:
            error = "no <|return|> before the token limit"
        elif not analyses:
            error = "no analysis message"
        else:
            error = "no final message at the end"
    return Judged(
        row,
        requested,
        well_formed,
        analysis,
        finals[-1] if finals else None,
        identify_language(analysis) if analysis else None,
        error,
        len(ids),
    )


def _greedy_batch(
    model, prompts: list[list[int]], max_new_tokens: int, pad_id: int, stop_ids: Sequence[int]
) -> list[list[int]]:
    """Greedy continuations of several prompts at once, left-padded; each cut after its first stop token."""
    import torch

    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        temperature=None,
        top_p=None,
        top_k=None,
        eos_token_id=list(stop_ids),
        pad_token_id=pad_id,
    )
    results = []
    for row in out[:, width:].tolist():
        cut = next((i for i, t in enumerate(row) if t in stop_ids), None)
        results.append(row[: cut + 1] if cut is not None else row)
    return results


class _Progress:
    """Counts finished rows and tells ``on_progress`` each new count, never the same count twice."""

    def __init__(self, total: int, on_progress: Callable[[int, int], Any] | None):
        self.total = total
        self.on_progress = on_progress
        self.done = -1

    def report(self, done: int) -> None:
        done = min(done, self.total)
        if done <= self.done:
            return
        self.done = done
        if self.on_progress is not None:
            self.on_progress(done, self.total)


def reasoning_language_rate(
    model,
    tokenizer,
    heldout_rows: Iterable[Any],
    effort: str = "medium",
    *,
    max_new_tokens: int = DEFAULT_NEW_TOKENS,
    date: Any = "2025-06-28",
    batch_size: int = DEFAULT_BATCH,
    non_english_only: bool = False,
    use_adapter: bool = True,
    on_progress: Callable[[int, int], Any] | None = None,
) -> LanguageRate:
    """Generate for each held-out row and measure the reasoning language (see the module's docstring).

    ``heldout_rows``: raw rows (Multilingual-Thinking columns or messages) or ``data.Row`` objects.
    With ``non_english_only``, English requests are skipped (they count for neither fraction).
    ``use_adapter=False`` measures the base under a LoRA model. ``batch_size`` prompts generate at once
    (``generation.generate_many``). ``on_progress(done, total)`` is called with 0 first, then each time
    rows finish (a row is done at its stop token, or with its batch), and last with ``total``.
    """
    import time

    from ..core.data import Row, to_row
    from ..core.harmony import render
    from ..core.tokenizer import CALL, RETURN
    from .generation import generate_many

    started = time.perf_counter()
    items = []
    for index, raw in enumerate(heldout_rows):
        row = raw if isinstance(raw, Row) else to_row(raw, index, reasoning_effort=effort)
        if row.language is None:
            continue
        if non_english_only and row.language == "English":
            continue
        row.conversation.reasoning_effort = effort
        prompt = render(row.conversation, mode="prompt", date=date, tokenizer=tokenizer).ids
        items.append((row.index, row.language, prompt))
    judged: list[Judged] = []
    total = len(items)
    stops = (RETURN, CALL)
    progress = _Progress(total, on_progress)
    progress.report(0)

    def finished(row: int, token: int) -> None:
        if token in stops:  # a row's stop token is its last
            progress.report(progress.done + 1)

    for start in range(0, total, max(1, batch_size)):
        chunk = items[start : start + max(1, batch_size)]
        outs = generate_many(
            model,
            [p for _, _, p in chunk],
            max_new_tokens,
            tokenizer=tokenizer,
            use_adapter=use_adapter,
            stop_token_ids=stops,
            on_token=finished if on_progress is not None else None,
        )
        # Rows that ran to the token limit finish with their batch.
        progress.report(start + len(chunk))
        for (index, language, _), generated in zip(chunk, outs):
            judged.append(judge(generated, language, index, tokenizer))
    non_english = [j for j in judged if j.requested != "English"]
    per_language = {}
    for lang in LANGUAGES[1:]:
        asked = [j for j in non_english if j.requested == lang]
        if asked:
            per_language[lang] = sum(j.in_requested_language for j in asked) / len(asked)
    identified = Counter(j.identified or ("none" if j.analysis is not None else "no analysis") for j in judged)
    return LanguageRate(
        effort=effort,
        in_language=sum(j.in_requested_language for j in non_english) / max(len(non_english), 1),
        well_formed=sum(j.well_formed for j in judged) / max(len(judged), 1),
        requests=len(judged),
        non_english_requests=len(non_english),
        per_language=per_language,
        identified=dict(sorted(identified.items())),
        seconds=time.perf_counter() - started,
        judged=judged,
    )
