"""The morning report, reports/YYYY-MM-DD.md (SPEC section 6).

`render_report` turns task states, journal events and a few file excerpts into Markdown and
does nothing else (no clock, no files, STYLE 2), so tests can pin its output. `write_report`
is the I/O edge: it picks the period, reads the home and writes the file atomically.

A report covers everything since the previous one. The period is remembered in
reports/.last.json as {"date", "since", "until"}: writing the report of the *same* date
again starts from the same `since`, so running `bantzd report` twice in a morning rewrites
the same report (plus anything new) instead of an empty "since five minutes ago" one. Nothing
in the text depends on the moment it was written, only on what happened in the period.
"""

from __future__ import annotations

import dataclasses
import shlex
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date as Date
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bantzd.paths import Home, TaskPaths
from bantzd.queue.atomic import read_json, write_bytes_atomic, write_json_atomic
from bantzd.queue.journal import read_journal
from bantzd.queue.states import Status
from bantzd.queue.store import scan_states
from bantzd.queue.task import TaskState

TAIL_LINES = 20
# A failed task's log can be gigabytes, or one endless progress-bar line: read at most this
# much from its end and cut long lines, so one task cannot make the report unreadable.
TAIL_BYTES = 256 * 1024
MAX_LINE = 400
MAX_RESULT = 200
RESULT_BYTES = 64 * 1024
MARKER = ".last.json"

RUN_STARTED = "supervisor_started"
RUN_STOPPED = "supervisor_stopped"
# Samples a load probe journals: {"event": "load", "load_per_core": float, ...}.
LOAD_SAMPLE = "load"

# Mermaid's gantt lexer ends a section title or a bar label at ":" "#" ";" or a newline,
# some versions also a bar label at "(" ")", and "%%" starts a comment. Full-width
# look-alikes keep a name readable without breaking the diagram.
_MERMAID_SAFE = str.maketrans(
    {":": "：", "#": "＃", ";": "；", "%": "％", "(": "（", ")": "）", "\n": " ", "\r": " "}
)
_GANTT_TIME = "%Y-%m-%d %H:%M:%S"


# small pure helpers ----------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """`45s`, `12m 5s`, `1h 12m`, `2d 3h`: the two largest units, zero parts dropped."""
    total = max(0, round(seconds))
    if total < 60:
        return f"{total}s"
    parts: list[str] = []
    for suffix, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if total >= size or parts:
            n, total = divmod(total, size)
            parts.append(f"{n}{suffix}" if n else "")
        if len(parts) == 2:
            break
    return " ".join(p for p in parts if p)


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


