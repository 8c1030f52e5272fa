"""Rich outputs: every payload becomes a MIME bundle that degrades gracefully.

Each bundle carries the oss-finetune MIME type (rendered by the JupyterLab extension), plus
``text/plain`` and a self-contained ``text/html`` (inline styles, no scripts, every piece of token
text escaped) so that a notebook opened on GitHub or nbviewer still shows the run.
"""

from __future__ import annotations

import html
import math
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..core import schema

# Okabe–Ito colours: distinguishable with the common forms of colour blindness.
CHANNEL_COLOURS = {
    "analysis": "#E69F00",
    "commentary": "#56B4E9",
    "final": "#009E73",
    "none": "#999999",
}
ROLE_COLOURS = {
    "system": "#CC79A7",
    "developer": "#D55E00",
    "user": "#0072B2",
    "assistant": "#009E73",
    "tool": "#F0E442",
}

# The HTML fallback is for reading, not for 300,000-token views: it shows this many tokens of each
# stream and says how many it left out.
HTML_TOKEN_LIMIT = 4000

_esc = html.escape


def mime_type(name: str) -> str:
    return schema.mime_types()[name]


def bundle(name: str, payload: dict, *, text: str | None = None, html_text: str | None = None) -> dict:
    """A MIME bundle for ``payload`` (validated against schema ``name``) with both fallbacks."""
    schema.validate(name, payload)
    renderers = {
        "harmony-tokens": (harmony_text, harmony_html),
        "training-run": (training_text, training_html),
        "dataset-summary": (dataset_text, dataset_html),
        "runs-comparison": (comparison_text, comparison_html),
    }
    to_text, to_html = renderers[name]
    return {
        mime_type(name): payload,
        "text/plain": text if text is not None else to_text(payload),
        "text/html": html_text if html_text is not None else to_html(payload),
    }


def visible(token: str) -> str:
    """Whitespace a reader must see: newlines and tabs get a mark, as in the extension's chips."""
    return token.replace("\n", "⏎\n").replace("\t", "⇥")


# Harmony tokens ---------------------------------------------------------------------------------


def _stream_text(stream: dict) -> str:
    return "".join(stream["text"])


def harmony_text(payload: dict) -> str:
    lines = []
    for index, conversation in enumerate(payload["conversations"]):
        stream = conversation["tokens"]
        trained = sum(1 for t in stream["trained"] if t)
        title = conversation.get("title") or f"conversation {index}"
        if conversation.get("origin") == "generation":  # nothing generated is a training target
            lines.append(f"── {title}: {len(stream['ids'])} tokens")
        else:
            mask = conversation.get("loss_mask", "?")
            lines.append(f"── {title}: {len(stream['ids'])} tokens, {trained} trained (loss mask: {mask})")
        lines.append(_stream_text(stream))
        if "compare" in conversation:
            other = conversation["compare"]
            lines.append(f"── {other.get('label') or 'compare'}")
            lines.append(_stream_text(other))
    return "\n".join(lines)


def _token_spans(stream: dict) -> str:
    limit = HTML_TOKEN_LIMIT
    spans = []
    n = len(stream["ids"])
    for i in range(min(n, limit)):
        channel = stream["channel"][i]
        part = stream["part"][i]
        colour = CHANNEL_COLOURS.get(channel, "#999999")
        trained = stream["trained"][i]
        style = [f"background:{colour}33", f"border-bottom:2px solid {colour if trained else 'transparent'}"]
        if part == "special":
            style.append("font-weight:bold;color:#555")
        title = f"id {stream['ids'][i]} · {stream['role'][i]} · {channel} · {'trained' if trained else 'not trained'}"
        loss = stream.get("loss")
        if loss and loss[i] is not None:
            title += f" · loss {loss[i]:.3f}"
        spans.append(f'<span title="{_esc(title)}" style="{";".join(style)}">{_esc(visible(stream["text"][i]))}</span>')
    if n > limit:
        spans.append(
            f'<div style="color:#777">… {n - limit} more tokens (the JupyterLab extension shows them all)</div>'
        )
    return "".join(spans)


