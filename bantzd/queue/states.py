"""Task statuses and the one table that says which changes are legal (STYLE 1).

Every status change in bantzd goes through `check_transition`; the store calls it before
writing state.json, so an illegal move (answering a task that never asked, cancelling a
finished one) is refused in one place instead of being re-checked in every command.

Next to it, `implied_changes` says what a status means for the other fields of state.json
(a finished task has no pid, a requeued one no retry time...), so no caller clears the
fields of the status it leaves by hand.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final

from bantzd.errors import IllegalTransition


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    HELD = "held"
    WAITING_HUMAN = "waiting_human"
    CANCELLED = "cancelled"


FINISHED = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED})

ALLOWED: dict[Status, frozenset[Status]] = {
    # queued -> failed: dependency failed or deadline missed, without ever running.
    Status.QUEUED: frozenset({Status.RUNNING, Status.HELD, Status.CANCELLED, Status.FAILED}),
    Status.HELD: frozenset({Status.QUEUED, Status.CANCELLED}),
    # running -> queued: interrupted (stop, --until, crash) or waiting for a retry.
    Status.RUNNING: frozenset(
        {Status.DONE, Status.FAILED, Status.QUEUED, Status.WAITING_HUMAN, Status.CANCELLED}
    ),
    Status.WAITING_HUMAN: frozenset({Status.QUEUED, Status.CANCELLED}),
    # `bantzd retry` puts a failed or cancelled task back in the queue; `bantzd rerun`
    # (supervisor/control.py, the only caller of done -> queued) runs a done task again as
    # a new attempt of the same task: same id, attempts, attempt log and history kept.
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.DONE: frozenset({Status.QUEUED}),
}


def can_transition(src: Status, dst: Status) -> bool:
    """Whether the table allows `src -> dst`."""
    return dst in ALLOWED[src]


def check_transition(task_id: int, src: Status, dst: Status) -> None:
    """Raise `IllegalTransition` with a user-readable message unless `src -> dst` is allowed."""
    if not can_transition(src, dst):
        raise IllegalTransition(f"task {task_id} is {src}; it cannot become {dst}")


# What a status implies for the other fields -------------------------------------------------
#
# `Store.transition` applies `implied_changes(src, dst, now)` first and the caller's own
# changes after it, so a caller only passes what it knows (an exit code, an error, the
# attempt number) and an explicit value always wins.


class _Now:
    """Stands for the transition's own time (ISO) in the tables below."""

    def __repr__(self) -> str:
        return "NOW"


NOW: Final = _Now()

# Leaving a status: what only made sense in it.
LEAVING: Mapping[Status, Mapping[str, Any]] = MappingProxyType(
    {
        # The attempt's process is gone (or, for a question, waits for nothing). `step`
        # stays only for a question: `show` then says which step asked (see PAIRS).
        Status.RUNNING: MappingProxyType({"pid": None}),
        # Answered or cancelled: nothing is asked any more (`show` would offer `answer`).
        Status.WAITING_HUMAN: MappingProxyType({"question": None}),
    }
)

# Nothing runs any more and nothing will: no process, no step, no retry to wait for.
_ENDED: Mapping[str, Any] = {"finished": NOW, "pid": None, "step": None, "retry_at": None}

# Entering a status: what it means.
ENTERING: Mapping[Status, Mapping[str, Any]] = MappingProxyType(
    {
        # A new attempt: started now, not finished, no retry pending, no process until the
        # spawn records it.
        Status.RUNNING: MappingProxyType(
            {"started": NOW, "finished": None, "retry_at": None, "pid": None}
        ),
        # `done` is an exit 0: no error or signal of an earlier attempt stays.
        Status.DONE: MappingProxyType({**_ENDED, "exit_code": 0, "signal": None, "error": None}),
        Status.FAILED: MappingProxyType(dict(_ENDED)),
        Status.CANCELLED: MappingProxyType(dict(_ENDED)),
    }
)

# `bantzd retry`: a person asks again, so the count of failures and interruptions, the
# last attempt's end and a missed deadline start afresh.
_RETRIED: Mapping[str, Any] = MappingProxyType(
    {
        "finished": None,
        "error": None,
        "exit_code": None,
        "signal": None,
        "retry_at": None,
        "failures": 0,
        "interruptions": 0,
        "deadline_at": None,
    }
)

# `bantzd rerun`: the task runs again from the start, as if new, but keeps its record
# (attempts, attempt_log, history, tokens). Everything the last run left that would make the
# next attempt skip work is cleared: the steps done, the answers given, the progress (the
# checkpoint file goes too; the control handler removes it).
_RERUN: Mapping[str, Any] = MappingProxyType(
    {
        **_RETRIED,
        "steps_done": [],
        "step": None,
        "progress": None,
        "answers": {},
        "answer": None,
        "question": None,
    }
)

# One pair, what neither side says alone.
PAIRS: Mapping[tuple[Status, Status], Mapping[str, Any]] = MappingProxyType(
    {
        # Back in the queue (interrupted, retry later, not started): no step runs; the next
        # attempt starts from the first step not done.
        (Status.RUNNING, Status.QUEUED): MappingProxyType({"step": None}),
        (Status.FAILED, Status.QUEUED): _RETRIED,
        (Status.CANCELLED, Status.QUEUED): _RETRIED,
        (Status.DONE, Status.QUEUED): _RERUN,
    }
)


def implied_changes(src: Status, dst: Status, now_iso: str | None) -> dict[str, Any]:
    """The fields `src -> dst` sets by itself: LEAVING[src], then ENTERING[dst], then
    PAIRS[(src, dst)] (the more specific wins), with NOW replaced by `now_iso`."""
    merged = {
        **LEAVING.get(src, {}),
        **ENTERING.get(dst, {}),
        **PAIRS.get((src, dst), {}),
    }
    # Lists and dicts (rerun's empty `steps_done`, `answers`) are copied: a state must never
    # share a mutable value with the table or with another state.
    return {
        key: now_iso
        if value is NOW
        else (type(value)(value) if isinstance(value, list | dict) else value)
        for key, value in merged.items()
    }
