"""The morning report, reports/YYYY-MM-DD.md (SPEC section 6): choosing the period, reading
the home, writing the file.

Rendering is `render.render_report`, a pure function of a `NightFacts`; this module is the
I/O edge that gathers those facts (journal, task states, load history, result files, log
tails, the secrets to mask) and writes the report atomically.

A report covers everything since the previous one. The period is remembered in
reports/.last.json as {"date", "since", "until"}: writing the report of the *same* date
again starts from the same `since`, so running `bantzd report` twice in a morning rewrites
the same report (plus anything new) instead of an empty "since five minutes ago" one. Nothing
in the text depends on the moment it was written, only on what happened in the period.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shlex
import time
from collections.abc import Mapping, Sequence
from datetime import date as Date
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bantzd.clock import epoch
from bantzd.crash import fault_point
from bantzd.paths import REPORT_MARKER, Home, TaskPaths
from bantzd.queue.atomic import read_json, write_bytes_atomic, write_json_atomic
from bantzd.queue.journal import read_journal
from bantzd.queue.states import Status
from bantzd.queue.store import scan_states
from bantzd.queue.task import TaskState
from bantzd.reports.comingup import gather_schedules
from bantzd.reports.gantt import mermaid_text
from bantzd.reports.i18n import language
from bantzd.reports.render import (
    NightFacts,
    RejectedFile,
    ResultLine,
    json_summary,
    render_report,
    report_summary_line,
    run_span,
    took,
)
from bantzd.reports.secrets import environment_secrets, read_task_file, secret_values

if TYPE_CHECKING:
    from bantzd.config import Config

__all__ = [
    "NightFacts",
    "ResultLine",
    "gather",
    "human_duration",
    "mermaid_text",
    "publish_report",
    "render_report",
    "report_period",
    "report_summary_line",
    "report_text",
    "result_line",
    "run_span",
    "tail_lines",
    "took",
    "write_report",
]

log = logging.getLogger("bantzd")

TAIL_LINES = 20
# A failed task's log can be gigabytes, or one endless progress-bar line: read at most this
# much from its end and cut long lines, so one task cannot make the report unreadable.
TAIL_BYTES = 256 * 1024
MAX_LINE = 400
MAX_RESULT = 200
RESULT_BYTES = 64 * 1024
MAX_COMMAND = 160
MARKER = REPORT_MARKER


def human_duration(seconds: float) -> str:
    """`45s`, `12m 5s`, `1h 12m`, `2d 3h`: the two largest units, zero parts dropped."""
    return language("en").duration(seconds)


# the period ------------------------------------------------------------------------------


def report_period(
    marker: Mapping[str, Any] | None, date: Date, now: float
) -> tuple[float | None, float]:
    """(since, until) for the report of `date`; since is None for "from the beginning".

    Since the previous report; but when the previous report *is* this date's, since the
    same start as that one, so rewriting a report covers the same period again.
    """
    if not marker:
        return None, now
    key = "since" if marker.get("date") == date.isoformat() else "until"
    since = marker.get(key)
    ok = isinstance(since, int | float) and not isinstance(since, bool)
    return (float(since) if ok else None), now


def _in_period(t: float, since: float | None, until: float) -> bool:
    return (since is None or t > since) and t <= until


def _event_time(event: Mapping[str, Any]) -> float | None:
    t = event.get("t")
    if isinstance(t, int | float) and not isinstance(t, bool):
        return float(t)
    return epoch(event.get("ts"))


def concerns(state: TaskState, active: set[int], since: float | None, until: float) -> bool:
    """Whether a task belongs in the report: unfinished, or finished/touched in the period."""
    if not state.finished_state or state.id in active:
        return True
    finished = epoch(state.finished)
    return since is None if finished is None else _in_period(finished, since, until)


def attempts_in(state: TaskState, since: float | None, until: float) -> TaskState:
    """`state` with only the attempts that overlap the period (for the timeline)."""
    kept = []
    for entry in state.attempt_log:
        if not isinstance(entry, dict):
            continue
        start, end = epoch(entry.get("start")), epoch(entry.get("end"))
        if start is not None and start > until:
            continue
        if since is not None and end is not None and end <= since:
            continue
        kept.append(entry)
    return dataclasses.replace(state, attempt_log=kept)


# reading the home ------------------------------------------------------------------------


def read_samples(path: Path, since: float | None, until: float) -> list[dict[str, Any]]:
    """Load history samples (home/load.jsonl) with `t` in the period; bad lines skipped."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    samples = []
    for line in data.splitlines():
        try:
            sample = json.loads(line)
        except ValueError:
            continue
        if not isinstance(sample, dict):
            continue
        t = sample.get("t")
        if isinstance(t, int | float) and not isinstance(t, bool) and _in_period(t, since, until):
            samples.append(sample)
    return samples


