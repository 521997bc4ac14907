"""Control commands (cancel, retry, pause, ...) from the CLI, applied by the lock holder.

Only one process writes task states: whoever holds the home lock. A CLI command therefore
never edits state.json itself; it drops a request file into control/ and

* when a supervisor runs, the supervisor applies it on its next tick (it watches the
  folder, so within milliseconds) and writes a reply the command waits for;
* when none runs, the command takes the home lock itself for a moment and applies every
  pending request with the same `ControlHandler`, so both paths behave identically.

Requests are files, so one the supervisor has not reached yet survives a crash of either
side and is applied by the next lock holder.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from bantzd.crash import crash_point
from bantzd.errors import EXIT_FAILURE, EXIT_NO_TASK, BantzError, IoPathError
from bantzd.paths import DIR_MODE, Home, exposure_warnings
from bantzd.queue.atomic import read_json, remove_leftover_temps, write_json_atomic
from bantzd.queue.pauseflag import read_pause_flag
from bantzd.queue.states import FINISHED, Status
from bantzd.queue.store import Store, task_ids
from bantzd.queue.task import TaskState
from bantzd.supervisor import taskedits

if TYPE_CHECKING:
    from bantzd.queue.taskfile import TaskSpec
    from bantzd.queue.unique import UniqueKeys
    from bantzd.supervisor.schedules import Schedules

log = logging.getLogger("bantzd")

ACTIONS = frozenset(
    {"cancel", "retry", "pause", "resume", "approve", "reject", "answer", "clean", "take"}
) | {"schedule"}  # pause, resume, remove or fire a schedule (supervisor/schedctl.py)
# pueue / task-spooler parity (supervisor/taskedits.py).
PARITY_ACTIONS = frozenset({"rerun", "priority", "edit", "parallel"})
ACTIONS = ACTIONS | PARITY_ACTIONS
# The reason of a task taken in while no supervisor runs, until one looks at it.
NO_SUPERVISOR = "waiting for a supervisor to run (`bantzd run`, or the night's cron)"
REPLY_WAIT = 10.0
OFFLINE_GRACE = 5.0


class QueueView(Protocol):
    """What the handler needs from its host (the supervisor, or an offline CLI command)."""

    store: Store
    states: dict[int, TaskState]

    def stop_attempt(self, task_id: int, reason: str) -> bool: ...

    def signal_attempt(self, task_id: int, sig: int) -> bool: ...


# requests ------------------------------------------------------------------------------


def _request_path(home: Home) -> Path:
    return home.control / f"{time.time_ns()}-{os.getpid()}.req.json"


def pending(home: Home) -> list[Path]:
    """Request files waiting to be applied, oldest first."""
    try:
        entries = list(os.scandir(home.control))
    except FileNotFoundError:
        return []
    names = [e.name for e in entries if e.name.endswith(".req.json") and e.is_file()]
    return [home.control / n for n in sorted(names)]


def reply_path(req: Path) -> Path:
    return req.with_name(req.name.removesuffix(".req.json") + ".reply.json")


def send(home: Home, action: str, task_id: int | None, **params: Any) -> dict[str, Any]:
    """Ask the lock holder to apply `action`; returns its reply `{"ok", "message", "exit"}`."""
    from bantzd.supervisor.lock import LockHeldByOther, acquire, supervisor_info

    if action not in ACTIONS:
        raise ValueError(action)
    home.control.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    req = _request_path(home)
    write_json_atomic(req, {"action": action, "task": task_id, "params": params})
    deadline = time.monotonic() + REPLY_WAIT
    rep = reply_path(req)
    while time.monotonic() < deadline:
        if rep.exists():
            return _take_reply(rep)
        if supervisor_info(home) is None:
            try:
                lock = acquire(home, wait=2.0, role="cli")
            except LockHeldByOther:
                raise  # no supervisor of ours will come: say who blocks the home, and the fix
            except BantzError:
                time.sleep(0.02)  # a supervisor is starting; it will apply the request
                continue
            try:
                apply_offline(home)
            finally:
                lock.release()
            if rep.exists():
                return _take_reply(rep)
        time.sleep(0.01)
    return {
        "ok": True,
        "exit": 0,
        "message": f"request {action} queued; the supervisor has not confirmed it yet",
    }


def _take_reply(rep: Path) -> dict[str, Any]:
    try:
        data = read_json(rep, default={})
    except ValueError:
        data = None
    try:
        rep.unlink()
    except FileNotFoundError:
        pass
    if not isinstance(data, dict):
        return _err(f"the reply {rep} could not be read; see `bantzd show` for the task")
    return data


def apply_pending(home: Home, handler: ControlHandler) -> int:
    """Apply every pending request in order; returns how many were applied."""
    count = 0
    for req in pending(home):
        try:
            data = read_json(req, default=None)
        except (OSError, ValueError):
            data = None
        if not isinstance(data, dict):
            log.warning("%s is not a readable request; answered and removed", req)
            reply = _err(f"unreadable request {req.name}")
        else:
            try:
                reply = handler.apply(data, request_id=req.name.removesuffix(".req.json"))
            except IoPathError:
                raise  # a full disk: the request stays and is applied once there is room
            except Exception as e:  # one bad request must not come back every tick
                log.exception("applying the request %s failed", req.name)
                reply = _err(f"internal error: {e}")
        handler.view.store.flush()
        crash_point("control.after_apply")
        write_json_atomic(reply_path(req), reply)
        try:
            req.unlink()
        except FileNotFoundError:
            pass
        count += 1
    return count


class OfflineQueue:
    """The handler's host when no supervisor runs: states from disk, no live attempts."""

    def __init__(self, home: Home) -> None:
        from bantzd.clock import SystemClock
        from bantzd.queue.store import scan_states

        self.store = Store(home, SystemClock())
        self.states = {s.id: s for s in scan_states(home)}

    def stop_attempt(self, task_id: int, reason: str) -> bool:
        """Stop an attempt a dead supervisor left running, here and now (no supervisor will
        see it end): SIGTERM, a grace of up to OFFLINE_GRACE seconds, then SIGKILL. Returns
        False so the caller records the cancellation itself."""
        from bantzd.paths import TaskPaths
        from bantzd.workers.spawn import worker_alive

        if self.signal_attempt(task_id, signal.SIGTERM):
            paths = TaskPaths(self.store.home.task_dir(task_id))
            deadline = time.monotonic() + OFFLINE_GRACE
            while worker_alive(paths) and time.monotonic() < deadline:
                time.sleep(0.05)
            if worker_alive(paths):
                self.signal_attempt(task_id, signal.SIGKILL)
        return False

    def signal_attempt(self, task_id: int, sig: int) -> bool:
        from bantzd.paths import TaskPaths
        from bantzd.workers.spawn import kill_group, read_lock_info, worker_alive

        paths = TaskPaths(self.store.home.task_dir(task_id))
        state = self.states.get(task_id)
        if state is not None:
            from bantzd.supervisor.slurm import offline_signal

            sent = offline_signal(paths, state.attempts, sig)  # a Slurm job: scancel
            if sent is not None:
                return sent
        if not worker_alive(paths):  # also proves the group id is still that attempt's
            return False
        info = read_lock_info(paths)
        pgid = info.pid if info else (state.pid if state else None)
        return kill_group(pgid, sig) if pgid else False


