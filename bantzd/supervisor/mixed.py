"""The supervisor's executor: local attempts and Slurm jobs side by side.

`MixedExecutor` routes each attempt to the executor that has it: a new one by its
`Launch.executor` (the task's `executor:`, else `[executor] kind`), a running or recovered
one by whether the Slurm executor tracks its task. `task_changes` says what an executor's
`watch` means for state.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bantzd.clock import Clock
from bantzd.paths import TaskPaths
from bantzd.queue.task import TaskState
from bantzd.supervisor.executor import Executor, Found, Launch, LocalExecutor, Room
from bantzd.supervisor.slurm import SlurmExecutor, job_record, task_id_of
from bantzd.workers.spawn import Attempt, Outcome


class MixedExecutor:
    """The local executor and the Slurm one, each attempt routed to the one that has it."""

    def __init__(self, local: Executor, slurm: SlurmExecutor) -> None:
        self.local = local
        self.slurm = slurm

    def _for(self, att: Attempt) -> Executor:
        return self.slurm if att.task_id in self.slurm.jobs else self.local

    def setup(self, home_root: Path) -> None:
        self.local.setup(home_root)
        self.slurm.setup(home_root)

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        if launch.executor == "slurm":
            return self.slurm.start(launch, started_mono)
        return self.local.start(launch, started_mono)

    def exited(self, att: Attempt) -> bool:
        return self._for(att).exited(att)

    def reap(self, att: Attempt) -> Outcome:
        return self._for(att).reap(att)

    def signal(self, att: Attempt, sig: int) -> bool:
        return self._for(att).signal(att, sig)

    def find(self, paths: TaskPaths) -> Found | None:
        local = self.local.find(paths)
        remote = None
        if job_record(paths).exists() or self.slurm.listing or self.slurm.jobs:
            remote = self.slurm.find(paths)
        if remote is not None and (local is None or remote.info.attempt >= local.info.attempt):
            task_id = task_id_of(paths)
            if task_id is not None:
                self.slurm.adopt(task_id, remote)
            return remote
        return local

    def kill_found(self, found: Found) -> None:
        if found.job_id is not None:
            self.slurm.kill_found(found)
        else:
            self.local.kill_found(found)

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        return self.local.memory([a for a in atts if a.task_id not in self.slurm.jobs])

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        return self._for(att).memory_over(att, limit)

    def housekeeping(self) -> None:
        self.local.housekeeping()
        self.slurm.housekeeping()

    def watch(self, att: Attempt) -> dict[str, object] | None:
        return self._for(att).watch(att)

    def room(self) -> Room:
        return self.slurm.room()


def make_executor(config: Any, clock: Clock | None = None) -> MixedExecutor:
    """The supervisor's executor: local attempts and Slurm jobs side by side."""
    slurm = SlurmExecutor(config.executor.slurm, config.stop_grace, clock)
    return MixedExecutor(LocalExecutor(), slurm)


def task_changes(state: TaskState, watched: Mapping[str, Any]) -> dict[str, Any]:
    """The state.json fields `watch` changes: `slurm`, the reason, and in the attempt log
    the node the attempt runs on; its `start` becomes the job's start on that node (the
    submit time is kept as `submitted`), so `took` counts no time spent pending."""
    changes: dict[str, Any] = {}
    info = watched.get("slurm")
    if info is not None and info != state.slurm:
        changes["slurm"] = dict(info)
    reason = watched.get("reason")
    if reason != state.reason:
        changes["reason"] = reason
    node = watched.get("node")
    log = state.attempt_log
    last = log[-1] if log and isinstance(log[-1], dict) else {}
    if node and last.get("attempt") == state.attempts and last.get("node") != node:
        entry = {**last, "node": node}
        started = watched.get("started")
        if started and "submitted" not in last:
            entry.update(submitted=last.get("start"), start=started)
        changes["attempt_log"] = [*log[:-1], entry]
    return changes
