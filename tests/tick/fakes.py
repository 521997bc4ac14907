"""The two edges of a supervisor to the machine, faked: the executor and the probe.

`FakeExecutor` starts no process. A test says how each attempt ends (`finish`), what a
restarted supervisor finds in a task folder (`found`), how much memory an attempt uses
(`rss`); the supervisor's own code does everything else: the start decision, the state
written through the store, the outcome through `settle`, what is held and given back.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path

from bantzd.paths import TaskPaths
from bantzd.supervisor.executor import Found, Launch
from bantzd.supervisor.probes import Reading
from bantzd.workers.spawn import Attempt, LockInfo, Outcome


class FakeExecutor:
    """An executor whose attempts run until the test ends them."""

    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.signals: list[tuple[int, int]] = []  # (task id, signal)
        self.ends: dict[int, Outcome] = {}  # task id -> how its running attempt ended
        self.found: dict[Path, Found] = {}  # task folder -> what recovery finds
        self.killed_found: list[Found] = []
        self.rss: dict[int, int] = {}
        self.refuse: Exception | None = None  # raised by the next start
        self.stop_on_term = True  # SIGTERM ends the attempt (a worker that obeys)
        self._pid = 40_000

    def setup(self, home_root: Path) -> None:
        pass

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        if self.refuse is not None:
            error, self.refuse = self.refuse, None
            raise error
        self._pid += 1
        self.launches.append(launch)
        return Attempt(
            task_id=launch.task_id,
            attempt=launch.attempt,
            pgid=self._pid,
            paths=launch.paths,
            started_mono=started_mono,
            step=launch.step,
            step_index=launch.step_index,
        )

    def finish(self, task_id: int, exit_code: int | None = 0, sig: int | None = None) -> None:
        """End the task's running attempt, as its wrapper would have seen it."""
        self.ends[task_id] = Outcome(exit_code=None if sig else exit_code, signal=sig)

    def exited(self, att: Attempt) -> bool:
        return att.task_id in self.ends

    def reap(self, att: Attempt) -> Outcome:
        return self.ends.pop(att.task_id, Outcome(known=False))

    def signal(self, att: Attempt, sig: int) -> bool:
        self.signals.append((att.task_id, sig))
        if sig == signal.SIGKILL or (sig == signal.SIGTERM and self.stop_on_term):
            self.ends.setdefault(att.task_id, Outcome(signal=sig))
        return True

    def find(self, paths: TaskPaths) -> Found | None:
        return self.found.get(paths.dir)

    def kill_found(self, found: Found) -> None:
        self.killed_found.append(found)

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        return {att.task_id: self.rss.get(att.task_id, 0) for att in atts}

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        used = self.rss.get(att.task_id, 0)
        return used if used > limit else None

    def housekeeping(self) -> None:
        pass

    def watch(self, att: Attempt) -> dict[str, object] | None:
        return None

    def room(self) -> None:
        return None

    def lock(self, paths_dir: Path, attempt: int, *, alive: bool, step_index: int = -1) -> None:
        """What a worker of `attempt` left in worker.lock, for the next recovery."""
        self.found[paths_dir] = Found(
            LockInfo(pid=50_000 + attempt, attempt=attempt, step_index=step_index), alive
        )


@dataclass
class FixedProbe:
    """A machine whose load, memory and GPUs are what the test sets."""

    load_per_core: float = 0.1
    free_memory: int = 16 << 30
    gpus: list[dict[str, object]] = field(default_factory=list)
    calls: int = 0

    def __call__(self) -> Reading:
        self.calls += 1
        return Reading(self.load_per_core, self.free_memory, list(self.gpus), 32 << 30)
