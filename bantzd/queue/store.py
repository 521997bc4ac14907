"""The task store: task folders, state.json, ids and the journal, all durable.

Only the process holding the home lock (a supervisor, or a CLI command applying a control
request while no supervisor runs) writes through a `Store`; readers (`list`, `show`,
`status`) use `read_state` / `scan_states`, which are safe at any time because every write
is an atomic replace.

Changes are staged and made durable together by `flush()`: a supervisor tick that moves
many tasks pays for one round of fsyncs instead of one per task (see queue/atomic.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bantzd.clock import Clock, iso
from bantzd.crash import crash_point
from bantzd.errors import IoPathError
from bantzd.paths import DIR_MODE, Home, TaskPaths
from bantzd.queue.atomic import DurableBatch, dumps, fsync_dir, read_json
from bantzd.queue.journal import Journal, read_journal

# The readers' functions live in queue/stateread.py; imported from here too, as they were.
from bantzd.queue.stateread import read_state as read_state
from bantzd.queue.stateread import scan_states as scan_states
from bantzd.queue.stateread import task_ids
from bantzd.queue.states import Status, check_transition, implied_changes
from bantzd.queue.task import TaskState

log = logging.getLogger("bantzd")

# Keep state.json bounded for tasks that are interrupted or retried many times.
MAX_HISTORY = 200
# The largest id next_id.json may hold: a bigger one is damage, not a counter (and would
# make folder names too long for the file system).
MAX_ID = 10**15
# At most this many task folders are made ahead of a batch of spool files (`create`).
PREMAKE_MAX = 256
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


class Store:
    """Durable writes of task folders and states, plus the journal."""

    def __init__(self, home: Home, clock: Clock) -> None:
        self.home = home
        self.clock = clock
        self.journal = Journal(home.journal)
        self._batch = DurableBatch()
        self._dirty: dict[int, TaskState] = {}
        self._next_id: int | None = None
        # Empty task folders made ahead for the next ids (see `create`).
        self._premade: set[Path] = set()
        self._id_staged = False
        # The flush running in the background (see flush_async): (future, batch, lines).
        self._flight: tuple[Future[None], DurableBatch, list[bytes]] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self.on_flushed: Callable[[], None] | None = None
        # Called after every status change with (state, old status): the supervisor keeps
        # its index of queued tasks with it.
        self.on_transition: Callable[[TaskState, Status], None] | None = None
        # Called after a change of fields other than status or reason (pause, priority,
        # retry time...): the supervisor's start decision may depend on them.
        self.on_update: Callable[[TaskState], None] | None = None

    # ids ---------------------------------------------------------------------------------

    def _load_next_id(self) -> int:
        """The next id: next_id.json's counter, never below the highest task folder + 1.

        A missing or damaged counter (a 0-byte file after a power cut, an edit) is rebuilt
        from what can be trusted: the task folders and every id the journal ever named, so
        an id whose folder was cleaned is not handed out again. The file is rewritten with
        the next allocation.
        """
        existing = task_ids(self.home)
        floor = (existing[-1] + 1) if existing else 1
        counter, problem = _read_counter(self.home.next_id)
        if counter is not None:
            return max(counter, floor)
        seen = highest_journal_id(self.home.journal)
        rebuilt = max(floor, seen + 1)
        if problem is not None:
            log.warning(
                "%s %s; rebuilt the next task id as %d from the task folders and the journal",
                self.home.next_id,
                problem,
                rebuilt,
            )
        return rebuilt

    def allocate_id(self) -> int:
        """A fresh id, never reused: the counter is persisted before the id is handed out,
        so a `clean` (which removes folders) or a crash cannot bring an old id back."""
        if self._next_id is None:
            self._next_id = self._load_next_id()
        task_id = self._next_id
        self._next_id += 1
        self._id_staged = True  # written once per batch, in `_take`
        return task_id

    # intake ------------------------------------------------------------------------------

    def create(self, state: TaskState, spool_file: Path, *, ahead: int = 0) -> Path:
        """Make `spool_file` task `state.id`: the file is *moved* to tasks/<id>/task.yaml.

        The rename is the commit point: before it the task does not exist (a folder without
        task.yaml is removed on the next start); after it the spool file is gone, so a spool
        file can never become two tasks. state.json is staged and becomes durable with the
        batch; a crash before that leaves task.yaml alone, and recovery rebuilds the state
        from it (see `rebuild_state`). Call `flush()` before acting on the task.

        `ahead`: how many more files the caller is about to accept. Their folders (for the
        next ids) are made now too, with one fsync of tasks/ for all of them: a batch of
        files costs one folder sync, not one each. An unused one is an empty folder, which
        the next start removes like any folder without task.yaml.
        """
        tdir = self.home.task_dir(state.id)
        if tdir not in self._premade:
            self._make_folders(state.id, 1 + max(0, min(ahead, PREMAKE_MAX)))
        self._premade.discard(tdir)
        crash_point("intake.after_mkdir")
        try:
            os.rename(spool_file, tdir / "task.yaml")
        except OSError as e:
            os.rmdir(tdir)
            raise IoPathError(spool_file, "accepting", e) from e
        crash_point("intake.after_move")
        state.created = state.created or iso(self.clock.time())
        self._record_history(state, None)
        self._stage(state)
        self._batch.sync_dir(tdir)
        self._batch.sync_dir(spool_file.parent)
        self._batch.sync_dir(self.home.tasks)
        self.journal.add(self._event(state, "accepted", source=state.source))
        return tdir

    def drop_premade(self) -> None:
        """Remove the folders made ahead that no file took (when the writer stops)."""
        for tdir in self._premade:
            try:
                os.rmdir(tdir)
            except OSError:
                pass  # the next start removes it: a folder without task.yaml
        self._premade.clear()

    def _make_folders(self, first: int, count: int) -> None:
        """Make the folders of ids first..first+count-1 and make their names durable (one
        fsync of tasks/), before any spool file is moved into one: otherwise a crash may
        keep the spool's removal and lose the folder, and with it the task."""
        made = []
        for task_id in range(first, first + count):
            tdir = self.home.task_dir(task_id)
            try:
                tdir.mkdir(mode=DIR_MODE)
            except OSError as e:
                if task_id == first:
                    raise IoPathError(tdir, "creating", e) from e
                break  # the one asked for is made: the rest are only ahead of time
            made.append(tdir)
        try:
            fsync_dir(self.home.tasks)
        except OSError as e:
            for tdir in made:
                os.rmdir(tdir)
            raise IoPathError(self.home.tasks, "syncing", e) from e
        self._premade.update(made)

    # state changes -----------------------------------------------------------------------

    def transition(
        self, state: TaskState, dst: Status, reason: str | None = None, **changes: Any
    ) -> None:
        """The one function that changes a task's status (STYLE 1): checks the table,
        sets what the move implies (`implied_changes`: a finished task has no pid, ...),
        then the caller's `changes`, which win; appends history and journal, and stages
        state.json."""
        src = state.status
        check_transition(state.id, src, dst)
        for key in changes:
            if not hasattr(state, key):
                raise AttributeError(f"TaskState has no field {key!r}")
        implied = implied_changes(src, dst, iso(self.clock.time()))
        state.status = dst
        state.reason = reason
        for key, value in {**implied, **changes}.items():
            setattr(state, key, value)
        self._record_history(state, src)
        self.journal.add(self._event(state, "transition", src=str(src)))
        self._stage(state)
        if self.on_transition is not None:
            self.on_transition(state, src)

    def update(self, state: TaskState, **changes: Any) -> None:
        """Change fields other than status (reason, pid, progress) and stage the write.

        A new `reason` also goes to the history and the journal, like a transition, when its
        wording changes (`reason_changed`): a reason whose only change is a measured number
        (`memory: 4 GiB wanted, 3.1 GiB free`) updates state.json alone, so a task waiting
        all night does not write a journal line per probe.
        """
        for key in changes:
            if key == "status":
                raise ValueError("status changes go through transition()")
            if not hasattr(state, key):
                raise AttributeError(f"TaskState has no field {key!r}")
        old_reason = state.reason
        for key, value in changes.items():
            setattr(state, key, value)
        if "reason" in changes and reason_changed(old_reason, state.reason):
            self._record_history(state, state.status)
            self.journal.add(self._event(state, "reason"))
        self._stage(state)
        if self.on_update is not None and changes.keys() - {"reason"}:
            self.on_update(state)

    def stage_json(self, path: Path, obj: Any) -> None:
        """Write a home file (not a task's state) with the next group commit."""
        self._batch.write_json(path, obj)

    def note(self, event: str, **fields: Any) -> None:
        """A journal event that is not a task transition (throttling, supervisor start)."""
        entry = {"ts": iso(self.clock.time()), "t": round(self.clock.time(), 3), "event": event}
        entry.update(fields)
        self.journal.add(entry)

    @property
    def empty(self) -> bool:
        """Whether nothing is staged (no state write, no journal line)."""
        batch_empty = self._batch.empty and not self._id_staged
        return batch_empty and not self._dirty and not self.journal.pending

    def flush(self) -> None:
        """Make every staged change durable now: state files first, then the journal."""
        self._settle()
        batch, lines = self._take()
        try:
            self._commit(batch, lines)
        except BaseException:
            self._restore(batch, lines)
            raise

    def flush_async(self) -> None:
        """Start making the staged changes durable in a writer thread, and return.

        The supervisor's tick goes on reaping and starting tasks while the disk works.
        While a flush is in flight, new changes stay staged and go out together with the
        next one (a group commit: batches grow to match the disk's speed); `on_flushed` is
        called from the writer thread when a flush ends, so the caller can come back for
        the rest. An error of the previous flush is raised here, its changes staged again.
        """
        if self._flight is not None and not self._flight[0].done():
            return
        self._settle()
        batch, lines = self._take()
        if batch.empty and not lines:
            return
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bantzd-writer")
        future = self._writer.submit(self._commit, batch, lines)
        self._flight = (future, batch, lines)
        if self.on_flushed is not None:
            callback = self.on_flushed
            future.add_done_callback(lambda _: callback())

    @property
    def flushing(self) -> bool:
        """Whether a flush is in flight."""
        return self._flight is not None and not self._flight[0].done()

    def _take(self) -> tuple[DurableBatch, list[bytes]]:
        if self._id_staged and self._next_id is not None:
            self._batch.write_json(self.home.next_id, {"next": self._next_id})
            self._id_staged = False
        for task_id, state in self._dirty.items():
            self._batch.write(self.home.task_dir(task_id) / "state.json", dumps_state(state))
        self._dirty.clear()
        batch, self._batch = self._batch, DurableBatch()
        return batch, self.journal.take()

    def _commit(self, batch: DurableBatch, lines: list[bytes]) -> None:
        if not batch.empty:
            batch.commit()
        self.journal.write_lines(lines)

    def _restore(self, batch: DurableBatch, lines: list[bytes]) -> None:
        batch.merge_under(self._batch)
        self.journal.put_back(lines)

    def _settle(self) -> None:
        """Wait for the flush in flight; on failure put its changes back and raise."""
        if self._flight is None:
            return
        future, batch, lines = self._flight
        self._flight = None
        try:
            future.result()
        except BaseException:
            self._restore(batch, lines)
            raise

    def remove_task_dir(self, task_id: int) -> None:
        """Delete a task folder (`clean`); the id stays burnt because next_id is persisted."""
        import shutil

        self._settle()
        if self._next_id is None:
            self._next_id = self._load_next_id()
        self._batch.write_json(self.home.next_id, {"next": self._next_id})
        self.flush()
        tdir = self.home.task_dir(task_id)
        self._dirty.pop(task_id, None)
        self._batch.discard_under(tdir)
        shutil.rmtree(tdir)

    # internals ---------------------------------------------------------------------------

    def _stage(self, state: TaskState) -> None:
        # Serialised once per flush, however many changes a tick makes to the task.
        self._dirty[state.id] = state

    def _record_history(self, state: TaskState, src: Status | None) -> None:
        entry: dict[str, Any] = {"at": iso(self.clock.time()), "status": str(state.status)}
        if state.reason:
            entry["reason"] = state.reason
        state.history.append(entry)
        if len(state.history) > MAX_HISTORY:
            del state.history[1 : len(state.history) - MAX_HISTORY + 1]

    def _event(self, state: TaskState, event: str, **extra: Any) -> dict[str, Any]:
        now = self.clock.time()
        entry: dict[str, Any] = {
            "ts": iso(now),
            "t": round(now, 3),
            "event": event,
            "id": state.id,
            "name": state.name,
            "status": str(state.status),
            "attempt": state.attempts,
        }
        if state.reason:
            entry["reason"] = state.reason
        for k, v in extra.items():
            if v is not None:
                entry[k] = v
        return entry


