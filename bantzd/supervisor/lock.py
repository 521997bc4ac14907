"""The single-instance lock of a home (STYLE 7).

A supervisor holds an exclusive flock on bantzd.lock for its whole life; the kernel drops
it when the process dies, however it dies, so a stale bantzd.pid after SIGKILL never blocks
a new start. The pid file is written only after the lock is held and is informational.

A flock can be taken by anyone who can open the file, so the lock file is created 0600 and
made 0600 again whenever its owner opens it (an old 0644 one stops being openable by
others). A lock held anyway by a process of another user (one that opened the file while
it was still readable) is not taken for a running bantzd: /proc/locks names the holder,
and the error says who it is and what to do.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bantzd.errors import AlreadyRunning, BantzError
from bantzd.paths import DIR_MODE, Home, open_private

PROC_LOCKS = "/proc/locks"


@dataclass
class HomeLock:
    """An acquired lock; keep the object alive (and its fd open) as long as you need it."""

    fd: int
    path: Path
    # What the lock file says about its holder (pid, role, since; `stopping` once it stops).
    info: dict[str, Any] = field(default_factory=dict)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


@dataclass(frozen=True)
class Holder:
    """A process holding a flock on a file, as /proc/locks shows it."""

    pid: int
    uid: int | None  # None when the process cannot be seen (gone, or another pid namespace)

    @property
    def user(self) -> str:
        """The holder's user name (or uid), for messages."""
        if self.uid is None:
            return "an unknown user"
        try:
            import pwd

            return pwd.getpwuid(self.uid).pw_name
        except (KeyError, ImportError):
            return f"uid {self.uid}"


class LockHeldByOther(BantzError):
    """The home lock is held, but not by a process of this user: not a running bantzd."""

    def __init__(self, path: Path, holders: list[Holder]) -> None:
        self.path = path
        self.holders = holders
        super().__init__(foreign_lock_message(path, holders))


def foreign_lock_message(path: Path, holders: list[Holder]) -> str:
    """Who holds `path` instead of us, and the fix; the words `status` and `run` use."""
    who = ", ".join(f"pid {h.pid} ({h.user})" for h in holders)
    pids = " ".join(str(h.pid) for h in holders)
    home = path.parent
    return (
        f"{path} is locked by {who}, not by a bantzd of yours, so no supervisor can run on "
        f"this home. Other users could open the lock file because the home is not private. "
        f"Fix: chmod -R go-rwx {home}, then end that process (as root or its user: "
        f"kill {pids}) and start bantzd again"
    )


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when someone else holds it."""
    fd = open_private(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def is_locked(path: Path) -> bool:
    """Whether some process holds `path` right now (without keeping it ourselves)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def parse_proc_locks(text: str, dev: int, ino: int) -> list[int]:
    """Pids holding (not waiting for) a lock on the file `dev`/`ino`, from /proc/locks text.

    A line reads `1: FLOCK  ADVISORY  WRITE 1234 fe:00:2146319 0 EOF`; waiters have a `->`
    after the number. The device is `MAJOR:MINOR` in hex, the inode in decimal.
    """
    want = f"{os.major(dev):02x}:{os.minor(dev):02x}:{ino}"
    pids = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 6 or parts[1] == "->":
            continue
        if parts[5] == want:
            try:
                pids.append(int(parts[4]))
            except ValueError:
                continue
    return pids


def lock_holders(path: Path) -> list[Holder] | None:
    """The processes holding a lock on `path`, or None when the kernel cannot tell us
    (no /proc/locks, or a file system whose inodes it names differently)."""
    try:
        st = os.stat(path)
        with open(PROC_LOCKS) as f:
            text = f.read()
    except OSError:
        return None
    pids = parse_proc_locks(text, st.st_dev, st.st_ino)
    if not pids:
        return None
    holders = []
    for pid in dict.fromkeys(pids):
        try:
            uid: int | None = os.stat(f"/proc/{pid}").st_uid if pid > 0 else None
        except OSError:
            uid = None
        holders.append(Holder(pid, uid))
    return holders


def foreign_holders(path: Path) -> list[Holder]:
    """Holders of `path` that are not processes of this user ([] when none, or unknown).

    Used to tell a lock taken by another user (who could open a 0644 lock file) from one of
    ours, so that such a lock never passes for a live supervisor or attempt.
    """
    holders = lock_holders(path)
    if not holders or any(h.uid == os.geteuid() for h in holders):
        return []
    return holders


def acquire(home: Home, *, wait: float = 0.0, role: str = "supervisor") -> HomeLock:
    """Take the home lock or raise `AlreadyRunning` naming the holder's pid, or
    `LockHeldByOther` when only processes of other users hold it.

    `wait` covers the brief moments a CLI command holds the lock to apply a change while no
    supervisor runs; a real supervisor holds it for hours, so waiting longer is pointless.
    """
    home.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = try_lock(home.lockfile)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            foreign = foreign_holders(home.lockfile)
            if foreign:
                raise LockHeldByOther(home.lockfile, foreign)
            raise AlreadyRunning(_our_holder_pid(home))
        time.sleep(0.02)
    lock = HomeLock(fd, home.lockfile, {"pid": os.getpid(), "role": role, "since": time.time()})
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(lock.info).encode(), 0)
    except OSError:
        pass  # a full disk: the lock itself holds; only the pid shown to others is missing
    return lock


def mark_stopping(lock: HomeLock, since: float) -> None:
    """Say in the lock file that its supervisor is stopping (`status` shows it).

    Rewritten in place through the held fd, padded with spaces to at least the old length
    and never truncated first, so a reader sees the old text or the new one (trailing
    spaces are valid JSON), never an empty file that would hide the pid.
    """
    if lock.fd < 0:
        return
    lock.info["stopping"] = since
    data = json.dumps(lock.info).encode()
    try:
        old = os.fstat(lock.fd).st_size
        os.pwrite(lock.fd, data.ljust(old), 0)
    except OSError:
        pass  # as in acquire: only what others are shown is missing


def _our_holder_pid(home: Home) -> int | None:
    """The pid to name in "already running": the lock file's, when the kernel agrees that
    process holds the lock (or cannot tell); else the holder /proc/locks names."""
    named = holder_pid(home)
    holders = lock_holders(home.lockfile)
    ours = [h.pid for h in holders or [] if h.uid == os.geteuid()]
    return named if named in ours or not ours else ours[0]


def holder_pid(home: Home) -> int | None:
    """The pid of the supervisor holding the lock, if any (read from the lock file)."""
    try:
        data = json.loads(home.lockfile.read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def supervisor_info(home: Home) -> dict | None:
    """`{"pid", "since", "stopping"}` of the supervisor holding this home, or None when
    none runs; `stopping` is when it began to stop (a signal, `--until`), or None.

    Decided by the lock, never by a pid (pids are reused), so a stale bantzd.pid is harmless;
    a lock only other users hold is no supervisor either (see `foreign_holders`).
    """
    if not is_locked(home.lockfile) or foreign_holders(home.lockfile):
        return None
    try:
        data = json.loads(home.lockfile.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("role") == "cli":
        return None  # a CLI command applying a request for a moment, not a supervisor
    pid = data.get("pid")
    holders = lock_holders(home.lockfile)
    if holders is not None:
        ours = [h.pid for h in holders if h.uid == os.geteuid()]
        if pid not in ours and ours:
            pid = ours[0]  # the file names an old pid; the kernel knows the real holder
    stopping = data.get("stopping")
    return {
        "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        "since": data.get("since"),
        "stopping": stopping if isinstance(stopping, int | float) else None,
    }
