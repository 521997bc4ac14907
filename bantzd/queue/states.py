"""Task statuses and the one table that says which changes are legal (STYLE 1).

Every status change in bantzd goes through `check_transition`; the store calls it before
writing state.json, so an illegal move (answering a task that never asked, cancelling a
finished one) is refused in one place instead of being re-checked in every command.
"""

from __future__ import annotations

from enum import StrEnum

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
    # `bantzd retry` puts a failed or cancelled task back in the queue; done is final.
    Status.FAILED: frozenset({Status.QUEUED}),
    Status.CANCELLED: frozenset({Status.QUEUED}),
    Status.DONE: frozenset(),
}


def can_transition(src: Status, dst: Status) -> bool:
    """Whether the table allows `src -> dst`."""
    return dst in ALLOWED[src]


def check_transition(task_id: int, src: Status, dst: Status) -> None:
    """Raise `IllegalTransition` with a user-readable message unless `src -> dst` is allowed."""
    if not can_transition(src, dst):
        raise IllegalTransition(f"task {task_id} is {src}; it cannot become {dst}")