def _legend() -> str:
    items = "".join(
        f'<span style="background:{c}33;border-bottom:2px solid {c};margin-right:8px;padding:0 4px">{_esc(ch)}</span>'
        for ch, c in CHANNEL_COLOURS.items()
    )
    return f'<div style="margin:4px 0">{items}<span style="color:#555">underline = trained (loss mask)</span></div>'


def harmony_html(payload: dict) -> str:
    parts = ['<div class="oss-finetune-harmony" style="font-family:monospace;font-size:12px">', _legend()]
    for index, conversation in enumerate(payload["conversations"]):
        title = conversation.get("title") or f"conversation {index}"
        streams = [conversation["tokens"]] + ([conversation["compare"]] if "compare" in conversation else [])
        parts.append(f'<div><b>{_esc(title)}</b></div><div style="display:flex;gap:12px">')
        for stream in streams:
            label = stream.get("label")
            parts.append('<div style="flex:1;white-space:pre-wrap;line-height:1.6">')
            if label:
                parts.append(f"<div><i>{_esc(label)}</i></div>")
            parts.append(_token_spans(stream))
            parts.append("</div>")
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


# Training run -----------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _fmt(value: Any, spec: str = ".4g") -> str:
    return "–" if value is None else format(value, spec)


def training_text(payload: dict) -> str:
    step, total = payload["step"], payload["max_steps"]
    width = 30
    filled = int(width * step / total) if total else 0
    bar = "█" * filled + "░" * (width - filled)
    line = f"{payload['run_id']} [{payload['status']}] {bar} step {step}/{total}"
    if payload.get("elapsed_seconds") is not None:
        line += f" · elapsed {_duration(payload['elapsed_seconds'])}"
    if payload.get("eta_seconds") is not None and payload["status"] == "running":
        line += f" · ETA {_duration(payload['eta_seconds'])}"
    metrics = payload["metrics"]
    if metrics:
        last = metrics[-1]
        line += (
            f"\nloss {_fmt(last['loss'])} · lr {_fmt(last.get('lr'), '.3g')} · grad norm {_fmt(last.get('grad_norm'), '.3g')}"
            f" · {_fmt(last.get('tokens_per_second'), ',.0f')} tokens/s"
        )
        if last.get("gpu_memory_gib") is not None:
            line += f" · GPU {last['gpu_memory_gib']:.1f} GiB"
    goal = goal_text(metrics)
    if goal:
        line += f"\n{goal}"
    if payload.get("message"):
        line += f"\n{payload['message']}"
    return line


def goal_points(metrics: list[dict]) -> list[tuple[int, dict]]:
    """The steps at which the goal was watched, with its measure."""
    return [(m["step"], m["goal"]) for m in metrics if m.get("goal")]


def goal_text(metrics: list[dict]) -> str:
    """One line: the goal and its rate at every watched step, e.g. 'goal, reasoned in ...: 0% at step 10, 50% at step 20'."""
    points = goal_points(metrics)
    if not points:
        return ""
    label = points[-1][1]["label"]
    rates = ", ".join(f"{g['rate']:.0%} ({g['passed']}/{g['total']}) at step {step}" for step, g in points)
    return f"goal, {label}: {rates}"


def _sparkline(
    values: list[float],
    width: int = 320,
    height: int = 60,
    *,
    label: str = "loss curve",
    colour: str = "#0072B2",
    low: float | None = None,
    high: float | None = None,
) -> str:
    points = [v for v in values if v is not None and math.isfinite(v)]
    if len(points) < 2:
        return ""
    lo = min(points) if low is None else low
    hi = max(points) if high is None else high
    span = (hi - lo) or 1.0
    step = width / (len(points) - 1)
    coords = " ".join(f"{i * step:.1f},{height - 4 - (v - lo) / span * (height - 8):.1f}" for i, v in enumerate(points))
    return (
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}">'
        f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{coords}"/></svg>'
    )


def _goal_html(metrics: list[dict]) -> str:
    points = goal_points(metrics)
    if not points:
        return ""
    # The rate's scale is fixed at 0 to 100%, so that a flat curve near 0 does not look like progress.
    curve = _sparkline(
        [g["rate"] for _, g in points], label="goal curve", colour="#009E73", low=0.0, high=1.0, height=40
    )
    return f'<div style="margin-top:4px">{_esc(goal_text(metrics))}</div>{curve}'


