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


def implied(src: Status, dst: Status, now_iso: str | None) -> dict[str, object]:
    """The fields a move `src -> dst` sets by itself, so that no caller clears another
    status's fields by hand (the caller's own changes are applied after, and win).

    * a finished status gets its `finished` time; nothing of a running attempt stays
      (`pid`, `step`) and no retry is pending (`retry_at`);
    * any other status has no `finished` time;
    * leaving `running`, the attempt's `pid` goes, and its `step` too, except for a
      question (`waiting_human` shows the step that asked);
    * entering `running`, no retry is pending;
    * leaving a finished status (a person's `retry`), the last attempt's result goes.
    """
    changes: dict[str, object] = {}
    if dst in FINISHED:
        changes.update(finished=now_iso, pid=None, step=None, retry_at=None)
    else:
        changes["finished"] = None
    if src is Status.RUNNING and dst is not Status.RUNNING:
        changes["pid"] = None
        if dst is not Status.WAITING_HUMAN:
            changes["step"] = None
    if dst is Status.RUNNING:
        changes["retry_at"] = None
    if src in FINISHED and dst not in FINISHED:
        changes.update(error=None, exit_code=None, signal=None, retry_at=None)
    return changes


def can_transition(src: Status, dst: Status) -> bool:
    """Whether the table allows `src -> dst`."""
    return dst in ALLOWED[src]


def check_transition(task_id: int, src: Status, dst: Status) -> None:
    """Raise `IllegalTransition` with a user-readable message unless `src -> dst` is allowed."""
    if not can_transition(src, dst):
        raise IllegalTransition(f"task {task_id} is {src}; it cannot become {dst}")
