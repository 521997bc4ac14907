"""Read-only commands: `list`, `show`, `logs`, `status` (SPEC section 7).

They only read files that are replaced atomically (state.json, supervisor.json, the lock
file), so they are safe while a supervisor runs and never take the home lock. The one file
they write is the readers' own cache, state-index.json (queue/stateindex.py), replaced
atomically too; they create nothing in a home that has no tasks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import click

from bantzd.cli import columns, get_home, main
from bantzd.cli.columns import COLUMNS, ColumnList
from bantzd.cli.columns import DEFAULT as DEFAULT_COLUMNS
from bantzd.cli.display import (
    STATUS_STYLE,
    STATUSES,
    end_text,
    mask_task_yaml,
    mask_values,
    not_running_note,
    parse_iso,
    print_table,
    progress_text,
    question_text,
    tail_offset,
    tail_text,
    task_object,
    task_yaml_secrets,
    took_text,
)
from bantzd.cli.sessionview import counts_text, paused_counts, supervisor_text
from bantzd.clock import iso
from bantzd.errors import BantzError, UsageError
from bantzd.paths import Home, TaskPaths, exposure_warnings
from bantzd.queue.lookup import resolve
from bantzd.queue.stateindex import Row, list_json, state_rows
from bantzd.queue.task import TaskState, attempt_started
from bantzd.reports.nodes import job_text, nodes_text, running_where
from bantzd.units import format_duration, format_size, parse_size

if TYPE_CHECKING:
    from bantzd.supervisor.probes import Reading

# The supervisor's modules (the lock, the probes with psutil, the control files) are
# imported by `status`, which uses them: `list` and `show ID` do not pay for them.

SHOW_LOG_LINES = 10
FOLLOW_INTERVAL = 0.25
COPY_CHUNK = 1024 * 1024


class StatusList(click.ParamType):
    """`--status running` or `--status queued,held`; anything else is a usage error (2)."""

    name = "status"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> frozenset[str]:
        if isinstance(value, frozenset):
            return value
        wanted = [part.strip() for part in str(value).split(",") if part.strip()]
        valid = [str(s) for s in STATUSES]
        bad = [w for w in wanted if w not in valid]
        if bad or not wanted:
            what = f"{', '.join(map(repr, bad))} is not a status" if bad else "no status given"
            self.fail(f"{what}; choose from {', '.join(valid)}", param, ctx)
        return frozenset(wanted)


def _dump(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False))


# list ----------------------------------------------------------------------------------


@main.command("list")
@click.option(
    "--status",
    "statuses",
    type=StatusList(),
    multiple=True,
    metavar="S[,S...]",
    help="Only tasks in these statuses (repeatable or comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of task objects.")
@click.option(
    "--columns",
    "column_names",
    type=ColumnList(),
    default=None,
    metavar="C[,C...]",
    help=f"Table columns, in order: {', '.join(COLUMNS)} (default: {','.join(DEFAULT_COLUMNS)}).",
)
@click.pass_context
def list_tasks(
    ctx: click.Context,
    statuses: tuple[frozenset[str], ...],
    as_json: bool,
    column_names: tuple[str, ...] | None,
) -> None:
    """List tasks, oldest first."""
    wanted = frozenset().union(*statuses) if statuses else None
    if as_json and column_names:
        raise UsageError("--columns chooses the table's columns; --json prints every field")
    # The index answers without parsing every state.json (queue/stateindex.py).
    found = [r for r in state_rows(get_home(ctx)) if wanted is None or r.status in wanted]
    if as_json:
        click.echo(list_json(found))  # what _dump of the task objects prints
        return
    states = [r.state() for r in found]
    names = column_names or DEFAULT_COLUMNS
    headers, rows, status_at = columns.table(get_home(ctx), states, names)
    if wanted is None:  # files not taken in yet are not tasks: shown here, not in --json
        from bantzd.cli.spoolview import spool_rows

        rows += spool_rows(get_home(ctx), names)
    print_table(headers, rows, status_column=status_at)


# show ----------------------------------------------------------------------------------


@main.command()
@click.argument("task")
@click.option("--json", "as_json", is_flag=True, help="Print the task object as JSON.")
@click.pass_context
def show(ctx: click.Context, task: str, as_json: bool) -> None:
    """Show one task (by id or unique name): state, history, task file, output tail."""
    home = get_home(ctx)
    state = resolve(home, task)
    if as_json:
        _dump(task_object(state))
        return
    paths = TaskPaths(home.task_dir(state.id))
    click.echo("\n".join(_show_lines(state, paths)))


def _show_lines(state: TaskState, paths: TaskPaths) -> list[str]:
    """The human view of `show`; secrets of the task's env are masked everywhere in it."""
    status = str(state.status)
    lines = [
        click.style(f"task {state.id}: {state.name}", bold=True)
        + "  "
        + click.style(status, fg=STATUS_STYLE.get(status))
    ]

    def field(label: str, value: object) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"  {(label + ':').ljust(11)} {value}")

    field("reason", state.reason)
    field("progress", progress_text(state.progress))
    field("step", state.step)
    field("steps done", ", ".join(state.steps_done))
    field("attempts", state.attempts)
    field("priority", state.priority)
    field("kind", state.kind)
    if state.schedule:  # a schedule's instance: which one, and for which firing
        field("schedule", f"{state.schedule} (firing of {(state.firing or '?').replace('T', ' ')})")
    field("paused", "yes" if state.paused else None)
    field("pid", state.pid if state.slurm is None else None)
    field("slurm", job_text(state.slurm))
    field("node", nodes_text(state))
    field("created", state.created)
    field("started", state.started)  # the first start; `took` counts every attempt
    last_start = attempt_started(state)
    if state.attempts > 1 and last_start != state.started:
        field("last attempt started", last_start)
    field("finished", state.finished)
    field("took", took_text(state))
    field("ended", end_text(state))
    field("error", state.error)
    if state.question:
        field("question", question_text(state.question))
        key = state.question.get("key") if isinstance(state.question, dict) else None
        key_opt = f" --key {key}" if key else ""
        field("answer it", f"bantzd answer {state.id}{key_opt} TEXT")
    if state.answers:  # by key (state.json keeps them sorted); the last one is `answer`
        field("answers", "; ".join(f"{k} = {v}" for k, v in sorted(state.answers.items())))
    else:
        field("answer", state.answer)
    field("tokens", tokens_text(state.tokens))
    field("agent", agent_text(state.agent))

    if state.history:
        lines += ["", click.style("history:", bold=True)]
        for entry in state.history:
            reason = f"  {entry['reason']}" if entry.get("reason") else ""
            lines.append(f"  {entry.get('at', '?')}  {entry.get('status', '?')}{reason}")

    secrets: list[str] = []
    try:
        text = paths.task_yaml.read_text(errors="replace")
    except OSError:
        text = None
    if text is not None:
        secrets = task_yaml_secrets(text)
        lines += ["", click.style("task.yaml:", bold=True)]
        lines += ["  " + line for line in mask_task_yaml(text).rstrip("\n").split("\n")]

    tail = tail_text(paths.output, SHOW_LOG_LINES)
    if tail:
        lines += ["", click.style(f"output.log (last {SHOW_LOG_LINES} lines):", bold=True)]
        lines += ["  " + mask_values(line, secrets) for line in tail]
    return lines