def reason_changed(old: str | None, new: str | None) -> bool:
    """Whether going from reason `old` to `new` is worth a history entry and a journal
    line: the words differ, not only the numbers in them."""
    if old == new:
        return False
    if old is None or new is None:
        return True
    return _NUMBER.sub("#", old) != _NUMBER.sub("#", new)


def _read_counter(path: Path) -> tuple[int | None, str | None]:
    """next_id.json's `next`, or (None, what is wrong with it; None when it is missing)."""
    try:
        data = read_json(path)
    except ValueError as e:
        return None, f"is not valid JSON ({e})"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    if data is None:
        return None, None
    value = data.get("next") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        return None, f'does not hold {{"next": N}} with N from 1 to {MAX_ID}'
    return value, None


def highest_journal_id(path: Path) -> int:
    """The highest task id any journal line names (`id`, or the `ids` of a clean); 0."""
    best = 0
    for event in read_journal(path):
        many = event.get("ids")
        for value in [event.get("id"), *(many if isinstance(many, list) else [])]:
            if isinstance(value, int) and not isinstance(value, bool) and value <= MAX_ID:
                best = max(best, value)
    return best


def dumps_state(state: TaskState) -> bytes:
    """state.json's bytes: compact JSON with sorted keys, which the C encoder writes fast."""
    return dumps(state.to_json(), compact=True, sort_keys=True)


def load_paths(home: Home, task_id: int) -> TaskPaths:
    return TaskPaths(home.task_dir(task_id))


def dump(state: TaskState) -> str:
    return json.dumps(state.to_json(), indent=2, sort_keys=True)
