"""What an ended attempt means for its task: one pure decision, applied by the loop.

Every way an attempt can end (exit 0 or not, a signal, a timeout, the memory limit, a
cancel, an interruption, a question, a failed spawn, an end that no supervisor watched)
goes through `settle`, which reads nothing and writes nothing: the loop gathers what is
known into an `Ended`, asks `settle`, and applies the `Verdict` in one place (store, attempt
log, notification, next step). The rules are then unit-tested in microseconds, and a new
executor (Slurm) only has to produce an `Ended`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bantzd.clock import hms, iso
from bantzd.config import DEFAULT_MAX_RETRY_DELAY
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.supervisor.scheduler import backoff
from bantzd.units import format_duration
from bantzd.workers.spawn import Outcome

if TYPE_CHECKING:
    from bantzd.queue.taskfile import Step, TaskSpec

Notify = Literal["failed", "question"]


@dataclass(frozen=True)
class Ended:
    """What the executor and the attempt tell about an attempt that is over.

    `not_started` and `spawn_error` describe attempts that never ran: the first is the
    machine's fault (fd limit, disk full; the attempt is given back), the second the task's
    (missing cwd, unknown command; it counts as a failed attempt).
    """

    outcome: Outcome = field(default_factory=Outcome)
    stop_reason: str | None = None  # why the supervisor stopped it: timeout, cancelled...
    step: str | None = None  # the step of a `steps:` task that ran
    question: Mapping[str, Any] | None = None  # asked by this very attempt
    worker_reason: str | None = None  # reason.txt, on one line
    spawn_error: str | None = None
    not_started: str | None = None


@dataclass(frozen=True)
class Policy:
    """The config values the decision needs, and whether the supervisor is stopping."""

    max_interruptions: int = 5
    max_retry_delay: float = DEFAULT_MAX_RETRY_DELAY
    stopping: bool = False


@dataclass(frozen=True)
class Verdict:
    """What to do with the task. `status` None: it stays running (its next step starts).

    `fields` holds what the attempt told (exit code, error, counts); what the new status
    implies by itself (`finished`, no `pid` or `step`...) is set by the store's transition
    (queue/states.py `implied_changes`), not repeated here.
    """

    status: Status | None
    reason: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    log_outcome: str | None = None  # the word that closes the attempt-log entry
    notify: Notify | None = None
    launch_next: bool = False
    message: str | None = None  # a line for bantzd.log


def settle(
    ended: Ended, state: TaskState, spec: TaskSpec | None, policy: Policy, now: float
) -> Verdict:
    """The verdict on `state`'s attempt that ended as `ended` (spec None: task.yaml is gone).

    The order matters: a cancel wins over everything, a question over the exit status; a
    step that exited 0 leads to the next one unless the supervisor is stopping; an end we
    did not see (the supervisor was down) is an interruption, not the task's failure.
    """
    outcome = ended.outcome
    if ended.not_started is not None:
        given_back: dict[str, Any] = {
            "attempts": state.attempts - 1,
            "attempt_log": state.attempt_log[:-1],
        }
        if state.attempts <= 1:  # `started` is the first start: this one never ran
            given_back["started"] = None
        return Verdict(Status.QUEUED, f"not started: {ended.not_started}", given_back)
    if ended.spawn_error is not None:
        return _failed(state, spec, Outcome(), ended.spawn_error, policy, now)
    if ended.stop_reason == "cancelled":
        return Verdict(
            Status.CANCELLED,
            "cancelled by user",
            log_outcome="cancelled",
        )
    if ended.question is not None:
        return Verdict(
            Status.WAITING_HUMAN,
            f"question: {ended.question['key']}",
            {"question": dict(ended.question)},
            log_outcome="asked",
            notify="question",
        )
    done: dict[str, Any] = {}
    if outcome.ok and spec is not None and spec.kind == "steps":
        steps_done = [*state.steps_done, ended.step] if ended.step else list(state.steps_done)
        done = {"steps_done": steps_done}
        if next_step(spec, steps_done) is not None:
            if policy.stopping or ended.stop_reason:
                return _interrupted(state, outcome, policy, done)
            return Verdict(None, fields=done, launch_next=True)
    if outcome.ok:
        return Verdict(Status.DONE, None, done, log_outcome="done")
    if ended.stop_reason == "interrupted" or not outcome.known:
        return _interrupted(state, outcome, policy)
    if ended.stop_reason == "memory limit":
        return _failed(state, spec, outcome, "memory limit", policy, now)
    if ended.stop_reason == "timeout":
        timeout = (spec.timeout if spec else 0) or 0
        return _failed(
            state, spec, outcome, f"timeout after {format_duration(timeout)}", policy, now
        )
    what = outcome.describe()
    if ended.worker_reason:
        what = f"{what}: {ended.worker_reason}"
    if ended.step:
        what = f"step {ended.step}: {what}"
    return _failed(state, spec, outcome, what, policy, now)


def internal_error(why: str) -> Verdict:
    """A task failed by an unexpected exception in the supervisor (`internal error: ...`)."""
    return Verdict(Status.FAILED, why, {"error": why}, log_outcome="failed", notify="failed")


def next_step(spec: TaskSpec, done: list[str]) -> Step | None:
    """The first step of a `steps:` task not yet done, or None when all are."""
    for step in spec.steps:
        if step.name not in done:
            return step
    return None


def closed_log(log: list[dict[str, Any]], outcome: str, now: float) -> list[dict[str, Any]]:
    """The attempt log with its open last entry ended at `now` as `outcome` (a new list)."""
    if not log or log[-1].get("end") is not None:
        return log
    return [*log[:-1], {**log[-1], "end": iso(now), "outcome": outcome}]


def _interrupted(
    state: TaskState,
    outcome: Outcome,
    policy: Policy,
    done: Mapping[str, Any] | None = None,
) -> Verdict:
    """Back to the queue, unless it was stopped more often than max_interruptions."""
    count = state.interruptions + 1
    if count > policy.max_interruptions:
        why = f"interrupted {count} times (max_interruptions = {policy.max_interruptions})"
        return Verdict(
            Status.FAILED,
            why,
            {
                **(done or {}),
                "error": why,
                "interruptions": count,
                "exit_code": outcome.exit_code,
                "signal": outcome.signal,
            },
            log_outcome="interrupted",
            notify="failed",
        )
    return Verdict(
        Status.QUEUED,
        "interrupted",
        {**(done or {}), "interruptions": count},
        log_outcome="interrupted",
    )


def _failed(
    state: TaskState,
    spec: TaskSpec | None,
    outcome: Outcome,
    why: str,
    policy: Policy,
    now: float,
) -> Verdict:
    """A failed attempt: a retry after the (capped) backoff while retries are left."""
    failures = state.failures + 1
    retries = spec.retries if spec else 0
    common = {
        "exit_code": outcome.exit_code,
        "signal": outcome.signal,
        "error": why,
        "failures": failures,
    }
    if spec is not None and failures <= retries:
        at = now + backoff(spec.retry_delay, failures, spec.retry_cap(policy.max_retry_delay))
        return Verdict(
            Status.QUEUED,
            f"retry at {hms(at)}",
            {"retry_at": at, **common},
            log_outcome="failed",
            message=f"task {state.id} failed ({why}); retry {failures} of {retries} at {hms(at)}",
        )
    return Verdict(
        Status.FAILED,
        why,
        common,
        log_outcome="failed",
        notify="failed",
        message=f"task {state.id} ({state.name}) failed: {why}",
    )
