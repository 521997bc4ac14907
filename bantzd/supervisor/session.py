"""What a running supervisor holds on its home, taken in order and given back however it ends.

The home lock (one supervisor per home), the home's folders and bantzd's own small files
mended, the spool's permissions checked, the pidfile, the signal handlers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from bantzd.errors import IoPathError
from bantzd.paths import Home
from bantzd.supervisor import control, intake
from bantzd.supervisor.diskguard import DiskGuard
from bantzd.supervisor.lock import HomeLock, acquire
from bantzd.supervisor.signals import Signals


@contextmanager
def holding(home: Home, signals: Signals, disk: DiskGuard) -> Iterator[HomeLock]:
    """Hold the home for a supervisor's life (yields the lock, whose info the supervisor
    updates when it starts stopping). Raises `AlreadyRunning` (or
    `LockHeldByOther`) when another supervisor has it, and `BantzError` for a spool others
    can write to; a pidfile that cannot be written only goes to the disk-full latch."""
    lock = acquire(home, wait=2.0)
    try:
        home.ensure()
        control.recover_own_files(home)
        intake.check_spool_permissions(home.spool)
        try:
            home.pidfile.write_text(f"{os.getpid()}\n")
        except OSError as e:
            disk.failed(IoPathError(home.pidfile, "writing", e))
        signals.install()
        yield lock
    finally:
        signals.restore()
        try:
            home.pidfile.unlink()
        except FileNotFoundError:
            pass
        lock.release()
