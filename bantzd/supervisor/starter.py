"""Which queued tasks start this tick: the queue view, the pure decision, its admission.

`Starter.decide` turns the table's queue into `Candidate`s, asks `scheduler.decide` with an
`Admission` (machine load, held resources, rate limits, GPUs), and returns a `Plan`. It
changes nothing: the loop applies the plan (fails what can never start, takes the rate-limit
units and starts the rest, records the reasons of the others).

With a long queue a tick stops looking once the free slots are filled; every
FULL_PASS_EVERY seconds a full look refreshes the reasons and finds failed dependencies.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from bantzd.config import Config
from bantzd.crash import fault_point
from bantzd.queue.task import TaskState
from bantzd.ratelimit import LimitsView, RateLimits
from bantzd.supervisor.probes import Reading
from bantzd.supervisor.resources import Admission, Held
from bantzd.supervisor.scheduler import Candidate, Decision, decide
from bantzd.supervisor.table import TaskTable

# Up to this many queued tasks every tick looks at all of them.
FULL_PASS_QUEUE = 200
FULL_PASS_EVERY = 1.0


@dataclass
class Plan:
    """A decision and what it needs to be applied."""

    decision: Decision
    gpus: dict[int, list[int]] = field(default_factory=dict)  # task id -> GPU indices
    throttled: str | None = None
    # Queued tasks whose scheduler view could not be built: each is failed on its own
    # (left queued, it would stop every start, every tick).
    broken: dict[int, Exception] = field(default_factory=dict)


class Starter:
    """Remembers the last decision (the loop's sleep and `--once` exit read it)."""

    def __init__(self, config: Config, cores: int, limits: RateLimits) -> None:
        self.config = config
        self.cores = cores
        self.limits = limits
        self.last = Decision()
        self._last_full_pass = float("-inf")

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
    ) -> Plan:
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
        plan.decision = decide(
            self._candidates(table, table.order(rebuild=full), plan.broken),
            table.briefs(),
            running=running,
            max_parallel=self.config.max_parallel,
            now=now,
            paused=paused,
            admit=admission,
            ordered=True,
            stop_when_full=not full,
        )
        plan.gpus = admission.gpu_assignment
        plan.throttled = admission.throttled
        self.last = plan.decision
        return plan

    def idle(self) -> None:
        """Nothing can start (stopping, or nothing queued): nothing waits either."""
        self.last = Decision()

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