def training_html(payload: dict) -> str:
    step, total = payload["step"], payload["max_steps"]
    pct = 100.0 * step / total if total else 0.0
    metrics = payload["metrics"]
    rows = ""
    if metrics:
        last = metrics[-1]
        cells = [
            ("loss", _fmt(last["loss"])),
            ("lr", _fmt(last.get("lr"), ".3g")),
            ("grad norm", _fmt(last.get("grad_norm"), ".3g")),
            ("tokens/s", _fmt(last.get("tokens_per_second"), ",.0f")),
            ("GPU memory (GiB)", _fmt(last.get("gpu_memory_gib"), ".1f")),
        ]
        rows = "".join(f"<tr><td>{_esc(k)}</td><td>{_esc(v)}</td></tr>" for k, v in cells)
    eta = _duration(payload.get("eta_seconds")) if payload["status"] == "running" else "–"
    message = f"<div>{_esc(payload['message'])}</div>" if payload.get("message") else ""
    return (
        '<div class="oss-finetune-training" style="font-family:sans-serif;font-size:13px">'
        f"<div><b>{_esc(payload['run_id'])}</b> · {_esc(payload['status'])} · step {step}/{total} · ETA {_esc(eta)}</div>"
        f'<div style="background:#eee;width:320px;height:8px"><div style="background:#009E73;width:{pct:.1f}%;height:8px"></div></div>'
        f"{_sparkline([m['loss'] for m in metrics])}{_goal_html(metrics)}"
        f"<table>{rows}</table>{message}</div>"
    )


# Data set summary -------------------------------------------------------------------------------


def _rows(n: int) -> str:
    return f"{n:,} row" + ("" if n == 1 else "s")


def dataset_text(payload: dict) -> str:
    langs = ", ".join(f"{k} {v}" for k, v in sorted(payload["languages"].items(), key=lambda kv: -kv[1]))
    over = payload["over_limit"]
    trained = payload["tokens_trained"] / payload["tokens_total"] if payload["tokens_total"] else 0.0
    lengths = payload["token_lengths"]
    lines = [
        f"{payload['source']}: {_rows(payload['rows'])}"
        + (f" ({payload.get('format')})" if payload.get("format") else ""),
        f"languages: {langs or '–'}",
        f"tokens: {payload['tokens_total']:,} total, {payload['tokens_trained']:,} trained ({trained:.0%}, loss mask {payload.get('loss_mask', '?')})",
        f"length: min {lengths.get('min')}, mean {_fmt(lengths.get('mean'), '.0f')}, max {lengths.get('max')}; "
        f"{_rows(over['rows'])} over max_seq_length {payload['max_seq_length']} ({'truncated' if over['action'] == 'truncate' else 'dropped'})",
    ]
    special = payload.get("rows_with_special_text") or 0
    if special:
        lines.append(
            f"{_rows(special)} with special-token text in a message (<|end|> typed out), encoded as plain text"
        )
    skipped = payload.get("skipped_rows") or []
    if skipped:
        lines.append(
            f"{len(skipped)} bad {_rows(len(skipped)).split(' ', 1)[1]} skipped, first: row {skipped[0]['row']}: {skipped[0]['error']}"
        )
    return "\n".join(lines)


def _histogram(edges: list[float], counts: list[int], width: int = 320, height: int = 80) -> str:
    if not counts:
        return ""
    top = max(counts) or 1
    bar = width / len(counts)
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - c / top * height:.1f}" width="{max(bar - 1, 1):.1f}" '
        f'height="{c / top * height:.1f}" fill="#56B4E9"><title>{_esc(f"{edges[i]:g}–{edges[i + 1]:g} tokens: {c} rows")}</title></rect>'
        for i, c in enumerate(counts)
    )
    return f'<svg width="{width}" height="{height}" role="img" aria-label="token length histogram">{rects}</svg>'


