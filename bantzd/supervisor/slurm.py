"""The Slurm executor: one `sbatch` job per attempt, watched with one `squeue` per poll.

`SlurmExecutor` implements the executor port (supervisor/executor.py) over the Slurm
command line (`workers.slurmcli`); the supervisor gets it beside the local executor, each
attempt routed to the one that started it (supervisor/mixed.py). The loop learns nothing
new: an attempt's end is still `exited` then `reap`, a stop still SIGTERM then, after
`stop_grace`, SIGKILL.

How a job maps onto the port (SPEC section 13):

* `start` writes the attempt's private `job.json` (argv, cwd, the task's own environment)
  into the task folder, submits a one-line batch script that runs
  `python -m bantzd.workers.slurmjob TASK_DIR` on the node, and records `JOBID ATTEMPT
  STEP` in `slurm.job` (durable) so a restarted supervisor finds the job even when Slurm
  does not answer. A job submitted just before a crash, whose id no file holds yet, is
  found by its name `bantzd-<id>-<attempt>` and its comment (this home).
* `exited` / `reap` read the last poll (one `squeue --json` for all jobs, at most every
  `poll_interval`); the outcome is the exit record the wrapper wrote on the node, else what
  Slurm says (its exit code, TIMEOUT, a job that never ran).
* `signal`: SIGTERM is `scancel --signal=TERM --full` (every process of the job), SIGKILL
  and any signal to a job still pending is `scancel`; a cancel Slurm did not take (the
  controller is down) is sent again when it answers.
* A pending job is not timed: bantzd's `timeout` counts from the job's start on its node.

While the controller does not answer, nothing is decided: attempts stay as they are, with
the reason `slurm: unreachable (...)`, and queued Slurm tasks wait with it (`room`).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import shlex
import signal as signals
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bantzd.clock import Clock, SystemClock, iso
from bantzd.config import SlurmConfig
from bantzd.crash import crash_point
from bantzd.paths import TaskPaths
from bantzd.queue.atomic import dumps, write_bytes_atomic
from bantzd.supervisor.executor import Found, Launch, Room
from bantzd.workers import slurmcli, slurmjob
from bantzd.workers.slurmcli import Job, SlurmError, SlurmRefused, SlurmUnreachable
from bantzd.workers.spawn import (
    Attempt,
    LockInfo,
    Outcome,
    SpawnError,
    check_runnable,
    read_exit_record,
    read_lock_info,
)

log = logging.getLogger("bantzd")

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
JOB_RECORD = "slurm.job"
UNREACHABLE = "slurm: unreachable"
UNREACHABLE_SLOWER = 3  # poll_interval times this between looks while Slurm is away


def job_record(paths: TaskPaths) -> Path:
    return paths.dir / JOB_RECORD


def batch_script(paths: TaskPaths, python: str = sys.executable) -> str:
    """The job's script: this very bantzd, from this interpreter (the nodes share it)."""
    pythonpath = shlex.quote(_PACKAGE_ROOT)
    return (
        "#!/bin/sh\n"
        "# bantzd: one attempt of a task (python -m bantzd.workers.slurmjob)\n"
        f'PYTHONPATH={pythonpath}"${{PYTHONPATH:+:$PYTHONPATH}}"; export PYTHONPATH\n'
        f"exec {shlex.quote(python)} -m bantzd.workers.slurmjob {shlex.quote(str(paths.dir))}\n"
    )


def own_env(env: Mapping[str, str], base: Mapping[str, str]) -> dict[str, str]:
    """What the attempt's environment adds to the supervisor's (the task's `env:`, BANTZ_*):
    the node gets the rest from Slurm (`--export=ALL`), with its own CUDA_VISIBLE_DEVICES."""
    return {k: v for k, v in env.items() if base.get(k) != v}


def outcome_from_slurm(job: Job) -> Outcome:
    """What Slurm's own record says of an ended job, when no exit record does."""
    status = job.exit_status
    if job.state in ("COMPLETED", "FAILED") and status is not None:
        if status & 0x7F:
            return Outcome(signal=status & 0x7F)
        return Outcome(exit_code=(status >> 8) & 0xFF)
    if job.state in ("TIMEOUT", "DEADLINE"):
        return Outcome(signal=signals.SIGTERM)
    if job.state == "OUT_OF_MEMORY":
        return Outcome(signal=signals.SIGKILL)
    if job.state == "CANCELLED" and job.start_time is not None:
        return Outcome(signal=signals.SIGKILL)
    return Outcome(known=False)  # NODE_FAIL, PREEMPTED, BOOT_FAIL, a job that never ran


