"""The supervisor: one process that owns the queue of a home while it runs.

A conductor over small collaborators (STYLE 3). Each tick is a list of named steps:

    handle_signals -> reap_finished -> enforce_time_limits -> apply_control
    -> intake_spool -> fire_schedules -> sync_progress -> watch_machine -> start_ready
    -> flush

The collaborators answer; only this module changes anything, through the store:
`outcome.settle` says what an ended attempt means (a `Verdict`), `starter` which tasks
start (a `Plan`), `recovery` what a dead supervisor left (adopt, settle, nothing), `intake`
what each spool file is, `schedules` which firings are due (supervisor/firing.py decides,
supervisor/schedules.py makes each firing's task exactly once). `attempts` runs work
through the injected executor and frees what an attempt held in one `end()`; `machine`
probes load through an injected probe; `diskguard` flushes and latches on a full disk;
`session` holds the home (lock, pidfile, handlers) for the supervisor's life; `signals`
only sets flags (STYLE 5): the first SIGTERM/SIGINT stops new starts and asks running
attempts to stop (they go back to the queue as `interrupted`), a second one kills them at
once. `narrate` is an observer: the loop tells it each start, each applied verdict and each
stop, and it prints the lines a person at the terminal reads; it decides nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Callable
from typing import TextIO

from bantzd.clock import Clock, SystemClock, iso
from bantzd.config import Config, load_config
from bantzd.crash import crash_point, fault_point
from bantzd.errors import IoPathError
from bantzd.paths import Home, TaskPaths
from bantzd.queue.estimates import EstimateBook
from bantzd.queue.states import Status, can_transition
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.ratelimit import RateLimits
from bantzd.supervisor import control, intake, nightend, overrides, recovery, session, taskedits
from bantzd.supervisor.attemptend import record_end
from bantzd.supervisor.attempts import Attempts, LiveQueue, NotStarted
from bantzd.supervisor.diskguard import DiskGuard
from bantzd.supervisor.executor import Executor
from bantzd.supervisor.fitting import learn
from bantzd.supervisor.hooks import FinishHooks
from bantzd.supervisor.lock import HomeLock, mark_stopping
from bantzd.supervisor.logsetup import setup_logging
from bantzd.supervisor.machine import MachineWatch
from bantzd.supervisor.mixed import make_executor
from bantzd.supervisor.narrate import Narrator
from bantzd.supervisor.outcome import Ended, Policy, Verdict, closed_log, internal_error, settle
from bantzd.supervisor.probes import LoadHistory, Reading, cores
from bantzd.supervisor.schedules import Maker, Schedules
from bantzd.supervisor.signals import Signals
from bantzd.supervisor.starter import Starter, launch_recorded
from bantzd.supervisor.table import TaskTable
from bantzd.units import format_size
from bantzd.workers.spawn import Attempt, Outcome

log = logging.getLogger("bantzd")

MAX_SLEEP = 1.0
# With nothing running or queued the loop sleeps until an event (a spool file, a control
# request, a signal) or a timed thing is due, at most this long.
IDLE_SLEEP = 60.0
# estimates.json is advice (queue/estimates.py): written with the group commit at most this
# often, and when the supervisor stops.
ESTIMATES_EVERY = 5.0


class Supervisor:
    """Runs the tasks of one home; `run()` returns the process exit code.

    `executor` and `probe` are the two edges to the machine; the tick tests pass fakes.
    """

    def __init__(
        self,
        home: Home,
        config: Config,
        clock: Clock | None = None,
        *,
        once: bool = False,
        until: float | None = None,
        before_release: Callable[[], None] | None = None,
        executor: Executor | None = None,
        probe: Callable[[], Reading] | None = None,
        narrate: TextIO | None = None,
        alerts: TextIO | None = None,
    ) -> None:
        self.home = home
        # config.toml's max_parallel, for `bantzd parallel --reset`; the override applies.
        self.configured_parallel = config.max_parallel
        self.config = config = overrides.effective(home, config)
        self.clock = clock = clock or SystemClock()
        self.once = once
        self.until = until
        # Run at the end of a normal exit while the home lock is still held (the morning
        # report of `--until`): the next supervisor cannot start until it is done.
        self.before_release = before_release
        self.signals = Signals()
        self.table = TaskTable()
        self.store = Store(home, clock)
        self.hooks = FinishHooks(home, config.hooks)
        self.store.on_transition = self._transitioned
        self.store.on_update = self.table.touched
        self.store.on_flushed = self.signals.poke
        self.limits = RateLimits(home, config.limits, clock)
        self.executor = executor or make_executor(config)
        self.table.default_executor = config.executor.kind
        self.attempts = Attempts(home, config, self.executor, self.limits, clock)
        self.machine = MachineWatch(
            LoadHistory(home.load_history), clock, config.probe_interval, probe
        )
        self.starter = Starter(config, cores(), self.limits, clock, until=until)
        self.table.estimates = EstimateBook(home.estimates)
        self.table.has_checkpoint = self._has_checkpoint
        self.intake = intake.SpoolScan(home, config.scan_interval, clock)
        self.disk = DiskGuard(home.root)
        self.schedules = Schedules(home, clock)
        live = LiveQueue(self.store, self.table.states, self.attempts)
        self.handler = control.ControlHandler(
            live,
            home,
            on_global_pause=self._set_paused,
            live=taskedits.Live(
                spec=self.table.set_spec, reorder=self.table.reorder, parallel=self._set_parallel
            ),
            approval_categories=config.approval_categories,
            on_taken=self.table.add,  # a `take` (submit, add) joins the queue like intake's
            schedules=self.schedules,
            unique=self.table.unique,
            max_queued=config.max_queued,
        )
        # The foreground run's account of starts and ends (`narrate`, stdout) and its
        # answers to stop signals (`alerts`, stderr); None for either is silence.
        self.narrator = Narrator(clock, narrate, alerts, has_checkpoint=self._has_checkpoint)
        self.lock: HomeLock | None = None  # held in run(); its info tells `status` we stop
        self.paused = False
        self.stopping = False
        # stop_grace before --until: no new starts, resumable tasks stopped (nightend.py)
        self.wind_down_at = nightend.wind_down_at(until, clock.time(), config)
        self.winding_down = False
        self._killed_all = False
        self.started_at: float | None = None
        self._estimates_saved = float("-inf")

    # life cycle --------------------------------------------------------------------------

    def run(self) -> int:
        with session.holding(self.home, self.signals, self.disk) as self.lock:
            try:
                return self._run()
            finally:
                self.intake.stop_watching()
                self.close()

    def _run(self) -> int:
        self.started_at = self.clock.time()
        self.paused = control.global_paused(self.home)
        self.executor.setup(self.home.root)  # before adopting attempts
        self.recover()
        self.intake.start_watching([self.home.spool, self.home.control], self.signals.write_fd)
        until = iso(self.until) if self.until else None
        self.store.note("supervisor_started", pid=os.getpid(), once=self.once, until=until)
        self.flush()
        log.info("supervisor started (pid %d) on %s", os.getpid(), self.home.root)
        while True:
            self.tick()
            if self.should_exit():
                break
            self.signals.wait(self.next_wake())
        if self.config.notify.urls:
            from bantzd.reports import notify

            notify.drain()  # a failure just before the end is still told
        self.store.note("supervisor_stopped", pid=os.getpid())
        self.save_estimates(now=True)
        self.flush()
        if self.disk.full:
            log.error(
                "stopped with the disk still full; the last changes were not "
                "written, and the next start works them out again"
            )
        if self.before_release is not None:
            self.before_release()  # still under the lock: see __init__
        if self.signals.interrupted:
            return 130
        return 1 if self.disk.full else 0

    def close(self) -> None:
        """Wait for the last writes and free the wake-up pipe (`run` does it at its end)."""
        try:
            self.save_estimates(now=True)
            self.store.flush()
            self.store.drop_premade()
        except IoPathError as e:
            self.disk.failed(e)
        self.hooks.close()
        self.signals.close()

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
            self.fire_schedules,
            self.sync_progress,
            self.watch_machine,
            self.start_ready,
        ):
            needs_disk = (self.intake_spool, self.fire_schedules, self.start_ready)
            if self.disk.full and step in needs_disk:
                continue  # taking in or starting work needs disk; wait for space
            try:
                step()
            except IoPathError as e:
                self.disk.failed(e)
            except Exception:
                log.exception("error in %s", step.__name__)
        self.save_estimates()
        # A hook may read state.json (`bantzd show $BANTZ_TASK_ID`): its task's end is
        # made durable first, in the rare tick where one waits.
        self.flush(wait=self.hooks.waiting)
        self.hooks.launch()

    def save_estimates(self, *, now: bool = False) -> None:
        """Stage estimates.json with this tick's commit when it changed, every
        ESTIMATES_EVERY seconds at most (or `now`)."""
        book, mono = self.table.estimates, self.clock.monotonic()
        if book is None or not book.dirty:
            return
        if not now and mono - self._estimates_saved < ESTIMATES_EVERY:
            return
        data = book.take_json()
        if data is not None:
            self.store.stage_json(book.path, data)
            self._estimates_saved = mono

    def flush(self, *, wait: bool = True) -> None:
        """Make this tick's changes durable (see `DiskGuard.flush` for a full disk)."""
        self.disk.flush(self.store, wait=wait)

    def should_exit(self) -> bool:
        if self.stopping:
            return not self.attempts
        if self.once and not self.attempts:
            # Files held back by a full queue (max_queued) wait for tasks that may never
            # end tonight (held, questions): they do not keep `--once` running.
            spool = intake.pending(self.home) and not self.intake.held_back
            if spool or control.pending(self.home):
                return False
            last = self.starter.last
            return not last.start and not last.transient_waits()
        return False

    def next_wake(self) -> float:
        """Seconds until something timed is due (capped, so slow events are still seen)."""
        now, mono = self.clock.time(), self.clock.monotonic()
        cap = MAX_SLEEP if self.attempts or self.table.queued else IDLE_SLEEP
        due = [cap, *self.intake.due_in(), *self.attempts.due_in(self.table.specs, mono)]
        due.append(self.machine.due_in())
        if self.starter.last.wake_at is not None:
            due.append(self.starter.last.wake_at - now)
        if (firing := self.schedules.due_in(now)) is not None:
            due.append(firing)
        if self.until is not None and not self.stopping:
            due.append(self.until - now)
        if self.wind_down_at is not None and not self.winding_down and not self.stopping:
            due.append(self.wind_down_at - now)
        return max(0.0, min(due))

    # signals and stopping ----------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop starting tasks and ask running attempts to checkpoint and stop."""
        if self.stopping:
            return
        self.stopping = True
        if self.lock is not None:
            mark_stopping(self.lock, self.clock.time())
        log.info(
            "stopping: %d running task(s) get SIGTERM and %gs to stop",
            len(self.attempts),
            self.config.stop_grace,
        )
        for att in self.attempts:
            self._terminate(att, "interrupted")

    def handle_signals(self) -> None:
        grace = self.config.stop_grace
        if self.signals.stop and not self.stopping:
            self.narrator.stopping(len(self.attempts), grace, self.signals.first)
            self.request_stop()
        if self.signals.force_stop and not self._killed_all:
            self._killed_all = True
            log.warning("second stop signal: killing running tasks now")
            self.narrator.killing(len(self.attempts))
            self.attempts.kill_all()
        if not (self.stopping or self.winding_down) and self._wind_down_due():
            self.wind_down()
        if self.until is not None and not self.stopping and self.clock.time() >= self.until:
            log.info("reached --until %s", iso(self.until))
            self.narrator.until_reached(self.until, len(self.attempts), grace)
            self.request_stop()

    def wind_down(self) -> None:
        """stop_grace before --until: the tasks that can resume get SIGTERM now, so they
        have saved and exited by --until, and none starts again (supervisor/nightend.py)."""
        self.winding_down = self.starter.winding_down = True
        early = [att for att in self.attempts if self._resumable(att.task_id)]
        log.info(
            "%gs before --until: %d task(s) that can resume get SIGTERM and none starts",
            self.config.stop_grace,
            len(early),
        )
        for att in early:
            self._terminate(att, "interrupted")

    def _wind_down_due(self) -> bool:
        return self.wind_down_at is not None and self.clock.time() >= self.wind_down_at

    def _resumable(self, task_id: int) -> bool:
        spec = self.table.specs.get(task_id)
        state = self.table.states.get(task_id)
        return spec is not None and state is not None and self.table.fit(state, spec)[1]

    def _terminate(self, att: Attempt, reason: str) -> None:
        self.attempts.terminate(att, reason, paused=self.table.states[att.task_id].paused)

    # attempts ----------------------------------------------------------------------------

    def reap_finished(self) -> None:
        for att in self.attempts:
            try:
                if self.attempts.exited(att):
                    outcome = self.attempts.reap(att)
                    crash_point("exit.after_reap")
                    fault_point("reap", att.task_id)
                    self.finish_attempt(att, outcome)
            except Exception as e:
                # Left as it was, the task would stay `running` and hit this every tick.
                self._task_error(att.task_id, "reap", e)
        self.executor.housekeeping()

    def enforce_time_limits(self) -> None:
        mono = self.clock.monotonic()
        for att in self.attempts:
            try:
                fault_point("limits", att.task_id)
                self.attempts.enforce_limits(att, self.table.specs.get(att.task_id), mono)
            except Exception as e:
                # Failed, not left running: a timeout nobody checks lets a task run forever.
                self._task_error(att.task_id, "time limits", e)

    def finish_attempt(self, att: Attempt, outcome: Outcome) -> None:
        """Decide what an ended attempt means for its task and apply it; then give back
        what it held, unless a next step of a `steps:` task was launched (it keeps it all).
        When deciding raises, `_task_error` records `failed` and gives it back."""
        task_id = att.task_id
        try:
            state = self.table.states[task_id]
            fault_point("finish", task_id)
            # A last look at its reports before the attempt is forgotten.
            if changes := self.attempts.reports(att, last=True):
                self.store.update(state, **changes)
            ended = self.attempts.ended(att, outcome)
            self._settle(state, self.table.specs.get(task_id), ended, att.started_mono)
        except Exception as e:
            self._task_error(task_id, "finishing its attempt", e)
            return
        if task_id not in self.attempts:
            self._end(task_id)

    def _settle(
        self, state: TaskState, spec: TaskSpec | None, ended: Ended, started_mono: float | None
    ) -> None:
        policy = Policy(
            max_interruptions=self.config.max_interruptions,
            max_retry_delay=self.config.max_retry_delay,
            stopping=self.stopping or self.winding_down,
        )
        now = self.clock.time()
        verdict = settle(ended, state, spec, policy, now)
        night_over = self.winding_down or (self.until is not None and now >= self.until)
        record_end(self.home, state, spec, ended, verdict, now, night_over=night_over)
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
            if verdict.status is Status.DONE and spec is not None:
                learn(self.table.estimates, state, spec)
        if verdict.message:
            log.info("%s", verdict.message)
        self.narrator.ended(state, verdict, stopping=self.stopping)
        if verdict.notify:
            self._notify(verdict.notify, state)
        if verdict.launch_next and spec is not None:
            self._launch(state, spec, started_mono=started_mono)

    def _launch(self, state: TaskState, spec: TaskSpec, *, started_mono: float | None) -> None:
        """Start the next step of a `steps:` task (its attempt goes on)."""
        result = launch_recorded(self.store, self.attempts, state, spec, started_mono)
        if result is not None:
            self._not_started(state, result)

    def _not_started(self, state: TaskState, result: NotStarted) -> None:
        self._settle(state, self.table.specs.get(state.id), result.ended, None)
        if result.disk_error is not None:
            output = TaskPaths(self.home.task_dir(state.id)).output
            self.disk.failed(IoPathError(output, "starting", result.disk_error))

    def _end(self, task_id: int) -> None:
        spec = self.table.specs.get(task_id)
        self.attempts.end(task_id, uses=bool(spec is not None and spec.uses))

    def _task_error(
        self, task_id: int, step: str, error: Exception, *, recovering: bool = False
    ) -> None:
        """An unexpected exception while handling one task: that task, not the loop, pays.

        The traceback goes to the log; a running attempt is killed (with what escaped it)
        and what it held is given back; the task becomes `failed` with `internal error:
        ...`. Failed rather than left as it was, because a task left `running` or `queued`
        would hit the same exception every tick (or, in recovery, at every start). A task
        whose status cannot become failed (held, waiting for an answer, finished) is left
        as it is: its outcome, if any, is already recorded. This never raises.
        """
        log.error("task %d: internal error in %s", task_id, step, exc_info=error)
        why = f"internal error: {type(error).__name__}: {error}"
        try:
            state = self.table.states.get(task_id)
            # A worker found in recovery is killed only for a task that is then failed.
            self.attempts.kill_now(task_id, recovering=recovering and state is not None)
            if state is None:
                log.error("task %d: left as it is on disk (its state could not be loaded)", task_id)
            elif not can_transition(state.status, Status.FAILED):
                log.error("task %d: left %s after the internal error", task_id, state.status)
            else:
                self._apply(state, self.table.specs.get(task_id), internal_error(why))
        except Exception:
            log.exception("task %d: could not be marked failed after an internal error", task_id)
        finally:
            try:
                self._end(task_id)
            except Exception:
                log.exception("task %d: could not release its resources", task_id)

    def _has_checkpoint(self, state: TaskState) -> bool:
        """Whether an interrupted task has something to resume from (for the narrator)."""
        checkpoint = TaskPaths(self.home.task_dir(state.id)).checkpoint
        return bool(state.steps_done) or checkpoint.exists()

    def _notify(self, event: str, state: TaskState) -> None:
        if self.config.notify.urls:  # else not even imported: apprise is slow to load
            from bantzd.reports import notify

            notify.tell(self.config, event, state, self.home.task_dir(state.id))

    # control, intake, progress -----------------------------------------------------------

    def _transitioned(self, state: TaskState, src: Status) -> None:
        """The store's hook after every status change: the table's queue index, and the
        on_finish hook of a task that ended."""
        self.table.track(state, src)
        self.hooks.noticed(state)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused

    def _set_parallel(self, value: int | None) -> None:
        """`bantzd parallel N` (None: back to config.toml's value), for the next start."""
        value = value or self.configured_parallel
        self.config = dataclasses.replace(self.config, max_parallel=value)
        self.starter.config = self.attempts.config = self.config
        log.info("max_parallel is now %d", value)

    def apply_control(self) -> None:
        if self.intake.control_due():
            control.apply_pending(self.home, self.handler)

    def intake_spool(self) -> None:
        intake.take_in(
            self.intake,
            self.store,
            self.table,
            self.config.approval_categories,
            self.config.max_queued,
            schedules=self.schedules,
        )

    def fire_schedules(self) -> None:
        """Make the task of every schedule firing that is due (each exactly once)."""
        categories = self.config.approval_categories
        self.schedules.fire_due(Maker(self.store, self.table.states, categories, self.table.add))

    def sync_progress(self) -> None:
        """Copy what workers wrote (progress.json, tokens.json) into state.json."""
        for task_id, changes in self.attempts.progress():
            self.store.update(self.table.states[task_id], **changes)
        for task_id, changes in self.attempts.watched(self.table.states):
            self.store.update(self.table.states[task_id], **changes)  # a Slurm job's news

    # starting ----------------------------------------------------------------------------

    def start_ready(self) -> None:
        if self.stopping or not self.table.queued:
            self.starter.idle()
            return
        done = self.starter.start_ready(
            self.store, self.table, self.attempts, self.machine, paused=self.paused
        )
        for state in done.started:
            self.narrator.started(state)
        for state in done.failed:
            self.narrator.not_startable(state)
            self._notify("failed", state)
        for task_id, error in done.errors.items():
            self._task_error(task_id, "start", error)
        for state, not_started in done.not_started:
            self._not_started(state, not_started)
            self._end(state.id)  # its attempt is over: what the start took goes back

    # machine -----------------------------------------------------------------------------

    def watch_machine(self) -> None:
        """Every probe_interval: a fresh reading, and tasks past their memory stopped."""
        if not self.machine.due():
            return
        self.machine.probe()
        try:
            over = self.attempts.over_memory()
        except Exception as e:
            # Failed, like a timeout nobody can check: the limit is what keeps the
            # machine alive for the other tasks.
            for att in self.attempts:
                if att.term_at is None:
                    self._task_error(att.task_id, "memory limits", e)
            return
        for att, used, limit in over:
            log.info(
                "task %d: memory limit (%s > %s)",
                att.task_id,
                format_size(used),
                format_size(limit),
            )
            self._terminate(att, "memory limit")

    # recovery ----------------------------------------------------------------------------

    def recover(self) -> None:
        """Load every task; adopt live attempts, settle those that ended unwatched.

        One task whose recovery raises is failed (`_task_error`), and the others, and
        every later start, go on: an exception here used to make every `bantzd run` exit 1.
        """
        found = recovery.recover_all(self.home, self.store, self.table, self.attempts, self.clock)
        for task_id, error in found.errors.items():
            self._task_error(task_id, "recovery", error, recovering=True)
        for att, outcome in found.ended:
            self.finish_attempt(att, outcome)
        if self.config.limits:
            # Units held by tasks that ended while no supervisor was there to release them.
            self.limits.keep_only(self.attempts.running)
        self.flush()
        try:
            self.schedules.load(self.table.states, self.store)  # after the tasks: it finds its own
        except IoPathError:
            raise
        except Exception:
            log.exception("error loading the schedules; none fires until the next start")


def run_supervisor(
    home: Home,
    *,
    once: bool = False,
    until: float | None = None,
    clock: Clock | None = None,
    verbose: bool = False,
    before_release: Callable[[], None] | None = None,
    narrate: TextIO | None = None,
    alerts: TextIO | None = None,
    counts: Counter[str] | None = None,
) -> int:
    """Load the config and run a supervisor in the foreground; returns the exit code.

    `counts`, when given, gets the number of tasks in each status at the end.

    `before_release` runs after a normal end while the home lock is still held (the
    morning report), so no next supervisor can start before it is written. `narrate` and
    `alerts` are the streams of the narrator (supervisor/narrate.py); None keeps it quiet.
    """
    config = load_config(home.config)
    setup_logging(home, verbose=verbose)
    sup = Supervisor(
        home,
        config,
        clock,
        once=once,
        until=until,
        before_release=before_release,
        narrate=narrate,
        alerts=alerts,
    )
    try:
        return sup.run()
    finally:
        if counts is not None:  # what the queue holds now, without reading it back
            counts.update(str(s.status) for s in sup.table.states.values())
