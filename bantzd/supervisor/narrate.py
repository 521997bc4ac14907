"""What a foreground `bantzd run` tells the person watching it: a line per start and end.

An observer, not a collaborator: the loop feeds it where it already applies things (the
starts of a `StartReport`, the verdicts of `_apply`, the stop it decides on), and it only
writes lines. The lines are built by pure functions of the state, the verdict and the time
(`start_line`, `end_line`, `stop_line`), so the tick tests check them exactly with a fake
clock and a `StringIO`.

Two streams, because they answer different people. `out` (stdout) is the running account:
on for a terminal, off under cron unless `-v` asks for it, off with `-q`. `alerts` (stderr)
answers what the person just did (Ctrl-C: what happens now, and what a second one does);
it is on whenever stderr is a terminal, `-q` included, as with any shell tool.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TextIO

from bantzd.clock import Clock, hms
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, took
from bantzd.supervisor.outcome import Verdict
from bantzd.units import format_duration

# The verbs are padded to one width so the ids line up in a terminal.
VERB_WIDTH = 7


def is_terminal(stream: object) -> bool:
    """Whether `stream` is a terminal (False for a pipe, a file, a closed or missing one)."""
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError):
        return False


def _tasks(n: int) -> str:
    return "1 task" if n == 1 else f"{n} tasks"


def _line(now: float, verb: str, state: TaskState, rest: str = "") -> str:
    return f"{hms(now)} {verb:<{VERB_WIDTH}} #{state.id} {state.name}{rest}"


def start_line(state: TaskState, now: float) -> str:
    """`23:04:12 started #42 train-model (attempt 1)`."""
    return _line(now, "started", state, f" (attempt {state.attempts})")


def end_line(
    state: TaskState, verdict: Verdict, now: float, *, checkpointed: bool, stopping: bool = True
) -> str | None:
    """The line for a verdict already applied to `state`; None when the attempt goes on
    (the next step of a `steps:` task started).

    `checkpointed`: the task left something to resume from (a checkpoint, finished steps),
    which is what an interrupted task's line promises or not. `stopping`: the run is
    ending, so an interrupted task resumes in the next run (else it was interrupted some
    other way, found by recovery, and goes back to this run's queue).
    """
    status = verdict.status
    if status is None:
        return None
    if status is Status.DONE:
        spent = took(state)
        rest = f" in {format_duration(spent)}" if spent is not None else ""
        if state.attempts > 1:
            rest += f" ({state.attempts} attempts)"
        return _line(now, "done", state, rest)
    if status is Status.WAITING_HUMAN:
        question = state.question if isinstance(state.question, dict) else {}
        key = question.get("key")
        key_opt = f" --key {key}" if key else ""
        return _line(
            now,
            "waiting",
            state,
            f": asks {key!r} (bantzd answer {state.id}{key_opt} TEXT)",
        )
    if status is Status.CANCELLED:
        return _line(now, "cancelled", state)
    if status is Status.FAILED:
        return _line(now, "failed", state, f": {state.error or verdict.reason or 'failed'}")
    if status is Status.QUEUED and verdict.reason == "interrupted":
        if stopping:
            how = "checkpointed, resumes" if checkpointed else "no checkpoint, starts over"
            return _line(now, "stopped", state, f" ({how} next run)")
        how = "resumes from its checkpoint" if checkpointed else "starts over"
        return _line(now, "stopped", state, f" (interrupted; back in the queue, {how})")
    if status is Status.QUEUED and state.retry_at is not None and state.error:
        return _line(now, "failed", state, f": {state.error}; {verdict.reason}")
    return _line(now, str(status), state, f": {verdict.reason}" if verdict.reason else "")


def stop_line(running: int, grace: float, signum: int | None) -> str:
    """`stopping: 2 tasks get SIGTERM, 30s to save; Ctrl-C again kills them`."""
    if running == 0:
        return "stopping: no task is running"
    again = (
        "Ctrl-C again kills them"
        if signum in (None, signal.SIGINT)
        else f"a second {_signame(signum)} kills them"
    )
    return f"stopping: {_get_sigterm(running, grace)}; {again}"


def _get_sigterm(running: int, grace: float) -> str:
    if running == 0:
        return "no task is running"
    verb = "gets" if running == 1 else "get"
    return f"{_tasks(running)} {verb} SIGTERM, {format_duration(grace)} to save"


def _signame(signum: int | None) -> str:
    try:
        return signal.Signals(signum).name if signum is not None else "signal"
    except ValueError:
        return f"signal {signum}"


class Narrator:
    """Writes the lines to the streams it was given; a stream left None stays silent.

    Never raises: a closed terminal (the person closed the window, `| head` ended) must not
    stop the night, so a failed write switches that stream off.
    """

    def __init__(
        self,
        clock: Clock,
        out: TextIO | None = None,
        alerts: TextIO | None = None,
        *,
        has_checkpoint: Callable[[TaskState], bool] | None = None,
    ) -> None:
        self.clock = clock
        self.out = out
        self.alerts = alerts
        self.has_checkpoint = has_checkpoint or (lambda state: bool(state.steps_done))

    def started(self, state: TaskState) -> None:
        if self.out is not None:
            self._write("out", start_line(state, self.clock.time()))

    def ended(self, state: TaskState, verdict: Verdict, *, stopping: bool) -> None:
        """After `verdict` was applied to `state`; `stopping`: the run is ending."""
        if self.out is None:
            return
        interrupted = verdict.status is Status.QUEUED and verdict.reason == "interrupted"
        checkpointed = interrupted and self.has_checkpoint(state)
        line = end_line(
            state, verdict, self.clock.time(), checkpointed=checkpointed, stopping=stopping
        )
        if line is not None:
            self._write("out", line)

    def not_startable(self, state: TaskState) -> None:
        """A queued task failed without an attempt (a failed dependency, a missed deadline)."""
        if self.out is not None:
            self._write("out", _line(self.clock.time(), "failed", state, f": {state.reason}"))

    def stopping(self, running: int, grace: float, signum: int | None) -> None:
        """A stop signal came: what happens now, and what a second one does."""
        if self.alerts is not None:
            self._write("alerts", stop_line(running, grace, signum))

    def until_reached(self, until: float, running: int, grace: float) -> None:
        """`--until` came: the same stop as a signal's, told in the running account."""
        if self.out is not None:
            what = _get_sigterm(running, grace)
            self._write("out", f"{hms(self.clock.time())} --until {hms(until)} reached: {what}")

    def killing(self, running: int) -> None:
        if self.alerts is not None:
            self._write("alerts", f"killing {_tasks(running)}")

    def _write(self, which: str, line: str) -> None:
        stream = getattr(self, which)
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):
            setattr(self, which, None)
