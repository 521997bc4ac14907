"""The parts of `status` that tell how the night is going right now: a supervisor that is
stopping (and how many tasks are still saving), and tasks stopped with `bantzd pause ID`.

Kept apart from cli/view.py so that the status command stays a list of facts; these are the
words for two of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from bantzd.cli.display import parse_iso
from bantzd.queue.stateindex import Row
from bantzd.queue.task import TaskState
from bantzd.units import format_duration


def paused_counts(states: Sequence[TaskState | Row]) -> dict[str, int]:
    """Status -> how many tasks in it `bantzd pause ID` paused (a running one is stopped
    with SIGSTOP); only the statuses that have some."""
    counts: dict[str, int] = {}
    for state in states:
        if state.paused and not state.finished_state:
            counts[str(state.status)] = counts.get(str(state.status), 0) + 1
    return counts


def supervisor_text(sup: dict[str, Any], running: int, now: float) -> str:
    """`running (pid 123, since ..., up 2h)`, or `stopping (pid 123, since ...; 2 tasks
    saving)` while it stops: the tasks still running are the ones saving a checkpoint."""
    if not sup["running"]:
        return click.style("not running", fg="red")
    if sup.get("stopping"):
        parts = [f"pid {sup['pid']}"] if sup["pid"] is not None else []
        if sup.get("stopping_since"):
            parts.append(f"since {sup['stopping_since']}")
        text = ", ".join(parts)
        if running:
            saving = f"{running} task{'s' if running != 1 else ''} saving"
            text = f"{text}; {saving}" if text else saving
        return click.style("stopping", fg="yellow") + (f" ({text})" if text else "")
    parts = []
    if sup["pid"] is not None:
        parts.append(f"pid {sup['pid']}")
    if sup["since"]:
        parts.append(f"since {sup['since']}")
        start = _epoch(sup["since"])
        if start is not None:
            parts.append(f"up {format_duration(max(0.0, now - start))}")
    return click.style("running", fg="green") + (" (" + ", ".join(parts) + ")" if parts else "")


def counts_text(counts: dict[str, int], paused: dict[str, int]) -> str:
    """`2 queued, 3 running (1 paused), ...`: every status, with its paused tasks."""
    parts = []
    for status, n in counts.items():
        extra = f" ({paused[status]} paused)" if paused.get(status) else ""
        parts.append(f"{n} {status}{extra}")
    return ", ".join(parts)


def _epoch(text: object) -> float | None:
    value = parse_iso(text)
    return value.timestamp() if value else None