def dataset_html(payload: dict) -> str:
    langs = "".join(
        f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>"
        for k, v in sorted(payload["languages"].items(), key=lambda kv: -kv[1])
    )
    text = _esc(dataset_text(payload)).replace("\n", "<br>")
    lengths = payload["token_lengths"]
    return (
        '<div class="oss-finetune-dataset" style="font-family:sans-serif;font-size:13px">'
        f"<div>{text}</div>{_histogram(lengths['edges'], lengths['counts'])}"
        f"<table><tr><th>language</th><th>rows</th></tr>{langs}</table></div>"
    )


# Runs side by side -----------------------------------------------------------------------------

# One colour per run, in order (Okabe–Ito, as the channels); runs past the eighth reuse them.
RUN_COLOURS = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]


def _some_points(points: list[dict], key: str, most: int = 6) -> str:
    """A curve in a few numbers: at most ``most`` of its points, the first and the last always."""
    kept = [p for p in points if p.get(key) is not None]
    if len(kept) > most:
        picks = sorted({round(i * (len(kept) - 1) / (most - 1)) for i in range(most)})
        kept = [kept[i] for i in picks]
    spec = ".0%" if key == "goal" else ".4g"
    return ", ".join(f"{format(p[key], spec)} at step {p['step']}" for p in kept)


def comparison_text(payload: dict) -> str:
    runs = payload["runs"]
    if not runs:
        lines = [f"no runs in {payload['output_dir']} yet"]
    else:
        lines = [f"{len(runs)} run{'' if len(runs) == 1 else 's'} in {payload['output_dir']}"]
    for run in runs:
        total = run.get("max_steps") or "?"
        lines.append(f"── {run['run_id']}: {run['status']} at step {run['step']}/{total}")
        lines.append(f"   loss by step: {_some_points(run['points'], 'loss') or 'none logged'}")
        if run.get("goal_label"):
            lines.append(f"   goal, {run['goal_label']}: {_some_points(run['points'], 'goal')}")
    differences = payload["differences"]
    if len(runs) > 1:
        same = payload.get("same_settings")
        alike = f" ({same} other{'' if same == 1 else 's'} alike)" if same is not None else ""
        if differences:
            lines.append(f"settings that differ{alike}:")
            width = max(len(r["run_id"]) for r in runs)
            for difference in differences:
                lines.append(f"  {difference['setting']}")
                lines += [
                    f"    {run['run_id'].ljust(width)}  {value}" for run, value in zip(runs, difference["values"])
                ]
        else:
            lines.append(f"the runs' settings are all alike{alike}")
    for reason in payload.get("left_out") or []:
        lines.append(f"left out: {reason}")
    return "\n".join(lines)


def _overlay_svg(runs: list[dict], key: str, label: str, *, low: float | None = None, high: float | None = None) -> str:
    """The runs' curves of ``key`` over the steps, on shared axes, one colour per run."""
    width, height, pad = 420, 140, 6
    curves = [[(p["step"], p[key]) for p in run["points"] if p.get(key) is not None] for run in runs]
    values = [v for curve in curves for _, v in curve if math.isfinite(v)]
    if not values:
        return ""
    lo = min(values) if low is None else low
    hi = max(values) if high is None else high
    span = (hi - lo) or 1.0
    last = max((s for curve in curves for s, _ in curve), default=1)
    first = min((s for curve in curves for s, _ in curve), default=0)
    steps = (last - first) or 1

    def xy(step: int, value: float) -> str:
        x = pad + (step - first) / steps * (width - 2 * pad)
        y = height - pad - (value - lo) / span * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    lines = []
    for index, (run, curve) in enumerate(zip(runs, curves)):
        colour = RUN_COLOURS[index % len(RUN_COLOURS)]
        points = " ".join(xy(s, v) for s, v in curve if math.isfinite(v))
        if len(curve) == 1:
            x, y = points.split(",")
            lines.append(
                f'<circle cx="{x}" cy="{y}" r="2.5" fill="{colour}"><title>{_esc(run["run_id"])}</title></circle>'
            )
        elif points:
            lines.append(
                f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
                f"<title>{_esc(run['run_id'])}</title></polyline>"
            )
    scale = f"{format(lo, '.0%' if key == 'goal' else '.4g')} to {format(hi, '.0%' if key == 'goal' else '.4g')}"
    return (
        f'<div style="margin-top:6px"><b>{_esc(label)}</b> <span style="color:#555">(steps {first} to {last}; '
        f"values {_esc(scale)})</span></div>"
        f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}" '
        f'style="border-left:1px solid #999;border-bottom:1px solid #999">{"".join(lines)}</svg>'
    )