# logs ----------------------------------------------------------------------------------


@main.command()
@click.argument("task")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new output until the task ends.")
@click.option(
    "-n", "--lines", type=click.IntRange(min=0), default=None, help="Only the last N lines."
)
@click.pass_context
def logs(ctx: click.Context, task: str, follow: bool, lines: int | None) -> None:
    """Print a task's output.log (all attempts, in order)."""
    home = get_home(ctx)
    state = resolve(home, task)
    task_dir = home.task_dir(state.id)
    # Bytes as the worker wrote them, whatever their encoding.
    sys.stdout.flush()
    out: BinaryIO = sys.stdout.buffer
    note = not_running_note(state, follow=follow, has_log=_has_log(TaskPaths(task_dir).output))
    if note:
        click.echo(note, err=True)  # stderr: stdout stays the log's bytes, for pipes
    try:
        pos = print_log(TaskPaths(task_dir).output, out, lines)
        if follow:
            follow_log(TaskPaths(task_dir).output, out, pos, lambda: _task_over(task_dir))
    except KeyboardInterrupt:
        # Ctrl-C is how a person stops following; it is not a failure.
        pass
    except BrokenPipeError:
        _quiet_broken_pipe()


def _has_log(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def print_log(path: Path, out: BinaryIO, lines: int | None) -> int:
    """Copy the log (or its last `lines` lines) to `out`; returns the offset reached.

    Bytes are copied as they are, so a log in any encoding (or with progress-bar `\\r`s)
    comes out exactly as the worker wrote it.
    """
    try:
        with open(path, "rb") as f:
            start = tail_offset(f, lines) if lines is not None else 0
            f.seek(start)
            return start + _copy(f, out)
    except FileNotFoundError:  # no attempt has written anything yet
        return 0


def follow_log(
    path: Path,
    out: BinaryIO,
    pos: int,
    finished: Callable[[], bool],
    *,
    interval: float = FOLLOW_INTERVAL,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print what is appended to `path` from `pos` on, like `tail -f`, until `finished()`.

    `finished` is checked *before* the final read: a worker writes its last lines before the
    supervisor records the end, so once the task is over one more read catches everything.
    A log that shrinks (cleaned, recreated) is followed again from its start.
    """
    while True:
        over = finished()
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size < pos:
                    pos = 0
                f.seek(pos)
                pos += _copy(f, out)
        except FileNotFoundError:
            pass
        if over:
            return pos
        sleep(interval)


def _copy(f: BinaryIO, out: BinaryIO) -> int:
    copied = 0
    while chunk := f.read(COPY_CHUNK):
        out.write(chunk)
        copied += len(chunk)
    out.flush()
    return copied


def _task_over(task_dir: Path) -> bool:
    """Whether following should stop: the task ended, or its folder was cleaned away."""
    from bantzd.queue.stateread import read_state

    state = read_state(task_dir)
    if state is None:
        return not task_dir.exists()
    return state.finished_state


def _quiet_broken_pipe() -> None:
    """`bantzd logs 3 | head`: stop quietly instead of a traceback at interpreter exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


# status --------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON object.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Supervisor, machine load, running tasks, counts per status, questions waiting."""
    from bantzd.supervisor.probes import read_machine

    report = collect_status(get_home(ctx), read_machine())
    if as_json:
        _dump(report)
        return
    click.echo("\n".join(status_lines(report, time.time())))


def collect_status(
    home: Home, reading: Reading, *, states: list[TaskState] | None = None
) -> dict[str, Any]:
    """The `status --json` object (SPEC section 7) from the files and one machine reading.

    `states`: the tasks, when the caller has just scanned them (the dashboard); else the
    index answers (queue/stateindex.py), and only the running and waiting tasks are parsed."""
    from bantzd.supervisor.lock import supervisor_info
    from bantzd.supervisor.overrides import parallel_status

    info = supervisor_info(home)
    since = info.get("since") if info else None
    pid = info.get("pid") if info else None
    tasks = state_rows(home, texts=False) if states is None else states
    counts = {str(s): 0 for s in STATUSES}
    for task in tasks:
        counts[str(task.status)] = counts.get(str(task.status), 0) + 1
    stopping = info.get("stopping") if info else None
    return {
        "supervisor": {
            "running": info is not None,
            "pid": pid if isinstance(pid, int) else None,
            "since": iso(since) if isinstance(since, int | float) else None,
            "stopping": isinstance(stopping, int | float),
            "stopping_since": iso(stopping) if isinstance(stopping, int | float) else None,
        },
        "paused": read_paused(home),
        "max_parallel": parallel_status(home),
        "counts": counts,
        "paused_tasks": paused_counts(tasks),
        "running": _task_objects(t for t in tasks if t.status == "running"),
        "waiting_human": _task_objects(t for t in tasks if t.status == "waiting_human"),
        "load": reading.to_json(),
        "throttled": _throttled(home, reading, running=info is not None),
        "warnings": _config_warnings(home) + home_warnings(home),
        "spool": _spool_status(home, sum(not t.finished_state for t in tasks)),
    }


def _task_objects(tasks: Iterable[TaskState | Row]) -> list[dict[str, Any]]:
    """Task objects of states, or of index rows (read from their folders; one cleaned
    away since the index was checked is left out, as a scan would have)."""
    objects = []
    for task in tasks:
        if not isinstance(task, Row):
            objects.append(task_object(task))
            continue
        try:
            objects.append(task.obj())
        except FileNotFoundError:
            continue
    return objects


def _spool_status(home: Home, unfinished: int) -> dict[str, Any]:
    from bantzd.cli.spoolview import spool_status

    return spool_status(home, unfinished)


def _config_warnings(home: Home) -> list[str]:
    """What the next night would die of in config.toml, for `status` and `status --json`."""
    from bantzd.cli import config_problem

    problem = config_problem(home)
    if problem is None:
        return []
    return [f"{problem}\nthe next 'bantzd run' will refuse to start until this is fixed"]


def home_warnings(home: Home) -> list[str]:
    """What is wrong with the home itself, each with its fix: open to other users, its lock
    held by another user's process, a damaged supervisor.json."""
    from bantzd.supervisor.lock import foreign_holders, foreign_lock_message

    warnings = exposure_warnings(home)
    foreign = foreign_holders(home.lockfile)
    if foreign:
        warnings.append(foreign_lock_message(home.lockfile, foreign))
    from bantzd.queue.pauseflag import read_pause_flag

    problem = read_pause_flag(home)[1]
    if problem:
        warnings.append(problem)
    return warnings


# How old the supervisor's last load sample may be and still speak for it (a few intervals).
SAMPLE_FRESH = 60.0


def _throttled(home: Home, reading: Reading, *, running: bool) -> str | None:
    """Whether starts are throttled and why, in the supervisor's words.

    While a supervisor runs, its last load.jsonl sample says what it decided (that includes
    the load of tasks it just started, which `reading` cannot show yet); otherwise the same
    rule is applied to `reading` and config.toml's [throttle].
    """
    from bantzd.supervisor.probes import LoadHistory, throttle_reason

    if running:
        sample = LoadHistory(home.load_history).last()
        if sample is not None and time.time() - sample["t"] <= SAMPLE_FRESH:
            why = sample.get("throttled")
            return why.removeprefix("throttled: ") if isinstance(why, str) else None
    return throttle_reason(reading, *_throttle_limits(home))


def read_paused(home: Home) -> bool:
    """The global pause flag (`bantzd pause`); a damaged file falls back to the journal
    (and is named in the status warnings)."""
    from bantzd.queue.pauseflag import read_pause_flag

    return read_pause_flag(home)[0]


def _throttle_limits(home: Home) -> tuple[float | None, int | None]:
    """`[throttle] max_load` and `min_free_memory` from config.toml, or None each.

    `status` must work on a home without a config and with a broken one (it is how a person
    looks at a sick setup), so config problems only switch the throttle check off here.
    """
    try:
        from bantzd.config import load_config
    except ImportError:
        return None, None
    try:
        throttle = getattr(load_config(home.config), "throttle", None)
    except (BantzError, OSError, ValueError):
        return None, None
    max_load = getattr(throttle, "max_load", None)
    min_free = getattr(throttle, "min_free_memory", None)
    try:
        min_free = parse_size(min_free) if min_free is not None else None
    except ValueError:
        min_free = None
    return (float(max_load) if isinstance(max_load, int | float) else None, min_free)


def status_lines(report: dict[str, Any], now: float) -> list[str]:
    """The human form of `status`: one `key: value` line per fact, then the task lists.

    The same lines go to a terminal (coloured) and a pipe (plain), so `bantzd status | grep`
    works on what a person sees.
    """
    from bantzd.supervisor.overrides import parallel_text

    supervisor = supervisor_text(report["supervisor"], len(report["running"]), now)
    load = report["load"]
    lines = [
        f"supervisor: {supervisor}",
        "paused:     " + (click.style("yes", fg="yellow") if report["paused"] else "no"),
        "parallel:   " + parallel_text(report.get("max_parallel") or {}),
        f"load:       {load['load_per_core']:.2f} per core, "
        f"{format_size(load['free_memory'])} memory free",
    ]
    for gpu in load.get("gpus") or []:
        util = gpu.get("util")
        busy = f"{util:g}% busy" if isinstance(util, int | float) else "utilisation unknown"
        label = f"gpu {gpu.get('index', '?')}:"
        lines.append(
            f"{label:<12}{gpu.get('name', '?')}, {busy}, "
            f"{_size_or(gpu.get('free_memory'))} of {_size_or(gpu.get('total_memory'))} free"
        )
    throttled = report["throttled"]
    lines.append("throttled:  " + (click.style(throttled, fg="yellow") if throttled else "no"))
    counts = report["counts"]
    lines.append("tasks:      " + counts_text(counts, report.get("paused_tasks") or {}))
    if report.get("spool") is not None:
        from bantzd.cli.spoolview import spool_status_lines

        lines += spool_status_lines(report["spool"], report["supervisor"]["running"])
    for warning in report.get("warnings") or []:
        lines.append("warning:    " + click.style(warning, fg="red"))

    lines += ["", click.style("running:", bold=True)]
    if not report["running"]:
        lines.append("  (none)")
    for task in report["running"]:
        elapsed = ""
        start = _epoch(attempt_started(TaskState.from_json(task)))  # this attempt's start
        if start is not None:
            elapsed = f"  for {format_duration(max(0.0, now - start))}"
        info = progress_text(task.get("progress"))
        where = running_where(TaskState.from_json(task))  # a Slurm job: its node or its wait
        if where:
            info = f"{info}  {where}" if info else where
        if task.get("paused"):
            stopped = click.style("paused (SIGSTOP)", fg="yellow")
            info = f"{stopped}  {info}" if info else stopped
        lines.append(f"  {task['id']}  {task['name']}{elapsed}" + (f"  {info}" if info else ""))

    lines += ["", click.style("waiting for you:", bold=True)]
    if not report["waiting_human"]:
        lines.append("  (none)")
    for task in report["waiting_human"]:
        question = task.get("question") or {}
        key = question.get("key") if isinstance(question, dict) else None
        key_opt = f" --key {key}" if key else ""
        lines.append(
            f"  {task['id']}  {task['name']}  {question_text(question)}"
            f"  -> bantzd answer {task['id']}{key_opt} TEXT"
        )
    return lines


def _epoch(text: object) -> float | None:
    value = parse_iso(text)
    return value.timestamp() if value else None


def _size_or(value: object) -> str:
    return format_size(int(value)) if isinstance(value, int | float) else "?"


def tokens_text(tokens: dict[str, int]) -> str | None:
    """`1,204 prompt + 310 completion` (what `llm:` tasks used), then any other counts."""
    if not tokens:
        return None
    order = [
        "prompt",
        "completion",
        *sorted(k for k in tokens if k not in ("prompt", "completion")),
    ]
    return " + ".join(f"{tokens[k]:,} {k}" for k in order if k in tokens)


def agent_text(agent: dict[str, Any] | None) -> str | None:
    """`12 steps; tool calls: read 4, write 1` for an agent: task's agent.json."""
    if not isinstance(agent, dict) or not agent.get("steps"):
        return None
    calls = agent.get("tool_calls") if isinstance(agent.get("tool_calls"), dict) else {}
    text = f"{agent['steps']} steps"
    if calls:
        text += "; tool calls: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))
    return text
