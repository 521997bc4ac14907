"""Spool intake: complete, valid task files become tasks; everything else is set aside.

Two sources feed it: watchdog events (fast path, milliseconds after a rename or a close)
and a full scan at start and every `scan_interval` (a missed inotify event, a full event
queue or a network filesystem must never strand a file).

A file still being written is not taken half-done: names starting with `.` or ending in
`.tmp`, `.part`, `~` are ignored until renamed, and a file that was neither closed nor
renamed under our eyes is only taken by a scan once it has been quiet for `SETTLE` seconds.

A file name that is not UTF-8 (`\xff\xfe.yaml`) cannot be written to state.json or the
journal, and once made the whole supervisor exit at every start. Such a file is renamed in
the spool to a safe name first (each bad byte as `%XX`: `%FF%FE.yaml`) and then taken like any
other file on the next look; its content decides, as always, whether it is accepted.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bantzd.clock import Clock
from bantzd.crash import crash_point, fault_point
from bantzd.errors import BantzError, IoPathError
from bantzd.paths import Home
from bantzd.queue.atomic import fsync_dir, write_bytes_atomic
from bantzd.queue.schedulefile import ScheduleSpec, parse_spool_file
from bantzd.queue.spool import RESUBMIT_LINE, candidate_name, resubmit_command
from bantzd.queue.states import Status
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import MAX_TASK_FILE_BYTES, TaskFileError, TaskSpec
from bantzd.queue.unique import UniqueKeys, duplicate_problem, task_key
from bantzd.supervisor.spoolwatch import WATCHED_RESCAN, SpoolWatcher, on_local_filesystem
from bantzd.supervisor.table import TaskTable
from bantzd.supervisor.timing import local_now, resolve_when

log = logging.getLogger("bantzd.intake")

SETTLE = 1.0
# A look that takes in more files than this logs one line for the rest (the journal has
# a line for each): 10,000 files dropped at once are not 10,000 lines of bantzd.log.
LOG_EACH = 20
# Spool files examined per tick (see SpoolScan.scan).
LOOK_BATCH = 1000


def check_spool_permissions(spool: Path) -> None:
    """Refuse a spool others could write to: anything in it runs with the user's rights."""
    st = spool.stat()
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise BantzError(
            f"the spool {spool} is writable by group or others "
            f"(mode {stat.filemode(st.st_mode)}); anyone could run commands as you. "
            f"Fix it with: chmod go-w {spool}"
        )
    if st.st_uid != os.geteuid():
        raise BantzError(f"the spool {spool} belongs to uid {st.st_uid}, not to you")


@dataclass
class Accepted:
    path: Path
    spec: TaskSpec
    key: str | None = None  # the `unique:` key (queue/unique.py), None when not unique


@dataclass
class Rejected:
    path: Path
    problem: str


@dataclass
class ScheduleAccepted:
    """A valid schedule file (SPEC 9): installed by the schedules, not made a task."""

    path: Path
    spec: ScheduleSpec
    data: bytes


class ScheduleHost(Protocol):
    """What intake needs of supervisor/schedules.py's `Schedules` (no import: it imports
    this module)."""

    def accept(self, item: ScheduleAccepted, states: Mapping[int, TaskState]) -> str | None: ...


def examine(
    path: Path, now: float, *, settled_required: bool
) -> Accepted | ScheduleAccepted | Rejected | None:
    """Read and validate one spool file. None: not ready yet, gone, or renamed to a safe
    name (then the new name is examined on the next look)."""
    if not _is_text(path.name):
        rename_to_safe_name(path)
        return None
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(st.st_mode):
        return Rejected(path, "symbolic links are not accepted; copy the file into the spool")
    if not stat.S_ISREG(st.st_mode):
        return Rejected(path, "not a regular file")
    if st.st_uid != os.geteuid():
        return Rejected(path, f"owned by uid {st.st_uid}, not by you; not run")
    if settled_required and now - st.st_mtime < SETTLE:
        return None
    if st.st_size > MAX_TASK_FILE_BYTES:
        mb = st.st_size / 1_000_000
        return Rejected(
            path, f"file is {mb:.1f} MB; task files are limited to {MAX_TASK_FILE_BYTES} bytes"
        )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as e:
        return Rejected(path, f"cannot be read: {e.strerror}")
    try:
        data = os.read(fd, MAX_TASK_FILE_BYTES + 1)
    finally:
        os.close(fd)
    stem = path.name.rsplit(".", 1)[0]
    try:
        spec = parse_spool_file(data, default_name=stem, now=now)
    except TaskFileError as e:
        return Rejected(path, str(e))
    if isinstance(spec, ScheduleSpec):
        return ScheduleAccepted(path, spec, data)
    return Accepted(path, spec, task_key(data, spec.unique))


