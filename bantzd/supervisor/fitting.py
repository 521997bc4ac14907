"""No start that cannot finish (SPEC 11): a pure rule the start decision asks.

A task that cannot resume (not `steps:`, not `checkpoints: true`, no checkpoint saved)
and has an estimate does not start when now + its estimate passes the first of: the end
of the run (`--until`), the close of the window it would start in, its deadline. It waits
with `would not finish before 07:00 (estimate 3h10m from 2 runs)`. Without an estimate a
task is never held back, and a task that can resume may always start: stopped at the end,
it goes on from its checkpoint the next night.
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo
from typing import Any

from bantzd.queue.estimates import Estimate, EstimateBook, Run, history_key, work_seconds
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.supervisor.timing import local_zone, window_close

log = logging.getLogger("bantzd")

WOULD_NOT_FINISH = "would not finish before"


def night_end(
    now: float,
    *,
    until: float | None,
    windows: tuple[Any, ...] = (),
    deadline_at: float | None = None,
    tz: tzinfo | None = None,
) -> float | None:
    """The first end a run starting at `now` must finish by; None when nothing ends it."""
    ends = [t for t in (until, deadline_at) if t is not None]
    if windows:
        close = window_close(windows, datetime.fromtimestamp(now, tz or local_zone()))
        if close is not None:
            ends.append(close.timestamp())
    return min(ends) if ends else None


def fit_reason(
    now: float,
    estimate: Estimate | None,
    *,
    resumable: bool,
    until: float | None,
    windows: tuple[Any, ...] = (),
    deadline_at: float | None = None,
    tz: tzinfo | None = None,
) -> str | None:
    """Why a task may not start now for lack of time, or None when it may."""
    if estimate is None or resumable:
        return None
    end = night_end(now, until=until, windows=windows, deadline_at=deadline_at, tz=tz)
    if end is None or now + estimate.seconds <= end:
        return None
    return f"{WOULD_NOT_FINISH} {clock_text(end, now, tz)} ({estimate.words()})"


def clock_text(ts: float, now: float, tz: tzinfo | None = None) -> str:
    """`07:00` (with seconds when they are not zero; with the date when not within a day)."""
    zone = tz or local_zone()
    local = datetime.fromtimestamp(ts, zone)
    text = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    if ts - now >= 86400:
        return f"{local.date().isoformat()} {text}"
    return text


def learn(book: EstimateBook | None, state: TaskState, spec: TaskSpec) -> None:
    """Record a task that ended done in its name's history, with the estimate it had (so
    an overrun raises the next one). Never raises: the history is advice."""
    if book is None:
        return
    took = work_seconds(state)
    if took is None:
        return
    key = history_key(state)
    had = spec.estimate
    if had is None:
        learned = book.estimate(key)
        had = learned.seconds if learned is not None else None
    try:
        book.record(key, Run(state.id, took, had))
    except OSError as e:
        log.warning("task %d: its run could not be added to %s: %s", state.id, book.path, e)
