"""The columns of `bantzd list`, and `--columns id,name,took,...` to choose them.

Each column is a header and a function of (state, task file); the task file is parsed only
when a chosen column needs it (command, cwd), so the default `list` reads state.json alone.
`took` is `queue.task.took`: the one meaning (all attempts added up) shared with `show` and
the morning report.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import click

from bantzd.cli.display import describe, parse_iso
from bantzd.errors import UsageError
from bantzd.paths import Home, TaskPaths
from bantzd.queue.task import TaskState, took
from bantzd.reports.nodes import nodes_text
from bantzd.units import format_duration

if TYPE_CHECKING:
    # Parsing task files (yaml, the schema) is imported when a column needs it: `list
    # --json` and `status` import this module for the option's help, not for the table.
    from bantzd.queue.taskfile import TaskSpec

COMMAND_WIDTH = 60


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[TaskState, TaskSpec | None], str]
    needs_spec: bool = False


def command_text(spec: TaskSpec | None) -> str:
    """What the task runs, on one line, as a person would type it."""
    if spec is None:
        return "?"
    if spec.kind == "run":
        run = spec.run
        text = shlex.join(run) if isinstance(run, tuple) else str(run or "")
    elif spec.kind == "steps":
        text = "steps: " + ", ".join(s.name for s in spec.steps)
    elif spec.kind == "python":
        text = f"python {spec.python}"
    elif spec.kind == "llm":
        prompt = str((spec.llm or {}).get("prompt", ""))
        text = f"llm: {prompt}"
    elif spec.kind == "agent":
        text = "agent: " + str((spec.agent or {}).get("goal", ""))
    else:
        text = spec.kind
    lines = text.strip().splitlines() or [""]
    text = lines[0] + (" ..." if len(lines) > 1 else "")
    return text if len(text) <= COMMAND_WIDTH else text[: COMMAND_WIDTH - 3] + "..."


def when_text(value: object, today: datetime | None = None) -> str:
    """A local time: `23:12:05` today, `2026-11-21 23:12` another day; '' when unknown."""
    moment = parse_iso(value)
    if moment is None:
        return ""
    local = moment.astimezone()
    today = today or datetime.now().astimezone()
    if local.date() == today.date():
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def took_text(state: TaskState) -> str:
    seconds = took(state)
    return format_duration(seconds) if seconds is not None else ""


COLUMNS: dict[str, Column] = {
    "id": Column("ID", lambda s, _: str(s.id)),
    "name": Column("NAME", lambda s, _: s.name),
    "status": Column("STATUS", lambda s, _: str(s.status)),
    "attempts": Column("ATTEMPTS", lambda s, _: str(s.attempts)),
    "priority": Column("PRIORITY", lambda s, _: str(s.priority)),
    "command": Column("COMMAND", lambda _, spec: command_text(spec), needs_spec=True),
    "cwd": Column("CWD", lambda _, spec: spec.cwd if spec else "?", needs_spec=True),
    "start": Column("START", lambda s, _: when_text(s.started)),
    "end": Column("END", lambda s, _: when_text(s.finished) if s.finished_state else ""),
    "took": Column("TOOK", lambda s, _: took_text(s)),
    "reason": Column("INFO", lambda s, _: describe(s)),
    "node": Column("NODE", lambda s, _: nodes_text(s) or ""),  # Slurm tasks
}
# `info` is what the last column was always called; `reason` is its name in the issue.
ALIASES = {"info": "reason"}
DEFAULT = ("id", "name", "status", "attempts", "reason")  # what `list` always showed


class ColumnList(click.ParamType):
    """`--columns id,name,took`: names from COLUMNS; anything else is a usage error (2)."""

    name = "columns"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_columns(str(value))
        except UsageError as e:
            self.fail(str(e), param, ctx)


def parse_columns(text: str) -> tuple[str, ...]:
    """The column names in `text` (comma-separated), or UsageError listing the valid ones."""
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    names = [ALIASES.get(w, w) for w in wanted]
    bad = [w for w, n in zip(wanted, names, strict=True) if n not in COLUMNS]
    valid = ", ".join(COLUMNS)
    if bad:
        what = ", ".join(map(repr, bad))
        raise UsageError(f"unknown column {what}; the columns are {valid}")
    if not names:
        raise UsageError(f"no column given; the columns are {valid}")
    return tuple(dict.fromkeys(names))


def _spec(home: Home, state: TaskState) -> TaskSpec | None:
    from bantzd.queue.taskfile import TaskFileError, parse_task

    try:
        data = TaskPaths(home.task_dir(state.id)).task_yaml.read_bytes()
        return parse_task(data, default_name=state.name)
    except (OSError, TaskFileError):
        return None


def table(
    home: Home, states: Sequence[TaskState], names: Sequence[str] = DEFAULT
) -> tuple[list[str], list[list[str]], int | None]:
    """(headers, rows, index of the status column or None) for `print_table`."""
    columns = [COLUMNS[n] for n in names]
    need_spec = any(c.needs_spec for c in columns)
    rows = []
    for state in states:
        spec = _spec(home, state) if need_spec else None
        rows.append([c.value(state, spec) for c in columns])
    status_at = list(names).index("status") if "status" in names else None
    return [c.header for c in columns], rows, status_at
