"""The narrator's lines as pure functions of a state, a verdict and the time."""

from __future__ import annotations

import io
import signal

from bantzd.clock import FakeClock, hms
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.supervisor.narrate import Narrator, end_line, start_line, stop_line
from bantzd.supervisor.outcome import Verdict

NOW = 1_800_000_000.0


def test_stop_lines_name_the_count_the_grace_and_the_second_signal() -> None:
    assert stop_line(2, 30, signal.SIGINT) == (
        "stopping: 2 tasks get SIGTERM, 30s to save; Ctrl-C again kills them"
    )
    assert stop_line(1, 90, signal.SIGHUP) == (
        "stopping: 1 task gets SIGTERM, 1m 30s to save; a second SIGHUP kills them"
    )
    assert stop_line(0, 30, signal.SIGINT) == "stopping: no task is running"


def test_start_and_end_lines() -> None:
    state = TaskState(7, "x", Status.RUNNING, attempts=3)
    assert start_line(state, NOW) == f"{hms(NOW)} started #7 x (attempt 3)"
    state.status, state.error = Status.FAILED, "killed by SIGKILL"
    failed = Verdict(Status.FAILED, "killed by SIGKILL")
    assert end_line(state, failed, NOW, checkpointed=False) == (
        f"{hms(NOW)} failed  #7 x: killed by SIGKILL"
    )
    state.status = Status.CANCELLED
    cancelled = Verdict(Status.CANCELLED, "cancelled by user")
    assert end_line(state, cancelled, NOW, checkpointed=False) == f"{hms(NOW)} cancelled #7 x"
    assert end_line(state, Verdict(None, launch_next=True), NOW, checkpointed=False) is None
    state.status = Status.QUEUED
    machine = Verdict(Status.QUEUED, "not started: too many open files")
    assert end_line(state, machine, NOW, checkpointed=False) == (
        f"{hms(NOW)} queued  #7 x: not started: too many open files"
    )


def test_an_interruption_outside_a_stop_goes_back_to_this_runs_queue() -> None:
    state = TaskState(3, "y", Status.QUEUED, attempts=1, reason="interrupted")
    verdict = Verdict(Status.QUEUED, "interrupted")
    assert end_line(state, verdict, NOW, checkpointed=True, stopping=False) == (
        f"{hms(NOW)} stopped #3 y (interrupted; back in the queue, resumes from its checkpoint)"
    )
    assert end_line(state, verdict, NOW, checkpointed=False, stopping=True) == (
        f"{hms(NOW)} stopped #3 y (no checkpoint, starts over next run)"
    )


def test_a_broken_stream_switches_itself_off() -> None:
    out = io.StringIO()
    out.close()
    narrator = Narrator(FakeClock(now=NOW), out, None)
    narrator.started(TaskState(1, "a", Status.RUNNING, attempts=1))  # no exception
    assert narrator.out is None