def tail_lines(path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last `n` lines of a log as a terminal would show them (text after a `\\r`)."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            start = max(0, size - TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    if start > 0 and b"\n" in data:
        data = data.split(b"\n", 1)[1]  # the first line was cut by the seek
    lines = [
        line.rstrip("\r").rsplit("\r", 1)[-1] for line in data.decode(errors="replace").split("\n")
    ]
    while lines and not lines[-1].strip():
        lines.pop()
    lines = lines[-n:]
    while lines and not lines[0].strip():
        lines.pop(0)
    return [line if len(line) <= MAX_LINE else line[:MAX_LINE] + " …" for line in lines]


def result_line(paths: TaskPaths) -> ResultLine | None:
    """First non-empty line of result.md, else the `summary` of result.json, else a short
    JSON form of result.json."""
    try:
        with open(paths.result_md, "rb") as f:
            text = f.read(RESULT_BYTES).decode(errors="replace")
    except OSError:
        text = None
    if text is not None:
        for line in text.splitlines():
            line = line.strip().lstrip("#").strip()
            if line:
                return ResultLine(_shorten(line))
        return None
    try:
        data = read_json(paths.result_json)
    except (OSError, ValueError):
        return None
    if data is None:
        return None
    if isinstance(data, dict) and data.get("summary") is not None:
        summary = str(data["summary"]).strip()
        return ResultLine(_shorten(summary.splitlines()[0])) if summary else None
    return ResultLine(json_summary(data), is_json=True)


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_RESULT else text[:MAX_RESULT] + " …"


def command_text(doc: Mapping[str, Any]) -> str | None:
    """What a task file runs, in one short line (for approving a held task)."""
    if isinstance(doc.get("run"), list):
        text = shlex.join(str(a) for a in doc["run"])
    elif isinstance(doc.get("run"), str):
        text = doc["run"]
    elif isinstance(doc.get("steps"), list):
        names = [str(s.get("name", "?")) for s in doc["steps"] if isinstance(s, dict)]
        text = "steps: " + ", ".join(names)
    elif doc.get("python"):
        text = f"python: {doc['python']}"
    elif isinstance(doc.get("llm"), dict):
        text = f"llm: {doc['llm'].get('prompt', '')}"
    else:
        return None
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_COMMAND else text[:MAX_COMMAND] + " …"


def gather(
    home: Home,
    *,
    date: Date,
    since: float | None,
    until: float,
    language: str = "en",
    approval_categories: Sequence[str] = (),
    environ: Mapping[str, str] | None = None,
) -> NightFacts:
    """Read what the period (since, until] concerns from `home`."""
    events = [
        e
        for e in read_journal(home.journal)
        if (t := _event_time(e)) is not None and _in_period(t, since, until)
    ]
    active = {e["id"] for e in events if isinstance(e.get("id"), int)}
    whole = [s for s in scan_states(home) if concerns(s, active, since, until)]
    # `took` counts every attempt (as `list` and `show` do), not only this period's.
    took_all = {s.id: seconds for s in whole if (seconds := took(s)) is not None}
    states = [attempts_in(s, since, until) for s in whole]
    tails: dict[int, list[str]] = {}
    results: dict[int, ResultLine] = {}
    categories: dict[int, str] = {}
    commands: dict[int, str] = {}
    secrets = environment_secrets(os.environ if environ is None else environ)
    for state in states:
        try:
            fault_point("report", state.id)
            paths = TaskPaths(home.task_dir(state.id))
            doc = read_task_file(paths, only_with=None if state.status is Status.HELD else b"env")
            secrets += secret_values(doc.get("env"))
            if state.status is Status.FAILED:
                tails[state.id] = tail_lines(paths.output)
            elif state.status is Status.DONE and (line := result_line(paths)):
                results[state.id] = line
            elif state.status is Status.HELD:
                category = doc.get("category")
                if isinstance(category, str) and category in approval_categories:
                    categories[state.id] = category
                if command := command_text(doc):
                    commands[state.id] = command
        except Exception:
            # The task keeps its line in the report (its status is not the report's to
            # change), only without its log tail / result / command; the rest goes on.
            # Its secrets may not have been read: drop its extras so none can leak.
            log.exception("report: task %d: its details could not be read", state.id)
            for extras in (tails, results, categories, commands):
                extras.pop(state.id, None)
    return NightFacts(
        rejected=rejected_files(home, events),
        date=date,
        states=states,
        events=events,
        samples=read_samples(home.load_history, since, until),
        language=language,
        output_tails=tails,
        results=results,
        held_categories=categories,
        commands=commands,
        secrets=sorted(set(secrets)),
        took=took_all,
        estimates=started_estimates(home, states),
        schedules=gather_schedules(home, since, until),
    )


def started_estimates(home: Home, states: Sequence[TaskState]) -> dict[int, float]:
    """The estimate each done task ran with, as estimates.json recorded it when it ended
    (the file's estimate, else the one learned from the runs before it)."""
    from bantzd.queue.estimates import EstimateBook

    done = {s.id for s in states if s.status is Status.DONE}
    if not done:
        return {}
    return {i: e for i, e in EstimateBook(home.estimates).started_with().items() if i in done}


def rejected_files(home: Home, events: Sequence[Mapping[str, Any]]) -> list[RejectedFile]:
    """The spool files the period's journal says were rejected (`rejected` notes of the
    intake), with where each went in spool/rejected/ and the command to resubmit it."""
    from bantzd.queue.spool import resubmit_command

    found = []
    for event in events:
        if event.get("event") != "rejected" or not isinstance(event.get("file"), str):
            continue
        moved = event.get("moved_to")
        where = home.rejected / (moved if isinstance(moved, str) and moved else event["file"])
        lines = str(event.get("problem") or "").strip().splitlines()
        problem = lines[0] if lines else "not a valid task file"
        found.append(RejectedFile(event["file"], problem, resubmit_command(home, where)))
    return found


def _read_marker(home: Home) -> dict[str, Any] | None:
    try:
        data = read_json(home.reports / MARKER)
    except (OSError, ValueError):
        return None  # unreadable: cover everything rather than fail the report
    return data if isinstance(data, dict) else None


def _resolve(now: float | None, date: Date | None) -> tuple[float, Date]:
    now = time.time() if now is None else now
    return now, date or datetime.fromtimestamp(now).date()


def _config(home: Home, config: Config | None) -> Config:
    from bantzd.config import config_from_mapping, load_config
    from bantzd.errors import ConfigError

    if config is not None:
        return config
    try:
        return load_config(home.config)
    except ConfigError as e:
        # A broken config.toml must not cost the person their report.
        log.warning("report: %s; using the default settings", e)
        return config_from_mapping({})


def _build(home: Home, config: Config, date: Date, since: float | None, until: float) -> str:
    facts = gather(
        home,
        date=date,
        since=since,
        until=until,
        language=config.report_language,
        approval_categories=config.approval_categories,
    )
    return render_report(facts)


# the entry points ------------------------------------------------------------------------


def report_text(
    home: Home,
    *,
    now: float | None = None,
    date: Date | None = None,
    config: Config | None = None,
) -> str:
    """The report `write_report` would write, without writing anything (`--stdout`)."""
    now, date = _resolve(now, date)
    since, until = report_period(_read_marker(home), date, now)
    return _build(home, _config(home, config), date, since, until)


def write_report(
    home: Home,
    *,
    now: float | None = None,
    date: Date | None = None,
    config: Config | None = None,
) -> Path:
    """Write reports/YYYY-MM-DD.md for everything since the previous report; its path.

    The report is written before the marker moves on: a crash in between makes the next
    report cover this period again rather than lose it. A report for a date older than the
    last one leaves the marker alone.
    """
    now, date = _resolve(now, date)
    marker = _read_marker(home)
    since, until = report_period(marker, date, now)
    text = _build(home, _config(home, config), date, since, until)
    home.reports.mkdir(parents=True, exist_ok=True)
    path = home.reports / f"{date.isoformat()}.md"
    write_bytes_atomic(path, text.encode())
    if not marker or str(marker.get("date", "")) <= date.isoformat():
        write_json_atomic(
            home.reports / MARKER, {"date": date.isoformat(), "since": since, "until": until}
        )
    return path


def publish_report(
    home: Home,
    config: Config | None = None,
    *,
    now: float | None = None,
    date: Date | None = None,
    wait: float | None = None,
) -> Path:
    """`write_report`, then the `report` notification (summary line and path); its path.

    What `run --until` calls at the end of the night. The notification waits at most
    `wait` seconds (notify.REPORT_WAIT by default) and never raises.
    """
    from bantzd.reports import notify

    config = _config(home, config)
    path = write_report(home, now=now, date=date, config=config)
    notify.report_written(config, path, None, wait=wait)
    return path
