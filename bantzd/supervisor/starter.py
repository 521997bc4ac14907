"""Which queued tasks start this tick: the queue view, the pure decision, its admission.

`Starter.decide` turns the table's queue into `Candidate`s, asks `scheduler.decide` with an
`Admission` (machine load, held resources, rate limits, GPUs), and returns a `Plan`. Then
`start_ready` applies it through the store: fails what can never start, takes the
rate-limit units and starts the rest, records the reasons of the others. What it cannot
finish itself it hands back to the loop (`StartReport`): failures to tell the person,
tasks that raised, attempts that could not start (to settle like any other end).

With a long queue a tick stops looking once the free slots are filled; every
FULL_PASS_EVERY seconds a full look refreshes the reasons and finds failed dependencies.

A full decision that started nothing, failed nothing and never asked the admission (the
machine's load, resources, rate limits) depends only on the queue, the running count and
the clock's timed changes (`wake_at`). While none of those moves, deciding again would give
the same answer: the starter skips it (`_still_quiet`), so 10,000 tasks waiting for a slot, a
window or a dependency cost nothing per tick. QUIET_MAX bounds how long an answer is kept.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from bantzd.clock import Clock, iso
from bantzd.config import Config
from bantzd.crash import crash_point, fault_point
from bantzd.queue.states import Status
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.ratelimit import LimitsView, RateLimits
from bantzd.supervisor.attempts import Attempts, NotStarted
from bantzd.supervisor.executor import Room
from bantzd.supervisor.machine import MachineWatch
from bantzd.supervisor.probes import Reading
from bantzd.supervisor.resources import Admission, Held
from bantzd.supervisor.scheduler import Candidate, Decision, RemoteRoom, decide
from bantzd.supervisor.table import TaskTable

# Up to this many queued tasks every tick looks at all of them.
FULL_PASS_QUEUE = 32
FULL_PASS_EVERY = 1.0
QUIET_MAX = 30.0


@dataclass
class Plan:
    """A decision and what it needs to be applied."""

    decision: Decision
    gpus: dict[int, list[int]] = field(default_factory=dict)  # task id -> GPU indices
    throttled: str | None = None
    # Queued tasks whose scheduler view could not be built: each is failed on its own
    # (left queued, it would stop every start, every tick).
    broken: dict[int, Exception] = field(default_factory=dict)


@dataclass
class StartReport:
    """What `start_ready` leaves to the loop."""

    started: list[TaskState] = field(default_factory=list)  # attempts launched this tick
    failed: list[TaskState] = field(default_factory=list)  # newly failed: tell the person
    errors: dict[int, Exception] = field(default_factory=dict)  # each fails on its own
    not_started: list[tuple[TaskState, NotStarted]] = field(default_factory=list)


def launch_recorded(
    store: Store, attempts: Attempts, state: TaskState, spec: TaskSpec, started_mono: float | None
) -> NotStarted | None:
    """Launch the task's attempt (or next step) and record its pid; why not, if it did not
    start."""
    result = attempts.launch(state, spec, started_mono=started_mono)
    if isinstance(result, NotStarted):
        return result
    crash_point("start.after_spawn")
    store.update(state, pid=result.pid, step=result.step)
    return None


class Starter:
    """Remembers the last decision (the loop's sleep and `--once` exit read it)."""

    def __init__(
        self,
        config: Config,
        cores: int,
        limits: RateLimits,
        clock: Clock,
        *,
        until: float | None = None,
    ) -> None:
        self.config = config
        self.until = until  # the end of the run: what a task must finish by
        # stop_grace before --until (supervisor/nightend.py): tasks that can resume would
        # be stopped at once, so they are left out of the decision (their reason stays).
        self.winding_down = False
        self.clock = clock
        self.cores = cores
        self.limits = limits
        self.last = Decision()
        self._last_full_pass = float("-inf")
        # What the last quiet decision depended on (see the module docstring), or None,
        # and when (monotonic) it was made.
        self._quiet: tuple[object, ...] | None = None
        self._quiet_since = float("-inf")
        self._throttled: str | None = None

    def decide(
        self,
        table: TaskTable,
        held: Mapping[int, Held],
        reading: Reading,
        *,
        running: int,
        paused: bool,
        now: float,
        mono: float,
        room: Room | None = None,
    ) -> Plan:
        inputs = (
            table.changes,
            running,
            paused,
            self.config.max_parallel,
            self.config.fit_night,
            self.winding_down,
            None if room is None else (room.free, room.limit, room.problem),
        )
        if self._still_quiet(inputs, now, mono):
            return Plan(Decision(wake_at=self.last.wake_at), throttled=self._throttled)
        full = (
            len(table.queued) <= FULL_PASS_QUEUE or mono - self._last_full_pass >= FULL_PASS_EVERY
        )
        if full:
            self._last_full_pass = mono
        plan = Plan(Decision())
        admission = Admission(
            reading,
            self.config.throttle,
            held.values(),
            cores=self.cores,
            now=now,
            limits=_LazyLimits(self.limits, now),
        )
        candidates = self._candidates(table, table.order(rebuild=full), plan.broken)
        if self.winding_down:
            candidates = (c for c in candidates if not c.resumable)
        # Without a Slurm task queued the cluster's room is not looked at: a decision stops
        # at the full local slots (O(slots), not O(queue)).
        remote = None
        if room is not None and table.remote_queued():
            remote = RemoteRoom(room.free, room.limit, room.problem)
        asked = 0

        def admit(cand: Candidate) -> str | None:
            nonlocal asked
            asked += 1
            return admission(cand)

        plan.decision = decide(
            candidates,
            (),  # `after:` is resolved by `index`
            running=running,
            max_parallel=self.config.max_parallel,
            now=now,
            paused=paused,
            admit=admit,
            ordered=True,
            stop_when_full=not full,
            until=self.until,
            fit=self.config.fit_night,
            remote=remote,
            index=table.deps,
        )
        plan.gpus = admission.gpu_assignment
        plan.throttled = admission.throttled
        self.last = d = plan.decision
        self._throttled = plan.throttled
        quiet = full and not (d.partial or d.start or d.fail or plan.broken or asked)
        self._quiet = inputs if quiet else None
        self._quiet_since = mono
        return plan

    def _still_quiet(self, inputs: tuple[object, ...], now: float, mono: float) -> bool:
        """Whether the last decision was quiet and nothing it depends on moved since."""
        if self._quiet is None or self._quiet != inputs:
            return False
        wake_at = self.last.wake_at
        return mono - self._quiet_since < QUIET_MAX and (wake_at is None or now < wake_at)

    def start_ready(
        self,
        store: Store,
        table: TaskTable,
        attempts: Attempts,
        machine: MachineWatch,
        *,
        paused: bool,
    ) -> StartReport:
        """Decide, then start what may start; the reasons of the others are recorded."""
        now, mono = self.clock.time(), self.clock.monotonic()
        seen = table.moves
        plan = self.decide(
            table,
            attempts.held,
            machine.current(),
            running=attempts.local_count(),  # Slurm jobs take no local slot
            paused=paused,
            now=now,
            mono=mono,
            room=attempts.executor.room(),
        )
        for event, reason in machine.throttle_changes(plan.throttled):
            store.note(event, reason=reason)
        report = StartReport(errors=dict(plan.broken))
        decision = plan.decision
        for task_id, why in decision.fail.items():
            try:
                state = table.states[task_id]
                store.transition(state, Status.FAILED, why, error=why)
                report.failed.append(state)
            except Exception as e:
                report.errors[task_id] = e
        for task_id in decision.start:
            try:
                spec = table.specs[task_id]
                why = attempts.take_units(spec, task_id, now)
                if why:
                    decision.waiting[task_id] = why
                    continue
                state = table.states[task_id]
                self._start(store, attempts, state, spec, now, plan.gpus.get(task_id), report)
            except Exception as e:
                # Failed: left queued, it would be picked, and raise, again every tick.
                report.errors[task_id] = e
        for task_id, why in decision.waiting.items():
            state = table.states[task_id]
            # Written only when the words change: a task waiting all night for a slot
            # (`free_slot_reason` is the same text while the slots stay full) costs one write.
            if state.reason != why:
                store.update(state, reason=why)
        # After the reasons are written (an update of a queued task unparks it).
        table.park(decision.blocked_on, seen)
        return report

    @staticmethod
    def _start(
        store: Store,
        attempts: Attempts,
        state: TaskState,
        spec: TaskSpec,
        now: float,
        gpus: list[int] | None,
        report: StartReport,
    ) -> None:
        attempt = state.attempts + 1
        log_entry = {"attempt": attempt, "start": iso(now), "end": None, "outcome": None}
        store.transition(
            state,
            Status.RUNNING,
            None,
            attempts=attempt,
            started=state.started or iso(now),  # the first start; each attempt's is in its log
            gpus=list(gpus or []),
            attempt_log=[*state.attempt_log, log_entry][-50:],
        )
        attempts.hold(state, spec, now)
        fault_point("start", state.id)
        # Spawned before "running" is durable (it is, at the end of this tick): a crash in
        # between leaves a live worker that worker.lock names, and recovery adopts it.
        result = launch_recorded(store, attempts, state, spec, None)
        if result is not None:
            report.not_started.append((state, result))
        else:
            report.started.append(state)

    def idle(self) -> None:
        """Nothing can start (stopping, or nothing queued): nothing waits either."""
        self.last = Decision()
        self._quiet = None

    @staticmethod
    def _candidates(
        table: TaskTable, order: list[TaskState], broken: dict[int, Exception]
    ) -> Iterator[Candidate]:
        for s in table.startable(order):
            try:
                fault_point("candidate", s.id)
                cand = table.candidate(s)
            except Exception as e:
                broken[s.id] = e
                continue
            yield cand


class _LazyLimits:
    """The rate-limit snapshot for one decision, read (one locked file read) only when a
    candidate that `uses:` a limit is looked at."""

    def __init__(self, limits: RateLimits, now: float) -> None:
        self._limits = limits
        self._now = now
        self._view: LimitsView | None = None

    def _get(self) -> LimitsView:
        if self._view is None:
            self._view = self._limits.view(self._now)
        return self._view

    def problem(self, uses: Mapping[str, int]) -> str | None:
        return self._get().problem(uses)

    def check(self, uses: Mapping[str, int], task_id: int | None = None) -> str | None:
        return self._get().check(uses, task_id)

    def reserve(self, uses: Mapping[str, int], task_id: int) -> None:
        self._get().reserve(uses, task_id)
