"""What a starting supervisor finds of each task, and what to do with a started attempt.

A supervisor can die anywhere: between the spool rename and the first state.json, between a
spawn and the write that says `running`, while an attempt runs, after it ended. `load_task`
reads what one task folder holds (never writing), and `plan_attempt` is the pure rule for
its attempt, from the state and the worker.lock: adopt a live worker, settle one that ended
while no supervisor watched (its exit record speaks, or nothing does), or do nothing. The
loop applies the result through the store like any other change.

worker.lock, not state.json, says whether an attempt started: a crash between the spawn and
the state write leaves a task recorded as queued whose worker runs.

`recover_task` applies both to one task: it loads it into the table, records what it
found through the store, adopts a live attempt, and hands back an attempt that ended
unwatched, for the loop to settle like any other end.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime

from bantzd.clock import Clock, epoch, iso
from bantzd.crash import fault_point
from bantzd.paths import Home, TaskPaths
from bantzd.queue.atomic import remove_leftover_temps
from bantzd.queue.states import Status
from bantzd.queue.store import Store, read_state, task_ids
from bantzd.queue.task import TaskState, attempt_started
from bantzd.queue.taskfile import TaskFileError, TaskSpec, parse_task
from bantzd.queue.unique import task_key
from bantzd.supervisor.attempts import Attempts
from bantzd.supervisor.executor import Found
from bantzd.supervisor.table import TaskTable
from bantzd.workers.spawn import Attempt, Outcome

log = logging.getLogger("bantzd")


@dataclass
class Loaded:
    """One task folder as found. `state` is None for a folder whose intake never reached
    its commit point (no task.yaml): it is removed."""

    state: TaskState | None
    spec: TaskSpec | None = None
    spec_error: str | None = None  # why task.yaml can no longer be read
    rebuilt: bool = False  # state.json was missing or unreadable


def load_task(home: Home, task_id: int) -> Loaded:
    """Read a task folder: its state (rebuilt as queued when state.json is lost) and,
    for a task not finished, its spec. Temp files a crash left in it are removed."""
    tdir = home.task_dir(task_id)
    yaml_path = tdir / "task.yaml"
    if not yaml_path.exists():
        return Loaded(None)  # the intake did not reach the rename of the spool file
    for path in remove_leftover_temps([tdir]):
        log.info("removed %s, left by a write a crash interrupted", path)
    state = read_state(tdir)
    rebuilt = state is None
    if state is None:
        state = _rebuild_state(home, task_id)
    if state.finished_state:
        return Loaded(state, rebuilt=rebuilt)
    try:
        spec = parse_task(yaml_path.read_bytes(), default_name=state.name)
    except (TaskFileError, OSError) as e:
        return Loaded(state, spec_error=f"task.yaml can no longer be read: {e}", rebuilt=rebuilt)
    return Loaded(state, spec, rebuilt=rebuilt)


def _rebuild_state(home: Home, task_id: int) -> TaskState:
    tdir = home.task_dir(task_id)
    name = str(task_id)
    key = None
    try:
        data = (tdir / "task.yaml").read_bytes()
        spec = parse_task(data, default_name=f"task-{task_id}")
        name, priority, kind = spec.name, spec.priority, spec.kind
        key = task_key(data, spec.unique)  # the key is the task's: it comes back with it
    except (TaskFileError, OSError):
        priority, kind = 0, "run"
    created = datetime.fromtimestamp((tdir / "task.yaml").stat().st_mtime).astimezone()
    log.warning("task %d: state.json was missing or unreadable; rebuilt as queued", task_id)
    return TaskState(
        id=task_id,
        name=name,
        priority=priority,
        kind=kind,
        created=created.isoformat(timespec="seconds"),
        reason="state rebuilt after a crash",
        unique_key=key,
    )


@dataclass(frozen=True)
class NeverSpawned:
    """Recorded as running, but no worker of that attempt ever took worker.lock."""


@dataclass(frozen=True)
class Resume:
    """An attempt that started: adopt it when `alive`, else settle how it ended."""

    attempt: int
    pid: int
    alive: bool
    step_index: int = -1
    step: str | None = None
    # For a `steps:` task: the steps before the one that ran (steps run in order, so
    # every one of them exited 0).
    steps_done: tuple[str, ...] | None = None
    # The start was never recorded (the crash came between the spawn and the state write).
    mark_running: bool = False


def plan_attempt(
    state: TaskState, spec: TaskSpec, found: Found | None
) -> NeverSpawned | Resume | None:
    """The recovery of one unfinished task's attempt; None: nothing to do."""
    running = state.status is Status.RUNNING
    if found is None or (running and found.info.attempt < state.attempts):
        return NeverSpawned() if running else None
    started_unrecorded = found.info.attempt > state.attempts
    if not running and not started_unrecorded:
        return None  # the lock is from an attempt whose end is already recorded
    info = found.info
    step = spec.steps[info.step_index] if 0 <= info.step_index < len(spec.steps) else None
    return Resume(
        attempt=info.attempt,
        pid=info.pid,
        alive=found.alive,
        step_index=info.step_index,
        step=step.name if step else None,
        steps_done=tuple(s.name for s in spec.steps[: info.step_index]) if step else None,
        mark_running=not running,
    )


