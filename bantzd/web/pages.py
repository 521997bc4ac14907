"""What each page shows, as template contexts built from a `Snapshot` (no HTTP here).

Each page is a `Page`: its template, the fragments in it that update live (each its own
small template, re-rendered by the event stream and sent only when it changed), and a
function from (view, snapshot, parameters) to the context. Words and numbers come from the
CLI's own helpers (`describe`, `waiting_for`, `progress_text`, `supervisor_text`, ...), so
the page and `bantzd status` / `list` / `show` say the same thing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from markupsafe import Markup

from bantzd.cli.display import (
    STATUSES,
    describe,
    end_text,
    mask_task_yaml,
    progress_text,
    question_text,
    tail_text,
    took_text,
    waiting_for,
)
from bantzd.cli.sessionview import supervisor_text
from bantzd.paths import TaskPaths
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, attempt_started
from bantzd.supervisor.overrides import parallel_text
from bantzd.units import format_size
from bantzd.web import schedpage
from bantzd.web.chart import attempts_chart, load_chart
from bantzd.web.mdview import render_markdown
from bantzd.web.snapshot import CHART_SPAN, HomeView, Snapshot

LOG_LINES = 200
LOG_BYTES = 128 * 1024
FILE_BYTES = 256 * 1024  # checkpoint, result and transcript are shown up to this size
REPORT_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[-_.][\w-]+)?\.md$")

Context = dict[str, Any]
# The statuses whose page says what the task waits for (and the command that moves it on).
WAITING = frozenset({Status.QUEUED, Status.HELD, Status.WAITING_HUMAN})


class NotFound(Exception):
    """The page names something that is not there (a task id, a report)."""


@dataclass(frozen=True)
class Page:
    """A page: its template, its live fragments, and how to build its context."""

    template: str
    fragments: tuple[str, ...]
    build: Callable[[HomeView, Snapshot, Mapping[str, str]], Context]


def clock_text(iso_text: object) -> str | None:
    """`23:41` today, `Mon 23:41` within a week, else the date and time."""
    if not isinstance(iso_text, str) or not iso_text:
        return None
    try:
        value = datetime.fromisoformat(iso_text)
    except ValueError:
        return iso_text
    value = value if value.tzinfo else value.astimezone()
    now = datetime.now(value.tzinfo)
    if value.date() == now.date():
        return value.strftime("%H:%M:%S")
    if abs((now - value).days) < 7:
        return value.strftime("%a %H:%M")
    return value.strftime("%Y-%m-%d %H:%M")


def _percent(progress: object) -> float | None:
    if isinstance(progress, dict) and isinstance(progress.get("percent"), int | float):
        return max(0.0, min(100.0, float(progress["percent"])))
    return None


def task_row(state: TaskState) -> Context:
    """What a list or the night shows of one task."""
    progress = state.progress if isinstance(state.progress, dict) else {}
    return {
        "id": state.id,
        "name": state.name,
        "status": str(state.status),
        "about": describe(state),
        "percent": _percent(state.progress),
        "progress": progress_text(state.progress),
        "message": progress.get("message"),
        "step": state.step,
        "paused": state.paused,
        "since": clock_text(attempt_started(state)),
        "question": state.question if isinstance(state.question, dict) else None,
        "question_text": question_text(state.question),
    }


# the night -----------------------------------------------------------------------------


def night(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    status = snap.status
    load = status["load"]
    held = [s for s in snap.states if s.status == Status.HELD]
    return {
        "supervisor": click.unstyle(
            supervisor_text(status["supervisor"], len(status["running"]), snap.at)
        ),
        "supervisor_up": status["supervisor"]["running"],
        "paused": status["paused"],
        "parallel": parallel_text(status.get("max_parallel") or {}),
        "throttled": status["throttled"],
        "warnings": status.get("warnings") or [],
        "load": f"{load['load_per_core']:.2f} per core, "
        f"{format_size(load['free_memory'])} memory free",
        "gpus": [_gpu_text(g) for g in load.get("gpus") or []],
        "counts": status["counts"],
        "paused_tasks": status.get("paused_tasks") or {},
        "running": [task_row(s) for s in snap.states if s.status == Status.RUNNING],
        "questions": [task_row(s) for s in snap.states if s.status == Status.WAITING_HUMAN],
        "held": [_held_row(view, s) for s in held],
        "chart": Markup(load_chart(view.samples(), snap.at, CHART_SPAN, snap.total_memory)),
    }


def _gpu_text(gpu: Mapping[str, Any]) -> str:
    util = gpu.get("util")
    busy = f"{util:g}% busy" if isinstance(util, int | float) else "utilisation unknown"

    def size(v: object) -> str:
        return format_size(int(v)) if isinstance(v, int | float) else "?"

    return (
        f"GPU {gpu.get('index', '?')}: {gpu.get('name', '?')}, {busy}, "
        f"{size(gpu.get('free_memory'))} of {size(gpu.get('total_memory'))} free"
    )


def _held_row(view: HomeView, state: TaskState) -> Context:
    from bantzd.reports.morning import command_text
    from bantzd.reports.secrets import read_task_file

    row = task_row(state)
    doc = read_task_file(TaskPaths(view.home.task_dir(state.id)))
    row["command"] = command_text(doc)
    row["category"] = doc.get("category") if isinstance(doc.get("category"), str) else None
    return row


# the task list -------------------------------------------------------------------------


def wanted_statuses(params: Mapping[str, str]) -> list[str]:
    """The statuses the list is filtered by (`?status=queued,held`), valid ones only."""
    raw = params.get("status") or ""
    valid = [str(s) for s in STATUSES]
    return [s for s in valid if s in {p.strip() for p in raw.split(",")}]


def tasks(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    statuses = wanted_statuses(params)
    name = (params.get("name") or "").strip()
    rows = [
        task_row(s)
        for s in snap.states
        if (not statuses or str(s.status) in statuses)
        and (not name or name.lower() in s.name.lower())
    ]
    return {
        "rows": rows,
        "statuses": [str(s) for s in STATUSES],
        "chosen": statuses,
        "name": name,
        "counts": snap.status["counts"],
        "total": len(snap.states),
    }


# one task ------------------------------------------------------------------------------


def task(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    raw = params.get("id", "")
    state = snap.task(int(raw)) if raw.isdigit() else None
    if state is None:
        raise NotFound(f"no task with id {raw}")
    paths = TaskPaths(view.home.task_dir(state.id))
    mask = snap.mask
    return {
        "task": task_row(state),
        "fields": _fields(state),
        "waiting": waiting_for(state) if state.status in WAITING else None,
        "history": [
            {"at": clock_text(e.get("at")), "status": e.get("status"), "reason": e.get("reason")}
            for e in state.history
            if isinstance(e, dict)
        ],
        "attempts": Markup(attempts_chart(state.attempt_log, snap.at) or ""),
        "log": tail_text(paths.output, LOG_LINES, max_bytes=LOG_BYTES),
        "checkpoint": _json_file(paths.checkpoint),
        "result_md": _markdown_file(paths.result_md, mask),
        "result_json": _json_file(paths.result_json),
        "transcript": _markdown_file(paths.dir / "transcript.md", mask),
        "task_yaml": _task_yaml(paths.task_yaml),
        "actions": _actions(state),
        "schedule": state.schedule,
        "firing": schedpage.when_text(state.firing, snap.at) if state.schedule else None,
    }


def _fields(state: TaskState) -> list[tuple[str, object]]:
    pairs: list[tuple[str, object]] = [
        ("status", str(state.status)),
        ("reason", state.reason),
        ("progress", progress_text(state.progress)),
        ("step", state.step),
        ("steps done", ", ".join(state.steps_done)),
        ("attempts", state.attempts),
        ("priority", state.priority),
        ("kind", state.kind),
        ("paused", "yes" if state.paused else None),
        ("pid", state.pid),
        ("created", state.created),
        ("started", state.started),
        ("finished", state.finished),
        ("took", took_text(state)),
        ("ended", end_text(state)),
        ("error", state.error),
        ("question", question_text(state.question)),
        ("answer", state.answer),
    ]
    if state.answers:
        pairs.append(("answers", "; ".join(f"{k} = {v}" for k, v in sorted(state.answers.items()))))
    if state.tokens:
        pairs.append(("tokens", ", ".join(f"{v:,} {k}" for k, v in sorted(state.tokens.items()))))
    return [(k, v) for k, v in pairs if v not in (None, "", [], {})]


def _actions(state: TaskState) -> list[str]:
    """The buttons a task gets, by status: what the CLI would accept for it."""
    status = state.status
    found: list[str] = []
    if status == Status.HELD:
        found += ["approve", "reject"]
    if status == Status.WAITING_HUMAN:
        found.append("answer")
    if status in (Status.QUEUED, Status.RUNNING, Status.HELD):
        found.append("resume" if state.paused else "pause")
    if not state.finished_state:
        found.append("cancel")
    if status in (Status.FAILED, Status.CANCELLED):
        found.append("retry")
    return found


def _read_head(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(FILE_BYTES + 1)
    except OSError:
        return None
    text = data[:FILE_BYTES].decode(errors="replace")
    return text + ("\n… (cut)" if len(data) > FILE_BYTES else "")


def _json_file(path: Path) -> str | None:
    text = _read_head(path)
    if text is None:
        return None
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


def _markdown_file(path: Path, mask: Callable[[str], str]) -> Markup | None:
    text = _read_head(path)
    return None if text is None else Markup(render_markdown(text, mask))


def _task_yaml(path: Path) -> str | None:
    text = _read_head(path)
    return None if text is None else mask_task_yaml(text)


# reports -------------------------------------------------------------------------------


def report_names(view: HomeView) -> list[str]:
    """The morning reports in the home, newest first."""
    try:
        names = [p.name for p in view.home.reports.iterdir() if REPORT_NAME.match(p.name)]
    except OSError:
        return []
    return sorted(names, reverse=True)


def reports(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    return {"reports": [n.removesuffix(".md") for n in report_names(view)]}


def report(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    name = params.get("name", "") + ".md"
    if not REPORT_NAME.match(name):
        raise NotFound(f"no report {name}")
    try:
        text = (view.home.reports / name).read_text(errors="replace")
    except OSError as e:
        raise NotFound(f"no report {name}") from e
    return {"name": name.removesuffix(".md"), "html": Markup(render_markdown(text, snap.mask))}


# schedules (web/schedpage.py) -----------------------------------------------------------


def _confirm_remove(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    try:
        return schedpage.confirm_remove(view, snap, params)
    except schedpage.NoSchedule as e:
        raise NotFound(str(e)) from e


PAGES: dict[str, Page] = {
    "night": Page("night.html", ("supervisor", "counts", "running", "needs", "chart"), night),
    "tasks": Page("tasks.html", ("rows",), tasks),
    "task": Page("task.html", ("state", "actions", "story", "log", "files"), task),
    "reports": Page("reports.html", (), reports),
    "report": Page("report.html", (), report),
    "schedules": Page("schedules.html", ("rows",), schedpage.schedules),
    "schedule_remove": Page("schedule_remove.html", (), _confirm_remove),
}
