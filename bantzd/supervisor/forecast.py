"""`bantzd plan`: tonight's forecast, made by the supervisor itself on a fake clock.

Not a second scheduler: a copy of the home's queue (task folders without their logs, the
spool, schedules, config, estimates, pause state) is run by a real `Supervisor` with a
`FakeClock` and a `SimExecutor` whose attempts end when their estimate has passed. So
`max_parallel`, priorities, `after:`, resources, windows, `not_before`, deadlines, rate
limits, schedules and the fit rule are the ones a real night applies. The clock jumps
from one event to the next (an attempt's end, a decision's wake-up, a firing, `--until`).
The machine is taken to be as idle as now's cores and GPUs allow (`IdleProbe`).

A task without an estimate is taken to run DEFAULT_ESTIMATE, and says so.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bantzd.clock import FakeClock, epoch
from bantzd.config import Config, HooksConfig, NotifyConfig
from bantzd.paths import Home, TaskPaths
from bantzd.queue.atomic import read_json
from bantzd.queue.estimates import EstimateBook, compact_duration
from bantzd.queue.estimates import Run as EstimateRun
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, attempt_started
from bantzd.supervisor.executor import Found, Launch
from bantzd.supervisor.probes import Reading
from bantzd.workers.spawn import Attempt, LockInfo, Outcome

DEFAULT_ESTIMATE = 30 * 60.0
MAX_TICKS = 100_000
_COPIED_TASK_FILES = ("task.yaml", "state.json", "checkpoint.json")


@dataclass
class Run:
    """One forecast attempt."""

    task_id: int
    start: float
    end: float | None = None
    stopped: bool = False  # ended by a signal (the end of the run), not by its estimate


@dataclass
class Forecast:
    """What `plan` prints: each task's expected start and end, and what waits and why."""

    now: float
    until: float
    runs: list[Run] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    estimates: dict[int, str] = field(default_factory=dict)  # `3h10m from 2 runs`
    waiting: dict[int, str] = field(default_factory=dict)  # still queued at the end: why

    def to_json(self) -> dict[str, Any]:
        from bantzd.clock import iso

        return {
            "now": iso(self.now),
            "until": iso(self.until),
            "tasks": [
                {
                    "id": r.task_id,
                    "name": self.names.get(r.task_id),
                    "start": iso(r.start),
                    "end": iso(r.end),
                    "stopped": r.stopped,
                    "estimate": self.estimates.get(r.task_id),
                }
                for r in self.runs
            ],
            "not_fitting": [
                {"id": i, "name": self.names.get(i), "reason": why}
                for i, why in sorted(self.waiting.items())
            ],
        }


class SimExecutor:
    """An executor whose attempts end when their duration has passed on the fake clock."""

    def __init__(
        self,
        clock: FakeClock,
        duration: Callable[[int, int], float],
        adopted: dict[Path, tuple[LockInfo, float]],
    ) -> None:
        self.clock = clock
        self.duration = duration  # (task id, step index) -> seconds
        self.adopted = adopted  # task folder -> (its lock, when it ends)
        self.ends: dict[int, float] = {}
        self._pid = 1 << 22

    def setup(self, home_root: Path) -> None:
        pass

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        self._pid += 1
        now = self.clock.time()
        self.ends[launch.task_id] = now + self.duration(launch.task_id, launch.step_index)
        return Attempt(
            task_id=launch.task_id,
            attempt=launch.attempt,
            pgid=self._pid,
            paths=launch.paths,
            started_mono=started_mono,
            step=launch.step,
            step_index=launch.step_index,
        )

    def exited(self, att: Attempt) -> bool:
        return self.clock.time() >= self.ends.get(att.task_id, float("inf"))

    def reap(self, att: Attempt) -> Outcome:
        self.ends.pop(att.task_id, None)
        return Outcome(exit_code=0)

    def signal(self, att: Attempt, sig: int) -> bool:
        if sig in (signal.SIGTERM, signal.SIGKILL):
            self.ends[att.task_id] = self.clock.time()
        return True

    def find(self, paths: TaskPaths) -> Found | None:
        found = self.adopted.get(paths.dir)
        if found is None:
            return None
        return Found(found[0], alive=True)

    def kill_found(self, found: Found) -> None:
        pass

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        return {}

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        return None

    def housekeeping(self) -> None:
        pass

    def watch(self, att: Attempt) -> dict[str, object] | None:
        return None

    def room(self) -> None:
        return None  # no cluster: a forecast runs Slurm tasks as local ones

    def next_end(self) -> float | None:
        return min(self.ends.values(), default=None)


@dataclass
class IdleProbe:
    """The machine as the forecast assumes it: no load, its memory and GPUs free."""

    reading: Reading

    def __call__(self) -> Reading:
        r = self.reading
        gpus = [{**g, "util": 0, "free_memory": g.get("total_memory", 0)} for g in r.gpus]
        return Reading(0.0, r.total_memory or r.free_memory, gpus, r.total_memory)


def quiet_config(config: Config) -> Config:
    """`config` without what would reach the world from a forecast: hooks, notifications."""
    return dataclasses.replace(
        config, hooks=HooksConfig(), notify=NotifyConfig((), config.notify.on)
    )


