"""What SPEC 10 needs besides `intake.admit`: the unique keys of a home without a supervisor,
and the full-queue rule. Both ways in use them: the spool scan (`intake.take_in`) and the
`take` request of `submit`/`add` (`takeone.take_requested`).

One step: `intake.admit` runs in the lock holder's single thread, between two looks at other
files, so no second file can be taken in between its check and the rename that accepts the
task (Store.create). The key travels with the task (state.json's `unique_key`, and task.yaml it is
computed from), so once the rename is done the key is taken, durably, by the same act; a
crash before it leaves the file in the spool and no key taken. A duplicate is rejected only
after the task it names is durable (the store is flushed first): a power cut cannot keep the
rejection and lose the task it points to.

A full queue: while `max_queued` tasks are unfinished, spool files are not looked at at all
(not read, not rejected); they wait, and are taken in oldest first once tasks end.
"""

from __future__ import annotations

from collections.abc import Mapping

from bantzd.paths import Home
from bantzd.queue.store import task_ids
from bantzd.queue.task import TaskState
from bantzd.queue.unique import UniqueKeys, task_key


def keys_of_home(home: Home, states: Mapping[int, TaskState]) -> UniqueKeys:
    """The unique keys of a home's tasks for a lock holder without a supervisor's table:
    `states` (the folders with a state.json) and every folder a crash left with task.yaml
    but no readable state.json yet (its key is computed from task.yaml; it is unfinished,
    as recovery will rebuild it queued)."""
    keys = UniqueKeys(states.values())
    for task_id in task_ids(home):
        if task_id not in states:
            orphan = _orphan(home, task_id)
            if orphan is not None:
                keys.add(orphan)
    return keys


def _orphan(home: Home, task_id: int) -> TaskState | None:
    from bantzd.queue.taskfile import TaskFileError, parse_task

    try:
        data = (home.task_dir(task_id) / "task.yaml").read_bytes()
        spec = parse_task(data, default_name=f"task-{task_id}")
    except (OSError, TaskFileError):
        return None
    key = task_key(data, spec.unique)
    return TaskState(id=task_id, name=spec.name, unique_key=key) if key else None


def unfinished_count(states: Mapping[int, TaskState]) -> int:
    """Tasks queued, held, waiting_human or running: what `max_queued` bounds."""
    return sum(1 for s in states.values() if not s.finished_state)


def queue_full_text(unfinished: int, max_queued: int) -> str:
    """Why a file waits in the spool: `queue full (max_queued 10000)` with the count."""
    return (
        f"queue full (max_queued {max_queued}, {unfinished} unfinished tasks): it waits "
        "in the spool, untouched, and is taken in when tasks end"
    )
