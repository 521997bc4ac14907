"""The line that closes each attempt in output.log: how it ended and after how long.

Whoever settles an attempt knows its outcome, and that is the supervisor (the wrapper
only sees `$?`, and a worker killed by SIGTERM can say nothing but the shell's bare
`Terminated`). So the loop, when it settles an attempt, writes one line after the
attempt's output: `=== bantzd: attempt 2 ended: exit code 0 after 3m 12s ===`, `attempt 1
stopped: waiting for an answer to 'publish'`, `attempt 1 killed after timeout 4h`.
`end_words` is the pure part (tested with every kind of end); `record_end` the write.
"""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from bantzd.clock import epoch, iso
from bantzd.paths import Home, TaskPaths
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, attempt_started
from bantzd.queue.taskfile import TaskSpec
from bantzd.supervisor.outcome import Ended, Verdict, next_step
from bantzd.units import format_duration
from bantzd.workers.spawn import end_marker

log = logging.getLogger("bantzd")


@dataclass(frozen=True)
class Context:
    """What the words need besides the verdict: how long the attempt ran, whether the
    task can resume (a checkpoint, the next step), and why the supervisor stopped it."""

    seconds: float | None = None
    checkpointed: bool = False
    resumes_at_step: str | None = None
    timeout: float | None = None
    night_over: bool = False  # the supervisor stops for `--until`, not for a signal


def end_words(ended: Ended, verdict: Verdict, ctx: Context) -> str | None:
    """`ended: exit code 3 after 5s; retry at 23:41:07`, `stopped: waiting for an answer
    to 'publish'`... or None when the attempt goes on (the next step of a `steps:` task)
    or is given back unused (it never started: the machine's fault)."""
    if verdict.log_outcome is None:
        return None
    after = f" after {format_duration(ctx.seconds)}" if ctx.seconds is not None else ""
    outcome = ended.outcome
    if ended.spawn_error is not None:
        return _then(f"could not start: {ended.spawn_error}", verdict)
    if verdict.log_outcome == "cancelled":
        return f"stopped: cancelled{after}"
    if verdict.log_outcome == "asked":
        key = (ended.question or {}).get("key") or "?"
        return f"stopped: waiting for an answer to '{key}'{after}"
    if verdict.log_outcome == "interrupted":
        if not outcome.known:
            words = "ended while no supervisor watched it"
        else:
            why = "for the end of the night" if ctx.night_over else "as the supervisor stopped"
            words = f"stopped {why}{after}"
        if verdict.status is Status.FAILED:
            return f"{words}; failed: {verdict.reason}"
        return f"{words} ({_resume(ctx)})"
    if verdict.log_outcome == "done":
        return f"ended: exit code 0{after}"
    if ended.stop_reason == "timeout" and ctx.timeout:
        return _then(f"killed after timeout {format_duration(ctx.timeout)}", verdict)
    if ended.stop_reason == "memory limit":
        return _then(f"killed over its memory limit{after}", verdict)
    return _then(f"ended: {_status(ended)}{after}", verdict)


def _status(ended: Ended) -> str:
    outcome = ended.outcome
    if not outcome.known:
        return "no exit status (no supervisor watched it)"
    if outcome.signal is not None:
        try:
            return f"killed by {signal.Signals(outcome.signal).name}"
        except ValueError:
            return f"killed by signal {outcome.signal}"
    return f"exit code {outcome.exit_code}"


def _then(words: str, verdict: Verdict) -> str:
    """A failed attempt that will be retried says when."""
    if verdict.status is Status.QUEUED and verdict.reason:
        return f"{words}; {verdict.reason}"
    return words


def _resume(ctx: Context) -> str:
    if ctx.resumes_at_step:
        return f"resumes at step {ctx.resumes_at_step}"
    if ctx.checkpointed:
        return "checkpointed: resumes from it"
    return "no checkpoint: starts over"


def context_of(
    paths: TaskPaths,
    state: TaskState,
    spec: TaskSpec | None,
    verdict: Verdict,
    now: float,
    *,
    night_over: bool,
) -> Context:
    """The facts `end_words` needs, read from the task folder (the checkpoint's existence)."""
    start = epoch(attempt_started(state))
    end = epoch(iso(now))  # to the second, as the attempt log records it: the same as `took`
    step = None
    if spec is not None and spec.kind == "steps":
        done = verdict.fields.get("steps_done", state.steps_done)
        following = next_step(spec, list(done) if isinstance(done, list) else [])
        step = following.name if following else None
    return Context(
        seconds=max(0.0, end - start) if start is not None and end is not None else None,
        checkpointed=paths.checkpoint.exists(),
        resumes_at_step=step,
        timeout=spec.timeout if spec is not None else None,
        night_over=night_over,
    )


def record_end(
    home: Home,
    state: TaskState,
    spec: TaskSpec | None,
    ended: Ended,
    verdict: Verdict,
    now: float,
    *,
    night_over: bool = False,
) -> None:
    """Append the attempt's end line to its output.log (before the verdict is applied:
    `state` still names the attempt). Never raises: the line is for people, and neither a
    full disk nor a bug here may stop the attempt's outcome from being recorded."""
    paths = TaskPaths(home.task_dir(state.id))
    try:
        ctx = context_of(paths, state, spec, verdict, now, night_over=night_over)
        words = end_words(ended, verdict, ctx)
        if words is not None:
            append_line(paths.output, end_marker(state.attempts, words))
    except OSError as e:
        log.warning("task %d: could not write the attempt's end to output.log: %s", state.id, e)
    except Exception:
        log.exception("task %d: the attempt's end line could not be made", state.id)


def append_line(path: Path, line: str) -> None:
    """Append `line` to the log on a line of its own (a worker's last line may lack its
    newline)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        size = os.fstat(fd).st_size
        newline = size > 0 and os.pread(fd, 1, size - 1) != b"\n"
        os.write(fd, (("\n" if newline else "") + line).encode(errors="replace"))
    finally:
        os.close(fd)