def copy_queue(home: Home, into: Path) -> Home:
    """A home at `into` with what a night needs from `home` (no logs, no reports)."""
    copy = Home(into)
    copy.ensure()
    for src in (home.config, home.estimates, home.next_id, home.supervisor_state):
        if src.is_file():
            shutil.copy2(src, into / src.name)
    for folder in (home.spool, home.schedules, home.control):
        if folder.is_dir():
            shutil.copytree(folder, into / folder.name, dirs_exist_ok=True)
    if home.tasks.is_dir():
        for task_dir in home.tasks.iterdir():
            state = read_json(task_dir / "state.json", None)
            if not isinstance(state, dict) or state.get("status") in (
                "done",
                "failed",
                "cancelled",
            ):
                continue
            (copy.tasks / task_dir.name).mkdir(parents=True, exist_ok=True)
            for name in _COPIED_TASK_FILES:
                if (task_dir / name).is_file():
                    shutil.copy2(task_dir / name, copy.tasks / task_dir.name / name)
    return copy


def forecast(home: Home, config: Config, now: float, until: float, reading: Reading) -> Forecast:
    """Run tonight on a copy of `home`'s queue with a fake clock, from `now` to `until`."""
    from bantzd.supervisor.loop import Supervisor

    with tempfile.TemporaryDirectory(prefix="bantzd-plan-") as tmp:
        copy = copy_queue(home, Path(tmp) / "home")
        clock = FakeClock(now=now, mono=1000.0)
        holder: dict[str, Any] = {}

        told: dict[int, str] = {}

        def duration(task_id: int, step_index: int) -> float:
            sup = holder["sup"]
            state, spec = sup.table.states[task_id], sup.table.specs[task_id]
            seconds, told[task_id] = _estimate(sup.table, state, spec)
            if spec.steps:
                seconds /= len(spec.steps)
            return max(1.0, seconds)

        adopted = _running(copy, clock)
        sim = SimExecutor(clock, duration, adopted)
        sup = Supervisor(copy, config, clock, until=until, executor=sim, probe=IdleProbe(reading))
        holder["sup"] = sup
        # The forecast's own runs teach nothing: a task without an estimate, run for the
        # default, must not give the next task of its name an estimate it does not have.
        sup.table.estimates = FrozenBook(copy.estimates)
        try:
            sup.recover()
            for task_dir, (_, started) in adopted.items():
                task_id = int(task_dir.name)
                sim.ends[task_id] = max(clock.time(), started + duration(task_id, -1))
            for _ in range(MAX_TICKS):
                sup.tick()
                sup.flush()
                if sup.should_exit() or clock.time() >= until + config.stop_grace + 1:
                    break
                clock.advance(_next_jump(sup, sim, clock.time()))
        finally:
            sup.close()
        result = Forecast(now, until)
        for task_id, state in sorted(sup.table.states.items()):
            result.runs.extend(_runs_of(state, now))
            result.names[task_id] = state.name
            spec = sup.table.specs.get(task_id)
            if task_id in told:
                result.estimates[task_id] = told[task_id]
            elif spec is not None:
                result.estimates[task_id] = _estimate(sup.table, state, spec)[1]
            if state.status in (Status.QUEUED, Status.HELD, Status.WAITING_HUMAN):
                result.waiting[task_id] = state.reason or str(state.status)
        return result


class FrozenBook(EstimateBook):
    """The home's estimates, read once and never written."""

    def record(self, key: str, run: EstimateRun) -> None:
        pass


def _estimate(table: Any, state: TaskState, spec: Any) -> tuple[float, str]:
    """(seconds the forecast lets the task run, the words for it)."""
    estimate, _ = table.fit(state, spec)
    if estimate is None:
        return DEFAULT_ESTIMATE, f"{compact_duration(DEFAULT_ESTIMATE)} (default: no estimate)"
    return estimate.seconds, f"{compact_duration(estimate.seconds)} from {estimate.source}"


def _runs_of(state: TaskState, now: float) -> list[Run]:
    """The task's attempts in the forecast: those that ran from `now` on (an attempt
    running now counts from its real start)."""
    out = []
    for entry in state.attempt_log:
        start, end = epoch(entry.get("start")), epoch(entry.get("end"))
        if start is None or (end is not None and end < now):
            continue
        out.append(Run(state.id, start, end, stopped=entry.get("outcome") == "interrupted"))
    return out


def _next_jump(sup: Any, sim: SimExecutor, now: float) -> float:
    """Seconds to the next thing that changes a decision; at least one second."""
    events = [sup.until]
    if sup.wind_down_at is not None:  # resumable tasks stop stop_grace early (nightend.py)
        events.append(sup.wind_down_at)
    if (end := sim.next_end()) is not None:
        events.append(end)
    if sup.starter.last.wake_at is not None:
        events.append(sup.starter.last.wake_at)
    if (firing := sup.schedules.due_in(now)) is not None:
        events.append(now + firing)
    if sup.stopping:
        events.append(now + 1)
    ahead = [e - now for e in events if e > now]
    return max(1.0, min(ahead, default=1.0))


def _running(copy: Home, clock: FakeClock) -> dict[Path, tuple[LockInfo, float]]:
    """The tasks running now: adopted by the forecast, ending at start + estimate (found
    later, once the supervisor has read the estimates: until then, never)."""
    out: dict[Path, tuple[LockInfo, float]] = {}
    for task_dir in copy.tasks.iterdir() if copy.tasks.is_dir() else ():
        data = read_json(task_dir / "state.json", None)
        if not isinstance(data, dict) or data.get("status") != "running":
            continue
        try:
            state = TaskState.from_json(data)
        except ValueError:
            continue
        started = epoch(attempt_started(state)) or clock.time()
        out[task_dir] = (
            LockInfo(pid=state.pid or 1, attempt=state.attempts, step_index=-1),
            started,
        )
    return out