@dataclass
class Tracked:
    """A job this supervisor watches (one per task)."""

    job_id: int
    attempt: int
    step_index: int
    since: float  # monotonic: a job missing from a poll older than this is not gone
    ran: bool = False  # seen running (or its worker.lock says it started)
    last: Job | None = None  # as the last poll showed it
    cancel: str | None = None  # a scancel Slurm did not take yet: "KILL" or a signal name


class _Poller:
    """Runs `squeue` in a thread, one call at a time; the loop picks up the answer."""

    def __init__(self, fn: Callable[[], list[Job]]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._busy: threading.Thread | None = None
        self._answer: tuple[float, list[Job] | None, SlurmError | None] | None = None

    def ask(self, started: float, *, wait: bool = False) -> None:
        with self._lock:
            busy = self._busy
        if busy is None:
            busy = threading.Thread(target=self._call, args=(started,), daemon=True)
            with self._lock:
                self._busy = busy
            busy.start()
        if wait:
            busy.join()

    def _call(self, started: float) -> None:
        try:
            answer: tuple[float, list[Job] | None, SlurmError | None] = (started, self._fn(), None)
        except SlurmError as e:
            answer = (started, None, e)
        except Exception as e:  # a bug must not kill the thread silently and stop the polls
            log.exception("squeue poll failed")
            answer = (started, None, SlurmError(f"{type(e).__name__}: {e}"))
        with self._lock:
            self._answer = answer
            self._busy = None

    def answer(self) -> tuple[float, list[Job] | None, SlurmError | None] | None:
        with self._lock:
            answer, self._answer = self._answer, None
        return answer


class SlurmExecutor:
    """The port over Slurm's command line (see the module docstring)."""

    def __init__(
        self,
        settings: SlurmConfig,
        stop_grace: float,
        clock: Clock | None = None,
        *,
        run: Callable[..., str] = slurmcli.run,
        env: Mapping[str, str] | None = None,
        background: bool = True,
    ) -> None:
        self.settings = settings
        self.stop_grace = stop_grace
        self.clock = clock or SystemClock()
        self._run = run
        self.env = dict(env) if env is not None else slurmcli.command_env()
        self.home = ""
        self.jobs: dict[int, Tracked] = {}  # task id -> its job
        self.listing: dict[int, Job] = {}  # job id -> the job, this home's, last poll
        self.polled: float | None = None  # monotonic start of the last good poll
        self._tried: float | None = None  # monotonic start of the last poll tried
        self.problem: str | None = None
        self.polls = 0  # squeue calls made (the benchmark reads it)
        self.background = background
        self._poller = _Poller(self._squeue)

    # polling -----------------------------------------------------------------------------

    def poll(self, *, force: bool = False) -> None:
        """One `squeue --json` for all of this home's jobs, at most every poll_interval.

        In the background: while the controller does not answer, each command waits ~10 s
        for it, and the loop (local tasks, control requests) must not wait with it. The
        answer is applied at the next call; `force` asks and waits (setup, recovery).
        """
        self._apply_answer()
        now = self.clock.monotonic()
        every = self.settings.poll_interval
        if self.problem is not None:
            every *= UNREACHABLE_SLOWER
        fresh = self._tried is not None and now - self._tried < every
        if fresh and not force:
            return
        self._tried = now
        self.polls += 1
        if self.background and not force:
            self._poller.ask(now)
        else:
            self._poller.ask(now, wait=True)
            self._apply_answer()

    def _apply_answer(self) -> None:
        answer = self._poller.answer()
        if answer is None:
            return
        started, jobs, error = answer
        if error is not None:
            if self.problem is None:
                log.warning("Slurm does not answer: %s", error)
            self.problem = f"{UNREACHABLE} ({error})"
            return
        if self.problem is not None:
            log.info("Slurm answers again")
        self.problem = None
        self.polled = started
        self.listing = {j.job_id: j for j in slurmcli.ours(jobs or [], self.home)}
        self._name_unknown_ids()
        self._resend_cancels()

    def _squeue(self) -> list[Job]:
        return slurmcli.parse_squeue_json(self._run(["squeue", "--json"], env=self.env))

    def _name_unknown_ids(self) -> None:
        """A job adopted as "being submitted" (id 0) gets its id from its name."""
        for task_id, t in self.jobs.items():
            if t.job_id == 0:
                for job in self.listing.values():
                    if job.task == (task_id, t.attempt):
                        t.job_id = job.job_id

    def _poll_once(self) -> None:
        """The first look, waited for: recovery needs to know what Slurm has."""
        if self._tried is None:
            self.poll(force=True)

    def _resend_cancels(self) -> None:
        for t in self.jobs.values():
            if t.cancel is not None:
                job = self.listing.get(t.job_id)
                if job is None or not job.active:
                    t.cancel = None
                else:
                    self._scancel(t, None if t.cancel == "KILL" else t.cancel)

    # the port ----------------------------------------------------------------------------

    def setup(self, home_root: Path) -> None:
        """This home's jobs are told apart by it (the job comment). No squeue here: a home
        that never used Slurm never waits for one (a task that did has `slurm.job`)."""
        self.home = str(Path(home_root).resolve())

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        check_runnable(launch.argv, launch.cwd, launch.env)
        if self.problem is not None:
            # Not the task's fault: back to the queue, no attempt used.
            raise OSError(errno.EAGAIN, self.problem)
        paths = launch.paths
        for stale in (paths.exit_record, paths.reason):
            stale.unlink(missing_ok=True)
        job = {
            "task_id": launch.task_id,
            "attempt": launch.attempt,
            "step_index": launch.step_index,
            "argv": launch.argv,
            "cwd": launch.cwd,
            "env": own_env(launch.env, os.environ),
            "nice": launch.nice,
            "umask": launch.umask,
            "marker": launch.marker,
        }
        write_bytes_atomic(slurmjob.job_file(paths), dumps(job))
        # "Being submitted" (job id 0) before sbatch: a supervisor that dies in sbatch
        # leaves a restarted one a task that may have a job, to look up by name.
        write_bytes_atomic(job_record(paths), f"0 {launch.attempt} {launch.step_index}\n".encode())
        time_limit = None
        if launch.timeout is not None:
            time_limit = launch.timeout + self.stop_grace
        spec = slurmcli.JobSpec(
            name=slurmcli.job_name(launch.task_id, launch.attempt),
            comment=slurmcli.job_comment(launch.step_index, self.home),
            output=str(paths.output),
            cwd=launch.cwd,
            script=batch_script(paths),
            cpus=launch.cpus,
            memory=launch.memory,
            gpus=launch.gpus,
            time_limit=time_limit,
            partition=self.settings.partition,
            extra=self.settings.sbatch_args,
        )
        try:
            out = self._run(slurmcli.sbatch_argv(spec), env=self.env, stdin=spec.script)
            job_id = slurmcli.parse_sbatch(out)
        except SlurmUnreachable as e:
            # It may have reached the controller all the same: the job record ("0") stays,
            # and a job of this name found later is cancelled (`find`) or adopted.
            slurmjob.job_file(paths).unlink(missing_ok=True)
            self.problem = f"{UNREACHABLE} ({e})"
            raise OSError(errno.EAGAIN, self.problem) from None
        except SlurmError as e:
            slurmjob.job_file(paths).unlink(missing_ok=True)
            job_record(paths).unlink(missing_ok=True)
            raise SpawnError(f"Slurm refused the job: {e}") from None
        crash_point("slurm.after_sbatch")
        record = f"{job_id} {launch.attempt} {launch.step_index}\n".encode()
        write_bytes_atomic(job_record(paths), record)
        self.jobs[launch.task_id] = Tracked(
            job_id, launch.attempt, launch.step_index, since=self.clock.monotonic()
        )
        log.info("task %d: submitted as Slurm job %d", launch.task_id, job_id)
        return Attempt(
            task_id=launch.task_id,
            attempt=launch.attempt,
            pgid=job_id,
            paths=paths,
            started_mono=math.inf,  # timed from the job's start on its node
            step=launch.step,
            step_index=launch.step_index,
            extra={"job_id": job_id},
        )

    def exited(self, att: Attempt) -> bool:
        self.poll()
        t = self.jobs.get(att.task_id)
        if t is None:
            return True
        if self.problem is not None:
            # Slurm does not answer: only the exit record (written last on the node) and
            # a free worker.lock say the attempt is over.
            return self._record_says_over(att)
        job = self.listing.get(t.job_id)
        if job is None:
            # Not listed: gone only if the poll began after the job was submitted.
            return self.polled is not None and self.polled > t.since
        t.last = job
        self._time_from_start(att, t, job)
        return not job.active

    def _record_says_over(self, att: Attempt) -> bool:
        from bantzd.workers.spawn import worker_alive

        record = read_exit_record(att.paths, att.attempt, att.step_index)
        return record is not None and not worker_alive(att.paths)

    def _time_from_start(self, att: Attempt, t: Tracked, job: Job) -> None:
        """Time the attempt from the job's start on its node (a pending job is not timed)."""
        if job.pending or job.start_time is None:
            return
        if not t.ran or math.isinf(att.started_mono):
            t.ran = True
            ran_for = max(0.0, self.clock.time() - job.start_time)
            att.started_mono = self.clock.monotonic() - ran_for

    def reap(self, att: Attempt) -> Outcome:
        t = self.jobs.pop(att.task_id, None)
        job_id = t.job_id if t is not None else att.pgid
        job = self.listing.get(job_id)
        if job is None or job.active:
            # Ended for good while it may still run (or Slurm lost it): cancel it.
            self._scancel(t or Tracked(job_id, att.attempt, att.step_index, 0.0), None)
        slurmjob.job_file(att.paths).unlink(missing_ok=True)  # never read: a pending job
        seen = job or (t.last if t is not None else None)
        att.extra["slurm"] = {
            "job_id": job_id,
            "state": job.state if job is not None else "ENDED",
            "node": seen.node if seen is not None else "",
            "reason": _words(job.reason) if job is not None else "",
        }
        outcome = read_exit_record(att.paths, att.attempt, att.step_index)
        if outcome is not None:
            return outcome
        if job is not None and job.state in ("TIMEOUT", "DEADLINE") and att.stop_reason is None:
            att.stop_reason = "timeout"  # Slurm's --time, the backstop, ended it
        # The node's spawn writes worker.lock first: without this attempt's (and step's)
        # line nothing of it ran, even if Slurm started the job (a stop that came while
        # the job's entry process was still starting, a node that failed at once).
        lock = read_lock_info(att.paths)
        if lock is None or (lock.attempt, lock.step_index) != (att.attempt, att.step_index):
            att.extra["never_ran"] = True
        return outcome_from_slurm(job) if job is not None else Outcome(known=False)

    def signal(self, att: Attempt, sig: int) -> bool:
        t = self.jobs.get(att.task_id)
        if t is None:
            return False
        job = self.listing.get(t.job_id)
        if job is not None and not job.active:
            return False
        if sig == signals.SIGKILL:
            return self._scancel(t, None)
        name = signals.Signals(sig).name.removeprefix("SIG")
        if not t.ran and self._still_pending(t):
            # Nothing runs to receive it (and `scancel --signal` on a pending job retries
            # for ~95 s): a stop cancels it, a pause or resume has nothing to do.
            return self._scancel(t, None) if sig == signals.SIGTERM else False
        return self._scancel(t, name)

    def _still_pending(self, t: Tracked) -> bool:
        """Whether a job the polls never saw running is pending now (asked at once)."""
        try:
            state = slurmcli.job_state(t.job_id, self.env, runner=self._run)
        except SlurmUnreachable:
            return True  # the cancel is queued and sent again when Slurm answers
        if state is None:
            job = self.listing.get(t.job_id)
            return job is None or job.pending
        return state in slurmcli.PENDING_STATES

    def _scancel(self, t: Tracked, signal_name: str | None) -> bool:
        try:
            self._run(slurmcli.scancel_argv(t.job_id, signal_name), env=self.env)
        except SlurmUnreachable as e:
            t.cancel = signal_name or "KILL"  # sent again when Slurm answers
            self.problem = f"{UNREACHABLE} ({e})"
            return True
        except SlurmRefused as e:
            log.info("scancel of job %d: %s", t.job_id, e)
            return False
        t.cancel = None
        return True

    def find(self, paths: TaskPaths) -> Found | None:
        """The task's newest job: by `slurm.job`, or by name in Slurm's list."""
        task_id = task_id_of(paths)
        best: tuple[int, int, int] | None = None  # (attempt, job id, step index)
        recorded = _read_job_record(paths)
        if recorded is not None:
            best = recorded
        listed = None
        if task_id is not None:
            self._poll_once()
            mine = [j for j in self.listing.values() if j.task and j.task[0] == task_id]
            if mine:
                listed = max(mine, key=lambda j: (j.task[1], j.job_id))  # type: ignore[index]
                attempt = listed.task[1]  # type: ignore[index]
                if best is None or (attempt, listed.job_id) > best[:2]:
                    best = (attempt, listed.job_id, listed.step_index)
                for other in mine:  # never two jobs for one task
                    if other is not listed and other.active:
                        log.warning("task %d: cancelling its older job %d", task_id, other.job_id)
                        self._scancel(Tracked(other.job_id, 0, -1, 0.0), None)
        if best is None:
            return None
        attempt, job_id, step_index = best
        job = self.listing.get(job_id)
        if self.problem is not None or self.polled is None:
            alive = True  # unknown: watch it until Slurm answers
        else:
            alive = job is not None and job.active
        return Found(LockInfo(job_id, attempt, step_index), alive, job_id=job_id)

    def adopt(self, task_id: int, found: Found) -> None:
        """Watch a job found in recovery (it is this task's attempt now)."""
        assert found.job_id is not None
        job = self.listing.get(found.job_id)
        self.jobs[task_id] = Tracked(
            found.job_id,
            found.info.attempt,
            found.info.step_index,
            since=self.clock.monotonic() if self.polled is None else -math.inf,
            ran=job is not None and job.start_time is not None,
        )

    def kill_found(self, found: Found) -> None:
        if found.job_id is not None:
            self._scancel(Tracked(found.job_id, found.info.attempt, -1, 0.0), None)

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        return {}  # the node's business (--mem)

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        return None

    def housekeeping(self) -> None:
        if any(t.cancel is not None for t in self.jobs.values()):
            self.poll()

    def watch(self, att: Attempt) -> dict[str, object] | None:
        t = self.jobs.get(att.task_id)
        if t is None:
            return None
        job = self.listing.get(t.job_id)
        info: dict[str, Any] = {"job_id": t.job_id, "state": "SUBMITTED", "node": "", "reason": ""}
        started = None
        if job is not None:
            info.update(state=job.state, node=job.node, reason=_words(job.reason))
            if not job.pending and job.start_time is not None:
                started = iso(job.start_time)
        if self.problem is not None:
            reason: str | None = self.problem
        elif job is not None and job.pending:
            why = _words(job.reason)
            reason = f"slurm: pending ({why})" if why else "slurm: pending"
        elif job is None or (not t.ran and job.start_time is None):
            reason = "slurm: submitted"
        else:
            reason = None
        node = info["node"] if started else None
        return {"slurm": info, "reason": reason, "node": node, "started": started}

    def room(self) -> Room:
        if self.problem is not None:
            self.poll()  # at most every poll_interval: is it back?
        limit = self.settings.max_submitted
        return Room(max(0, limit - len(self.jobs)), limit, self.problem, used=len(self.jobs))


def _words(reason: str) -> str:
    """Slurm's reason, "" for its "None"."""
    return "" if reason in ("", "None", "(null)") else reason


def task_id_of(paths: TaskPaths) -> int | None:
    name = paths.dir.name
    return int(name) if name.isdigit() else None


def _read_job_record(paths: TaskPaths) -> tuple[int, int, int] | None:
    try:
        text = job_record(paths).read_text()
    except (OSError, UnicodeDecodeError):
        return None
    m = re.fullmatch(r"(\d+) (\d+) (-?\d+)\n?", text)
    return (int(m.group(2)), int(m.group(1)), int(m.group(3))) if m else None


def offline_signal(paths: TaskPaths, attempt: int, sig: int) -> bool | None:
    """Signal a task's Slurm job when no supervisor runs (`bantzd cancel`, `pause` done by
    the CLI itself): through `scancel`, since the pid in worker.lock is the node's. None:
    the task's latest attempt is no Slurm job."""
    recorded = _read_job_record(paths)
    if recorded is None or recorded[0] != attempt or recorded[1] == 0:
        return None
    env = slurmcli.command_env()
    try:
        state = slurmcli.job_state(recorded[1], env)
        if state is None or state not in slurmcli.ACTIVE_STATES:
            return False
        if sig == signals.SIGKILL or (sig == signals.SIGTERM and state in slurmcli.PENDING_STATES):
            argv = slurmcli.scancel_argv(recorded[1])  # a pending job: nothing to ask
        elif state in slurmcli.PENDING_STATES:
            return False
        else:
            argv = slurmcli.scancel_argv(recorded[1], signals.Signals(sig).name.removeprefix("SIG"))
        slurmcli.run(argv, env=env)
    except SlurmError as e:
        log.warning("could not signal Slurm job %d: %s", recorded[1], e)
        return False
    return True
