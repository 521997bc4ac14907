"""`bantzd wait [TASK...]`: block until tasks end, like `pueue wait` and `tsp -w`.

It only reads state.json files (atomically replaced), polling every POLL seconds, so it
needs no lock and works beside a supervisor, a daemon or nothing at all.

Exit status (also in `bantzd wait --help` and the README):

* 0: every task it waited for is done;
* 1: at least one failed or was cancelled (or its folder was removed);
* 3: a TASK names no task (checked before waiting);
* 124: `--timeout` passed first (the value `timeout(1)` uses).

Tasks waiting for a person (a question, or approval) have not ended: `wait` keeps waiting
and prints once per task what they wait for and the command that answers. With no
supervisor running nothing moves: `wait` says so on stderr once (and again whenever the
supervisor goes away), then keeps waiting, because a person who types `bantzd wait 42 &&
...` in the afternoon often means tonight's cron run; `--timeout` bounds it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import click

from bantzd.cli import get_home, main
from bantzd.errors import EXIT_FAILURE, EXIT_OK, UsageError
from bantzd.paths import Home
from bantzd.queue.lookup import resolve
from bantzd.queue.states import FINISHED, Status
from bantzd.queue.store import read_state, scan_states
from bantzd.queue.task import TaskState, took
from bantzd.units import format_duration

POLL = 0.2
EXIT_TIMEOUT = 124
GONE = "removed"  # the task's folder disappeared (`bantzd clean`) before we saw it end


@dataclass
class Watch:
    """What `wait` has seen so far; `observe` is the pure step, fed one poll's states."""

    ids: list[int]
    ended: dict[int, str] = field(default_factory=dict)  # id -> final status (or GONE)
    told: set[int] = field(default_factory=set)  # human-waiting tasks already announced

    def observe(self, states: dict[int, TaskState | None]) -> tuple[list[str], list[str]]:
        """Record what ended; returns (lines for stdout, notes for stderr), each once."""
        lines: list[str] = []
        notes: list[str] = []
        for task_id in self.ids:
            if task_id in self.ended:
                continue
            state = states.get(task_id)
            if state is None:
                self.ended[task_id] = GONE
                lines.append(f"#{task_id}: removed before it ended")
                continue
            if state.status in FINISHED:
                self.ended[task_id] = str(state.status)
                lines.append(ended_line(state))
                continue
            if state.status in (Status.WAITING_HUMAN, Status.HELD):
                if task_id not in self.told:
                    self.told.add(task_id)
                    notes.append(human_note(state))
            else:
                self.told.discard(task_id)  # answered: say it again if it asks again
        return lines, notes

    @property
    def over(self) -> bool:
        return len(self.ended) == len(self.ids)

    def exit_code(self) -> int:
        """0 when every task is done, else 1 (failed, cancelled or removed)."""
        return EXIT_OK if all(s == Status.DONE for s in self.ended.values()) else EXIT_FAILURE


def ended_line(state: TaskState) -> str:
    """`#4 train: done (took 3m10s)` / `#5 x: failed: exit 2`."""
    text = f"#{state.id} {state.name}: {state.status}"
    if state.status is Status.DONE:
        seconds = took(state)
        return text + (f" (took {format_duration(seconds)})" if seconds is not None else "")
    why = state.error or state.reason
    return text + (f": {why}" if why else "")


def human_note(state: TaskState) -> str:
    """What a task waiting for a person waits for, and the command that lets it go on."""
    if state.status is Status.HELD:
        return (
            f"#{state.id} {state.name} waits for approval: bantzd approve {state.id} "
            f"(or bantzd reject {state.id})"
        )
    question = state.question if isinstance(state.question, dict) else {}
    key = question.get("key")
    text = question.get("text") or key or "a question"
    key_opt = f" --key {key}" if key else ""
    command = f"bantzd answer {state.id}{key_opt} TEXT"
    return f"#{state.id} {state.name} waits for an answer to {text!r}: {command}"


def targets(home: Home, refs: Iterable[str]) -> list[int]:
    """The ids to wait for: those named (NoSuchTask, exit 3, for a bad one), or with none
    named every task that has not ended now (new tasks submitted later are not waited for)."""
    refs = list(refs)
    if refs:
        return list(dict.fromkeys(resolve(home, ref).id for ref in refs))
    return [s.id for s in scan_states(home) if s.status not in FINISHED]


def supervisor_note(home: Home) -> str | None:
    """A note when no supervisor runs (nothing will move), else None."""
    from bantzd.supervisor.lock import supervisor_info

    if supervisor_info(home) is not None:
        return None
    return (
        "no supervisor is running, so these tasks will not move until one starts "
        "(bantzd start, bantzd run, or the nightly cron run); waiting anyway "
        "(Ctrl-C or --timeout to stop)"
    )


def wait_for_tasks(
    home: Home,
    ids: list[int],
    timeout: float | None,
    *,
    out: Callable[[str], None],
    err: Callable[[str], None],
    poll: float = POLL,
) -> int:
    """Poll until every id has ended (or `timeout` seconds pass); the exit status."""
    watch = Watch(ids)
    deadline = None if timeout is None else time.monotonic() + timeout
    down_told = False
    next_check = 0.0
    while True:
        lines, notes = watch.observe({i: read_state(home.task_dir(i)) for i in ids})
        for line in lines:
            out(line)
        for note in notes:
            err(f"bantzd wait: {note}")
        if watch.over:
            return watch.exit_code()
        now = time.monotonic()
        if now >= next_check:  # the lock file is not read every poll
            next_check = now + 1.0
            note = supervisor_note(home)
            if note and not down_told:
                err(f"bantzd wait: {note}")
            down_told = note is not None
        if deadline is not None and now >= deadline:
            left = [str(i) for i in ids if i not in watch.ended]
            err(f"bantzd wait: timed out; still not ended: {', '.join(left)}")
            return EXIT_TIMEOUT
        time.sleep(poll if deadline is None else max(0.0, min(poll, deadline - now)))


@main.command()
@click.argument("tasks", nargs=-1)
@click.option(
    "--timeout",
    "timeout_text",
    metavar="DURATION",
    default=None,
    help="Give up after this long (30s, 5m, 1h) and exit 124.",
)
@click.pass_context
def wait(ctx: click.Context, tasks: tuple[str, ...], timeout_text: str | None) -> None:
    """Wait until TASKS end (ids or unique names; none: every task not ended now).

    Exit status: 0 all done, 1 any failed or cancelled, 3 no such task, 124 --timeout
    passed. Tasks waiting for an answer or an approval have not ended: they are named on
    stderr with the command that lets them go on, and waited for. When no supervisor
    runs, wait says so once on stderr and keeps waiting (tonight's run may start it).
    """
    timeout = None
    if timeout_text is not None:
        from bantzd.units import parse_duration

        try:
            timeout = parse_duration(timeout_text)
        except ValueError as e:
            raise UsageError(f"--timeout: {e}") from e
    home = get_home(ctx)
    ids = targets(home, tasks)
    if not ids:
        click.echo("nothing to wait for: no task is queued, running, held or waiting")
        sys.exit(EXIT_OK)
    try:
        code = wait_for_tasks(
            home,
            ids,
            timeout,
            out=click.echo,
            err=lambda line: click.echo(line, err=True),
        )
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