def comparison_html(payload: dict) -> str:
    runs = payload["runs"]
    legend = "".join(
        f'<div><span style="display:inline-block;width:12px;height:3px;background:{RUN_COLOURS[i % len(RUN_COLOURS)]};'
        f'vertical-align:middle;margin-right:6px"></span>{_esc(run["run_id"])} · {_esc(run["status"])} · step '
        f"{run['step']}/{_esc(str(run.get('max_steps') or '?'))}</div>"
        for i, run in enumerate(runs)
    )
    goal_labels = sorted({run["goal_label"] for run in runs if run.get("goal_label")})
    charts = _overlay_svg(runs, "loss", "loss")
    if goal_labels:
        charts += _overlay_svg(runs, "goal", "goal: " + "; ".join(goal_labels), low=0.0, high=1.0)
    table = ""
    if payload["differences"]:
        head = "".join(f"<th>{_esc(run['run_id'])}</th>" for run in runs)
        body = "".join(
            f"<tr><td><code>{_esc(d['setting'])}</code></td>"
            + "".join(f"<td><code>{_esc(v)}</code></td>" for v in d["values"])
            + "</tr>"
            for d in payload["differences"]
        )
        table = f"<div style='margin-top:6px'><b>settings that differ</b></div><table><tr><th>setting</th>{head}</tr>{body}</table>"
    text = _esc(comparison_text(payload).split("\n", 1)[0])
    left = "".join(f'<div style="color:#777">left out: {_esc(r)}</div>' for r in payload.get("left_out") or [])
    return (
        '<div class="oss-finetune-runs" style="font-family:sans-serif;font-size:13px">'
        f"<div>{text}</div>{legend}{charts}{table}{left}</div>"
    )


# Memory plan ------------------------------------------------------------------------------------


def memory_bundle(plan, *, title: str = "memory plan", lead: str | None = None) -> dict:
    """A memory.MemoryPlan as text/plain and its HTML twin; ``lead`` is a line shown above it."""
    text = plan.text(title)
    markup = plan.html(title)
    if lead:
        text = f"{lead}\n{text}"
        markup = f'<div class="oss-finetune-text" style="font-family:monospace">{_esc(lead)}</div>{markup}'
    return {"text/plain": text, "text/html": markup}


# Live outputs -----------------------------------------------------------------------------------


class LiveOutput:
    """One output that is replaced in place (display_id) each time ``update`` is called."""

    def __init__(self, name: str, display_id: str | None = None):
        self.name = name
        self.display_id = display_id or f"oss-finetune-{uuid.uuid4().hex}"
        self._shown = False

    def update(self, payload: dict) -> None:
        from IPython.display import display, update_display

        data = bundle(self.name, payload)
        if self._shown:
            update_display(data, raw=True, display_id=self.display_id)
        else:
            display(data, raw=True, display_id=self.display_id)
            self._shown = True


# Redrawing an output costs a message to the browser and a re-render there: a few a second read as
# live, one per token (hundreds a second on a GPU) would flood both.
REDRAW_SECONDS = 0.2