def epoch(text: object) -> float | None:
    """Seconds since the epoch for an ISO string (naive ones read as local time)."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def mermaid_text(text: str) -> str:
    """`text` made safe for a Mermaid gantt section title or bar label."""
    return " ".join(text.translate(_MERMAID_SAFE).split()) or "?"


def _code(text: object) -> str:
    """`text` as one inline code span, whatever backticks it holds (names are user input)."""
    text = " ".join(str(text).split())
    longest = run = 0
    for ch in text:
        run = run + 1 if ch == "`" else 0
        longest = max(longest, run)
    ticks = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _cell(text: str) -> str:
    """One table cell: a single line, `|` escaped (GFM honours `\\|` inside code spans too)."""
    return " ".join(text.split()).replace("|", "\\|")


def _fenced(lines: Sequence[str], info: str = "") -> str:
    """A fenced block that no backtick run inside `lines` can close early."""
    longest = 0
    for line in lines:
        run = 0
        for ch in line:
            run = run + 1 if ch == "`" else 0
            longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return "\n".join([fence + info, *lines, fence])


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _label(state: TaskState) -> str:
    return f"#{state.id} {_code(state.name)}"


def _when(text: str | None, same_day_as: str | None = None) -> str:
    """`2026-11-22 23:00`, or just `06:12` when on the same day as `same_day_as`."""
    dt = parse_wall(text)
    if dt is None:
        return str(text)
    ref = parse_wall(same_day_as)
    if ref is not None and ref.date() == dt.date():
        return dt.strftime("%H:%M")
    return dt.strftime("%Y-%m-%d %H:%M")


# the report ------------------------------------------------------------------------------


def render_report(
    *,
    date: Date,
    states: list[TaskState],
    events: list[dict[str, Any]],
    started: str | None,
    ended: str | None,
    output_tails: dict[int, list[str]],
    results: dict[int, str],
) -> str:
    """The report as Markdown, sections in SPEC order. Pure: same inputs, same text.

    `states` are the tasks the period concerns (already chosen by the caller), `events`
    the journal events of the period, `started`/`ended` the ISO times of the run,
    `output_tails` the last lines of failed tasks' output.log and `results` the one-line
    result of done tasks.
    """
    by_status: dict[Status, list[TaskState]] = {s: [] for s in Status}
    for state in sorted(states, key=lambda s: s.id):
        by_status[state.status].append(state)
    sections = [
        _title(date, started, ended, by_status),
        _needs_you(by_status[Status.WAITING_HUMAN], by_status[Status.HELD]),
        _done(by_status[Status.DONE], results),
        _failed(by_status[Status.FAILED], output_tails),
        _still_queued(by_status[Status.QUEUED], by_status[Status.RUNNING]),
        _machine(events),
        _timeline(sorted(states, key=lambda s: s.id), ended),
    ]
    return "\n\n".join(sections) + "\n"


def _title(
    date: Date, started: str | None, ended: str | None, by_status: Mapping[Status, list[TaskState]]
) -> str:
    if started and ended:
        run = f"Run {_when(started)} → {_when(ended, same_day_as=started)}"
    elif started:
        run = f"Run started {_when(started)}"
    elif ended:
        run = f"Run ended {_when(ended)}"
    else:
        run = "No supervisor run since the previous report"
    counts = [
        f"{len(by_status[Status.DONE])} finished",
        f"{len(by_status[Status.FAILED])} failed",
        f"{len(by_status[Status.WAITING_HUMAN]) + len(by_status[Status.HELD])} waiting for you",
        f"{len(by_status[Status.QUEUED])} still queued",
    ]
    if by_status[Status.RUNNING]:
        counts.append(f"{len(by_status[Status.RUNNING])} running")
    if by_status[Status.CANCELLED]:
        counts.append(f"{len(by_status[Status.CANCELLED])} cancelled")
    return f"# bantzd report {date.isoformat()}\n\n{run} · " + " · ".join(counts) + "."


def _needs_you(waiting: list[TaskState], held: list[TaskState]) -> str:
    items: list[str] = []
    for state in waiting:
        q = state.question if isinstance(state.question, dict) else {}
        text = " ".join(str(q.get("text") or "").split())
        choices = [str(c) for c in q.get("choices") or []]
        example = shlex.quote(choices[0]) if choices else '"YOUR ANSWER"'
        asks = f"asks: {text}" if text else "is waiting for an answer"
        if choices:
            asks += f" (choices: {', '.join(choices)})"
        items.append(f"- {_label(state)} {asks}\n  {_code(f'bantzd answer {state.id} {example}')}")
    for state in held:
        # The supervisor's own reason ("waiting for approval") would only repeat the line.
        extra = state.reason and "approval" not in state.reason
        why = f" ({state.reason})" if extra else ""
        items.append(
            f"- {_label(state)} is held for approval{why}: `bantzd approve {state.id}` "
            f"(or `bantzd reject {state.id}`)"
        )
    body = "\n".join(items) if items else "Nothing is waiting for you."
    return f"## Needs you\n\n{body}"


def took(state: TaskState) -> float | None:
    """Seconds the task ran: its attempts added up, else finished minus started."""
    spans = [(epoch(e.get("start")), epoch(e.get("end"))) for e in state.attempt_log]
    if spans and all(s is not None and e is not None for s, e in spans):
        return sum(max(0.0, e - s) for s, e in spans)  # type: ignore[operator]
    start, end = epoch(state.started), epoch(state.finished)
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def _done(done: list[TaskState], results: Mapping[int, str]) -> str:
    if not done:
        return "## Done\n\nNo task finished."
    rows = ["| id | name | took | attempts | result |", "| ---: | --- | ---: | ---: | --- |"]
    for state in done:
        seconds = took(state)
        result = results.get(state.id, "")
        rows.append(
            f"| {state.id} | {_cell(_code(state.name))} | "
            f"{human_duration(seconds) if seconds is not None else '?'} | {state.attempts} | "
            f"{_cell(result)} |"
        )
    return "## Done\n\n" + "\n".join(rows)


def describe_end(state: TaskState) -> str:
    """`exit code 3`, `signal 9 (SIGKILL)`, or `did not run`."""
    if state.signal is not None:
        try:
            name = signal.Signals(state.signal).name
        except ValueError:
            return f"signal {state.signal}"
        return f"signal {state.signal} ({name})"
    if state.exit_code is not None:
        return f"exit code {state.exit_code}"
    return "did not run" if state.attempts == 0 else "no exit status recorded"


def _failed(failed: list[TaskState], tails: Mapping[int, list[str]]) -> str:
    if not failed:
        return "## Failed\n\nNothing failed."
    blocks = ["## Failed"]
    for state in failed:
        facts = [describe_end(state), _plural(state.attempts, "attempt")]
        why = " ".join((state.error or state.reason or "").split())
        # The supervisor's error for a plain failure restates the exit status: skip it.
        if why and why != f"exit {state.exit_code}" and not why.startswith("killed by"):
            facts.append(why)
        tail = tails.get(state.id) or []
        output = _fenced(tail) if tail else "No output."
        blocks.append(f"### {_label(state)}\n\n" + " · ".join(facts) + f"\n\n{output}")
    return "\n\n".join(blocks)


def _still_queued(queued: list[TaskState], running: list[TaskState]) -> str:
    items: list[str] = []
    for state in running:
        what = f"running, attempt {state.attempts}"
        p = state.progress if isinstance(state.progress, dict) else {}
        if isinstance(p.get("percent"), int | float):
            what += f", {p['percent']:g}%"
        if p.get("message"):
            what += f" {' '.join(str(p['message']).split())}"
        items.append(f"- {_label(state)}: {what}")
    for state in queued:
        items.append(f"- {_label(state)}: {state.reason or 'ready to start'}")
    body = "\n".join(items) if items else "Nothing is left in the queue."
    return f"## Still queued\n\n{body}"


def _machine(events: Iterable[Mapping[str, Any]]) -> str:
    loads = [
        float(e["load_per_core"])
        for e in events
        if e.get("event") == LOAD_SAMPLE and isinstance(e.get("load_per_core"), int | float)
    ]
    if not loads:
        return "## Machine\n\nNo load history recorded."
    avg = sum(loads) / len(loads)
    return (
        f"## Machine\n\nCPU load per core: average {avg:.2f}, peak {max(loads):.2f} "
        f"({_plural(len(loads), 'sample')})."
    )


def _timeline(states: list[TaskState], ended: str | None) -> str:
    """A Mermaid gantt with one bar per attempt: done ones `done`, failed ones `crit`,
    unfinished ones `active` and drawn up to the end of the run."""
    run_end = parse_wall(ended)
    lines: list[str] = []
    for state in states:
        bars: list[str] = []
        for i, entry in enumerate(state.attempt_log):
            start = parse_wall(entry.get("start"))
            if start is None:
                continue
            end = parse_wall(entry.get("end"))
            outcome = entry.get("outcome")
            if end is None:
                tag, end = "active", run_end
            else:
                tag = {"done": "done", "failed": "crit"}.get(str(outcome), "")
            # A zero-length bar is invisible; one second keeps quick attempts on the chart.
            if end is None or end < start + timedelta(seconds=1):
                end = start + timedelta(seconds=1)
            label = f"attempt {entry.get('attempt', i + 1)}"
            if outcome and outcome not in ("done", "failed"):
                label += f" {outcome}"
            tags = f"{tag}, " if tag else ""
            bars.append(
                f"    {mermaid_text(label)} :{tags}t{state.id}a{i}, "
                f"{start.strftime(_GANTT_TIME)}, {end.strftime(_GANTT_TIME)}"
            )
        if bars:
            lines.append(f"    section {mermaid_text(f'{state.id} {state.name}')}")
            lines.extend(bars)
    if not lines:
        return "## Timeline\n\nNo attempts ran in this period."
    head = ["gantt", "    dateFormat YYYY-MM-DD HH:mm:ss", "    axisFormat %H:%M"]
    return "## Timeline\n\n" + _fenced([*head, *lines], "mermaid")


# gathering the inputs (I/O) --------------------------------------------------------------


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
    return (float(since) if isinstance(since, int | float) else None), now


def _event_time(event: Mapping[str, Any]) -> float | None:
    t = event.get("t")
    return float(t) if isinstance(t, int | float) else epoch(event.get("ts"))


def run_span(events: Sequence[Mapping[str, Any]]) -> tuple[str | None, str | None]:
    """(started, ended) of the run in these events: the first supervisor start (else the
    first event) and the last stop, unless the supervisor started again after it, in which
    case the last event (it is still running, or died without saying so)."""
    if not events:
        return None, None
    starts = [i for i, e in enumerate(events) if e.get("event") == RUN_STARTED]
    stops = [i for i, e in enumerate(events) if e.get("event") == RUN_STOPPED]
    first = events[starts[0]] if starts else events[0]
    if stops and (not starts or stops[-1] > starts[-1]):
        last = events[stops[-1]]
    else:
        last = events[-1]
    return first.get("ts"), last.get("ts")


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


def result_line(paths: TaskPaths) -> str | None:
    """First non-empty line of result.md, else the `summary` of result.json."""
    try:
        with open(paths.result_md, "rb") as f:
            text = f.read(RESULT_BYTES).decode(errors="replace")
    except OSError:
        text = None
    if text is not None:
        for line in text.splitlines():
            line = line.strip().lstrip("#").strip()
            if line:
                return _shorten(line)
        return None
    try:
        data = read_json(paths.result_json)
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("summary") is not None:
        summary = str(data["summary"]).strip()
        return _shorten(summary.splitlines()[0]) if summary else None
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_RESULT else text[:MAX_RESULT] + " …"


def _in_period(t: float, since: float | None, until: float) -> bool:
    return (since is None or t > since) and t <= until


def _concerns(state: TaskState, active: set[int], since: float | None, until: float) -> bool:
    """Whether a task belongs in the report: unfinished, or finished/touched in the period."""
    if not state.finished_state or state.id in active:
        return True
    finished = epoch(state.finished)
    return since is None if finished is None else _in_period(finished, since, until)


def _attempts_in(state: TaskState, since: float | None, until: float) -> TaskState:
    """`state` with only the attempts that overlap the period (for the timeline)."""
    kept = []
    for entry in state.attempt_log:
        start, end = epoch(entry.get("start")), epoch(entry.get("end"))
        if start is not None and start > until:
            continue
        if since is not None and end is not None and end <= since:
            continue
        kept.append(entry)
    return dataclasses.replace(state, attempt_log=kept)


def build_report(home: Home, *, date: Date, since: float | None, until: float) -> str:
    """Read what the period (since, until] concerns from `home` and render it."""
    events = [
        e
        for e in read_journal(home.journal)
        if (t := _event_time(e)) is not None and _in_period(t, since, until)
    ]
    active = {e["id"] for e in events if isinstance(e.get("id"), int)}
    states = [
        _attempts_in(s, since, until)
        for s in scan_states(home)
        if _concerns(s, active, since, until)
    ]
    tails: dict[int, list[str]] = {}
    results: dict[int, str] = {}
    for state in states:
        paths = TaskPaths(home.task_dir(state.id))
        if state.status is Status.FAILED:
            tails[state.id] = tail_lines(paths.output)
        elif state.status is Status.DONE and (line := result_line(paths)):
            results[state.id] = line
    started, ended = run_span(events)
    return render_report(
        date=date,
        states=states,
        events=events,
        started=started,
        ended=ended,
        output_tails=tails,
        results=results,
    )


def _read_marker(home: Home) -> dict[str, Any] | None:
    try:
        data = read_json(home.reports / MARKER)
    except (OSError, ValueError):
        return None  # unreadable: cover everything rather than fail the report
    return data if isinstance(data, dict) else None


def _resolve(now: float | None, date: Date | None) -> tuple[float, Date]:
    now = time.time() if now is None else now
    return now, date or datetime.fromtimestamp(now).date()


def report_text(home: Home, *, now: float | None = None, date: Date | None = None) -> str:
    """The report `write_report` would write, without writing anything (`--stdout`)."""
    now, date = _resolve(now, date)
    since, until = report_period(_read_marker(home), date, now)
    return build_report(home, date=date, since=since, until=until)


def write_report(home: Home, *, now: float | None = None, date: Date | None = None) -> Path:
    """Write reports/YYYY-MM-DD.md for everything since the previous report; its path.

    The report is written before the marker moves on: a crash in between makes the next
    report cover this period again rather than lose it. A report for a date older than the
    last one leaves the marker alone.
    """
    now, date = _resolve(now, date)
    marker = _read_marker(home)
    since, until = report_period(marker, date, now)
    text = build_report(home, date=date, since=since, until=until)
    home.reports.mkdir(parents=True, exist_ok=True)
    path = home.reports / f"{date.isoformat()}.md"
    write_bytes_atomic(path, text.encode())
    if not marker or str(marker.get("date", "")) <= date.isoformat():
        write_json_atomic(
            home.reports / MARKER, {"date": date.isoformat(), "since": since, "until": until}
        )
    return path
