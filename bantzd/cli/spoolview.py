"""What `status` and `list` say about the spool: files dropped there (by `cp`) that wait to
be taken in, and files rejected since the last morning report.

Read-only, like the rest of `status` and `list`: no lock, nothing written.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bantzd.paths import REPORT_MARKER, Home
from bantzd.queue.atomic import read_json
from bantzd.queue.spool import rejected_since, waiting_files

# How many waiting file names the status line spells out before it only counts the rest.
NAMED = 10


def last_report_time(home: Home) -> float | None:
    """When the last morning report was written (the end of the period it covered), or
    None when there has been none."""
    try:
        data = read_json(home.reports / REPORT_MARKER)
    except (OSError, ValueError):
        return None
    until = data.get("until") if isinstance(data, dict) else None
    ok = isinstance(until, int | float) and not isinstance(until, bool)
    return float(until) if ok else None


def spool_status(home: Home, unfinished: int | None = None) -> dict[str, Any]:
    """`status --json`'s `spool`: the waiting file names, oldest first, how many files
    were rejected since the last report, and the folder they are in; `max_queued` and
    whether the queue is full (`unfinished` tasks, SPEC 10: then the files wait)."""
    max_queued = _max_queued(home)
    return {
        "waiting": waiting_files(home),
        "rejected_since_report": len(rejected_since(home, last_report_time(home))),
        "rejected_dir": str(home.rejected),
        "max_queued": max_queued,
        "queue_full": unfinished is not None and unfinished >= max_queued,
    }


def _max_queued(home: Home) -> int:
    """config.toml's max_queued; its default while the file is broken (status says so)."""
    from bantzd.config import DEFAULTS, load_config
    from bantzd.errors import BantzError

    try:
        return load_config(home.config).max_queued
    except (BantzError, OSError, ValueError):
        return int(DEFAULTS["max_queued"])


def spool_status_lines(spool: dict[str, Any], supervisor_running: bool) -> list[str]:
    """`status` lines: `spool:` always, `rejected:` when files were rejected."""
    waiting = list(spool.get("waiting") or [])
    if waiting and spool.get("queue_full"):
        verb = "waits" if len(waiting) == 1 else "wait"
        line = f"{_files(len(waiting))} {verb}: queue full (max_queued {spool.get('max_queued')})"
    elif waiting:
        names = ", ".join(waiting[:NAMED])
        if len(waiting) > NAMED:
            names += f" and {len(waiting) - NAMED} more"
        line = f"{_files(len(waiting))} waiting in the spool: {names}"
        if not supervisor_running:
            line += " (taken in when a supervisor runs)"
    else:
        line = "no files waiting"
    lines = [f"spool:      {line}"]
    rejected = spool.get("rejected_since_report") or 0
    if rejected:
        lines.append(
            f"rejected:   {_files(rejected)} since the last report, in {spool.get('rejected_dir')} "
            "(each NAME.error.txt says why and how to resubmit)"
        )
    return lines


def spool_rows(home: Home, columns: Sequence[str]) -> list[list[str]]:
    """`list` rows for the files waiting in the spool, in the table's `columns`: no id yet,
    status `spool`, the file's name as the name; columns a file has no value for show `-`."""
    cells = {
        "name": None,
        "status": "spool",
        "reason": "waiting in the spool, not taken in yet",
        "info": "waiting in the spool, not taken in yet",
    }
    return [
        [name if c == "name" else cells.get(c) or "-" for c in columns]
        for name in waiting_files(home)
    ]


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"
