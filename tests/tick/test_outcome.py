"""The outcome matrix: what `settle` decides for every way an attempt can end.

Pure unit tests (no processes, no clock): each case builds an `Ended`, a task state and a
spec, and asserts the whole `Verdict`; then applies it through a real `Store`, as the loop
does, and asserts the state.json that results (what the verdict leaves to the status
transition, such as `finished` and clearing `pid`, is checked there).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bantzd.clock import FakeClock, hms, iso
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec, parse_task
from bantzd.supervisor.outcome import (
    Ended,
    Policy,
    Verdict,
    closed_log,
    internal_error,
    next_step,
    settle,
)
from bantzd.workers.spawn import Outcome

NOW = 1_763_852_400.0
POLICY = Policy(max_interruptions=5, max_retry_delay=3600.0)
OPEN_LOG = [
    {"attempt": 1, "start": "2025-11-22T22:00:00+00:00", "end": "x", "outcome": "failed"},
    {"attempt": 2, "start": "2025-11-22T23:00:00+00:00", "end": None, "outcome": None},
]
STEPS = "steps:\n  - {name: a, run: 'true'}\n  - {name: b, run: 'true'}\n"


def spec(text: str = "run: x\n") -> TaskSpec:
    return parse_task(text, default_name="job")


@dataclass
class Case:
    ended: Ended
    expected: Verdict
    state: dict[str, Any] = field(default_factory=dict)
    spec: str | None = "run: x\n"
    policy: Policy = POLICY


def failed(why: str, *, exit_code: int | None = None, sig: int | None = None, failures: int = 1):
    return Verdict(
        Status.FAILED,
        why,
        {"exit_code": exit_code, "signal": sig, "error": why, "failures": failures},
        log_outcome="failed",
        notify="failed",
        message=f"task 7 (job) failed: {why}",
    )


def retry(why: str, delay: float, *, failures: int, retries: int, exit_code: int | None = 1):
    at = NOW + delay
    return Verdict(
        Status.QUEUED,
        f"retry at {hms(at)}",
        {
            "retry_at": at,
            "exit_code": exit_code,
            "signal": None,
            "error": why,
            "failures": failures,
        },
        log_outcome="failed",
        message=f"task 7 failed ({why}); retry {failures} of {retries} at {hms(at)}",
    )


REQUEUED = {"interruptions": 1}
QUESTION = {"key": "which", "text": "Which one?", "choices": ["a", "b"]}

CASES = {
    "exit 0": Case(Ended(Outcome(exit_code=0)), Verdict(Status.DONE, None, {}, "done")),
    "exit 1, no retries": Case(Ended(Outcome(exit_code=1)), failed("exit 1", exit_code=1)),
    "exit 127": Case(
        Ended(Outcome(exit_code=127)), failed("exit 127: command not found", exit_code=127)
    ),
    "exit 1, first retry": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 60, failures=1, retries=2),
        spec="run: x\nretries: 2\n",
    ),
    "exit 1, backoff doubles": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 240, failures=3, retries=5),
        state={"failures": 2},
        spec="run: x\nretries: 5\n",
    ),
    "backoff capped by config max_retry_delay": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 3600, failures=7, retries=10),
        state={"failures": 6},
        spec="run: x\nretries: 10\nretry_delay: 10m\n",
    ),
    "backoff cap follows the policy": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 7200, failures=7, retries=10),
        state={"failures": 6},
        spec="run: x\nretries: 10\nretry_delay: 10m\n",
        policy=Policy(max_interruptions=5, max_retry_delay=7200.0),
    ),
    "backoff capped by the task's own max_retry_delay": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 900, failures=7, retries=10),
        state={"failures": 6},
        spec="run: x\nretries: 10\nretry_delay: 10m\nmax_retry_delay: 15m\n",
    ),
    "the last retry": Case(
        Ended(Outcome(exit_code=1)),
        retry("exit 1", 120, failures=2, retries=2),
        state={"failures": 1},
        spec="run: x\nretries: 2\n",
    ),
    "retries used up": Case(
        Ended(Outcome(exit_code=1)),
        failed("exit 1", exit_code=1, failures=3),
        state={"failures": 2},
        spec="run: x\nretries: 2\n",
    ),
    "killed by a signal": Case(
        Ended(Outcome(exit_code=None, signal=9)), failed("killed by SIGKILL", sig=9)
    ),
    "timeout": Case(
        Ended(Outcome(exit_code=None, signal=15), stop_reason="timeout"),
        failed("timeout after 1m 30s", sig=15),
        spec="run: x\ntimeout: 90s\n",
    ),
    "timeout with a retry": Case(
        Ended(Outcome(exit_code=None, signal=15), stop_reason="timeout"),
        Verdict(
            Status.QUEUED,
            f"retry at {hms(NOW + 60)}",
            {
                "retry_at": NOW + 60,
                "exit_code": None,
                "signal": 15,
                "error": "timeout after 1m 30s",
                "failures": 1,
            },
            log_outcome="failed",
            message=f"task 7 failed (timeout after 1m 30s); retry 1 of 1 at {hms(NOW + 60)}",
        ),
        spec="run: x\ntimeout: 90s\nretries: 1\n",
    ),
    "memory limit": Case(
        Ended(Outcome(exit_code=None, signal=9), stop_reason="memory limit"),
        failed("memory limit", sig=9),
    ),
    "cancelled": Case(
        Ended(Outcome(exit_code=None, signal=15), stop_reason="cancelled"),
        Verdict(
            Status.CANCELLED,
            "cancelled by user",
            {},
            "cancelled",
        ),
    ),
    "cancelled wins over a question and exit 0": Case(
        Ended(Outcome(exit_code=0), stop_reason="cancelled", question=QUESTION),
        Verdict(
            Status.CANCELLED,
            "cancelled by user",
            {},
            "cancelled",
        ),
    ),
    "interrupted": Case(
        Ended(Outcome(exit_code=None, signal=15), stop_reason="interrupted"),
        Verdict(Status.QUEUED, "interrupted", REQUEUED, "interrupted"),
    ),
    "interrupted max_interruptions times": Case(
        Ended(Outcome(exit_code=None, signal=15), stop_reason="interrupted"),
        Verdict(Status.QUEUED, "interrupted", {**REQUEUED, "interruptions": 5}, "interrupted"),
        state={"interruptions": 4},
    ),
    "interrupted once too often": Case(
        Ended(Outcome(exit_code=143), stop_reason="interrupted"),
        Verdict(
            Status.FAILED,
            "interrupted 6 times (max_interruptions = 5)",
            {
                "error": "interrupted 6 times (max_interruptions = 5)",
                "interruptions": 6,
                "exit_code": 143,
                "signal": None,
            },
            log_outcome="interrupted",
            notify="failed",
        ),
        state={"interruptions": 5},
    ),
    "interrupted does not use a retry": Case(
        Ended(Outcome(exit_code=1), stop_reason="interrupted"),
        Verdict(Status.QUEUED, "interrupted", REQUEUED, "interrupted"),
        spec="run: x\nretries: 3\n",
    ),
    "ended while no supervisor watched": Case(
        Ended(Outcome(known=False)),
        Verdict(Status.QUEUED, "interrupted", REQUEUED, "interrupted"),
    ),
    "ended unwatched, once too often": Case(
        Ended(Outcome(known=False)),
        Verdict(
            Status.FAILED,
            "interrupted 3 times (max_interruptions = 2)",
            {
                "error": "interrupted 3 times (max_interruptions = 2)",
                "interruptions": 3,
                "exit_code": None,
                "signal": None,
            },
            log_outcome="interrupted",
            notify="failed",
        ),
        state={"interruptions": 2},
        policy=Policy(max_interruptions=2),
    ),
    "question asked": Case(
        Ended(Outcome(exit_code=0), question=QUESTION),
        Verdict(
            Status.WAITING_HUMAN,
            "question: which",
            {"question": QUESTION},
            log_outcome="asked",
            notify="question",
        ),
    ),
    "question asked, then killed": Case(
        Ended(Outcome(exit_code=None, signal=9), question=QUESTION),
        Verdict(
            Status.WAITING_HUMAN,
            "question: which",
            {"question": QUESTION},
            log_outcome="asked",
            notify="question",
        ),
    ),
    "spawn failure": Case(
        Ended(spawn_error="cwd /nope does not exist"), failed("cwd /nope does not exist")
    ),
    "spawn failure uses a retry": Case(
        Ended(spawn_error="cwd /nope does not exist"),
        retry("cwd /nope does not exist", 60, failures=1, retries=1, exit_code=None),
        spec="run: x\nretries: 1\n",
    ),
    "not started (the machine's fault)": Case(
        Ended(not_started="Too many open files"),
        Verdict(
            Status.QUEUED,
            "not started: Too many open files",
            {"attempts": 1, "attempt_log": OPEN_LOG[:1]},
        ),
        spec="run: x\nretries: 3\n",
    ),
    "worker's reason appended": Case(
        Ended(Outcome(exit_code=2), worker_reason="model answered 404"),
        failed("exit 2: model answered 404", exit_code=2),
    ),
    "steps: next step": Case(
        Ended(Outcome(exit_code=0), step="a"),
        Verdict(None, fields={"steps_done": ["a"]}, launch_next=True),
        spec=STEPS,
    ),
    "steps: last step": Case(
        Ended(Outcome(exit_code=0), step="b"),
        Verdict(Status.DONE, None, {"steps_done": ["a", "b"]}, "done"),
        state={"steps_done": ["a"]},
        spec=STEPS,
    ),
    "steps: stopping between steps": Case(
        Ended(Outcome(exit_code=0), step="a"),
        Verdict(Status.QUEUED, "interrupted", {"steps_done": ["a"], **REQUEUED}, "interrupted"),
        spec=STEPS,
        policy=Policy(stopping=True),
    ),
    "steps: step exited 0 after it was told to stop": Case(
        Ended(Outcome(exit_code=0), step="a", stop_reason="timeout"),
        Verdict(Status.QUEUED, "interrupted", {"steps_done": ["a"], **REQUEUED}, "interrupted"),
        spec=STEPS,
    ),
    "steps: failed step gets the step prefix and the worker's reason": Case(
        Ended(Outcome(exit_code=3), step="b", worker_reason="no input"),
        failed("step b: exit 3: no input", exit_code=3),
        state={"steps_done": ["a"]},
        spec=STEPS,
    ),
    "task.yaml gone, exit 0": Case(
        Ended(Outcome(exit_code=0)), Verdict(Status.DONE, None, {}, "done"), spec=None
    ),
    "task.yaml gone, exit 1 (no retries without a spec)": Case(
        Ended(Outcome(exit_code=1)), failed("exit 1", exit_code=1), spec=None
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_settle(case: Case) -> None:
    state = TaskState(
        id=7, name="job", status=Status.RUNNING, attempts=2, attempt_log=OPEN_LOG, **case.state
    )
    before = copy.deepcopy(state)
    task = spec(case.spec) if case.spec is not None else None
    assert settle(case.ended, state, task, case.policy, NOW) == case.expected
    assert state == before  # pure: the state is the loop's to change


# What state.json holds after the verdict's transition, besides the verdict's own fields:
# what each status implies (the transition sets it), for a running task that had a pid, a
# step and an earlier attempt's error.
ENDS: dict[Status | None, dict[str, Any]] = {
    Status.DONE: {
        "finished": iso(NOW),
        "exit_code": 0,
        "signal": None,
        "error": None,
        "pid": None,
        "step": None,
    },
    Status.FAILED: {"finished": iso(NOW), "pid": None, "step": None},
    Status.CANCELLED: {"finished": iso(NOW), "pid": None, "step": None, "error": "earlier"},
    Status.QUEUED: {"finished": None, "pid": None, "step": None},
    # `show` says which step asked.
    Status.WAITING_HUMAN: {"finished": None, "pid": None, "step": "a", "error": "earlier"},
    None: {"pid": 4321, "step": "a"},  # the next step starts
}


def applied(verdict: Verdict, state: TaskState, root: Path) -> dict[str, Any]:
    """state.json after `verdict` is applied through a real store, the way the loop does."""
    home = Home(root)
    home.ensure()
    home.task_dir(state.id).mkdir()
    store = Store(home, FakeClock(now=NOW))
    if verdict.status is None:
        store.update(state, **verdict.fields)
    else:
        store.transition(state, verdict.status, verdict.reason, **verdict.fields)
    store.flush()
    return json.loads((home.task_dir(state.id) / "state.json").read_text())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_settle_end_state(case: Case, tmp_path: Path) -> None:
    state = TaskState(
        id=7,
        name="job",
        status=Status.RUNNING,
        attempts=2,
        attempt_log=OPEN_LOG,
        pid=4321,
        step="a",
        exit_code=1,
        signal=9,
        error="earlier",
        **case.state,
    )
    task = spec(case.spec) if case.spec is not None else None
    verdict = settle(case.ended, state, task, case.policy, NOW)
    on_disk = applied(verdict, state, tmp_path)
    expected = {**json.loads(json.dumps(dict(verdict.fields))), **ENDS[verdict.status]}
    assert {k: on_disk[k] for k in expected} == expected
    assert on_disk["status"] == str(verdict.status or Status.RUNNING)


def test_internal_error(tmp_path: Path) -> None:
    why = "internal error: KeyError: 3"
    verdict = internal_error(why)
    assert verdict == Verdict(Status.FAILED, why, {"error": why}, "failed", notify="failed")
    state = TaskState(id=7, name="job", status=Status.RUNNING, pid=4321, step="a")
    on_disk = applied(verdict, state, tmp_path)
    assert (on_disk["status"], on_disk["error"]) == ("failed", why)
    assert (on_disk["finished"], on_disk["pid"], on_disk["step"]) == (iso(NOW), None, None)


def test_closed_log() -> None:
    closed = closed_log(OPEN_LOG, "done", NOW)
    assert closed == [OPEN_LOG[0], {**OPEN_LOG[1], "end": iso(NOW), "outcome": "done"}]
    assert OPEN_LOG[1]["end"] is None  # a new list, the old one untouched
    assert closed_log(closed, "failed", NOW + 5) == closed  # an ended entry stays as it is
    assert closed_log([], "done", NOW) == []


def test_next_step() -> None:
    task = spec(STEPS)
    assert next_step(task, []).name == "a"
    assert next_step(task, ["a"]).name == "b"
    assert next_step(task, ["b"]).name == "a"  # by name: the first one not done
    assert next_step(task, ["a", "b"]) is None
