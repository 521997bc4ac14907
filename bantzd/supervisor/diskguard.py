"""The disk-full latch: when a write fails with ENOSPC, stop taking work until space returns.

A full disk is not a task's fault and nothing is lost: the store keeps the changes it could
not write staged, and retries them on every flush. While the latch is set the loop neither
takes spool files in nor starts tasks (both need disk), and flushes wait for their writes,
so that the first write that works is what tells us space is back. Other I/O errors are
only logged: they belong to one path, not to the disk.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path

from bantzd.errors import IoPathError
from bantzd.queue.store import Store

log = logging.getLogger("bantzd")

# Free space under which a supervisor that hit ENOSPC does not trust the disk again.
DISK_MARGIN = 1 << 20
_FULL = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


class DiskGuard:
    """Whether the disk is full, as far as this supervisor's writes know."""

    def __init__(self, root: Path, free: Callable[[Path], int] = free_bytes) -> None:
        self.root = root
        self.free = free
        self.full = False

    def failed(self, e: IoPathError) -> None:
        """A write failed: latch on a full disk, log anything else."""
        if e.cause.errno in _FULL:
            if not self.full:
                log.error(
                    "disk full (%s): tasks stay where they are; no new starts until space returns",
                    e,
                )
            self.full = True
        else:
            log.error("%s", e)

    def flushed(self, had_changes: bool) -> bool:
        """A flush succeeded: True when that releases the latch (space is back).

        A flush that wrote something proves the disk takes writes again; one with nothing
        to write proves nothing, so free space above DISK_MARGIN is asked for as well.
        """
        if self.full and (had_changes or self.free(self.root) >= DISK_MARGIN):
            self.full = False
            log.warning("disk space is back: taking in and starting tasks again")
            return True
        return False

    def flush(self, store: Store, *, wait: bool) -> None:
        """Make the store's staged changes durable; on ENOSPC keep them staged for later.

        The tick flushes with wait=False: the writes go on in the store's writer thread
        while the loop reaps and starts the next tasks. With a full disk it waits, so that
        the first write that works is what tells us space is back (journalled).
        """
        had_changes = not store.empty
        try:
            if wait or self.full:
                store.flush()
            else:
                store.flush_async()
        except IoPathError as e:
            self.failed(e)
            return
        if self.flushed(had_changes):
            store.note("disk_space_back")
