"""The report's Timeline: a Mermaid `gantt` chart with one bar per attempt.

Only a small part of the gantt grammar is written, all on lines of our own making: the
header (`gantt`, `dateFormat`, `axisFormat`, `todayMarker off`), one `section` per task
and one task line per attempt, `LABEL :TAGS ID, START, END`. The only user input is the
task name in the section title; Mermaid's lexer ends a section title at `:` `#` `;` or a
newline, treats `%%` as a comment and some versions stop at `(` `)`, so those are replaced
by full-width look-alikes that keep the name readable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from bantzd.queue.task import TaskState
from bantzd.reports.i18n import Language
from bantzd.reports.markdown import fenced, parse_wall

_MERMAID_SAFE = str.maketrans(
    {":": "：", "#": "＃", ";": "；", "%": "％", "(": "（", ")": "）", "\n": " ", "\r": " "}
)
GANTT_TIME = "%Y-%m-%d %H:%M:%S"
HEADER = (
    "gantt",
    "    dateFormat YYYY-MM-DD HH:mm:ss",
    "    axisFormat %H:%M",
    "    todayMarker off",
)
# Mermaid tags by attempt outcome; attempts still going are `active`.
TAGS = {"done": "done", "failed": "crit"}


def mermaid_text(text: str) -> str:
    """`text` made safe for a Mermaid gantt section title or bar label."""
    return " ".join(text.translate(_MERMAID_SAFE).split()) or "?"


def gantt(
    states: Sequence[TaskState],
    run_end: str | None,
    lang: Language,
    mask: Callable[[str], str] = str,
    night_end: str | None = None,
) -> list[str] | None:
    """The lines of the chart (without the fence), or None when no attempt is dated.

    An attempt with no end yet is drawn up to `run_end`; a bar is at least one second long,
    because a zero-length bar is invisible. `night_end` (the run's `--until`) is drawn as a
    milestone in a last section of its own: a diamond at that time, below every bar.
    """
    end_of_run = parse_wall(run_end)
    lines: list[str] = []
    for state in states:
        bars = [
            bar
            for i, entry in enumerate(state.attempt_log)
            if (bar := _bar(state.id, i, entry, end_of_run, lang)) is not None
        ]
        if bars:
            lines.append(f"    section {mermaid_text(mask(f'{state.id} {state.name}'))}")
            lines.extend(bars)
    if not lines:
        return None
    if (end := parse_wall(night_end)) is not None:
        lines.extend(milestone(end, lang))
    return [*HEADER, *lines]


def milestone(end: datetime, lang: Language) -> list[str]:
    """The night's end as a zero-length milestone (Mermaid draws it midway between its start
    and end, so both are the same time)."""
    at = end.strftime(GANTT_TIME)
    return [
        f"    section {mermaid_text(lang.t('night_end'))}",
        f"    --until :milestone, until, {at}, {at}",
    ]


def _bar(
    task_id: int, i: int, entry: object, end_of_run: datetime | None, lang: Language
) -> str | None:
    if not isinstance(entry, dict):
        return None
    start = parse_wall(entry.get("start"))
    if start is None:
        return None
    end = parse_wall(entry.get("end"))
    outcome = str(entry.get("outcome") or "")
    if end is None:
        tag, end = "active", end_of_run
    else:
        tag = TAGS.get(outcome, "")
    if end is None or end < start + timedelta(seconds=1):
        end = start + timedelta(seconds=1)
    number = entry.get("attempt")
    label = lang.t("attempt", n=number if isinstance(number, int) else i + 1)
    if outcome and outcome not in TAGS:
        key = f"outcome_{outcome}"
        label += " " + (lang.t(key) if key in lang.words else outcome)
    tags = f"{tag}, " if tag else ""
    return (
        f"    {mermaid_text(label)} :{tags}t{task_id}a{i}, "
        f"{start.strftime(GANTT_TIME)}, {end.strftime(GANTT_TIME)}"
    )


def timeline_block(lines: list[str]) -> str:
    """The chart as a ```mermaid fence."""
    return fenced(lines, "mermaid")