def mono_of(iso_text: str | None, clock: Clock) -> float:
    """The monotonic time matching a recorded wall time (for timeouts of adoptees)."""
    started = epoch(iso_text) or clock.time()
    return clock.monotonic() - max(0.0, clock.time() - started)


@dataclass
class Recovered:
    """What `recover_all` leaves to the loop: attempts to settle, tasks that raised."""

    ended: list[tuple[Attempt, Outcome]] = field(default_factory=list)
    errors: dict[int, Exception] = field(default_factory=dict)


def recover_all(
    home: Home, store: Store, table: TaskTable, attempts: Attempts, clock: Clock
) -> Recovered:
    """`recover_task` for every task folder; one that raises does not stop the others."""
    found = Recovered()
    for task_id in task_ids(home):
        try:
            ended = recover_task(home, task_id, store, table, attempts, clock)
        except Exception as e:
            found.errors[task_id] = e
            continue
        if ended is not None:
            _, outcome = ended
            log.info(
                "task %d: its attempt ended while no supervisor ran (%s)",
                task_id,
                outcome.describe(),
            )
            found.ended.append(ended)
    return found


def recover_task(
    home: Home, task_id: int, store: Store, table: TaskTable, attempts: Attempts, clock: Clock
) -> tuple[Attempt, Outcome] | None:
    """Load one task and recover its attempt; the ended attempt to settle, if any."""
    loaded = load_task(home, task_id)
    state = loaded.state
    if state is None:
        shutil.rmtree(home.task_dir(task_id), ignore_errors=True)
        return None
    if loaded.rebuilt:
        store.update(state)
    table.add(state, loaded.spec)
    if state.finished_state:
        return None
    fault_point("recover", task_id)
    spec = loaded.spec
    if spec is None:
        if state.status is not Status.RUNNING:
            store.transition(state, Status.FAILED, loaded.spec_error, error=loaded.spec_error)
        return None
    paths = TaskPaths(home.task_dir(task_id))
    plan = plan_attempt(state, spec, attempts.executor.find(paths))
    if isinstance(plan, NeverSpawned):
        never = Attempt(task_id, state.attempts, 0, paths, clock.monotonic(), step=state.step)
        return never, Outcome(known=False)
    if plan is None:
        return None
    if plan.mark_running:
        # `started` is the task's first start; the attempt's own start goes in its log.
        now = iso(clock.time())
        logged = any(
            isinstance(e, dict) and e.get("attempt") == plan.attempt for e in state.attempt_log
        )
        entry = {"attempt": plan.attempt, "start": now, "end": None, "outcome": None}
        store.transition(
            state,
            Status.RUNNING,
            None,
            attempts=plan.attempt,
            started=state.started or now,
            attempt_log=state.attempt_log if logged else [*state.attempt_log, entry][-50:],
        )
    if plan.steps_done is not None:
        store.update(state, steps_done=list(plan.steps_done), step=plan.step)
    if state.attempts != plan.attempt:
        store.update(state, attempts=plan.attempt)
    att = Attempt(
        task_id=state.id,
        attempt=plan.attempt,
        pgid=plan.pid,
        paths=paths,
        started_mono=mono_of(attempt_started(state), clock),
        step=plan.step,
        step_index=plan.step_index,
    )
    if not plan.alive:
        return att, attempts.executor.reap(att)
    attempts.adopt(att)
    store.update(state, pid=plan.pid)
    attempts.hold(state, spec, epoch(attempt_started(state)))
    log.info("task %d: adopted its running attempt (pid %d)", state.id, plan.pid)
    return None
