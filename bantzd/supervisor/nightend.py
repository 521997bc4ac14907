"""Checkpoint-aware ends (SPEC 11): resumable tasks are stopped `stop_grace` before `--until`.

At `--until` every running task gets SIGTERM and `stop_grace` to save a checkpoint, so the
machine is only free `stop_grace` after the time a person gave, and the report is written
later still. A task that can resume (`steps:`, `checkpoints: true`, a checkpoint saved)
loses nothing by being asked earlier: it saves and goes on the next night. So when the run
began before `until - stop_grace`, at that moment the resumable tasks get SIGTERM (and none
starts again: it would be stopped at once); by `--until` they have saved and exited. A task
that cannot resume keeps its last seconds (it may still finish; one may still start, as the
fit rule allows) and is stopped at `--until` as before. A run shorter than `stop_grace` (a
test, a short `--until`) stops at `--until` only.

`wind_down_at` is pure; the loop applies it (supervisor/loop.py), asking the task table
whether a task can resume (the same test as the fit rule's, supervisor/table.py).
"""

from __future__ import annotations

from bantzd.config import Config


def wind_down_at(until: float | None, started_at: float, config: Config) -> float | None:
    """When the resumable tasks get SIGTERM for the end of the run; None: only at `until`."""
    if until is None or not config.fit_night or config.stop_grace <= 0:
        return None
    at = until - config.stop_grace
    return at if at > started_at else None