class TokenStream:
    """Generated text shown as it comes: one output, redrawn in place at most every ``REDRAW_SECONDS``,
    one column per row (``labels``). ``finish`` replaces it with the final view.

    ``decode(ids)`` turns a row's ids into text; a row is decoded whole at each redraw, so that a
    character split over two tokens is never shown half."""

    def __init__(
        self,
        title: str,
        decode: Callable[[list[int]], str],
        labels: Sequence[str] = ("",),
        *,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.title = title
        self.decode = decode
        self.labels = list(labels)
        self.ids: list[list[int]] = [[] for _ in self.labels]
        self.clock = clock
        self.display_id = f"oss-finetune-{uuid.uuid4().hex}"
        self._drawn_at: float | None = None
        self._drawn_count = -1

    def start(self) -> None:
        from IPython.display import display

        display(self.bundle(), raw=True, display_id=self.display_id)
        self._drawn_at, self._drawn_count = self.clock(), self.count

    @property
    def count(self) -> int:
        return sum(len(ids) for ids in self.ids)

    def add(self, row: int, token: int) -> None:
        """One new token of ``row``; redraws when the last redraw is ``REDRAW_SECONDS`` old."""
        self.ids[row].append(int(token))
        now = self.clock()
        if self._drawn_at is None:
            self.start()
        elif now - self._drawn_at >= REDRAW_SECONDS:
            self.redraw(now)

    def redraw(self, now: float | None = None) -> None:
        from IPython.display import update_display

        if self.count == self._drawn_count:
            return
        update_display(self.bundle(), raw=True, display_id=self.display_id)
        self._drawn_at, self._drawn_count = self.clock() if now is None else now, self.count

    def finish(self, data: dict) -> None:
        """Replace the stream with ``data`` (a MIME bundle), in the same output."""
        from IPython.display import display, update_display

        if self._drawn_at is None:
            display(data, raw=True, display_id=self.display_id)
        else:
            update_display(data, raw=True, display_id=self.display_id)
        self._drawn_at, self._drawn_count = self.clock(), self.count

    def texts(self) -> list[str]:
        return [self.decode(ids) if ids else "" for ids in self.ids]

    def bundle(self) -> dict:
        count = self.count
        head = f"{self.title}: generating, {count} token{'' if count == 1 else 's'} so far"
        texts = self.texts()
        plain = [head]
        columns = []
        for label, text in zip(self.labels, texts):
            if label:
                plain.append(f"── {label}")
            plain.append(text)
            name = f"<div><i>{_esc(label)}</i></div>" if label else ""
            columns.append(
                f'<div style="flex:1;min-width:0">{name}'
                f'<pre style="white-space:pre-wrap;margin:0">{_esc(text)}</pre></div>'
            )
        markup = (
            '<div class="oss-finetune-stream" style="font-family:monospace;font-size:12px">'
            f'<div style="color:#555">{_esc(head)}</div>'
            f'<div style="display:flex;gap:12px">{"".join(columns)}</div></div>'
        )
        return {"text/plain": "\n".join(plain), "text/html": markup}


class ProgressLine:
    """One line of progress, "what: done/total noun, elapsed, ETA", updated in place at most every
    ``REDRAW_SECONDS`` (the first and the last count always); ``finish`` replaces it with a summary."""

    def __init__(self, what: str, noun: str = "prompts", *, clock: Callable[[], float] = time.monotonic):
        self.what = what
        self.noun = noun
        self.clock = clock
        self.started = clock()
        self.display_id = f"oss-finetune-{uuid.uuid4().hex}"
        self._drawn_at: float | None = None

    def text(self, done: int, total: int, now: float | None = None) -> str:
        elapsed = (self.clock() if now is None else now) - self.started
        eta = elapsed / done * (total - done) if done else None
        line = f"{self.what}: {done}/{total} {self.noun}, elapsed {_duration(elapsed)}"
        return line + (f", ETA {_duration(eta)}" if done < total else "")

    def update(self, done: int, total: int) -> None:
        now = self.clock()
        if self._drawn_at is not None and done < total and now - self._drawn_at < REDRAW_SECONDS:
            return
        self._publish(self.text(done, total, now))
        self._drawn_at = now

    def finish(self, line: str) -> None:
        self._publish(line)
        self._drawn_at = self.clock()

    def _publish(self, line: str) -> None:
        from IPython.display import display, update_display

        data = {"text/plain": line, "text/html": f'<pre class="oss-finetune-text">{_esc(line)}</pre>'}
        if self._drawn_at is None:
            display(data, raw=True, display_id=self.display_id)
        else:
            update_display(data, raw=True, display_id=self.display_id)


def show(name: str, payload: dict) -> None:
    """Display one payload as a rich output in the current cell."""
    from IPython.display import display

    display(bundle(name, payload), raw=True)
