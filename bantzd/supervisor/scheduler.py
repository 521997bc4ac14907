"""Which queued tasks start now, and why the others wait: a pure decision (STYLE 2).

Nothing here touches a process, a file or the real clock. The supervisor builds the inputs
from its in-memory states each tick and applies the `Decision`; tests call `decide`
directly with hand-made inputs.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from bantzd.clock import hms
from bantzd.config import DEFAULT_MAX_RETRY_DELAY
from bantzd.queue.estimates import Estimate
from bantzd.queue.states import FINISHED, Status
from bantzd.supervisor.fitting import fit_reason
from bantzd.supervisor.timing import TimingCheck, check_timing, local_zone


@dataclass(frozen=True)
class TaskBrief:
    """What the decision needs to know about any task (for dependencies)."""

    id: int
    name: str
    status: Status
    schedule: str | None = None  # an instance's schedule: `after: [SCHEDULE]` names it


@dataclass(frozen=True)
class Candidate:
    """A queued task that might start."""

    id: int
    name: str
    priority: int = 0
    after: tuple[str | int, ...] = ()
    retry_at: float | None = None
    paused: bool = False
    # What the task needs to start (taskfile.Resources) and the rate limits it takes units
    # from; judged by the `admit` hook of `decide` (supervisor/resources.py).
    resources: Any = None
    uses: Mapping[str, int] = field(default_factory=dict)
    # Time rules (timing.check_timing): windows as (start, end) clock times, not_before and
    # deadline as epoch seconds resolved when the task was accepted. The deadline only
    # holds for a task that never started (`attempts` == 0).
    windows: tuple[Any, ...] = ()
    window_text: tuple[str, ...] = ()
    not_before_at: float | None = None
    deadline_at: float | None = None
    attempts: int = 0
    # Fitting the night (supervisor/fitting.py): how long a run takes, and whether the
    # task resumes from where it stopped.
    estimate: Estimate | None = None
    resumable: bool = False
    # Runs as a Slurm job: `max_submitted` bounds it, not max_parallel or this machine.
    remote: bool = False

    @property
    def timed(self) -> bool:
        return (
            bool(self.windows)
            or self.not_before_at is not None
            or (self.deadline_at is not None and self.attempts == 0)
        )


# Reasons of these kinds clear by themselves with time or load; `--once` keeps waiting for
# them. Everything else (held, a question, a dependency that cannot progress) needs a person.
TRANSIENT_PREFIXES = (
    "retry at",
    "throttled",
    "rate limit",
    "waiting for a free slot",
    "cpus:",
    "memory:",
    "gpu:",
    "slurm:",
    "waiting for a Slurm slot",
)
FREE_SLOT = "waiting for a free slot"


@dataclass(frozen=True)
class RemoteRoom:
    """Room for Slurm tasks in this decision: `free` more jobs of `limit`, or `problem`."""

    free: int = 0
    limit: int = 0
    problem: str | None = None


def slurm_slot_reason(limit: int) -> str:
    return f"waiting for a Slurm slot ({limit} of {limit} submitted)"


def free_slot_reason(running: int, max_parallel: int) -> str:
    """`waiting for a free slot (2 of 2 running)`: persisted like any other reason (SPEC 4).

    While a task waits for a slot every slot is taken, so the numbers are `max_parallel`
    twice and the text only changes when `max_parallel` does: the starter writes it once
    when the task starts waiting, not on every start and end of the others.
    """
    return f"{FREE_SLOT} ({running} of {max_parallel} running)"


# A GPU reason that no amount of waiting clears (the machine lacks the hardware).
GPU_NEVER = "gpu: no GPU on this machine"


@dataclass
class Decision:
    start: list[int] = field(default_factory=list)
    waiting: dict[int, str] = field(default_factory=dict)
    fail: dict[int, str] = field(default_factory=dict)
    # When the next time-based change is due (a retry); None when nothing is timed.
    wake_at: float | None = None
    # With `stop_when_full`: the slots ran out before every candidate was looked at; the
    # ones after that point are in none of the lists (they could not have started).
    partial: bool = False
    # The tasks in `waiting` because of their `after:` list, with that list: their verdict
    # stays the same until a task it names is added or moves (see TaskTable.park).
    blocked_on: dict[int, tuple[str | int, ...]] = field(default_factory=dict)

    def transient_waits(self) -> bool:
        """Whether any wait will clear on its own (what `--once` waits for)."""
        return any(
            r.startswith(TRANSIENT_PREFIXES) and not r.startswith(GPU_NEVER)
            for r in self.waiting.values()
        )


def after_names(task: Any) -> tuple[str, ...]:
    """The names `after:` finds a task (a TaskBrief or TaskState) by: its own, and its
    schedule's."""
    if task.schedule is not None and task.schedule != task.name:
        return (task.name, task.schedule)
    return (task.name,)