def apply_offline(home: Home) -> int:
    """Apply pending requests while holding the lock without a supervisor."""
    if not pending(home):
        return 0
    view = OfflineQueue(home)
    return apply_pending(home, ControlHandler(view, home))


# the handler ---------------------------------------------------------------------------


def global_paused(home: Home) -> bool:
    """The global pause flag; a damaged supervisor.json is logged, not fatal."""
    paused, problem = read_pause_flag(home)
    if problem:
        log.warning("%s", problem)
    return paused


def set_global_paused(home: Home, paused: bool) -> None:
    """Write the flag (only the lock holder calls this); other keys of the file are kept."""
    try:
        data = read_json(home.supervisor_state, default={})
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data["paused"] = paused
    write_json_atomic(home.supervisor_state, data)


def recover_own_files(home: Home) -> None:
    """At supervisor start, with the lock held: mend bantzd's own small files.

    * temp files a crash left between write and rename (`.NAME.PID.tmp`, queue/atomic.py)
      in the home, every task folder, control/, the spool and reports/ are removed (only
      bantzd's own names, and only when their writer is gone);
    * a damaged supervisor.json is rewritten with the flag `read_pause_flag` settled on;
    * a home other users can reach is logged with the fix (`bantzd status` says it too).

    next_id.json is mended where it is used (Store), and state.json by `recover`.
    """
    folders = [home.root, home.control, home.spool, home.rejected, home.reports, home.tasks]
    folders += [home.task_dir(task_id) for task_id in task_ids(home)]
    for path in remove_leftover_temps(folders):
        log.info("removed %s, left by a write a crash interrupted", path)
    paused, problem = read_pause_flag(home)
    if problem:
        log.warning("%s", problem)
        set_global_paused(home, paused)
    for warning in exposure_warnings(home):
        log.warning("%s", warning)


