"""The running attempts: what they hold, how they are started, stopped, timed and ended.

`Attempts` is the supervisor's one collaborator that touches running work, always through
the injected executor (`executor.Executor`). It never changes a task's state: it answers
with facts (`Started`, an `Ended` record, the fields a worker's reports changed) and the
loop records them through the store. What an attempt holds while it runs (cpus, memory and
GPUs in `held`, rate-limit units in `RateLimits`) is given back by one method, `end()`, on
every way out, so no path can forget one of them.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bantzd.clock import Clock, iso
from bantzd.config import Config
from bantzd.crash import fault_point
from bantzd.paths import Home, TaskPaths, user_umask
from bantzd.queue.atomic import read_json
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskexec import resolve
from bantzd.queue.taskfile import TaskSpec
from bantzd.ratelimit import RateLimits
from bantzd.supervisor.executor import Executor, Launch
from bantzd.supervisor.mixed import task_changes
from bantzd.supervisor.outcome import Ended, next_step
from bantzd.supervisor.resources import Held
from bantzd.workers.spawn import (
    Attempt,
    Outcome,
    SpawnError,
    command_argv,
    command_text,
    marker_line,
    read_reason,
)

log = logging.getLogger("bantzd")

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def _show(run: str | tuple[str, ...] | list[str]) -> str:
    text = run if isinstance(run, str) else " ".join(run)
    text = " ".join(text.split())  # the marker is one line, whatever the script looks like
    return text if len(text) <= 120 else text[:117] + "..."


def plan_launch(
    home: Home, state: TaskState, spec: TaskSpec, when: str, *, nice: int, executor: str = "local"
) -> Launch | str:
    """The argv, environment and marker of the task's attempt (or its next step), or why
    it cannot have one. `state.attempts` is the attempt being started."""
    paths = TaskPaths(home.task_dir(state.id))
    step_name = None
    step_index = -1
    if spec.kind == "steps":
        step = next_step(spec, state.steps_done)
        step_name = step.name
        step_index = spec.steps.index(step)
        argv = command_argv(step.run)
        shown = command_text(step.run, label=f"step {step.name}")
        what = shown if shown.startswith(f"step {step.name}: |") else f"step {step.name}: {shown}"
    elif spec.kind == "python":
        argv = [sys.executable, "-m", "bantzd.workers.pyrunner", spec.python or ""]
        what = f"python {spec.python}"
    elif spec.kind == "run":
        argv = command_argv(spec.run or "")
        what = command_text(spec.run or "")
    elif spec.kind == "llm":
        argv = [sys.executable, "-m", "bantzd.workers.llm"]
        llm = spec.llm or {}
        what = "llm: " + _show(str(llm.get("prompt") or f"prompt_file {llm.get('prompt_file')}"))
    elif spec.kind == "agent":
        argv = [sys.executable, "-m", "bantzd.workers.agent"]
        what = "agent: " + _show(str((spec.agent or {}).get("goal", "")))
    else:
        return f"{spec.kind} tasks are not supported yet"
    env = dict(os.environ)
    env.update(spec.env)
    env.update(
        BANTZ_TASK_ID=str(state.id),
        BANTZ_TASK_DIR=str(paths.dir),
        BANTZ_CHECKPOINT=str(paths.checkpoint),
        BANTZ_ATTEMPT=str(state.attempts),
        BANTZ_HOME=str(home.root),
    )
    if step_name:
        env["BANTZ_STEP"] = step_name
    if state.gpus:
        # PCI bus order, so the indices mean what nvidia-smi shows.
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in state.gpus)
    if spec.kind in ("python", "llm", "agent"):
        # These run in bantzd's own interpreter: make sure it finds this very bantzd,
        # installed or not, whatever the task's cwd.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    return Launch(
        task_id=state.id,
        attempt=state.attempts,
        paths=paths,
        argv=argv,
        env=env,
        cwd=spec.expanded_cwd(),
        marker=marker_line(state.attempts, when, what),
        nice=nice,
        umask=user_umask(),  # the task's files get the user's modes, not bantzd's 077
        step=step_name,
        step_index=step_index,
        executor=executor,
        cpus=spec.resources.cpus,
        memory=spec.resources.memory,
        gpus=spec.resources.gpus or (1 if spec.resources.gpu_memory else 0),
        timeout=spec.timeout,
    )


@dataclass(frozen=True)
class Started:
    """The attempt runs: what state.json should say about it."""

    pid: int
    step: str | None


@dataclass(frozen=True)
class NotStarted:
    """The attempt could not start: how to settle it, and whether the disk was the cause."""

    ended: Ended
    disk_error: OSError | None = None  # ENOSPC/EDQUOT: the disk-full latch should know


class Attempts:
    """The attempts this supervisor watches, keyed by task id."""

    def __init__(
        self, home: Home, config: Config, executor: Executor, limits: RateLimits, clock: Clock
    ) -> None:
        self.home = home
        self.config = config
        self.executor = executor
        self.limits = limits
        self.clock = clock
        self.running: dict[int, Attempt] = {}
        self.held: dict[int, Held] = {}
        self._seen_mtimes: dict[Path, int] = {}
        self._progress_broken: set[int] = set()  # logged once, not every tick

    def __len__(self) -> int:
        return len(self.running)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.running

    def __iter__(self) -> Iterator[Attempt]:
        """A snapshot: the caller may end attempts while iterating."""
        return iter(list(self.running.values()))

    def get(self, task_id: int) -> Attempt | None:
        return self.running.get(task_id)

    # starting ----------------------------------------------------------------------------

    def take_units(self, spec: TaskSpec, task_id: int, now: float) -> str | None:
        """Take the task's rate-limit units; why not, if they are gone (the decision's
        snapshot said yes, but a worker may have taken the room since)."""
        return self.limits.take(spec.uses, task_id, now) if spec.uses else None

    def executor_of(self, spec: TaskSpec) -> str:
        """Where the task's attempts run: its `executor:`, else `[executor] kind`."""
        return resolve(spec.executor, self.config.executor.kind)

    def local_count(self) -> int:
        """Attempts running on this machine (what max_parallel counts): Slurm's are not."""
        room = self.executor.room()
        return len(self.running) - (room.used if room is not None else 0)

    def hold(self, state: TaskState, spec: TaskSpec, started: float | None) -> None:
        """Count what the task's attempt holds (cpus, memory, its GPUs) from now on; a
        Slurm job holds nothing of this machine's."""
        if self.executor_of(spec) == "slurm":
            return
        res = spec.resources
        self.held[state.id] = Held(
            state.id, cpus=res.cpus, memory=res.memory, gpus=tuple(state.gpus), started=started
        )

    def launch(
        self, state: TaskState, spec: TaskSpec, *, started_mono: float | None = None
    ) -> Started | NotStarted:
        """Start the attempt (or its next step) of a task recorded as running.

        `Started` when it runs; `NotStarted` with the `Ended` record to settle (like any
        other end) when it could not start. A later step of a `steps:` task passes its
        attempt's `started_mono`: `timeout` is per attempt, not per step.
        """
        plan = plan_launch(
            self.home,
            state,
            spec,
            iso(self.clock.time()) or "",
            nice=self.config.nice,
            executor=self.executor_of(spec),
        )
        if isinstance(plan, str):
            return NotStarted(Ended(spawn_error=plan))
        mono = started_mono if started_mono is not None else self.clock.monotonic()
        try:
            att = self.executor.start(plan, mono)
        except SpawnError as e:
            _append_log(plan.paths, f"bantzd: {e}\n")
            return NotStarted(Ended(spawn_error=str(e)))
        except OSError as e:
            # Not the task's fault (disk full, fd limit): back to the queue, no attempt used.
            log.error("task %d: could not start: %s", state.id, e)
            return NotStarted(
                Ended(not_started=e.strerror or str(e)),
                disk_error=e if e.errno in (errno.ENOSPC, errno.EDQUOT) else None,
            )
        self.running[state.id] = att
        return Started(pid=att.pgid, step=plan.step)

    def adopt(self, att: Attempt) -> None:
        """Watch an attempt a previous supervisor started (found alive in recovery)."""
        self.running[att.task_id] = att

    # stopping ----------------------------------------------------------------------------

    def terminate(self, att: Attempt, reason: str, *, paused: bool = False) -> None:
        """SIGTERM the attempt; `enforce_limits` sends SIGKILL after the grace."""
        if att.stop_reason is None or reason == "cancelled":
            att.stop_reason = reason
        if att.term_at is None:
            att.term_at = self.clock.monotonic()
            if paused:
                self.executor.signal(att, signal.SIGCONT)
            self.executor.signal(att, signal.SIGTERM)

    def kill_all(self) -> None:
        """The second stop signal: SIGKILL every attempt now."""
        for att in self.running.values():
            self.executor.signal(att, signal.SIGKILL)
            att.killed = True

    def enforce_limits(self, att: Attempt, spec: TaskSpec | None, mono: float) -> None:
        """Timeout -> SIGTERM; the grace after a SIGTERM over -> SIGKILL."""
        timed_out = (
            spec is not None
            and spec.timeout is not None
            and (mono - att.started_mono >= spec.timeout)
        )
        if att.term_at is None and timed_out:
            log.info("task %d: timeout after %gs", att.task_id, spec.timeout)
            self.terminate(att, "timeout")
        grace_over = att.term_at is not None and mono - att.term_at >= self.config.stop_grace
        if grace_over and not att.killed:
            self.executor.signal(att, signal.SIGKILL)
            att.killed = True

    def due_in(self, specs: dict[int, TaskSpec], mono: float) -> list[float]:
        """Seconds until each pending SIGKILL or timeout (for the loop's sleep)."""
        due = []
        for att in self.running.values():
            if att.term_at is not None:
                due.append(att.term_at + self.config.stop_grace - mono)
            spec = specs.get(att.task_id)
            if spec is not None and spec.timeout and att.term_at is None:
                due.append(att.started_mono + spec.timeout - mono)
        return due

    def over_memory(self) -> list[tuple[Attempt, int, int]]:
        """Attempts over their `resources.memory` (attempt, bytes used, limit); records
        what each uses in `held` for the admission of the next starts."""
        limited = [
            att
            for task_id, att in self.running.items()
            if att.term_at is None and task_id in self.held and self.held[task_id].memory
        ]
        if not limited:
            return []
        rss = self.executor.memory(limited)
        over = []
        for att in limited:
            held = self.held[att.task_id]
            used = rss.get(att.task_id, 0)
            self.held[att.task_id] = replace(held, rss=used)
            if held.memory is not None and used > held.memory:
                real = self.executor.memory_over(att, held.memory)
                if real is not None:
                    over.append((att, real, held.memory))
        return over

    # ending ------------------------------------------------------------------------------

    def exited(self, att: Attempt) -> bool:
        return self.executor.exited(att)

    def reap(self, att: Attempt) -> Outcome:
        """The outcome of an exited attempt; it is no longer watched afterwards."""
        self.running.pop(att.task_id, None)
        return self.executor.reap(att)

    def ended(self, att: Attempt, outcome: Outcome) -> Ended:
        """What is known of an ended attempt: its outcome and the files it left."""
        cancelled = att.stop_reason == "cancelled"
        if att.extra.get("never_ran") and not cancelled:
            # A Slurm job stopped (or lost) while it was still pending: nothing ran.
            return Ended(outcome, not_started="its Slurm job ended before it started")
        return Ended(
            outcome,
            stop_reason=att.stop_reason,
            step=att.step,
            question=None if cancelled else _asked(att),
            worker_reason=read_reason(att.paths) if outcome.known and not outcome.ok else None,
        )

    def end(self, task_id: int, *, uses: bool) -> None:
        """Give back what the task's attempt held: cpus, memory, GPUs, rate-limit units."""
        self.held.pop(task_id, None)
        if uses:
            try:
                self.limits.release(task_id)
            except OSError as e:
                log.error("task %d: could not release its rate-limit units: %s", task_id, e)

    def kill_now(self, task_id: int, *, recovering: bool = False) -> None:
        """SIGKILL the task's attempt, with what escaped it, and forget it. In recovery the
        task may have a worker no attempt here knows of (found through worker.lock)."""
        att = self.running.pop(task_id, None)
        if att is None and not recovering:
            return
        if att is None or att.popen is None:
            # Not our child (adopted, or found in recovery).
            found = self.executor.find(TaskPaths(self.home.task_dir(task_id)))
            if found is not None:
                self.executor.kill_found(found)
        if att is not None:
            self.executor.reap(att)

    # reports -----------------------------------------------------------------------------

    def progress(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """(task id, fields) for each running attempt whose reports changed.

        A task whose files cannot be read is left running, the traceback logged once:
        progress is only shown, and failing a healthy task for it would lose real work.
        """
        for att in list(self.running.values()):
            try:
                fault_point("progress", att.task_id)
                changes = self.reports(att)
            except Exception as e:
                if att.task_id not in self._progress_broken:
                    self._progress_broken.add(att.task_id)
                    log.error(
                        "task %d: its progress cannot be copied (the task goes on)",
                        att.task_id,
                        exc_info=e,
                    )
                continue
            if changes:
                yield att.task_id, changes

    def watched(self, states: dict[int, TaskState]) -> Iterator[tuple[int, dict[str, Any]]]:
        """(task id, fields) for each running attempt whose executor tells something new
        (a Slurm job's state, node and reason)."""
        for att in list(self.running.values()):
            watched = self.executor.watch(att)
            state = states.get(att.task_id)
            if watched is None or state is None:
                continue
            if changes := task_changes(state, watched):
                yield att.task_id, changes

    def reports(self, att: Attempt, *, last: bool = False) -> dict[str, Any]:
        """What the worker's progress.json / tokens.json / agent.json say, where it changed
        since the last look: the fields for state.json."""
        changes: dict[str, Any] = {}
        files = (
            (att.paths.progress, "progress"),
            (att.paths.tokens, "tokens"),
            (att.paths.agent_stats, "agent"),
        )
        for path, field_name in files:
            data = self._changed_json(path)
            if isinstance(data, dict):
                changes[field_name] = data
            if last:
                self._seen_mtimes.pop(path, None)
        if last and isinstance(att.extra.get("slurm"), dict):
            changes["slurm"] = att.extra["slurm"]  # the job's last word (reap saw it)
        return changes

    def _changed_json(self, path: Path) -> Any:
        """The JSON in `path` if it changed since we last looked, else None."""
        try:
            mtime = os.stat(path).st_mtime_ns
        except FileNotFoundError:
            return None
        if self._seen_mtimes.get(path) == mtime:
            return None
        self._seen_mtimes[path] = mtime
        try:
            return read_json(path)
        except (OSError, ValueError):
            return None


class LiveQueue:
    """The control handler's host while a supervisor runs (`control.QueueView`): the
    states, the store, and the running attempts to stop or signal."""

    def __init__(self, store: Store, states: dict[int, TaskState], attempts: Attempts) -> None:
        self.store = store
        self.states = states
        self.attempts = attempts

    def stop_attempt(self, task_id: int, reason: str) -> bool:
        """SIGTERM the task's attempt (cancel), if it runs; False if none does."""
        att = self.attempts.get(task_id)
        if att is not None:
            self.attempts.terminate(att, reason, paused=self.states[task_id].paused)
        return att is not None

    def signal_attempt(self, task_id: int, sig: int) -> bool:
        """Signal the task's attempt (pause, resume), if it runs."""
        att = self.attempts.get(task_id)
        return self.attempts.executor.signal(att, sig) if att else False


def _asked(att: Attempt) -> dict[str, Any] | None:
    """The question this attempt asked before it ended, if any."""
    try:
        data = read_json(att.paths.question)
    except ValueError:
        return None
    # The attempt number tells this attempt's question from an older, answered one.
    if not isinstance(data, dict) or data.get("attempt") != att.attempt:
        return None
    return {k: data.get(k) for k in ("key", "text", "choices")}


def _append_log(paths: TaskPaths, text: str) -> None:
    try:
        with open(paths.output, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass  # the reason is in state.json too
