"""The dashboard's pictures, drawn as SVG on the server: no script, so they show without
JavaScript and in any browser.

`load_chart` draws the load history (home/load.jsonl samples) as one small panel per series:
CPU load per core, memory in use, and each GPU's utilisation, with the spans where starts
were throttled shaded. `attempts_chart` draws a task's attempts on one time axis. Both are
pure functions of their input and the time `now`; every text in them is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape
from typing import Any

from bantzd.clock import epoch
from bantzd.units import format_duration, format_size

WIDTH = 720
PANEL = 64  # height of one panel's plot area
GAP = 26  # room above a panel for its title
LEFT = 44
RIGHT = 8
# Samples further apart than this are time the supervisor was not looking: the line breaks.
MAX_GAP = 60.0
MAX_POINTS = 480  # a night of 5 s samples is bucketed down to this many points


@dataclass(frozen=True)
class Series:
    """One panel: a title, its points (t, value or None) and the top of its scale."""

    title: str
    points: list[tuple[float, float | None]]
    top: float
    unit: Callable[[float], str]
    css: str


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _used_percent(free: object, total: int) -> float | None:
    value = _num(free)
    return None if value is None else 100.0 * (1 - value / total)


def load_series(samples: Sequence[dict[str, Any]], total_memory: int) -> list[Series]:
    """The panels of the load chart from load.jsonl samples (bad fields are skipped)."""
    cpu = [(s["t"], _num(s.get("load_per_core"))) for s in samples]
    cpu_peak = max((v for _, v in cpu if v is not None), default=0.0)
    panels = [
        Series("CPU load per core", cpu, max(1.0, cpu_peak), lambda v: f"{v:.2f}", "cpu"),
    ]
    if total_memory > 0:
        used = [(s["t"], _used_percent(s.get("free_memory"), total_memory)) for s in samples]
        panels.append(Series("memory in use", used, 100.0, lambda v: f"{v:.0f}%", "mem"))
    else:
        free = [(s["t"], _num(s.get("free_memory"))) for s in samples]
        top = max((v for _, v in free if v is not None), default=1.0)
        panels.append(Series("memory free", free, top, lambda v: format_size(int(v)), "mem"))
    indices = sorted(
        {
            g["index"]
            for s in samples
            for g in (s.get("gpus") or [])
            if isinstance(g, dict) and isinstance(g.get("index"), int)
        }
    )
    for index in indices:
        points = []
        for s in samples:
            gpu = next(
                (g for g in s.get("gpus") or [] if isinstance(g, dict) and g.get("index") == index),
                None,
            )
            points.append((s["t"], _num(gpu.get("util")) if gpu else None))
        panels.append(Series(f"GPU {index} busy", points, 100.0, lambda v: f"{v:.0f}%", "gpu"))
    return panels


def _bucket(points: list[tuple[float, float | None]], start: float, end: float) -> list:
    """At most MAX_POINTS points: the mean of each time bucket, gaps kept as None."""
    if len(points) <= MAX_POINTS:
        return points
    width = (end - start) / MAX_POINTS or 1.0
    sums: dict[int, list[float]] = {}
    times: dict[int, float] = {}
    for t, v in points:
        b = min(int((t - start) / width), MAX_POINTS - 1)
        times.setdefault(b, t)
        if v is not None:
            sums.setdefault(b, []).append(v)
    out: list[tuple[float, float | None]] = []
    for b in sorted(times):
        vals = sums.get(b)
        out.append((times[b], sum(vals) / len(vals) if vals else None))
    return out


def _throttled_spans(samples: Sequence[dict[str, Any]]) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for i, s in enumerate(samples):
        if not s.get("throttled"):
            continue
        t = s["t"]
        nxt = samples[i + 1]["t"] if i + 1 < len(samples) else t
        end = min(nxt, t + MAX_GAP)
        if spans and abs(spans[-1][1] - t) < 1e-6:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((t, end))
    return spans


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t).strftime("%H:%M")


def load_chart(
    samples: Sequence[dict[str, Any]], now: float, span: float, total_memory: int = 0
) -> str:
    """The load history as an SVG document fragment; a short sentence when there is none."""
    samples = [s for s in samples if _num(s.get("t")) is not None]
    if not samples:
        return (
            '<p class="muted">No load samples yet: the supervisor records one every few '
            "seconds while it runs (home/load.jsonl).</p>"
        )
    start = max(now - span, samples[0]["t"])
    end = max(now, start + 1.0)
    x_of = _scale(start, end)
    panels = load_series(samples, total_memory)
    height = len(panels) * (PANEL + GAP) + 18
    out = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="load from {_clock(start)} to {_clock(end)}" '
        'xmlns="http://www.w3.org/2000/svg">'
    ]
    spans = _throttled_spans(samples)
    for n, series in enumerate(panels):
        top = n * (PANEL + GAP) + GAP
        out.append(_panel(series, top, start, end, x_of, spans))
    out.append(_axis(start, end, x_of, height - 4))
    out.append("</svg>")
    return "".join(out)


def _scale(start: float, end: float) -> Callable[[float], float]:
    plot = WIDTH - LEFT - RIGHT

    def x_of(t: float) -> float:
        return LEFT + plot * (min(max(t, start), end) - start) / (end - start)

    return x_of


def _panel(
    series: Series,
    top: int,
    start: float,
    end: float,
    x_of: Callable[[float], float],
    spans: list[tuple[float, float]],
) -> str:
    bottom = top + PANEL
    parts = [
        f'<g class="panel {escape(series.css)}">',
        f'<text class="title" x="{LEFT}" y="{top - 8}">{escape(series.title)}</text>',
    ]
    for a, b in spans:
        if b > start:
            parts.append(
                f'<rect class="throttled" x="{x_of(a):.1f}" y="{top}" '
                f'width="{max(1.0, x_of(b) - x_of(a)):.1f}" height="{PANEL}"/>'
            )
    parts.append(
        f'<rect class="frame" x="{LEFT}" y="{top}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{PANEL}"/>'
    )
    parts.append(
        f'<text class="tick" x="{LEFT - 4}" y="{top + 9}" text-anchor="end">'
        f"{escape(series.unit(series.top))}</text>"
        f'<text class="tick" x="{LEFT - 4}" y="{bottom}" text-anchor="end">0</text>'
    )
    top_value = series.top or 1.0
    runs: list[list[str]] = [[]]
    last_t: float | None = None
    values: list[float] = []
    for t, v in _bucket(series.points, start, end):
        if t < start:
            continue
        if v is None or (last_t is not None and t - last_t > MAX_GAP * 2):
            runs.append([])
        if v is not None:
            values.append(v)
            y = bottom - PANEL * min(max(v, 0.0), top_value) / top_value
            runs[-1].append(f"{x_of(t):.1f},{y:.1f}")
        last_t = t
    for run in runs:
        if len(run) == 1:
            x, y = run[0].split(",")
            parts.append(f'<circle class="line" cx="{x}" cy="{y}" r="1.5"/>')
        elif run:
            parts.append(f'<polyline class="line" points="{" ".join(run)}"/>')
    if values:
        summary = (
            f"average {series.unit(sum(values) / len(values))}, peak {series.unit(max(values))}"
        )
        parts.append(
            f'<text class="summary" x="{WIDTH - RIGHT}" y="{top - 8}" text-anchor="end">'
            f"{escape(summary)}</text>"
        )
    parts.append("</g>")
    return "".join(parts)


def _axis(start: float, end: float, x_of: Callable[[float], float], y: int) -> str:
    span = end - start
    step = next((s for s in (600, 1800, 3600, 7200, 10800) if span / s <= 8), 21600)
    first = math.ceil(start / step) * step
    ticks = []
    t = first
    while t <= end:
        ticks.append(
            f'<text class="tick" x="{x_of(t):.1f}" y="{y}" text-anchor="middle">'
            f"{escape(_clock(t))}</text>"
        )
        t += step
    if not ticks:
        ticks.append(f'<text class="tick" x="{LEFT}" y="{y}">{escape(_clock(start))}</text>')
    return "".join(ticks)


# a task's attempts -----------------------------------------------------------------------

LABEL_ROOM = 150
OUTCOME_CSS = {
    "done": "done",
    "failed": "failed",
    "asked": "asked",
    "interrupted": "stopped",
    "running": "running",
}


def attempts_chart(attempt_log: Sequence[object], now: float) -> str | None:
    """Each attempt of a task as a bar on one time axis (SVG), or None without attempts."""
    bars = []
    for i, entry in enumerate(attempt_log):
        if not isinstance(entry, dict):
            continue
        start = epoch(entry.get("start"))
        if start is None:
            continue
        end = epoch(entry.get("end"))
        outcome = str(entry.get("outcome") or ("running" if end is None else ""))
        number = entry.get("attempt") if isinstance(entry.get("attempt"), int) else i + 1
        bars.append((number, start, end if end is not None else now, outcome))
    if not bars:
        return None
    first = min(b[1] for b in bars)
    last = max(max(b[2] for b in bars), first + 1.0)
    x_of = _scale(first, last)
    row = 22
    height = len(bars) * row + 22
    out = [
        f'<svg class="chart attempts" viewBox="0 0 {WIDTH} {height}" role="img" '
        'aria-label="attempts" xmlns="http://www.w3.org/2000/svg">'
    ]
    for n, (number, start, end, outcome) in enumerate(bars):
        y = n * row + 4
        x0, x1 = x_of(start), x_of(end)
        css = OUTCOME_CSS.get(outcome, "other")
        label = f"#{number} {outcome or 'ended'} {format_duration(max(0.0, end - start))}"
        out.append(
            f'<rect class="bar {css}" x="{x0:.1f}" y="{y}" width="{max(2.0, x1 - x0):.1f}" '
            f'height="{row - 8}"><title>{escape(label)}</title></rect>'
            f'<text class="tick" x="{LEFT - 4}" y="{y + 11}" text-anchor="end">'
            f"#{number}</text>"
        )
        # The label goes right of the bar, else left of it, else over its start.
        if x1 + LABEL_ROOM < WIDTH:
            anchor, tx = "start", x1 + 4
        elif x0 - LABEL_ROOM > LEFT:
            anchor, tx = "end", x0 - 4
        else:
            anchor, tx = "start", x0 + 4
        out.append(
            f'<text class="label" x="{tx:.1f}" y="{y + 11}" text-anchor="{anchor}">'
            f"{escape(label)}</text>"
        )
    out.append(_axis(first, last, x_of, height - 4))
    out.append("</svg>")
    return "".join(out)