class DependencyIndex:
    """Resolves `after:` references: an id, or a name meaning the newest task of that name
    (a schedule's name: its newest instance).

    Tasks are filed as they come (`file`), so the supervisor keeps one for its whole life
    instead of building one per decision. `by_id` may be the caller's own dict of tasks
    (the table's states): a task it drops (`bantzd clean`) is then not found any more, and
    one filed again under a new name (`bantzd edit`) is found by that name only."""

    def __init__(self, tasks: Iterable[Any] = (), by_id: dict[int, Any] | None = None) -> None:
        self.by_id: dict[int, Any] = {} if by_id is None else by_id
        self.by_name: dict[str, list[Any]] = {}
        for t in tasks:
            self.by_id[t.id] = t
            self.file(t)

    def file(self, task: Any) -> None:
        """Make `task` findable by its names (in id order; filing it again is harmless)."""
        for name in after_names(task):
            same = self.by_name.setdefault(name, [])
            if not same or same[-1].id < task.id:
                same.append(task)
            elif all(t is not task for t in same):
                bisect.insort(same, task, key=lambda t: t.id)

    def find(self, ref: str | int, *, exclude: int) -> Any | None:
        if isinstance(ref, int):
            found = self.by_id.get(ref)
            return found if found is not None and found.id != exclude else None
        for t in reversed(self.by_name.get(ref, ())):
            if t.id != exclude and self.by_id.get(t.id) is t and ref in after_names(t):
                return t
        return None


def dependency_state(cand: Candidate, index: DependencyIndex) -> tuple[str | None, str | None]:
    """(wait reason, failure reason) for `cand`'s `after:` list; both None when satisfied."""
    for ref in cand.after:
        dep = index.find(ref, exclude=cand.id)
        label = str(ref)
        if dep is None:
            return f"after: {label} (no such task yet)", None
        if dep.status is Status.DONE:
            continue
        if dep.status in FINISHED:
            return None, f"dependency failed: {label}"
        return f"after: {label} ({dep.status})", None
    return None, None


