"""Small pure helpers for writing Markdown safely, and for reading the times bantzd records.

Task names, results and log lines are user input: each goes into a code span, a table cell
or a fence that nothing inside it can break out of.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime


def code(text: object) -> str:
    """`text` as one inline code span, whatever backticks it holds."""
    text = " ".join(str(text).split())
    ticks = "`" * (_longest_run(text, "`") + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def cell(text: str) -> str:
    """One table cell: a single line, `|` escaped (GFM honours `\\|` inside code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def fenced(lines: Sequence[str], info: str = "") -> str:
    """A fenced block that no backtick run inside `lines` can close early."""
    longest = max((_longest_run(line, "`") for line in lines), default=0)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + info, *lines, fence])


def one_line(text: object) -> str:
    """`text` with its whitespace (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def _longest_run(text: str, ch: str) -> int:
    longest = run = 0
    for c in text:
        run = run + 1 if c == ch else 0
        longest = max(longest, run)
    return longest


# times ---------------------------------------------------------------------------------------


def parse_wall(text: object) -> datetime | None:
    """The wall-clock time an ISO string says, offset dropped (state.json writes local time).

    Reports show times as the machine's clock showed them; comparing naive wall times keeps
    mixed inputs (with and without an offset) from raising.
    """
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).replace(tzinfo=None)
    except ValueError:
        return None


def when(text: str | None, same_day_as: str | None = None) -> str:
    """`2026-11-22 23:00`, or just `06:12` when on the same day as `same_day_as`."""
    dt = parse_wall(text)
    if dt is None:
        return str(text)
    ref = parse_wall(same_day_as)
    if ref is not None and ref.date() == dt.date():
        return dt.strftime("%H:%M")
    return dt.strftime("%Y-%m-%d %H:%M")
