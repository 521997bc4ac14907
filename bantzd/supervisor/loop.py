"""The supervisor: one process that owns the queue of a home while it runs.

The loop is a short list of named steps (STYLE 3); each tick:

    handle_signals -> reap_finished -> enforce_time_limits -> apply_control
    -> intake_spool -> sync_progress -> start_ready -> flush

Decisions come from pure functions (scheduler.decide, outcome.settle); this module does
the I/O. Signal handlers only set flags and poke a wake-up pipe (STYLE 5): the first
SIGTERM/SIGINT stops new starts and asks running attempts to stop (they go back to the queue
as `interrupted`); a second one kills them at once.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import shutil
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from bantzd.clock import Clock, SystemClock, iso
from bantzd.config import Config, load_config
from bantzd.crash import crash_point, fault_point
from bantzd.errors import IoPathError
from bantzd.paths import Home, TaskPaths, user_umask
from bantzd.queue.atomic import read_json
from bantzd.queue.states import Status, can_transition
from bantzd.queue.store import Store, read_state, task_ids
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskFileError, TaskSpec, parse_task
from bantzd.ratelimit import LimitsView, RateLimits
from bantzd.supervisor import control, intake, memwatch
from bantzd.supervisor.lock import HomeLock, acquire
from bantzd.supervisor.logsetup import setup_logging
from bantzd.supervisor.outcome import (
    Ended,
    Policy,
    Verdict,
    closed_log,
    internal_error,
    next_step,
    settle,
)
from bantzd.supervisor.probes import (
    LoadHistory,
    Reading,
    cores,
    default_gpu_probe,
    read_machine,
)
from bantzd.supervisor.resources import Admission, Held
from bantzd.supervisor.scheduler import (
    FREE_SLOT,
    Candidate,
    Decision,
    TaskBrief,
    decide,
)
from bantzd.supervisor.timing import local_now, resolve_when
from bantzd.units import format_size
from bantzd.workers import escape
from bantzd.workers.spawn import (
    Attempt,
    Outcome,
    SpawnError,
    command_argv,
    exited,
    kill_group,
    marker_line,
    read_lock_info,
    read_reason,
    reap,
    spawn,
    worker_alive,
)

log = logging.getLogger("bantzd")

MAX_SLEEP = 1.0
# Up to this many queued tasks every tick looks at all of them; with more, a tick stops
# once the free slots are filled, and a full look (reasons, failed dependencies) happens
# every FULL_PASS_EVERY seconds.
FULL_PASS_QUEUE = 200
FULL_PASS_EVERY = 1.0
# Started tasks stay in the cached queue order until this many have piled up.
ORDER_SLACK = 64
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
# Free space under which a supervisor that hit ENOSPC does not trust the disk again.
DISK_MARGIN = 1 << 20


class Supervisor:
    """Runs the tasks of one home; `run()` returns the process exit code."""

    def __init__(
        self,
        home: Home,
        config: Config,
        clock: Clock | None = None,
        *,
        once: bool = False,
        until: float | None = None,
        before_release: Callable[[], None] | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.clock = clock or SystemClock()
        self.once = once
        self.until = until
        # Run at the end of a normal exit while the home lock is still held (the morning
        # report of `--until`): the next supervisor cannot start until it is done.
        self.before_release = before_release
        # Tasks whose progress could not be copied: logged once, not every tick.
        self._progress_broken: set[int] = set()
        self.store = Store(home, self.clock)
        self.states: dict[int, TaskState] = {}
        # The queued ones, kept by every transition: a tick looks at these, not at every
        # task the home ever had (a long queue must not make each start O(all tasks)).
        self.queued: dict[int, TaskState] = {}
        self.store.on_transition = self._track_queued
        # `queued` by (priority, id), rebuilt when a task joins the queue; tasks that left
        # it are skipped, and swept out once ORDER_SLACK of them pile up.
        self._order: list[TaskState] | None = None
        self._order_stale = 0
        self._last_full_pass = float("-inf")
        self.specs: dict[int, TaskSpec] = {}
        self.attempts: dict[int, Attempt] = {}
        self.handler = control.ControlHandler(self, home, on_global_pause=self._set_paused)
        self.paused = False
        self.stopping = False
        self.stop_reason = "interrupted"
        self._signals = 0
        self._killed_all = False
        self._last_scan = float("-inf")
        self._unsettled = False
        self._last_decision = Decision()
        self._seen_mtimes: dict[Path, int] = {}
        self._candidates: dict[int, tuple[tuple[Any, ...], Candidate]] = {}
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.store.on_flushed = self._poke
        self._watcher: intake.SpoolWatcher | None = None
        self._lock: HomeLock | None = None
        self.started_at: float | None = None
        self.disk_full = False
        # Resources: what running tasks hold, the last machine reading, the rate limits.
        self.held: dict[int, Held] = {}
        self.reading: Reading | None = None
        self.throttled: str | None = None
        self.cores = cores()
        self.gpu_probe = default_gpu_probe()
        self.history = LoadHistory(home.load_history)
        self.limits = RateLimits(home, config.limits, self.clock)
        self._last_probe = float("-inf")

    # life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        self._lock = acquire(self.home, wait=2.0)
        old_handlers: dict[int, Any] = {}
        try:
            self.home.ensure()
            control.recover_own_files(self.home)
            intake.check_spool_permissions(self.home.spool)
            try:
                self.home.pidfile.write_text(f"{os.getpid()}\n")
            except OSError as e:
                self._io_failed(IoPathError(self.home.pidfile, "writing", e))
            old_handlers = self._install_signals()
            self.started_at = self.clock.time()
            self.paused = control.global_paused(self.home)
            escape.setup(self.home.root)  # cgroups or subreaper, before adopting attempts
            self.recover()
            self._watcher = intake.SpoolWatcher([self.home.spool, self.home.control], self._wake_w)
            self._watcher.start()
            self.store.note(
                "supervisor_started",
                pid=os.getpid(),
                once=self.once,
                until=iso(self.until) if self.until else None,
            )
            self.flush()
            log.info("supervisor started (pid %d) on %s", os.getpid(), self.home.root)
            while True:
                self.tick()
                if self.should_exit():
                    break
                self.wait(self.next_wake())
            if self.config.notify.urls:
                from bantzd.reports import notify

                notify.drain()  # a failure just before the end is still told
            self.store.note("supervisor_stopped", pid=os.getpid())
            self.flush()
            code = 0
            if self.disk_full:
                log.error(
                    "stopped with the disk still full; the last changes were not "
                    "written, and the next start works them out again"
                )
                code = 1
            if self.before_release is not None:
                self.before_release()  # still under the lock: see __init__
            return code
        finally:
            if self._watcher:
                self._watcher.stop()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(-1)
            try:
                self.home.pidfile.unlink()
            except FileNotFoundError:
                pass
            self._lock.release()

    def tick(self) -> None:
        """One pass of the loop; exceptions in a step are logged and the loop goes on.

        Within a step, each task is handled on its own: one task's exception fails that
        task (`_task_error`), and the step goes on with the others.
        """
        for step in (
            self.handle_signals,
            self.reap_finished,
            self.enforce_time_limits,
            self.apply_control,
            self.intake_spool,
            self.sync_progress,
            self.watch_machine,
            self.start_ready,
        ):
            if self.disk_full and step in (self.intake_spool, self.start_ready):
                continue  # taking in or starting work needs disk; wait for space
            try:
                step()
            except IoPathError as e:
                self._io_failed(e)
            except Exception:
                log.exception("error in %s", step.__name__)
        self.flush(wait=False)

    def flush(self, *, wait: bool = True) -> None:
        """Make this tick's changes durable; on ENOSPC keep them staged and retry later.

        The tick flushes with wait=False: the writes go on in the store's writer thread
        while the loop reaps and starts the next tasks. With a full disk it waits, so that
        the first write that works is what tells us space is back.
        """
        wait = wait or self.disk_full
        had_changes = not self.store.empty
        try:
            if wait:
                self.store.flush()
            else:
                self.store.flush_async()
        except IoPathError as e:
            self._io_failed(e)
            return
        if self.disk_full and (had_changes or _free_bytes(self.home.root) >= DISK_MARGIN):
            self.disk_full = False
            log.warning("disk space is back: taking in and starting tasks again")
            self.store.note("disk_space_back")

    def _io_failed(self, e: IoPathError) -> None:
        if e.cause.errno in (errno.ENOSPC, errno.EDQUOT):
            if not self.disk_full:
                log.error(
                    "disk full (%s): tasks stay where they are; no new starts until space returns",
                    e,
                )
            self.disk_full = True
        else:
            log.error("%s", e)

    def should_exit(self) -> bool:
        if self.stopping:
            return not self.attempts
        if self.once and not self.attempts:
            if intake_pending(self.home) or control.pending(self.home):
                return False
            return not self._last_decision.start and not self._last_decision.transient_waits()
        return False

    def next_wake(self) -> float:
        """Seconds until something timed is due (capped, so slow events are still seen)."""
        now, mono = self.clock.time(), self.clock.monotonic()
        due = [MAX_SLEEP, self.config.scan_interval - (mono - self._last_scan)]
        if self._unsettled:
            due.append(intake.SETTLE / 2)
        if self._last_decision.wake_at is not None:
            due.append(self._last_decision.wake_at - now)
        if self.until is not None and not self.stopping:
            due.append(self.until - now)
        for att in self.attempts.values():
            if att.term_at is not None:
                due.append(att.term_at + self.config.stop_grace - mono)
            timeout = self.specs[att.task_id].timeout if att.task_id in self.specs else None
            if timeout and att.term_at is None:
                due.append(att.started_mono + timeout - mono)
        return max(0.0, min(due))

    def _poke(self) -> None:
        """Wake the loop (from another thread: the store's writer)."""
        try:
            os.write(self._wake_w, b"f")
        except OSError:
            pass

    def wait(self, timeout: float) -> None:
        """Sleep until a signal, a spool/control event, or `timeout`."""
        if timeout > 0:
            try:
                select.select([self._wake_r], [], [], timeout)
            except InterruptedError:
                pass
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass

    # signals -----------------------------------------------------------------------------

    def _install_signals(self) -> dict[int, Any]:
        def on_stop(signum: int, frame: object) -> None:
            self._signals += 1

        def on_child(signum: int, frame: object) -> None:
            pass  # the wake-up fd does the work; a Python handler is needed for it to fire

        old = {}
        for sig, fn in (
            (signal.SIGTERM, on_stop),
            (signal.SIGINT, on_stop),
            (signal.SIGHUP, on_stop),
            (signal.SIGCHLD, on_child),
        ):
            old[sig] = signal.signal(sig, fn)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        return old

    def request_stop(self, reason: str = "interrupted") -> None:
        """Stop starting tasks and ask running attempts to checkpoint and stop."""
        if self.stopping:
            return
        self.stopping = True
        self.stop_reason = reason
        log.info(
            "stopping: %d running task(s) get SIGTERM and %gs to stop",
            len(self.attempts),
            self.config.stop_grace,
        )
        for att in self.attempts.values():
            self.terminate(att, "interrupted")

    def handle_signals(self) -> None:
        if self._signals >= 1 and not self.stopping:
            self.request_stop("interrupted")
        if self._signals >= 2 and not self._killed_all:
            self._killed_all = True
            log.warning("second stop signal: killing running tasks now")
            for att in self.attempts.values():
                kill_group(att.pgid, signal.SIGKILL)
                att.killed = True
        if self.until is not None and not self.stopping and self.clock.time() >= self.until:
            log.info("reached --until %s", iso(self.until))
            self.request_stop("interrupted")

    # attempts ----------------------------------------------------------------------------

    def terminate(self, att: Attempt, reason: str) -> None:
        """SIGTERM the attempt's group; `enforce_time_limits` sends SIGKILL after the grace."""
        if att.stop_reason is None or reason == "cancelled":
            att.stop_reason = reason
        if att.term_at is None:
            att.term_at = self.clock.monotonic()
            if self.states[att.task_id].paused:
                kill_group(att.pgid, signal.SIGCONT)
            kill_group(att.pgid, signal.SIGTERM)

    def stop_attempt(self, task_id: int, reason: str) -> bool:
        att = self.attempts.get(task_id)
        if att is None:
            return False
        self.terminate(att, reason)
        return True

    def signal_attempt(self, task_id: int, sig: int) -> bool:
        att = self.attempts.get(task_id)
        return kill_group(att.pgid, sig) if att else False

    def reap_finished(self) -> None:
        for att in list(self.attempts.values()):
            try:
                if exited(att):
                    outcome = reap(att)
                    crash_point("exit.after_reap")
                    fault_point("reap", att.task_id)
                    self.finish_attempt(att, outcome)
            except Exception as e:
                # Left as it was, the task would stay `running` and hit this every tick.
                self._task_error(att.task_id, "reap", e)
        escape.reap_orphans()  # escaped processes that ended as our (subreaper's) children

    def enforce_time_limits(self) -> None:
        mono = self.clock.monotonic()
        for att in list(self.attempts.values()):
            try:
                self._enforce_time_limit(att, mono)
            except Exception as e:
                # Failed, not left running: a timeout nobody checks lets a task run forever.
                self._task_error(att.task_id, "time limits", e)

    def _enforce_time_limit(self, att: Attempt, mono: float) -> None:
        fault_point("limits", att.task_id)
        spec = self.specs.get(att.task_id)
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
            kill_group(att.pgid, signal.SIGKILL)
            att.killed = True

    def finish_attempt(self, att: Attempt, outcome: Outcome) -> None:
        """Decide what an ended attempt means for its task (the parent owns the outcome).

        What the attempt held (cpus, memory, GPUs, rate-limit units) is given back once
        its outcome is recorded, on every way out: after `_settle`, or by `_task_error`
        when deciding raised (which records `failed` first). A `steps:` task whose next
        step was launched keeps it all.
        """
        task_id = att.task_id
        self.attempts.pop(task_id, None)
        try:
            self._settle(att, outcome)
        except Exception as e:
            self._task_error(task_id, "finishing its attempt", e)
            return
        if task_id not in self.attempts:
            self._release(task_id)

    def _settle(self, att: Attempt, outcome: Outcome) -> None:
        """Gather what is known of the ended attempt (files it left) and apply `settle`."""
        state = self.states[att.task_id]
        spec = self.specs.get(att.task_id)
        fault_point("finish", att.task_id)
        self._sync_reports(att, last=True)  # a last look before the attempt is forgotten
        cancelled = att.stop_reason == "cancelled"
        ended = Ended(
            outcome,
            stop_reason=att.stop_reason,
            step=att.step,
            question=None if cancelled else self._asked(att),
            worker_reason=read_reason(att.paths) if outcome.known and not outcome.ok else None,
        )
        self._end(state, spec, ended, started_mono=att.started_mono)

    def _end(
        self,
        state: TaskState,
        spec: TaskSpec | None,
        ended: Ended,
        *,
        started_mono: float | None = None,
    ) -> None:
        """Settle an ended (or never started) attempt and apply the verdict."""
        policy = Policy(
            max_interruptions=self.config.max_interruptions,
            max_retry_delay=self.config.max_retry_delay,
            stopping=self.stopping,
        )
        verdict = settle(ended, state, spec, policy, self.clock.time())
        self._apply(state, spec, verdict, started_mono=started_mono)

    def _apply(
        self,
        state: TaskState,
        spec: TaskSpec | None,
        verdict: Verdict,
        *,
        started_mono: float | None = None,
    ) -> None:
        """The one place a verdict reaches the store, the log, the person, and the next step."""
        changes = dict(verdict.fields)
        if verdict.log_outcome is not None:
            changes["attempt_log"] = closed_log(
                state.attempt_log, verdict.log_outcome, self.clock.time()
            )
        if verdict.status is None:
            self.store.update(state, **changes)
        else:
            self.store.transition(state, verdict.status, verdict.reason, **changes)
        if verdict.message:
            log.info("%s", verdict.message)
        if verdict.notify:
            self._notify(verdict.notify, state)
        if verdict.launch_next and spec is not None:
            self.launch(state, spec, started_mono=started_mono)

    def _release(self, task_id: int) -> None:
        """Give back what an ended attempt held: rate-limit units, cpus, memory, GPUs."""
        self.held.pop(task_id, None)
        spec = self.specs.get(task_id)
        if spec is not None and spec.uses:
            try:
                self.limits.release(task_id)
            except OSError as e:
                log.error("task %d: could not release its rate-limit units: %s", task_id, e)

    def _task_error(
        self, task_id: int, step: str, error: Exception, *, recovering: bool = False
    ) -> None:
        """An unexpected exception while handling one task: that task, not the loop, pays.

        The traceback goes to the log; a running attempt is killed (its group) and what it
        held is given back; the task becomes `failed` with `internal error: ...`. Failed
        rather than left as it was, because a task left `running` or `queued` would hit
        the same exception every tick (or, in recovery, at every start). A task whose status
        cannot become failed (held, waiting for an answer, already finished) is left as it
        is: its outcome, if any, is already recorded. This never raises.
        """
        log.error("task %d: internal error in %s", task_id, step, exc_info=error)
        why = f"internal error: {type(error).__name__}: {error}"
        try:
            state = self.states.get(task_id)
            # A worker found in recovery is killed only for a task that is then failed.
            self._kill_attempt_now(task_id, recovering=recovering and state is not None)
            if state is None:
                log.error("task %d: left as it is on disk (its state could not be loaded)", task_id)
            elif not can_transition(state.status, Status.FAILED):
                log.error("task %d: left %s after the internal error", task_id, state.status)
            else:
                verdict = internal_error(why, self.clock.time())
                self._apply(state, self.specs.get(task_id), verdict)
        except Exception:
            log.exception("task %d: could not be marked failed after an internal error", task_id)
        finally:
            try:
                self._release(task_id)
            except Exception:
                log.exception("task %d: could not release its resources", task_id)

    def _kill_attempt_now(self, task_id: int, *, recovering: bool) -> None:
        """SIGKILL the task's attempt, if one runs, with what escaped its group, and forget it."""
        att = self.attempts.pop(task_id, None)
        if att is not None and att.popen is not None and att.popen.returncode is not None:
            return  # reaped already: its pgid may be someone else's now
        if att is None and not recovering:
            return
        if att is None or att.popen is None:
            # Not our child (adopted, or found in recovery): worker.lock held means its
            # group is still there, so the pgid is not a stranger's.
            paths = TaskPaths(self.home.task_dir(task_id))
            info = read_lock_info(paths)
            if info is not None and worker_alive(paths):
                kill_group(info.pid, signal.SIGKILL)
        if att is not None:
            # The same end as any attempt's: SIGKILL to the group (our child), then what
            # left it (its cgroup, its marker), and the wrapper reaped and forgotten.
            reap(att)

    def _asked(self, att: Attempt) -> dict[str, Any] | None:
        """The question this attempt asked before it ended, if any."""
        try:
            data = read_json(att.paths.question)
        except ValueError:
            return None
        # The attempt number tells this attempt's question from an older, answered one.
        if not isinstance(data, dict) or data.get("attempt") != att.attempt:
            return None
        return {k: data.get(k) for k in ("key", "text", "choices")}

    def _notify(self, event: str, state: TaskState) -> None:
        """Tell the person (apprise, [notify]) in the background; never fails the loop."""
        if not self.config.notify.urls or event not in self.config.notify.on:
            return
        try:
            from bantzd.reports import notify

            send = notify.question_asked if event == "question" else notify.task_failed
            send(self.config, state, self.home.task_dir(state.id))
        except Exception:
            log.exception("task %d: could not send the %s notification", state.id, event)

    def launch(
        self, state: TaskState, spec: TaskSpec, *, started_mono: float | None = None
    ) -> None:
        """Spawn the attempt (or its next step) for a task already recorded as running."""
        paths = TaskPaths(self.home.task_dir(state.id))
        step_name = None
        step_index = -1
        if spec.kind == "steps":
            step = next_step(spec, state.steps_done)
            step_name = step.name
            step_index = spec.steps.index(step)
            argv = command_argv(step.run)
            what = f"step {step.name}: {_show(step.run)}"
        elif spec.kind == "python":
            argv = [sys.executable, "-m", "bantzd.workers.pyrunner", spec.python or ""]
            what = f"python {spec.python}"
        elif spec.kind == "run":
            argv = command_argv(spec.run or "")
            what = _show(spec.run or "")
        elif spec.kind == "llm":
            argv = [sys.executable, "-m", "bantzd.workers.llm"]
            llm = spec.llm or {}
            what = "llm: " + _show(
                str(llm.get("prompt") or f"prompt_file {llm.get('prompt_file')}")
            )
        else:
            self._end(state, spec, Ended(spawn_error=f"{spec.kind} tasks are not supported yet"))
            return
        env = dict(os.environ)
        env.update(spec.env)
        env.update(
            BANTZ_TASK_ID=str(state.id),
            BANTZ_TASK_DIR=str(paths.dir),
            BANTZ_CHECKPOINT=str(paths.checkpoint),
            BANTZ_ATTEMPT=str(state.attempts),
            BANTZ_HOME=str(self.home.root),
        )
        if step_name:
            env["BANTZ_STEP"] = step_name
        if state.gpus:
            # PCI bus order, so the indices mean what nvidia-smi shows.
            env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in state.gpus)
        if spec.kind in ("python", "llm"):
            # These run in bantzd's own interpreter: make sure it finds this very bantzd,
            # installed or not, whatever the task's cwd.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p
            )
        cwd = spec.expanded_cwd()
        try:
            popen = spawn(
                paths,
                argv,
                attempt=state.attempts,
                cwd=cwd,
                env=env,
                nice=self.config.nice,
                marker=marker_line(state.attempts, iso(self.clock.time()) or "", what),
                step_index=step_index,
                umask=user_umask(),  # the task's files get the user's modes, not bantzd's 077
            )
        except SpawnError as e:
            self._append_log(paths, f"bantzd: {e}\n")
            self._end(state, spec, Ended(spawn_error=str(e)))
            return
        except OSError as e:
            # Not the task's fault (disk full, fd limit): back to the queue, no attempt used.
            log.error("task %d: could not start: %s", state.id, e)
            self._end(state, spec, Ended(not_started=e.strerror or str(e)))
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                self._io_failed(IoPathError(paths.output, "starting", e))
            return
        # A later step of a steps: task keeps the attempt's start: `timeout` is per attempt.
        started = started_mono if started_mono is not None else self.clock.monotonic()
        self.attempts[state.id] = Attempt(
            task_id=state.id,
            attempt=state.attempts,
            pgid=popen.pid,
            paths=paths,
            started_mono=started,
            popen=popen,
            step=step_name,
            step_index=step_index,
        )
        crash_point("start.after_spawn")
        self.store.update(state, pid=popen.pid, step=step_name)

    @staticmethod
    def _append_log(paths: TaskPaths, text: str) -> None:
        try:
            with open(paths.output, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError:
            pass  # the reason is in state.json too

    # control, intake, progress -----------------------------------------------------------

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused

    def apply_control(self) -> None:
        control.apply_pending(self.home, self.handler)

    def intake_spool(self) -> None:
        ready = self._watcher.take_ready() if self._watcher else set()
        mono = self.clock.monotonic()
        due = mono - self._last_scan >= self.config.scan_interval or self._unsettled
        if not ready and not due:
            return
        self._last_scan = mono
        self._unsettled = False
        now = self.clock.time()
        try:
            entries = list(os.scandir(self.home.spool))
        except FileNotFoundError:
            self.home.ensure()
            return
        found = []
        for entry in entries:
            if entry.name == "rejected" or not intake.candidate_name(entry.name):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            found.append((mtime, entry.name))
        for _, name in sorted(found):
            path = self.home.spool / name
            try:
                self._take_in(path, now, settled_required=str(path) not in ready)
            except IoPathError:
                raise  # the disk (full?), not this file: it stays in the spool for later
            except Exception as e:
                self._intake_error(path, e)

    def _take_in(self, path: Path, now: float, *, settled_required: bool) -> None:
        fault_point("intake", path.name)
        result = intake.examine(path, now, settled_required=settled_required)
        if result is None:
            if path.exists():
                self._unsettled = True
            return
        if isinstance(result, intake.Rejected):
            if intake.reject(self.home, result):
                self.store.note("rejected", file=path.name, problem=result.problem)
            return
        self.accept(result)

    def _intake_error(self, path: Path, error: Exception) -> None:
        """One spool file raised while being taken in: reject it (never retry it forever).

        Left in the spool it would raise again at every scan and keep `run --once` from
        ever exiting. If it got as far as its task folder, the task exists and the next
        start's recovery loads it as queued; this supervisor leaves it alone.
        """
        log.error("internal error taking in %s", path.name, exc_info=error)
        why = f"internal error: {type(error).__name__}: {error}"
        try:
            if os.path.lexists(path) and intake.reject(self.home, intake.Rejected(path, why)):
                self.store.note("rejected", file=path.name, problem=why)
        except Exception:
            log.exception("could not reject %s after an internal error", path.name)

    def accept(self, item: intake.Accepted) -> None:
        spec = item.spec
        held = spec.approval or (spec.category in self.config.approval_categories)
        accepted = local_now(self.clock.time())
        state = TaskState(
            not_before_at=resolve_when(spec.not_before, accepted).timestamp()
            if spec.not_before is not None
            else None,
            deadline_at=resolve_when(spec.deadline, accepted).timestamp()
            if spec.deadline is not None
            else None,
            id=self.store.allocate_id(),
            name=spec.name,
            status=Status.HELD if held else Status.QUEUED,
            reason="waiting for approval" if held else None,
            priority=spec.priority,
            kind=spec.kind,
            source=item.path.name,
        )
        self.store.create(state, item.path)
        self._add_state(state)
        self.specs[state.id] = spec
        log.info("accepted %s as task %d (%s)", item.path.name, state.id, state.name)

    def sync_progress(self) -> None:
        """Copy what workers wrote (progress.json, tokens.json) into state.json.

        A task whose files cannot be copied is left running, the traceback logged once:
        progress is only shown, and failing a healthy task for it would lose real work.
        """
        for att in list(self.attempts.values()):
            try:
                fault_point("progress", att.task_id)
                self._sync_reports(att)
            except Exception as e:
                if att.task_id not in self._progress_broken:
                    self._progress_broken.add(att.task_id)
                    log.error(
                        "task %d: its progress cannot be copied (the task goes on)",
                        att.task_id,
                        exc_info=e,
                    )

    def _sync_reports(self, att: Attempt, *, last: bool = False) -> None:
        for path, field_name in ((att.paths.progress, "progress"), (att.paths.tokens, "tokens")):
            data = self._changed_json(path)
            if isinstance(data, dict):
                self.store.update(self.states[att.task_id], **{field_name: data})
            if last:
                self._seen_mtimes.pop(path, None)

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

    # starting ----------------------------------------------------------------------------

    def _add_state(self, state: TaskState) -> None:
        self.states[state.id] = state
        self._track_queued(state, state.status)

    def _track_queued(self, state: TaskState, src: Status) -> None:
        if state.status is Status.QUEUED:
            if state.id not in self.queued:
                self.queued[state.id] = state
                self._order = None
        elif self.queued.pop(state.id, None) is not None:
            self._order_stale += 1

    def _queue_order(self, rebuild: bool = False) -> list[TaskState]:
        """The queued tasks, highest priority first, then oldest (possibly with a few that
        have left the queue since: callers check the status)."""
        if self._order is None or rebuild:
            self._order = sorted(self.queued.values(), key=lambda s: (-s.priority, s.id))
            self._order_stale = 0
        elif self._order_stale > ORDER_SLACK:
            self._order = [s for s in self._order if s.status is Status.QUEUED]
            self._order_stale = 0
        return self._order

    def _candidate(self, s: TaskState) -> Candidate:
        """The scheduler's view of a queued task, cached while the fields it uses hold."""
        key = (s.priority, s.retry_at, s.paused, s.attempts)
        cached = self._candidates.get(s.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        spec = self.specs[s.id]
        cand = Candidate(
            id=s.id,
            name=s.name,
            priority=s.priority,
            after=spec.after,
            retry_at=s.retry_at,
            paused=s.paused,
            resources=spec.resources,
            uses=spec.uses,
            windows=spec.window,
            window_text=spec.window_text,
            not_before_at=s.not_before_at,
            deadline_at=s.deadline_at,
            attempts=s.attempts,
        )
        self._candidates[s.id] = (key, cand)
        return cand

    def _candidates_of(self, order: list[TaskState]) -> Iterator[Candidate]:
        """The scheduler's view of each queued task; one whose view cannot be built fails
        alone (left queued it would stop every start, every tick)."""
        for s in order:
            if s.status is not Status.QUEUED or s.id not in self.specs:
                continue
            try:
                fault_point("candidate", s.id)
                cand = self._candidate(s)
            except Exception as e:
                self._task_error(s.id, "start", e)
                continue
            yield cand

    def start_ready(self) -> None:
        if self.stopping:
            self._last_decision = Decision()
            return
        if not self.queued:
            self._last_decision = Decision()
            return
        now, mono = self.clock.time(), self.clock.monotonic()
        full = len(self.queued) <= FULL_PASS_QUEUE or mono - self._last_full_pass >= FULL_PASS_EVERY
        if full:
            self._last_full_pass = mono
        candidates = self._candidates_of(self._queue_order(rebuild=full))
        briefs = (TaskBrief(s.id, s.name, s.status) for s in self.states.values())
        reading = self.reading or self.probe_machine()
        admission = Admission(
            reading,
            self.config.throttle,
            self.held.values(),
            cores=self.cores,
            now=now,
            limits=_LazyLimits(self.limits, now),
        )
        decision = decide(
            candidates,
            briefs,
            running=len(self.attempts),
            max_parallel=self.config.max_parallel,
            now=now,
            paused=self.paused,
            admit=admission,
            ordered=True,
            stop_when_full=not full,
        )
        self._last_decision = decision
        self._note_throttle(admission.throttled)
        for task_id, why in decision.fail.items():
            try:
                state = self.states[task_id]
                self.store.transition(state, Status.FAILED, why, error=why, finished=iso(now))
                self._notify("failed", state)
            except Exception as e:
                self._task_error(task_id, "start", e)
        for task_id in decision.start:
            try:
                self._start_one(task_id, now, admission.gpu_assignment.get(task_id), decision)
            except Exception as e:
                # Failed: left queued, it would be picked, and raise, again every tick.
                self._task_error(task_id, "start", e)
        for task_id, why in decision.waiting.items():
            state = self.states[task_id]
            # Waiting for its turn is what `queued` means; not worth a write per task.
            reason = None if why == FREE_SLOT else why
            if state.reason != reason:
                self.store.update(state, reason=reason)

    def _start_one(
        self, task_id: int, now: float, gpus: list[int] | None, decision: Decision
    ) -> None:
        spec = self.specs[task_id]
        if spec.uses:
            # The snapshot said yes; a worker may have taken the room since.
            why = self.limits.take(spec.uses, task_id, now)
            if why:
                decision.waiting[task_id] = why
                return
        self._start(self.states[task_id], spec, now, gpus)

    def _start(self, state: TaskState, spec: TaskSpec, now: float, gpus: list[int] | None) -> None:
        attempt = state.attempts + 1
        log_entry = {"attempt": attempt, "start": iso(now), "end": None, "outcome": None}
        self.store.transition(
            state,
            Status.RUNNING,
            None,
            attempts=attempt,
            started=iso(now),
            finished=None,
            retry_at=None,
            gpus=list(gpus or []),
            attempt_log=[*state.attempt_log, log_entry][-50:],
        )
        res = spec.resources
        self.held[state.id] = Held(
            state.id, cpus=res.cpus, memory=res.memory, gpus=tuple(gpus or ()), started=now
        )
        fault_point("start", state.id)
        # Spawned before "running" is durable (it is, at the end of this tick): a crash in
        # between leaves a live worker that worker.lock names, and recovery adopts it.
        self.launch(state, spec)
        if state.id not in self.attempts:
            # It did not start (missing cwd, unknown command, no fds): its attempt is over
            # and recorded, so what it took above goes back, or the next task waits forever.
            self._release(state.id)

    def _note_throttle(self, throttled: str | None) -> None:
        """Journal the start and end of each throttling episode (the report sums them)."""
        if throttled == self.throttled:
            return
        if self.throttled is not None:
            self.store.note("throttle_end", reason=self.throttled)
        if throttled is not None:
            self.store.note("throttle_start", reason=throttled)
            log.info("starts %s", throttled)
        self.throttled = throttled

    # machine -----------------------------------------------------------------------------

    def probe_machine(self) -> Reading:
        """Read load, memory and GPUs, and record the sample for the report."""
        self.reading = read_machine(self.gpu_probe)
        self._last_probe = self.clock.monotonic()
        self.history.append(self.reading, self.throttled, self.clock.time())
        return self.reading

    def watch_machine(self) -> None:
        """Every probe_interval: a fresh reading, and tasks past their memory stopped."""
        if self.clock.monotonic() - self._last_probe < self.config.probe_interval:
            return
        self.probe_machine()
        limited = {
            task_id: att
            for task_id, att in self.attempts.items()
            if att.term_at is None and self.held.get(task_id, Held(task_id)).memory
        }
        if not limited:
            return
        rss = memwatch.tree_rss_many([att.pgid for att in limited.values()])
        for task_id, att in limited.items():
            try:
                self._check_memory(att, rss.get(att.pgid, 0))
            except Exception as e:
                # Failed, like a timeout nobody can check: the limit is what keeps the
                # machine alive for the other tasks.
                self._task_error(task_id, "memory limits", e)

    def _check_memory(self, att: Attempt, used: int) -> None:
        held = self.held[att.task_id]
        self.held[att.task_id] = replace(held, rss=used)
        if held.memory is not None and used > held.memory:
            real = memwatch.over_limit(att.pgid, held.memory)
            if real is not None:
                log.info(
                    "task %d: memory limit (%s > %s)",
                    att.task_id,
                    format_size(real),
                    format_size(held.memory),
                )
                self.terminate(att, "memory limit")

    # recovery ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Load every task; finish half-done intakes; adopt or requeue running attempts.

        One task whose recovery raises is failed (`_task_error`), and the others, and
        every later start, go on: an exception here used to make every `bantzd run` exit 1.
        """
        for task_id in task_ids(self.home):
            try:
                self._recover_task(task_id)
            except Exception as e:
                self._task_error(task_id, "recovery", e, recovering=True)
        if self.config.limits:
            # Units held by tasks that ended while no supervisor was there to release them.
            self.limits.keep_only(self.attempts)
        self.flush()

    def _recover_task(self, task_id: int) -> None:
        tdir = self.home.task_dir(task_id)
        if not (tdir / "task.yaml").exists():
            # The intake did not reach its commit point (the rename of the spool file).
            shutil.rmtree(tdir, ignore_errors=True)
            return
        state = read_state(tdir) or self._rebuild_state(task_id)
        self._add_state(state)
        if state.finished_state:
            return
        fault_point("recover", task_id)
        try:
            self.specs[task_id] = parse_task(
                (tdir / "task.yaml").read_bytes(), default_name=state.name
            )
        except (TaskFileError, OSError) as e:
            why = f"task.yaml can no longer be read: {e}"
            if state.status is not Status.RUNNING:
                self.store.transition(state, Status.FAILED, why, error=why)
            return
        self._recover_attempt(state)

    def _rebuild_state(self, task_id: int) -> TaskState:
        tdir = self.home.task_dir(task_id)
        name = str(task_id)
        try:
            spec = parse_task((tdir / "task.yaml").read_bytes(), default_name=f"task-{task_id}")
            name, priority, kind = spec.name, spec.priority, spec.kind
        except (TaskFileError, OSError):
            priority, kind = 0, "run"
        created = datetime.fromtimestamp((tdir / "task.yaml").stat().st_mtime).astimezone()
        state = TaskState(
            id=task_id,
            name=name,
            priority=priority,
            kind=kind,
            created=created.isoformat(timespec="seconds"),
            reason="state rebuilt after a crash",
        )
        self.store.update(state)
        log.warning("task %d: state.json was missing or unreadable; rebuilt as queued", task_id)
        return state

    def _recover_attempt(self, state: TaskState) -> None:
        """Adopt a live attempt, or settle one that ended while no supervisor watched.

        worker.lock, not state.json, says whether an attempt started: a crash between the
        spawn and the state write leaves a task recorded as queued whose worker runs.
        """
        paths = TaskPaths(self.home.task_dir(state.id))
        info = read_lock_info(paths)
        spec = self.specs[state.id]
        if info is None or (state.status is Status.RUNNING and info.attempt < state.attempts):
            if state.status is Status.RUNNING:  # "running" written, never spawned
                self._recovered(state, None, Outcome(known=False))
            return
        started_unrecorded = info.attempt > state.attempts
        if state.status is not Status.RUNNING and not started_unrecorded:
            return  # the lock is from an attempt whose end is already recorded
        alive = worker_alive(paths)
        step = spec.steps[info.step_index] if 0 <= info.step_index < len(spec.steps) else None
        if state.status is not Status.RUNNING:
            self.store.transition(
                state,
                Status.RUNNING,
                None,
                attempts=info.attempt,
                started=iso(self.clock.time()),
                finished=None,
                retry_at=None,
            )
        if step is not None:
            # Steps run in order: every step before the one that ran had exited 0.
            before = [s.name for s in spec.steps[: info.step_index]]
            self.store.update(state, steps_done=before, step=step.name)
        state.attempts = info.attempt
        att = Attempt(
            task_id=state.id,
            attempt=info.attempt,
            pgid=info.pid,
            paths=paths,
            started_mono=self._mono_of(state.started),
            step=step and step.name,
            step_index=info.step_index,
        )
        if alive:
            self.attempts[state.id] = att
            self.store.update(state, pid=info.pid)
            res = spec.resources
            self.held[state.id] = Held(
                state.id,
                cpus=res.cpus,
                memory=res.memory,
                gpus=tuple(state.gpus),
                started=_parse_iso(state.started),
            )
            log.info("task %d: adopted its running attempt (pid %d)", state.id, info.pid)
            return
        self._recovered(state, att, reap(att))

    def _recovered(self, state: TaskState, att: Attempt | None, outcome: Outcome) -> None:
        att = att or Attempt(
            task_id=state.id,
            attempt=state.attempts,
            pgid=0,
            paths=TaskPaths(self.home.task_dir(state.id)),
            started_mono=self.clock.monotonic(),
            step=state.step,
        )
        self.attempts[state.id] = att
        log.info(
            "task %d: its attempt ended while no supervisor ran (%s)", state.id, outcome.describe()
        )
        self.finish_attempt(att, outcome)

    def _mono_of(self, iso_text: str | None) -> float:
        """The monotonic time matching a recorded wall time (for timeouts of adoptees)."""
        started = _parse_iso(iso_text) or self.clock.time()
        return self.clock.monotonic() - max(0.0, self.clock.time() - started)


def _free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def intake_pending(home: Home) -> bool:
    """Whether the spool holds files that look like tasks not yet taken in."""
    try:
        return any(intake.candidate_name(n) for n in os.listdir(home.spool))
    except FileNotFoundError:
        return False


def _parse_iso(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


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


def _show(run: str | tuple[str, ...] | list[str]) -> str:
    text = run if isinstance(run, str) else " ".join(run)
    text = " ".join(text.split())  # the marker is one line, whatever the script looks like
    return text if len(text) <= 120 else text[:117] + "..."


def run_supervisor(
    home: Home,
    *,
    once: bool = False,
    until: float | None = None,
    clock: Clock | None = None,
    verbose: bool = False,
    before_release: Callable[[], None] | None = None,
) -> int:
    """Load the config and run a supervisor in the foreground; returns the exit code.

    `before_release` runs after a normal end while the home lock is still held (the
    morning report), so no next supervisor can start before it is written.
    """
    config = load_config(home.config)
    setup_logging(home, verbose=verbose)
    sup = Supervisor(home, config, clock, once=once, until=until, before_release=before_release)
    code = sup.run()
    return code


def summary_line(home: Home) -> str:
    """One line for cron's mail: what the queue holds now."""
    from collections import Counter

    from bantzd.queue.store import scan_states

    counts = Counter(str(s.status) for s in scan_states(home))
    parts = [
        f"{counts.get(k, 0)} {k}"
        for k in ("done", "failed", "waiting_human", "held", "queued", "running")
    ]
    return "bantzd: " + ", ".join(parts)