def _ok(message: str) -> dict[str, Any]:
    return {"ok": True, "exit": 0, "message": message}


def _err(message: str, code: int = EXIT_FAILURE) -> dict[str, Any]:
    return {"ok": False, "exit": code, "message": message}


class ControlHandler:
    """Applies one request to the queue through the store's transition function."""

    def __init__(
        self,
        view: QueueView,
        home: Home,
        on_global_pause: Callable[[bool], None] | None = None,
        live: taskedits.Live | None = None,
        *,
        approval_categories: Iterable[str] | None = None,
        on_taken: Callable[[TaskState, TaskSpec], None] | None = None,
        schedules: Schedules | None = None,
        unique: UniqueKeys | None = None,
        max_queued: int | None = None,
    ) -> None:
        self.view = view
        # The supervisor's schedules; offline, loaded from disk when a request needs them.
        self.schedules = schedules
        self.home = home
        self.on_global_pause = on_global_pause
        self.live = live or taskedits.Live()
        # For `take`: the supervisor passes its config's categories and its table's `add`;
        # offline, config.toml is read when a take comes, and the state joins `view.states`.
        self.approval_categories = approval_categories
        self.on_taken = on_taken
        # The supervisor's unique keys and max_queued (SPEC 10); offline, the keys are read
        # from the task folders and max_queued from config.toml when a take comes.
        self.unique = unique
        self.max_queued = max_queued

    def apply(self, req: dict[str, Any], request_id: str | None = None) -> dict[str, Any]:
        """Apply one request; a request already applied (replayed after a crash between
        the state write and the reply) is answered without being applied twice."""
        action = req.get("action")
        task_id = req.get("task")
        params = req.get("params") or {}
        if not isinstance(action, str) or action not in ACTIONS:
            return _err(f"unknown action {action!r}")
        if not isinstance(params, dict):
            return _err(f"malformed request: params should be an object, not {params!r}")
        if task_id is not None and (isinstance(task_id, bool) or not isinstance(task_id, int)):
            return _err(f"malformed request: task should be an id, not {task_id!r}")
        if task_id is None:
            if action in ("pause", "resume"):
                return self._global(action == "pause")
            if action == "clean":
                older_than = params.get("older_than", 0)
                if isinstance(older_than, bool) or not isinstance(older_than, int | float):
                    return _err(f"malformed request: older_than {older_than!r}")
                return self._clean(float(older_than))
            if action == "parallel":
                try:
                    now = self.view.store.clock.time()
                    return _ok(taskedits.set_parallel(self.home, self.live, params, now))
                except BantzError as e:
                    return _err(str(e), e.exit_code)
            if action == "take":
                return self._take(params)
            if action == "schedule":
                from bantzd.supervisor import schedctl

                return schedctl.apply(self, params, request_id)
            return _err(f"{action} needs a task")
        state = self.view.states.get(int(task_id))
        if state is None:
            return _err(f"no task with id {task_id}", EXIT_NO_TASK)
        if request_id is not None and request_id in state.requests:
            return _ok(f"task {state.id}: {action} already applied")
        try:
            reply = getattr(self, f"_{action}")(state, params)
        except BantzError as e:
            return _err(str(e), e.exit_code)
        if request_id is not None and reply["ok"]:
            # Staged after the change it applied, in the same batch (the flush that follows
            # this request): the two become durable together. A refused request leaves no
            # id behind, so its replay is refused again, not answered "already applied".
            self.view.store.update(state, requests=[*state.requests[-4:], request_id])
        return reply

    def _global(self, paused: bool) -> dict[str, Any]:
        set_global_paused(self.home, paused)
        if self.on_global_pause:
            self.on_global_pause(paused)
        self.view.store.note("paused" if paused else "resumed")
        if paused:
            return _ok("paused: no new task starts until `bantzd resume`")
        return _ok("resumed: new tasks may start")

    def _clean(self, older_than: float) -> dict[str, Any]:
        """Remove finished tasks' folders finished more than `older_than` seconds ago."""
        from datetime import datetime

        cutoff = self.view.store.clock.time() - older_than
        removed = []
        for task_id, state in sorted(self.view.states.items()):
            if not state.finished_state or not state.finished:
                continue
            try:
                finished = datetime.fromisoformat(state.finished).timestamp()
            except ValueError:
                continue
            if finished <= cutoff:
                self.view.store.remove_task_dir(task_id)
                removed.append(task_id)
        for task_id in removed:
            del self.view.states[task_id]
        if removed:
            self.view.store.note("cleaned", ids=removed)
        return _ok(f"removed {len(removed)} finished task(s)")

    def _take(self, params: dict[str, Any]) -> dict[str, Any]:
        """Take in the spool file a `submit`/`add` placed, and reply with its id (or why
        it was not accepted); see supervisor/takeone.py."""
        from bantzd.supervisor import takeone

        name, inode, since = params.get("file"), params.get("inode"), params.get("since")
        if not isinstance(name, str):
            return _err(f"malformed request: file {name!r}")
        ok_inode = isinstance(inode, list) and len(inode) == 2
        if inode is not None and not (ok_inode and all(type(v) is int for v in inode)):
            return _err(f"malformed request: inode {inode!r}")
        if since is not None and (isinstance(since, bool) or not isinstance(since, int | float)):
            return _err(f"malformed request: since {since!r}")
        categories, max_queued = self.approval_categories, self.max_queued
        if categories is None:
            from bantzd.config import load_config

            try:
                config = load_config(self.home.config)
                categories, max_queued = config.approval_categories, config.max_queued
            except BantzError:
                # The file is safe in the spool; which tasks need approval is unknown until
                # config.toml is fixed (the command said what is wrong with it).
                return {
                    **_ok(
                        "it is not taken in while config.toml is broken; once that is "
                        "fixed, the supervisor takes it in when it runs"
                    ),
                    "pending": True,
                }
        found = takeone.take_requested(
            self.home,
            self.view.store,
            self.view.states,
            name,
            inode=(inode[0], inode[1]) if inode else None,
            since=float(since) if since is not None else None,
            now=self.view.store.clock.time(),
            approval_categories=categories,
            # Offline (no supervisor, so no table to join) the task waits for one to run.
            queued_reason=None if self.on_taken is not None else NO_SUPERVISOR,
            schedules=self.loaded_schedules(),
            keys=self.unique,
            max_queued=max_queued,
        )
        if isinstance(found, takeone.ScheduleTaken):
            from bantzd.supervisor import schedctl

            return schedctl.taken_reply(self, name, found.name)
        if isinstance(found, takeone.Taken):
            state = found.state
            if found.spec is not None:
                if self.on_taken is not None:
                    self.on_taken(state, found.spec)
                else:
                    self.view.states[state.id] = state
            reply = _ok(f"{name}: task {state.id} ({state.name})")
            return {**reply, "id": state.id, "name": state.name, "status": str(state.status)}
        if isinstance(found, takeone.Waiting):
            return {**_ok(found.why), "pending": True}
        if isinstance(found, takeone.NotAccepted):
            reply = _err(f"{name} was not accepted: {found.problem}")
            return {**reply, "problem": found.problem, "rejected": str(found.moved_to or "")}
        return _err(found.why)

    def loaded_schedules(self) -> Schedules:
        """The supervisor's schedules, or (offline) those on disk, loaded once."""
        if self.schedules is None:
            from bantzd.supervisor.schedules import Schedules

            self.schedules = Schedules(self.home, self.view.store.clock)
            self.schedules.load(self.view.states, self.view.store)
        return self.schedules

    def _cancel(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if state.status in FINISHED:
            return _err(f"task {state.id} is already {state.status}")
        if state.status is Status.RUNNING and self.view.stop_attempt(state.id, "cancelled"):
            return _ok(f"task {state.id} ({state.name}): stopping, then cancelled")
        self.view.store.transition(state, Status.CANCELLED, "cancelled by user")
        return _ok(f"task {state.id} ({state.name}) cancelled")

    def _retry(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if state.status not in (Status.FAILED, Status.CANCELLED):
            return _err(
                f"task {state.id} is {state.status}; only failed or cancelled tasks can be retried"
            )
        taskedits.give_spec(self.home, self.live, state)  # before the state changes
        # failed/cancelled -> queued starts afresh: failures, interruptions, the last end
        # and a missed deadline are cleared by the transition (queue/states.py PAIRS).
        self.view.store.transition(state, Status.QUEUED, "retry requested")
        return _ok(f"task {state.id} ({state.name}) queued again")

    def _pause(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if state.status in FINISHED:
            return _err(f"task {state.id} is already {state.status}")
        if state.paused:
            return _ok(f"task {state.id} is already paused")
        if state.status is Status.RUNNING:
            self.view.signal_attempt(state.id, signal.SIGSTOP)
        self.view.store.update(state, paused=True)
        return _ok(f"task {state.id} ({state.name}) paused")

    def _resume(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if not state.paused:
            return _ok(f"task {state.id} is not paused")
        if state.status is Status.RUNNING:
            self.view.signal_attempt(state.id, signal.SIGCONT)
        self.view.store.update(state, paused=False)
        return _ok(f"task {state.id} ({state.name}) resumed")

    def _approve(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if state.status is not Status.HELD:
            return _err(f"task {state.id} is {state.status}, not held for approval")
        self.view.store.transition(state, Status.QUEUED, "approved")
        return _ok(f"task {state.id} ({state.name}) approved and queued")

    def _reject(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        if state.status is not Status.HELD:
            return _err(f"task {state.id} is {state.status}, not held for approval")
        why = params.get("reason")
        reason = f"rejected: {why}" if why else "rejected by user"  # like "cancelled by user"
        self.view.store.transition(state, Status.CANCELLED, reason)
        return _ok(f"task {state.id} ({state.name}) rejected")

    def _answer(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        question = state.question or {}
        if state.status is not Status.WAITING_HUMAN or not question:
            return _err(f"task {state.id} is {state.status}; it has not asked anything")
        key = params.get("key") or question.get("key")
        if key != question.get("key"):
            return _err(f"task {state.id} asked {question.get('key')!r}, not {key!r}")
        text = str(params.get("text", ""))
        choices = question.get("choices") or []
        if choices and text not in choices:
            return _err(f"{text!r} is not one of the choices: {', '.join(choices)}")
        answers = dict(state.answers)
        answers[key] = text
        self.view.store.transition(state, Status.QUEUED, "answered", answers=answers, answer=text)
        return _ok(f"task {state.id} ({state.name}) answered; it is queued to resume")

    # pueue / task-spooler parity: the rules are in supervisor/taskedits.py -----------------

    def _rerun(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(taskedits.rerun(self.view, self.home, self.live, state))

    def _priority(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        return _ok(taskedits.set_priority(self.view, self.live, state, params.get("priority")))

    def _edit(self, state: TaskState, params: dict[str, Any]) -> dict[str, Any]:
        text, base = params.get("text"), params.get("base")
        return _ok(taskedits.edit(self.view, self.home, self.live, state, text, base))
