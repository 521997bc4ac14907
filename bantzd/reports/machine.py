"""The Machine section's numbers: load over the night and how long starts were throttled.

Pure functions of the load history samples (home/load.jsonl, one line per probe:
`{"t", "load_per_core", "free_memory", "gpus": [{"index", "util", "free_memory"}],
"throttled"}`) and the journal's `throttle_start` / `throttle_end` events. Both are read
defensively: a field that is missing or of the wrong type leaves that sample out of that
figure, nothing more.

Throttled time comes from the journal when it has throttle events in the period; without
them it is estimated from the samples' `throttled` field (each throttled sample counts
until the next one, at most MAX_SAMPLE_GAP).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bantzd.clock import epoch

THROTTLE_START = "throttle_start"
THROTTLE_END = "throttle_end"
RUN_STARTED = "supervisor_started"
RUN_STOPPED = "supervisor_stopped"
# A gap between two samples longer than this is time the supervisor was not looking.
MAX_SAMPLE_GAP = 60.0
_KIND = re.compile(r"[^\d<>=(]*")


@dataclass(frozen=True)
class Stats:
    """Average and peak of a series."""

    average: float
    peak: float
    count: int


@dataclass(frozen=True)
class GpuStats:
    """One GPU over the period: utilisation (None when never reported), least free memory."""

    index: int
    util: Stats | None
    least_free: int | None


@dataclass(frozen=True)
class Throttling:
    """Time starts were held for one kind of reason, and the first reason seen of that kind."""

    kind: str
    seconds: float
    example: str


def finite_number(value: object) -> float | None:
    """`value` as a float when it is a finite int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def stats(values: Sequence[float]) -> Stats | None:
    """Average and peak of `values`, None for none."""
    if not values:
        return None
    return Stats(sum(values) / len(values), max(values), len(values))


def cpu_load(samples: Iterable[Mapping[str, Any]]) -> Stats | None:
    """Load per core over the samples that carry one."""
    values = [v for s in samples if (v := finite_number(s.get("load_per_core"))) is not None]
    return stats(values)


def gpu_loads(samples: Iterable[Mapping[str, Any]]) -> list[GpuStats]:
    """Per GPU index: utilisation average and peak, least free memory; by index."""
    utils: dict[int, list[float]] = {}
    free: dict[int, int] = {}
    for sample in samples:
        gpus = sample.get("gpus")
        if not isinstance(gpus, list):
            continue
        for gpu in gpus:
            if not isinstance(gpu, Mapping):
                continue
            index = gpu.get("index")
            if isinstance(index, bool) or not isinstance(index, int):
                continue
            values = utils.setdefault(index, [])
            if (util := finite_number(gpu.get("util"))) is not None:
                values.append(util)
            if (mem := finite_number(gpu.get("free_memory"))) is not None:
                free[index] = min(free.get(index, int(mem)), int(mem))
    return [GpuStats(i, stats(utils[i]), free.get(i)) for i in sorted(utils)]


def _reason(value: object) -> str:
    text = " ".join(str(value or "").split()).removeprefix("throttled:").strip()
    return text or "?"


def _time(event: Mapping[str, Any]) -> float | None:
    t = finite_number(event.get("t"))
    return t if t is not None else epoch(event.get("ts"))


def throttle_spans(
    events: Sequence[Mapping[str, Any]], run_end: float | None
) -> list[tuple[str, float, float]] | None:
    """(reason, start, end) of every throttled stretch in the journal events; None when the
    events hold no throttle event at all (then the samples are the only evidence).

    A stretch ends at `throttle_end`, at a new `throttle_start` with another reason, when
    the supervisor stops or starts again (it may have died throttled), or at `run_end`.
    """
    if not any(e.get("event") in (THROTTLE_START, THROTTLE_END) for e in events):
        return None
    spans: list[tuple[str, float, float]] = []
    current: tuple[str, float] | None = None
    for event in events:
        kind = event.get("event")
        if kind not in (THROTTLE_START, THROTTLE_END, RUN_STARTED, RUN_STOPPED):
            continue
        t = _time(event)
        if t is None:
            continue
        if kind == THROTTLE_START:
            reason = _reason(event.get("reason"))
            if current is not None and current[0] == reason:
                continue  # the same stretch, said again
            if current is not None:
                spans.append((current[0], current[1], t))
            current = (reason, t)
        elif current is not None:
            spans.append((current[0], current[1], t))
            current = None
    if current is not None and run_end is not None:
        spans.append((current[0], current[1], max(current[1], run_end)))
    return spans


def sample_spans(samples: Sequence[Mapping[str, Any]]) -> list[tuple[str, float, float]]:
    """Throttled stretches estimated from the samples' `throttled` field."""
    timed = [(t, s) for s in samples if (t := finite_number(s.get("t"))) is not None]
    timed.sort(key=lambda pair: pair[0])
    spans = []
    for (t, sample), (t_next, _) in itertools.pairwise(timed):
        why = sample.get("throttled")
        if why:
            spans.append((_reason(why), t, min(t_next, t + MAX_SAMPLE_GAP)))
    return spans


def throttling(spans: Iterable[tuple[str, float, float]]) -> list[Throttling]:
    """Throttled time per kind of reason (`cpu load`, `free memory`), longest first.

    Reasons carry numbers (`cpu load 3.9 > 1.5`); the kind is the words before them, and the
    first reason of each kind is kept as an example.
    """
    total: dict[str, float] = {}
    example: dict[str, str] = {}
    for reason, start, end in spans:
        kind = _KIND.match(reason).group(0).strip(" :,") or reason  # type: ignore[union-attr]
        total[kind] = total.get(kind, 0.0) + max(0.0, end - start)
        example.setdefault(kind, reason)
    found = [Throttling(k, s, example[k]) for k, s in total.items() if s > 0]
    return sorted(found, key=lambda x: (-round(x.seconds), x.kind))