def decide(
    candidates: Iterable[Candidate],
    tasks: Mapping[int, TaskBrief] | Iterable[TaskBrief],
    *,
    running: int,
    max_parallel: int,
    now: float,
    paused: bool = False,
    admit: Callable[[Candidate], str | None] | None = None,
    tz: tzinfo | None = None,
    ordered: bool = False,
    stop_when_full: bool = False,
    until: float | None = None,
    fit: bool = True,
    remote: RemoteRoom | None = None,
    index: DependencyIndex | None = None,
) -> Decision:
    """Pick what starts: highest priority first, then lowest id, into the free slots.

    A task waits with a reason when it depends on an unfinished task, waits for a retry, is
    paused, or finds no free slot; it fails when a dependency failed or was cancelled.
    `admit` (machine load, resources, rate limits) is asked last, for tasks that would
    otherwise start; it returns a wait reason, or None after reserving what the task takes.
    A task it refuses does not use up a slot, so a waiting GPU task never blocks CPU tasks.

    `ordered`: the candidates already come in that order (the supervisor keeps them so).
    `stop_when_full`: stop looking once the free slots are used: what starts is the same,
    but the later candidates get no wait reason or failure this time. With thousands of
    queued tasks that makes a start cost O(slots) instead of O(queue); the supervisor still
    makes a full decision every second or so.

    `until`: the end of the run; a task that cannot resume and would not finish by then
    (or by its window's end or deadline) waits (supervisor/fitting.py); `fit=False` (the
    config's `fit_night = false`) turns that rule off.

    `remote`: the room for Slurm tasks (`Candidate.remote`), which take no local slot and
    are bounded by `max_submitted` instead; without it they wait as the local ones do.

    `index`: what `after:` is resolved against, kept up to date by the caller (the
    supervisor's table); without it one is built from `tasks` when a candidate has `after:`.
    """
    briefs = tasks.values() if isinstance(tasks, Mapping) else tasks
    decision = Decision()
    free = max(0, max_parallel - running)
    remote_free = remote.free if remote is not None and remote.problem is None else 0
    in_order = candidates if ordered else sorted(candidates, key=lambda c: (-c.priority, c.id))
    for cand in in_order:
        if stop_when_full and free <= 0 and remote_free <= 0:
            decision.partial = True
            break
        if cand.after and index is None:
            index = DependencyIndex(briefs)
        wait, fail = (
            dependency_state(cand, index) if cand.after and index is not None else (None, None)
        )
        if fail:
            decision.fail[cand.id] = fail
            continue
        if wait:
            decision.waiting[cand.id] = wait
            decision.blocked_on[cand.id] = cand.after
            continue
        if cand.timed:
            check = _timing(cand, now, tz)
            if check.fail:
                decision.fail[cand.id] = check.fail
                continue
            if check.wake_at is not None:
                at = check.wake_at.timestamp()
                decision.wake_at = at if decision.wake_at is None else min(decision.wake_at, at)
            if check.wait:
                decision.waiting[cand.id] = check.wait
                continue
        if cand.paused:
            decision.waiting[cand.id] = "paused"
            continue
        if cand.retry_at is not None and cand.retry_at > now:
            decision.waiting[cand.id] = f"retry at {hms(cand.retry_at)}"
            decision.wake_at = min(decision.wake_at or cand.retry_at, cand.retry_at)
            continue
        if paused:
            decision.waiting[cand.id] = "paused: all new starts are paused"
            continue
        if fit and (late := _fit(cand, now, until, tz)) is not None:
            decision.waiting[cand.id] = late
            continue
        if cand.remote and remote is not None:
            if remote.problem is not None:
                decision.waiting[cand.id] = remote.problem
                continue
            if remote_free <= 0:
                decision.waiting[cand.id] = slurm_slot_reason(remote.limit)
                continue
            refused = admit(cand) if admit is not None else None
            if refused:
                decision.waiting[cand.id] = refused
                continue
            decision.start.append(cand.id)
            remote_free -= 1
            continue
        if free <= 0:
            # The slots are taken by the running tasks and those starting now.
            occupied = running + len(decision.start)
            decision.waiting[cand.id] = free_slot_reason(occupied, max_parallel)
            continue
        refused = admit(cand) if admit is not None else None
        if refused:
            decision.waiting[cand.id] = refused
            continue
        decision.start.append(cand.id)
        free -= 1
    return decision


def _timing(cand: Candidate, now: float, tz: tzinfo | None) -> TimingCheck:
    zone = tz or local_zone()
    local = datetime.fromtimestamp(now, zone)

    def at(ts: float | None) -> datetime | None:
        return None if ts is None else datetime.fromtimestamp(ts, zone)

    return check_timing(
        local,
        windows=cand.windows,
        window_text=cand.window_text,
        not_before=at(cand.not_before_at),
        deadline=at(cand.deadline_at) if cand.attempts == 0 else None,
    )


def _fit(cand: Candidate, now: float, until: float | None, tz: tzinfo | None) -> str | None:
    if cand.estimate is None or cand.resumable:
        return None
    return fit_reason(
        now,
        cand.estimate,
        resumable=cand.resumable,
        until=until,
        windows=cand.windows,
        deadline_at=cand.deadline_at if cand.attempts == 0 else None,
        tz=tz,
    )


def backoff(retry_delay: float, failures: int, cap: float = DEFAULT_MAX_RETRY_DELAY) -> float:
    """Seconds before the next attempt after `failures` failed ones: `retry_delay`, doubled
    after each further failure, and never more than `cap`.

    Uncapped, `retries: 10` with `retry_delay: 1h` waited 21 days before the last attempt. The
    doubling is done in floats with the exponent clamped, so no failure count can overflow
    (2**1_000_000 would be an int with 300000 digits, and float() of it raises).
    """
    cap = max(0.0, float(cap))
    if not retry_delay > 0:  # also NaN
        return 0.0
    doublings = min(max(0, failures - 1), 1023)  # 2.0**1024 raises OverflowError
    return min(cap, retry_delay * 2.0**doublings)
