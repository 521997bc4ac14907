"""The executor port: how an attempt is started, watched, signalled and reaped.

The supervisor decides *what* runs and *when*; an executor only knows how. Everything the
loop and its collaborators do to a running attempt goes through this port, so a second
executor (Slurm: one `sbatch` job per attempt) plugs in beside the local one without the
loop learning anything new, and the tick tests drive the supervisor with a fake one that
starts no process at all.

`LocalExecutor` is today's: a process group per attempt under the /bin/sh wrapper
(`workers.spawn`), kept in its own cgroup or marked for the subreaper (`workers.escape`),
measured through /proc (`memwatch`). Its handle is `spawn.Attempt`; the worker.lock /
exit record protocol it relies on is described in `workers/spawn.py`.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bantzd.paths import TaskPaths
from bantzd.supervisor import memwatch
from bantzd.workers import escape, spawn
from bantzd.workers.spawn import Attempt, LockInfo, Outcome


@dataclass(frozen=True)
class Launch:
    """Everything an executor needs to start one attempt (or one step of a `steps:` task)."""

    task_id: int
    attempt: int
    paths: TaskPaths
    argv: list[str]
    env: dict[str, str]
    cwd: str
    marker: str  # the line output.log gets before the attempt's own output
    nice: int = 0
    umask: int = 0o022
    step: str | None = None
    step_index: int = -1
    # Where it runs (`[executor] kind`, or the task's `executor:`) and what a cluster
    # needs to place it; the local executor uses none of these.
    executor: str = "local"
    cpus: float | None = None
    memory: int | None = None
    gpus: int = 0
    timeout: float | None = None


@dataclass(frozen=True)
class Room:
    """How many more attempts a cluster executor takes now (`max_submitted` less the jobs
    it has), or why none (`slurm: unreachable ...`)."""

    free: int
    limit: int
    problem: str | None = None
    used: int = 0  # the executor's attempts now (they hold no local slot)


@dataclass(frozen=True)
class Found:
    """What a restarted supervisor finds of an attempt: its worker.lock and whether the
    worker still holds it."""

    info: LockInfo
    alive: bool
    job_id: int | None = None  # a Slurm job (its worker.lock pid is no pid of this machine)


class Executor(Protocol):
    """The port. Methods that act on an attempt never raise for an attempt already gone."""

    def setup(self, home_root: Path) -> None:
        """Once per supervisor, before recovery adopts anything."""

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        """Start the attempt; `SpawnError` when it cannot start at all (the task's fault),
        `OSError` when the machine refused (no fds, full disk: not the task's fault)."""

    def exited(self, att: Attempt) -> bool:
        """Whether the attempt's main process has ended (cheap; no reaping)."""

    def reap(self, att: Attempt) -> Outcome:
        """The outcome of an ended attempt; everything it left behind is ended too. Also
        the way to end a live attempt for good (kill, then reap)."""

    def signal(self, att: Attempt, sig: int) -> bool:
        """Send `sig` to the whole attempt; False when nothing was there to receive it."""

    def find(self, paths: TaskPaths) -> Found | None:
        """The attempt a task folder says was started (worker.lock), for recovery."""

    def kill_found(self, found: Found) -> None:
        """End at once an attempt found in recovery that will not be adopted."""

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        """Resident bytes per task id, for the attempts given (one pass for all)."""

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        """The exact figure when the attempt is really over `limit`, else None."""

    def housekeeping(self) -> None:
        """Once per tick: collect what ended without being an attempt (escaped orphans)."""

    def watch(self, att: Attempt) -> dict[str, object] | None:
        """What state.json should say of where the attempt is (a Slurm job's id, state,
        node and reason), or None when the executor has nothing to tell."""

    def room(self) -> Room | None:
        """The room for cluster attempts (`Room`), or None: this executor has no cluster."""


class LocalExecutor:
    """Attempts as process groups on this machine (see the module docstring)."""

    def setup(self, home_root: Path) -> None:
        escape.setup(home_root)  # cgroups or subreaper, before adopting attempts

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        popen = spawn.spawn(
            launch.paths,
            launch.argv,
            attempt=launch.attempt,
            cwd=launch.cwd,
            env=launch.env,
            nice=launch.nice,
            marker=launch.marker,
            step_index=launch.step_index,
            umask=launch.umask,
        )
        return Attempt(
            task_id=launch.task_id,
            attempt=launch.attempt,
            pgid=popen.pid,
            paths=launch.paths,
            started_mono=started_mono,
            popen=popen,
            step=launch.step,
            step_index=launch.step_index,
        )

    def exited(self, att: Attempt) -> bool:
        return spawn.exited(att)

    def reap(self, att: Attempt) -> Outcome:
        if att.popen is not None and att.popen.returncode is not None:
            return Outcome(known=False)  # reaped already: its pgid may be a stranger's now
        return spawn.reap(att)

    def signal(self, att: Attempt, sig: int) -> bool:
        return spawn.kill_group(att.pgid, sig)

    def find(self, paths: TaskPaths) -> Found | None:
        info = spawn.read_lock_info(paths)
        return None if info is None else Found(info, spawn.worker_alive(paths))

    def kill_found(self, found: Found) -> None:
        # worker.lock still held means its group is still there: the pgid is no stranger's.
        if found.alive:
            spawn.kill_group(found.info.pid, signal.SIGKILL)

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        rss = memwatch.tree_rss_many([att.pgid for att in atts])
        return {att.task_id: rss.get(att.pgid, 0) for att in atts}

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        return memwatch.over_limit(att.pgid, limit)

    def housekeeping(self) -> None:
        escape.reap_orphans()  # escaped processes that ended as our (subreaper's) children

    def watch(self, att: Attempt) -> dict[str, object] | None:
        return None

    def room(self) -> Room | None:
        return None
