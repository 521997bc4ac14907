"""Taking in the one spool file a `submit` or `add` just placed, so it can print the id.

The command places the file in the spool (where it is safe: any later scan takes it in) and
sends a `take` control request naming it; the lock holder (the supervisor on its next tick,
or the command itself when none runs) answers here, with the intake's own steps (`examine`,
`allocate_id`, `new_state`, `store.create`). The lock holder also scans the spool, so the
file may already be gone when the request is applied; then the answer is the task (or the
rejection) the file became. Both are single-threaded under the home lock, and
`store.create` moves the file, so whichever comes first takes it and the other finds it
taken: a file never becomes two tasks.

Which task a file became is told by the file's identity: the request carries the device
and inode of the file the command wrote, and a rename keeps them (tasks/<id>/task.yaml and
spool/rejected/NAME are the same inode). A name is not enough: once the first file is taken
in, the next submit of a `job.yaml` gets the free name `job.yaml` again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from bantzd.clock import epoch
from bantzd.crash import fault_point
from bantzd.errors import IoPathError
from bantzd.paths import Home
from bantzd.queue.spool import ERROR_SUFFIX, RESUBMIT_LINE, candidate_name
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.queue.unique import UniqueKeys
from bantzd.supervisor.admit import keys_of_home, queue_full_text, unfinished_count
from bantzd.supervisor.intake import (
    Accepted,
    Broken,
    Rejected,
    ScheduleAccepted,
    ScheduleHost,
    admit,
    examine,
    reject_and_note,
)

log = logging.getLogger("bantzd.intake")

# `created` is written to the second; a task taken in by a scan in the same second as the
# request's `since` must still count as after it.
CREATED_SLACK = 2.0


@dataclass(frozen=True)
class Taken:
    """The file is task `state`; `spec` is set when this request took it in (the caller
    adds it to the supervisor's table), None when a scan had taken it before."""

    state: TaskState
    spec: TaskSpec | None = None


@dataclass(frozen=True)
class NotAccepted:
    """The file was rejected (now, or by a scan before): it lies at `moved_to`."""

    problem: str
    moved_to: Path | None


@dataclass(frozen=True)
class ScheduleTaken:
    """The file was a schedule, and is installed as `name`."""

    name: str


@dataclass(frozen=True)
class Waiting:
    """The file stays in the spool, untouched (the queue is full: max_queued)."""

    why: str


@dataclass(frozen=True)
class Missing:
    """The file is not in the spool, and neither a task nor a rejected file is it."""

    why: str


def take_requested(
    home: Home,
    store: Store,
    states: Mapping[int, TaskState],
    name: str,
    *,
    inode: tuple[int, int] | None,
    since: float | None,
    now: float,
    approval_categories: Iterable[str],
    queued_reason: str | None = None,
    schedules: ScheduleHost | None = None,
    keys: UniqueKeys | None = None,
    max_queued: int | None = None,
) -> Taken | ScheduleTaken | NotAccepted | Waiting | Missing:
    """Take in spool file `name` now, or say what it already became.

    `inode` is (st_dev, st_ino) of the file the command placed, `since` a time from before
    it placed it. A file of that name with another inode is another submit's, left alone.
    `queued_reason`: what a queued task waits for until a supervisor looks at it (taken in
    by a command while none runs: SPEC 4 says every waiting task has a reason).
    `keys`: the supervisor's unique keys (its table's); None reads them from the home.
    With `max_queued` unfinished tasks the file waits in the spool, not even read.
    """
    if not candidate_name(name) or name != os.path.basename(name) or name in (".", ".."):
        return Missing(f"{name!r} is not the name of a task file in the spool")
    path = home.spool / name
    if _same_file(path, inode):
        if max_queued is not None:
            unfinished = unfinished_count(states)
            if unfinished >= max_queued:
                return Waiting(queue_full_text(unfinished, max_queued))
        try:
            fault_point("intake", name)
            result = examine(path, now, settled_required=False)
        except IoPathError:
            raise  # the disk: the request stays, and is applied once there is room
        except Exception as e:  # as the scan does: rejected, not retried forever
            log.error("internal error taking in %s", name, exc_info=e)
            result = Broken(path, e).rejected()
        if isinstance(result, Accepted):
            if keys is None:
                keys = keys_of_home(home, states)
            admitted = admit(result, store, keys, now, approval_categories, queued_reason)
            if isinstance(admitted, TaskState):
                log.info("accepted %s as task %d (%s), as asked", name, admitted.id, admitted.name)
                return Taken(admitted, result.spec)
            result = admitted
        if isinstance(result, ScheduleAccepted):
            problem = schedules.accept(result, states) if schedules else "no schedules here"
            if problem is None:
                store.note("schedule_accepted", file=name, schedule=result.spec.name)
                return ScheduleTaken(result.spec.name)
            result = Rejected(result.path, problem)
        if isinstance(result, Rejected):
            return NotAccepted(result.problem, reject_and_note(home, store, result))
        # None: gone a moment ago, or renamed to a safe name: found below like a scan's.
    if inode is None:
        return _by_name(states, name, since)
    return (
        _by_inode(home, states, inode, since)
        or _schedule_by_inode(home, inode)
        or Missing(f"{name} is no longer in the spool, and no task was made from it")
    )


def _same_file(path: Path, inode: tuple[int, int] | None) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    return inode is None or (st.st_dev, st.st_ino) == tuple(inode)


def _recent(states: Mapping[int, TaskState], since: float | None) -> list[TaskState]:
    """Tasks created at or after `since` (all when None), oldest first."""
    found = []
    for state in states.values():
        created = epoch(state.created)
        if since is None or created is None or created >= since - CREATED_SLACK:
            found.append(state)
    return sorted(found, key=lambda s: s.id)


def _by_inode(
    home: Home, states: Mapping[int, TaskState], inode: tuple[int, int], since: float | None
) -> Taken | NotAccepted | None:
    """The task whose task.yaml, or the rejected file, is the file the command wrote."""
    wanted = tuple(inode)
    for state in _recent(states, since):
        try:
            st = os.lstat(home.task_dir(state.id) / "task.yaml")
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == wanted:
            return Taken(state)
    try:
        entries = list(os.scandir(home.rejected))
    except FileNotFoundError:
        return None
    for entry in entries:
        if entry.name.endswith(ERROR_SUFFIX):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if (st.st_dev, st.st_ino) == wanted:
            path = Path(entry.path)
            return NotAccepted(_problem_of(path), path)
    return None


def _schedule_by_inode(home: Home, inode: tuple[int, int]) -> ScheduleTaken | None:
    """The schedule whose schedule.yaml is the file the command wrote (a take applied
    again after a crash, or after a scan took the file in first)."""
    from bantzd.queue.schedules import SCHEDULE, schedule_dir, schedule_names

    for sched in schedule_names(home):
        try:
            st = os.lstat(schedule_dir(home, sched) / SCHEDULE)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == tuple(inode):
            return ScheduleTaken(sched)
    return None


def _by_name(states: Mapping[int, TaskState], name: str, since: float | None) -> Taken | Missing:
    """Without an inode (a request written by hand): the oldest task made from `name`
    since the request's `since`."""
    for state in _recent(states, since):
        if state.source == name:
            return Taken(state)
    return Missing(f"{name} is not in the spool, and no task was made from it")


def _problem_of(rejected: Path) -> str:
    """What NAME.error.txt says is wrong (its text between the first line and the
    resubmit hint)."""
    try:
        text = rejected.with_name(rejected.name + ERROR_SUFFIX).read_text(errors="replace")
    except OSError:
        return "rejected (its .error.txt cannot be read)"
    lines = text.splitlines()[1:]
    if RESUBMIT_LINE in lines:
        lines = lines[: lines.index(RESUBMIT_LINE)]
    return "\n".join(lines).strip() or "rejected"
