"""The single-instance lock of a home (STYLE 7).

A supervisor holds an exclusive flock on bantzd.lock for its whole life; the kernel drops
it when the process dies, however it dies, so a stale bantzd.pid after SIGKILL never blocks
a new start. The pid file is written only after the lock is held and is informational.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bantzd.errors import AlreadyRunning
from bantzd.paths import Home


@dataclass
class HomeLock:
    """An acquired lock; keep the object alive (and its fd open) as long as you need it."""

    fd: int
    path: Path

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def try_lock(path: Path) -> int | None:
    """An fd holding an exclusive flock on `path`, or None when someone else holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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


def acquire(home: Home, *, wait: float = 0.0, role: str = "supervisor") -> HomeLock:
    """Take the home lock or raise `AlreadyRunning` naming the holder's pid.

    `wait` covers the brief moments a CLI command holds the lock to apply a change while no
    supervisor runs; a real supervisor holds it for hours, so waiting longer is pointless.
    """
    home.root.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    while True:
        fd = try_lock(home.lockfile)
        if fd is not None:
            break
        if time.monotonic() >= deadline:
            raise AlreadyRunning(holder_pid(home))
        time.sleep(0.02)
    lock = HomeLock(fd, home.lockfile)
    info = {"pid": os.getpid(), "role": role, "since": time.time()}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
    except OSError:
        pass  # a full disk: the lock itself holds; only the pid shown to others is missing
    return lock


def holder_pid(home: Home) -> int | None:
    """The pid of the supervisor holding the lock, if any (read from the lock file)."""
    try:
        data = json.loads(home.lockfile.read_text() or "{}")
    except (OSError, ValueError):
        return None
    pid = data.get("pid") if isinstance(data, dict) else None
    return pid if isinstance(pid, int) else None


def supervisor_info(home: Home) -> dict | None:
    """`{"pid", "since"}` of the supervisor holding this home, or None when none runs.

    Decided by the lock, never by a pid (pids are reused), so a stale bantzd.pid is harmless.
    """
    if not is_locked(home.lockfile):
        return None
    try:
        data = json.loads(home.lockfile.read_text() or "{}")
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    if data.get("role") == "cli":
        return None  # a CLI command applying a request for a moment, not a supervisor
    return {"pid": data.get("pid"), "since": data.get("since")}
