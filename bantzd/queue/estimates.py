"""How long a task will take (SPEC 11): `estimate:` in its file, else learned from history.

The learned estimate follows Tsafrir, Etsion and Feitelson (IEEE TPDS 2007): the mean of
the last two successful runs of the same name predicts better than a person's guess, and
when a run outlives the estimate it had, the estimate is raised to that run. `learned` is
that rule as a pure function of the history; `EstimateBook` keeps the history of each name
in the home's `estimates.json` (replaced atomically), recorded when a task ends done.

A schedule's instances (`NAME@TIME`) share their schedule's name: `history_key`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bantzd.clock import epoch
from bantzd.queue.atomic import read_json, write_json_atomic
from bantzd.queue.task import TaskState
from bantzd.units import format_duration

log = logging.getLogger("bantzd")

KEEP = 10  # runs kept per name (two are used; the rest explain the estimate to a person)
FILE_VERSION = 1


@dataclass(frozen=True)
class Run:
    """One successful run: which task, how long its work took, the estimate it started with."""

    task_id: int
    took: float
    estimate: float | None = None


@dataclass(frozen=True)
class Estimate:
    """An estimate in seconds and where it comes from (`2 runs`, `the task file`)."""

    seconds: float
    source: str

    def words(self) -> str:
        """`estimate 3h10m from 2 runs`."""
        return f"estimate {compact_duration(self.seconds)} from {self.source}"


def compact_duration(seconds: float) -> str:
    """`3h10m`: format_duration without its space (the form reasons quote)."""
    return format_duration(seconds).replace(" ", "")


def learned(runs: Sequence[Run]) -> float | None:
    """The estimate the history gives: the mean of the last two runs, raised to the last
    run when that run overran the estimate it started with; None with no history."""
    if not runs:
        return None
    recent = [r.took for r in runs[-2:]]
    mean = sum(recent) / len(recent)
    last = runs[-1]
    if last.estimate is not None and last.took > last.estimate:
        return max(mean, last.took)
    return mean


def from_history(runs: Sequence[Run]) -> Estimate | None:
    """`learned` with its source for a reason: `estimate 3h10m from 2 runs`."""
    seconds = learned(runs)
    if seconds is None:
        return None
    n = min(2, len(runs))
    return Estimate(seconds, "1 run" if n == 1 else f"{n} runs")


def history_key(state: TaskState) -> str:
    """The name a task's history is kept under: its schedule's for an instance."""
    return state.schedule or state.name


def work_seconds(state: TaskState) -> float | None:
    """How long a done task's work took: its attempts that ended done or were interrupted
    (a resumed task's work is spread over them), not the failed ones before them."""
    total = 0.0
    counted = False
    for entry in state.attempt_log:
        if not isinstance(entry, dict) or entry.get("outcome") not in ("done", "interrupted"):
            continue
        start, end = epoch(entry.get("start")), epoch(entry.get("end"))
        if start is None or end is None:
            continue
        total += max(0.0, end - start)
        counted = True
    return total if counted else None


class EstimateBook:
    """The runs of each name, read from and written to one JSON file of the home.

    `version` goes up with every change, so a cached view built from an older book can
    tell it is stale; `key_version` does the same for one name, so a run of one task does
    not make the supervisor rebuild its view of every queued one. A damaged file is read as
    empty (the history is advice, never a reason to stop a night) and is replaced by the
    next write.

    `record` changes the book in memory and marks it `dirty`; `save` (or the supervisor's
    group commit, with `take_json`) writes it. Rewriting the whole file after every run cost
    more than the run of a short task; the history is advice, so the supervisor writes it
    at most every few seconds and when it stops, and a crash loses at most those seconds of
    it (the tasks' own states are durable as ever).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.version = 0
        self.dirty = False
        self._changed: dict[str, int] = {}
        self._runs: dict[str, list[Run]] = _parse(read_json_quiet(path))

    def key_version(self, key: str) -> int:
        """The `version` at the last change of `key`'s runs (0: none since loading)."""
        return self._changed.get(key, 0)

    def runs(self, key: str) -> list[Run]:
        return list(self._runs.get(key, ()))

    def estimate(self, key: str) -> Estimate | None:
        return from_history(self._runs.get(key, ()))

    def started_with(self) -> dict[int, float]:
        """The estimate each recorded task had when it ran (the report's Done table)."""
        return {
            r.task_id: r.estimate
            for runs in self._runs.values()
            for r in runs
            if r.estimate is not None
        }

    def record(self, key: str, run: Run) -> None:
        """Add a run (replacing one of the same task: a settle done twice counts once)."""
        if not math.isfinite(run.took) or run.took < 0:
            return
        runs = [r for r in self._runs.get(key, ()) if r.task_id != run.task_id]
        runs.append(run)
        self._runs[key] = runs[-KEEP:]
        self.version += 1
        self._changed[key] = self.version
        self.dirty = True

    def save(self) -> None:
        """Write the book now (atomically and durably), if anything changed."""
        if self.dirty:
            write_json_atomic(self.path, self.to_json())
            self.dirty = False

    def take_json(self) -> dict[str, Any] | None:
        """The book as JSON for the caller to write with its own batch (None: unchanged);
        it counts as saved from here on."""
        if not self.dirty:
            return None
        self.dirty = False
        return self.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FILE_VERSION,
            "names": {
                key: [
                    {"task": r.task_id, "took": round(r.took, 3), "estimate": r.estimate}
                    for r in runs
                ]
                for key, runs in sorted(self._runs.items())
            },
        }


def read_json_quiet(path: Path) -> Any:
    try:
        return read_json(path, {})
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable, estimates start afresh: %s", path, e)
        return {}


def _parse(data: Any) -> dict[str, list[Run]]:
    names = data.get("names") if isinstance(data, Mapping) else None
    if not isinstance(names, Mapping):
        return {}
    out: dict[str, list[Run]] = {}
    for key, entries in names.items():
        if not isinstance(key, str) or not isinstance(entries, list):
            continue
        runs = [run for e in entries if (run := _run(e)) is not None]
        if runs:
            out[key] = runs[-KEEP:]
    return out


def _run(entry: Any) -> Run | None:
    if not isinstance(entry, Mapping):
        return None
    task, took, est = entry.get("task"), entry.get("took"), entry.get("estimate")
    if not isinstance(task, int) or not isinstance(took, int | float) or isinstance(took, bool):
        return None
    if not math.isfinite(took) or took < 0:
        return None
    if not (isinstance(est, int | float) and not isinstance(est, bool) and math.isfinite(est)):
        est = None
    return Run(task, float(took), None if est is None else float(est))