@dataclass
class Broken:
    """A spool file that raised while being taken in (an internal error, not the file's
    fault): rejected like a bad file, so it is not retried at every scan forever."""

    path: Path
    error: Exception

    def rejected(self) -> Rejected:
        return Rejected(self.path, f"internal error: {type(self.error).__name__}: {self.error}")


class SpoolScan:
    """When to look at the spool and what each file there is, oldest first.

    The loop takes in what this yields (`Accepted` becomes a task, `Rejected` and `Broken`
    move to rejected/). A look is due when the watcher saw files complete, every
    `interval` seconds, and soon again while a file found was still being written.
    """

    def __init__(self, home: Home, interval: float, clock: Clock) -> None:
        self.home = home
        self.spool = home.spool
        self.interval = interval
        self.clock = clock
        self.watcher: SpoolWatcher | None = None
        self.last_scan = float("-inf")
        self.unsettled = False  # a file was not ready: look again in SETTLE / 2
        # The queue was full (max_queued) at the last look: files wait in the spool, not
        # looked at, until there is room; then a look is due at once.
        self.held_back = False
        # How many files of the current batch come after the one just yielded.
        self.left = 0
        # The files of the last look not examined yet (name, seen complete by the
        # watcher), and what the watcher reported since that look.
        self._backlog: deque[tuple[str, bool]] = deque()
        self._ready: set[str] = set()
        self._poked = False
        # The ids the current look accepted (take_in logs the first LOG_EACH of them).
        self.accepted: list[int] = []
        self.last_control = float("-inf")

    def start_watching(self, folders: list[Path], wake_fd: int) -> None:
        """Look at files as soon as they complete (watchdog), not only at each scan."""
        self.watcher = SpoolWatcher(folders, wake_fd)
        self.watcher.start()
        if on_local_filesystem(self.spool):
            # The watcher sees every file; the rescan is only a safety net. On a network
            # file system it misses writes made by other machines: the scan stays frequent.
            self.interval = max(self.interval, WATCHED_RESCAN)

    def stop_watching(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()

    def control_due(self) -> bool:
        """Whether to look for control requests: the watcher saw one arrive, or (in case
        it missed one, or there is none) every `interval`. An idle tick does not list the
        control folder."""
        mono = self.clock.monotonic()
        seen = self.watcher is None or self.watcher.take_control()
        if seen or mono - self.last_control >= self.interval:
            self.last_control = mono
            return True
        return False

    def due_in(self) -> list[float]:
        """Seconds until the next look is due (for the loop's sleep)."""
        if self._backlog:
            return [0.0]
        due = [self.interval - (self.clock.monotonic() - self.last_scan)]
        if self.unsettled:
            due.append(SETTLE / 2)
        return due

    def scan(
        self, room: Callable[[], bool] | None = None
    ) -> Iterator[Accepted | ScheduleAccepted | Rejected | Broken]:
        """The spool's task files that are ready, each examined; none when no look is due.
        An `IoPathError` (the disk, not a file) propagates: the files stay for later.

        A look lists the spool once, oldest first; at most LOOK_BATCH of its files are
        examined per call, the rest on the next (due at once: `due_in`). A big drop is
        then taken in while the writer thread makes the previous batch durable, and the
        first tasks start (and control requests are answered) before the last file of
        10,000 is read.

        `room()` says whether the queue takes another task (max_queued): asked before each
        file, and when it says no, the files left are not even read."""
        if room is not None and not room():
            if self.watcher:
                self.watcher.take_ready()  # looked at by mtime when there is room again
            self.held_back = True
            self._backlog.clear()
            return
        if self.watcher:
            self._ready |= self.watcher.take_ready()
            self._poked = self.watcher.take_poked() or self._poked
        if not self._backlog and not self._look():
            return
        now = self.clock.time()
        batch = min(LOOK_BATCH, len(self._backlog))
        for i in range(batch):
            name, was_ready = self._backlog.popleft()
            self.left = batch - i - 1
            if room is not None and not room():
                self.held_back = True  # the rest wait, untouched
                self._backlog.clear()
                return
            path = self.spool / name
            try:
                fault_point("intake", path.name)
                result = examine(path, now, settled_required=not was_ready)
            except IoPathError:
                raise
            except Exception as e:
                yield Broken(path, e)
                continue
            if result is None:
                self.unsettled = self.unsettled or path.exists()
            else:
                yield result

    @property
    def looking(self) -> bool:
        """Whether files of the last look wait for the next call."""
        return bool(self._backlog)

    def _look(self) -> bool:
        """List the spool into the backlog when a look is due; whether one was."""
        mono = self.clock.monotonic()
        due = mono - self.last_scan >= self.interval or self.unsettled or self.held_back
        if not (self._ready or self._poked or due):
            return False
        self.held_back = self._poked = False
        self.last_scan = mono
        self.unsettled = False
        ready, self._ready = self._ready, set()
        try:
            entries = list(os.scandir(self.spool))
        except FileNotFoundError:
            self.home.ensure()  # removed under us: made again, looked at next time
            return False
        found = []
        for entry in entries:
            if entry.name == "rejected" or not candidate_name(entry.name):
                continue
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            found.append((mtime, entry.name))
        found.sort()
        self._backlog.extend((name, str(self.spool / name) in ready) for _, name in found)
        return bool(self._backlog)


def take_in(
    scan: SpoolScan,
    store: Store,
    table: TaskTable,
    approval_categories: Iterable[str],
    max_queued: int | None = None,
    schedules: ScheduleHost | None = None,
) -> None:
    """Take in what the spool scan found: each accepted file becomes a queued (or held)
    task in the store and the table (unless it duplicates a unique task: `admit`); the
    others move to rejected/ with their reason. With `max_queued` unfinished tasks the
    files left wait in the spool, untouched.

    A file that raises on the way (an internal error, not the file's fault) is rejected
    too, never retried forever; if it got as far as its task folder, the task exists and
    the next start's recovery loads it as queued. An `IoPathError` (the disk, full?)
    propagates: the file stays in the spool for later.
    """
    room = None if max_queued is None else (lambda: len(table.unfinished) < max_queued)
    try:
        _take_all(scan, store, table, approval_categories, max_queued, schedules, room)
    finally:
        store.drop_premade()  # folders made ahead for files that did not become tasks


def _take_all(
    scan: SpoolScan,
    store: Store,
    table: TaskTable,
    approval_categories: Iterable[str],
    max_queued: int | None,
    schedules: ScheduleHost | None,
    room: Callable[[], bool] | None,
) -> None:
    quiet = scan.accepted  # this look's ids, over its batches: past LOG_EACH, one line
    for item in scan.scan(room):
        try:
            if isinstance(item, Accepted):
                now = scan.clock.time()
                ahead = scan.left
                if max_queued is not None:
                    ahead = min(ahead, max_queued - len(table.unfinished) - 1)
                admitted = admit(item, store, table.unique, now, approval_categories, ahead=ahead)
                if isinstance(admitted, TaskState):
                    table.add(admitted, item.spec)
                    if len(quiet) < LOG_EACH:
                        log.info(
                            "accepted %s as task %d (%s)",
                            item.path.name,
                            admitted.id,
                            admitted.name,
                        )
                    quiet.append(admitted.id)
                    continue
                item = admitted
            if isinstance(item, ScheduleAccepted):
                problem = schedules.accept(item, table.states) if schedules else "no schedules"
                if problem is None:
                    store.note("schedule_accepted", file=item.path.name, schedule=item.spec.name)
                    continue
                item = Rejected(item.path, problem)
            if isinstance(item, Broken):
                log.error("internal error taking in %s", item.path.name, exc_info=item.error)
                item = item.rejected()
            reject_and_note(scan.home, store, item)
        except IoPathError:
            raise
        except Exception as e:
            log.error("internal error taking in %s", item.path.name, exc_info=e)
            try:
                reject_and_note(scan.home, store, Broken(item.path, e).rejected())
            except Exception:
                log.exception("could not reject %s after an internal error", item.path.name)
    if not scan.looking:  # the look's last batch
        if len(quiet) > LOG_EACH:
            rest = quiet[LOG_EACH:]
            log.info("accepted %d more files as tasks %d to %d", len(rest), rest[0], rest[-1])
        quiet.clear()


def admit(
    item: Accepted,
    store: Store,
    keys: UniqueKeys,
    now: float,
    approval_categories: Iterable[str],
    queued_reason: str | None = None,
    *,
    ahead: int = 0,
) -> TaskState | Rejected:
    """Make `item` a task, unless an unfinished task holds its unique key: then its
    rejection (`duplicate of task 14 (running)`), for the caller to move to rejected/.

    The check and the acceptance are one step (see supervisor/admit.py): nothing else runs
    between them, and the key is taken by the rename that accepts the task.
    """
    holder = keys.holder(item.key)
    if holder is not None:
        store.flush()  # the task the rejection names is durable before the rejection
        crash_point("intake.duplicate_found")
        return Rejected(item.path, duplicate_problem(holder))
    crash_point("intake.after_key_check")
    task_id = store.allocate_id()
    state = new_state(item, task_id, now, approval_categories, queued_reason)
    store.create(state, item.path, ahead=ahead)
    keys.add(state)
    return state


def reject_and_note(home: Home, store: Store, item: Rejected) -> Path | None:
    """Reject `item` and note it in the journal (the morning report's Not accepted section
    reads the note: the file, its problem, and where it went); where it went, or None."""
    if not os.path.lexists(item.path):
        return None
    target = reject(home, item)
    if target is not None:
        store.note("rejected", file=item.path.name, problem=item.problem, moved_to=target.name)
    return target


def new_state(
    item: Accepted,
    task_id: int,
    now: float,
    approval_categories: Iterable[str],
    queued_reason: str | None = None,
) -> TaskState:
    """The first state of an accepted file: queued, or held for approval; `not_before` and
    `deadline` resolved to instants now, so that a restart does not move them."""
    spec = item.spec
    held = spec.approval or (spec.category in approval_categories)
    accepted = local_now(now)
    return TaskState(
        not_before_at=resolve_when(spec.not_before, accepted).timestamp()
        if spec.not_before is not None
        else None,
        deadline_at=resolve_when(spec.deadline, accepted).timestamp()
        if spec.deadline is not None
        else None,
        id=task_id,
        name=spec.name,
        status=Status.HELD if held else Status.QUEUED,
        reason="waiting for approval" if held else queued_reason,
        priority=spec.priority,
        kind=spec.kind,
        source=item.path.name,
        unique_key=item.key,
    )


def _is_text(name: str) -> bool:
    try:
        name.encode("utf-8")  # os.scandir hands undecodable bytes over as lone surrogates
    except UnicodeEncodeError:
        return False
    return True


def safe_name(name: str) -> str:
    """`name` with every byte that is not UTF-8 written as `%XX`; the rest is kept."""
    raw = os.fsencode(name)
    parts = []
    while raw:
        try:
            parts.append(raw.decode("utf-8"))
            break
        except UnicodeDecodeError as e:
            parts.append(raw[: e.start].decode("utf-8"))
            parts.append("".join(f"%{b:02X}" for b in raw[e.start : e.end]))
            raw = raw[e.end :]
    return "".join(parts)


def rename_to_safe_name(path: Path) -> Path | None:
    """Give a spool file whose name is not UTF-8 a safe one beside it; never replaces a file.

    The new name is claimed exclusively (move_exclusive; taken: try `STEM-2.yaml` and on).
    Returns the new path, or None when the file is gone or cannot be renamed (logged; the
    spool then keeps it, and no other file waits for it).
    """
    shown = ascii(os.fsencode(path.name))
    try:
        target = move_to_free_name(path, path.with_name(safe_name(path.name)))
    except FileNotFoundError:
        return None
    except OSError as e:
        why = e.strerror or e
        log.warning("spool file %s: its name is not UTF-8, and renaming failed: %s", shown, why)
        return None
    fsync_dir(path.parent)
    log.warning("spool file %s: its name is not UTF-8; renamed to %s", shown, target.name)
    return target


def move_to_free_name(src: Path, wanted: Path) -> Path:
    """Move `src` to `wanted`, or to the first free one of `STEM-2.EXT`, `STEM-3.EXT`...
    beside it, each claimed exclusively (`move_exclusive`); returns where it went."""
    stem, dot, ext = wanted.name.rpartition(".")
    if not dot:
        stem, ext = ext, ""
    n = 1
    while True:
        target = wanted.with_name(f"{stem}{'' if n == 1 else f'-{n}'}{dot}{ext}")
        try:
            move_exclusive(src, target)
            return target
        except FileExistsError:
            n += 1


def move_exclusive(src: Path, target: Path) -> None:
    """Move `src` to `target`, which must not exist (FileExistsError if it does).

    Unlike a plain rename this never replaces a file another process placed there a moment
    before. `renameat2(RENAME_NOREPLACE)` does it in one step and is seen by the watcher as a
    move (taken at once); where the kernel, libc or filesystem lacks it, a hard link claims
    the name (then the old one is removed); on a filesystem without hard links the last resort
    is a check and a rename, exclusive only against the files already there.
    """
    if _rename_noreplace(src, target):
        return
    try:
        os.link(src, target, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.rename(src, target)
        return
    os.unlink(src)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1


@functools.cache
def _renameat2() -> Any:
    try:
        import ctypes

        func = ctypes.CDLL(None, use_errno=True).renameat2
    except (ImportError, OSError, AttributeError):  # no ctypes, or a libc without it
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    func.restype = ctypes.c_int
    return func


def _rename_noreplace(src: Path, target: Path) -> bool:
    """True when renamed; False when renameat2 is not available here (use the fallback)."""
    func = _renameat2()
    if func is None:
        return False
    import ctypes

    if func(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(target), _RENAME_NOREPLACE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # kernel or filesystem lacks it
        return False
    if err == errno.EEXIST:
        raise FileExistsError(err, os.strerror(err), str(target))
    raise OSError(err, os.strerror(err), str(src), None, str(target))


def reject(home: Home, item: Rejected) -> Path | None:
    """Move the file unchanged into spool/rejected/ beside NAME.error.txt, which says what
    is wrong and ends with the command that submits the file again once it is fixed."""
    home.rejected.mkdir(exist_ok=True)
    target = _free_name(home.rejected, item.path.name)
    error_file = target.with_name(target.name + ".error.txt")
    text = (
        f"{item.path.name} was not accepted:\n\n{item.problem.rstrip()}\n\n"
        f"{RESUBMIT_LINE}\n  {resubmit_command(home, target)}\n"
    )
    try:
        write_bytes_atomic(error_file, text.encode())
        os.rename(item.path, target)
        fsync_dir(home.rejected)
        fsync_dir(item.path.parent)
    except FileNotFoundError:
        _unlink_quiet(error_file)
        return None
    log.warning("rejected %s: %s", item.path.name, item.problem.splitlines()[0])
    return target


def _free_name(folder: Path, name: str) -> Path:
    target = folder / name
    n = 1
    while target.exists() or target.with_name(target.name + ".error.txt").exists():
        n += 1
        target = folder / f"{name}.{n}"
    return target


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def pending(home: Home) -> bool:
    """Whether the spool holds files that look like tasks not yet taken in."""
    try:
        return any(candidate_name(n) for n in os.listdir(home.spool))
    except FileNotFoundError:
        return False
