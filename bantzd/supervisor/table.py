"""The supervisor's in-memory view of its tasks: states, specs, and the queue in order.

The store owns every change; the table is fed by it (`track` is the store's
`on_transition` hook), so the queued index can never disagree with the states. A tick looks
at the queued tasks, not at every task the home ever had: a long history must not make each
start O(all tasks).

A queued task whose `after:` keeps it waiting is *parked*: left out of the start order until
a task its list names is added or moves (or the task itself changes), since until then the
decision about it and its reason are the same. Ten thousand tasks waiting for one that has
not run yet then cost nothing per start: the start decision walks only what may start.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

from bantzd.queue.estimates import Estimate, EstimateBook, history_key
from bantzd.queue.states import FINISHED, Status
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.queue.unique import UniqueKeys
from bantzd.supervisor.scheduler import Candidate, DependencyIndex, after_names

# Tasks that left the queue stay in the cached order until this many have piled up.
ORDER_SLACK = 64


class TaskTable:
    """States and specs by id, the queued ones indexed, their start order cached."""

    def __init__(self) -> None:
        self.states: dict[int, TaskState] = {}
        self.specs: dict[int, TaskSpec] = {}
        self.queued: dict[int, TaskState] = {}
        # `queued` by (priority, id), rebuilt when a task joins the queue; tasks that left
        # it are skipped, and swept out once ORDER_SLACK of them pile up.
        self._order: list[TaskState] | None = None
        self._order_stale = 0
        self._candidates: dict[int, tuple[tuple[Any, ...], Candidate]] = {}
        # `unique:` keys of the tasks (intake's duplicate check) and the ids not finished
        # (`max_queued`), both kept here because every task comes in through `add`.
        self.unique = UniqueKeys()
        self.unfinished: set[int] = set()
        # Fitting the night: learned estimates, and whether a task saved a checkpoint
        # (a file the loop looks at); without a book no task has an estimate.
        self.estimates: EstimateBook | None = None
        self.has_checkpoint: Callable[[TaskState], bool] | None = None
        # config.toml's `[executor] kind`, for tasks whose file names no `executor:`.
        self.default_executor = "local"
        # Ids of the tasks that run on Slurm: the start decision looks past the full local
        # slots only while one of them is queued.
        self._remote: set[int] = set()
        # Goes up with every change a start decision depends on (a task added, moved,
        # edited or reordered): the starter skips deciding again while it stays put.
        self.changes = 0
        # What `after:` is resolved against (over `states` itself), and the names each
        # id was filed under there (a rename must wake who waits on the old one).
        self.deps = DependencyIndex(by_id=self.states)
        self._filed: dict[int, tuple[str, ...]] = {}
        # Parked tasks (module docstring) with the `after:` list that holds them, and who
        # waits on each reference. A parked task is never in `_order`, so unparking it can
        # insert it there without making a second entry.
        self._parked: dict[int, tuple[str | int, ...]] = {}
        self._waiters: dict[str | int, set[int]] = {}
        # Counts the moves (`_moved`); per id and name, the count at its last move: a
        # decision's verdict about `after: X` is stale when X moved after it was made.
        self.moves = 0
        self._moved_at: dict[str | int, int] = {}

    def add(self, state: TaskState, spec: TaskSpec | None = None) -> None:
        self.states[state.id] = state
        if spec is not None:
            self.specs[state.id] = spec
            self._note_executor(state.id, spec)
        self.unique.add(state)
        self._file(state)
        self.track(state, state.status)

    def track(self, state: TaskState, src: Status) -> None:
        """Keep the queued index: called by the store after every transition."""
        self.changes += 1
        if state.status in FINISHED:
            self.unfinished.discard(state.id)
        else:
            self.unfinished.add(state.id)
        if state.status is Status.QUEUED:
            if state.id not in self.queued:
                self.queued[state.id] = state
                self._order = None
        elif self.queued.pop(state.id, None) is not None:
            self._order_stale += 1
        self._moved(state, after_names(state))

    def _note_executor(self, task_id: int, spec: TaskSpec) -> None:
        if (spec.executor or self.default_executor) == "slurm":
            self._remote.add(task_id)
        else:
            self._remote.discard(task_id)

    def remote_queued(self) -> bool:
        """Whether a queued task runs on Slurm (O(Slurm tasks), not O(queue))."""
        return any(task_id in self.queued for task_id in self._remote)

    def touched(self, state: TaskState) -> None:
        """The store's hook after a change other than status: a queued task's pause,
        priority or retry time is part of the start decision; a running task's progress
        is not."""
        if state.id in self.queued:
            self.changes += 1
            self._unpark(state.id)
        old = self._filed.get(state.id)
        if old != after_names(state):  # `bantzd edit` renamed it
            self._file(state)
            self._moved(state, (*(old or ()), *after_names(state)))

    def set_spec(self, task_id: int, spec: TaskSpec) -> None:
        """A task's new spec (`bantzd edit`, or a finished task queued again by `rerun` or
        `retry`): its cached scheduler view was built from the old one."""
        self.specs[task_id] = spec
        self._note_executor(task_id, spec)
        self.changes += 1
        self._candidates.pop(task_id, None)
        self._unpark(task_id)  # its `after:` may be another
        if task_id in self.states:  # an edit may have changed its unique key
            self.unique.add(self.states[task_id])

    def reorder(self) -> None:
        """A priority changed (`bantzd priority`): the cached start order is rebuilt."""
        self.changes += 1
        self._order = None

    def order(self, rebuild: bool = False) -> list[TaskState]:
        """The queued tasks, highest priority first, then oldest (possibly with a few that
        have left the queue since: callers check the status)."""
        parked = self._parked
        if self._order is None or rebuild:
            waiting = (s for s in self.queued.values() if s.id not in parked)
            self._order = sorted(waiting, key=_start_key)
            self._order_stale = 0
        elif self._order_stale > ORDER_SLACK:
            self._order = [s for s in self._order if s.status is Status.QUEUED]
            self._order_stale = 0
        return self._order

    def startable(self, order: list[TaskState]) -> Iterator[TaskState]:
        """The entries of `order` still queued, with a spec and not parked."""
        parked, specs = self._parked, self.specs
        return (
            s for s in order if s.status is Status.QUEUED and s.id in specs and s.id not in parked
        )

    # `after:` ----------------------------------------------------------------------------

    def park(self, blocked_on: dict[int, tuple[str | int, ...]], seen: int) -> None:
        """Leave these queued tasks out of the start order until a task their `after:`
        names is added or moves (see the module docstring). `seen`: `moves` when the
        decision that found them blocked was made; one whose dependency moved since (a
        task started by that very decision) is not parked: its verdict is already old."""
        newly = False
        moved_at = self._moved_at
        for task_id, refs in blocked_on.items():
            if task_id not in self.queued or task_id in self._parked:
                continue
            if any(moved_at.get(ref, 0) > seen for ref in refs):
                continue
            self._parked[task_id] = refs
            for ref in refs:
                self._waiters.setdefault(ref, set()).add(task_id)
            newly = True
        if newly and self._order is not None:
            # Once per batch of newly parked tasks (a full pass parks all it can at once).
            parked = self._parked
            self._order = [s for s in self._order if s.id not in parked]

    def parked(self) -> int:
        return len(self._parked)

    def _unpark(self, task_id: int) -> None:
        refs = self._parked.pop(task_id, None)
        if refs is None:
            return
        for ref in refs:
            waiting = self._waiters.get(ref)
            if waiting is not None:
                waiting.discard(task_id)
                if not waiting:
                    del self._waiters[ref]
        state = self.queued.get(task_id)
        if state is not None and self._order is not None:
            bisect.insort(self._order, state, key=_start_key)

    def _moved(self, state: TaskState, names: tuple[str, ...]) -> None:
        """`state` (found by `names`) was added, moved or renamed: it, and whoever waits
        on it, is looked at again."""
        self._unpark(state.id)
        self.moves += 1
        for key in (state.id, *names):
            self._moved_at[key] = self.moves
            for task_id in list(self._waiters.get(key, ())):
                self._unpark(task_id)

    def _file(self, state: TaskState) -> None:
        self._filed[state.id] = after_names(state)
        self.deps.file(state)

    def candidate(self, s: TaskState) -> Candidate:
        """The scheduler's view of a queued task, cached while the fields it uses hold."""
        # Its own name's runs, not the whole book: one task ending must not make every
        # queued task's view stale.
        book = self.estimates
        version = book.key_version(history_key(s)) if book is not None else 0
        key = (s.priority, s.retry_at, s.paused, s.attempts, version)
        cached = self._candidates.get(s.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        spec = self.specs[s.id]
        estimate, resumable = self.fit(s, spec)
        cand = Candidate(
            id=s.id,
            name=s.name,
            priority=s.priority,
            after=spec.after,
            retry_at=s.retry_at,
            paused=s.paused,
            resources=spec.resources,
            uses=spec.uses,
            windows=spec.window,
            window_text=spec.window_text,
            not_before_at=s.not_before_at,
            deadline_at=s.deadline_at,
            attempts=s.attempts,
            estimate=estimate,
            resumable=resumable,
            remote=(spec.executor or self.default_executor) == "slurm",
        )
        self._candidates[s.id] = (key, cand)
        return cand

    def fit(self, s: TaskState, spec: TaskSpec) -> tuple[Estimate | None, bool]:
        """(the task's estimate, whether it can resume): `estimate:` in its file, else what
        its name's history gives; `steps:`, `checkpoints: true` or a saved checkpoint."""
        resumable = spec.checkpoints or spec.kind == "steps" or bool(s.steps_done)
        if not resumable and self.has_checkpoint is not None:
            resumable = self.has_checkpoint(s)
        if spec.estimate is not None:
            return Estimate(spec.estimate, "the task file"), resumable
        if self.estimates is None:
            return None, resumable
        return self.estimates.estimate(history_key(s)), resumable


def _start_key(s: TaskState) -> tuple[int, int]:
    return (-s.priority, s.id)
