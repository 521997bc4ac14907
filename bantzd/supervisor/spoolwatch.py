"""The spool's watcher: names of task files and control requests as they arrive.

watchdog's inotify thread only records what it saw and pokes the supervisor's wake-up pipe;
the main loop does the work (supervisor/intake.py for the spool, control.py for requests).
A tick looks at the control folder only when a request arrived (or every scan interval, in
case an event was missed), so an idle supervisor lists no folder per wake-up.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from bantzd.queue.spool import candidate_name

# Seconds between rescans of a watched spool on a local file system (scan_interval, when
# longer, wins): an idle supervisor wakes for events, not for a short poll.
WATCHED_RESCAN = 30.0
# File systems where inotify does not see what other machines write.
NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "lustre", "afs",
     "gpfs", "beegfs", "ocfs2", "gfs2", "virtiofs"}
)  # fmt: skip


def on_local_filesystem(path: Path, mountinfo: str = "/proc/self/mountinfo") -> bool:
    """Whether `path` is on a local file system (by its mount in /proc/self/mountinfo; a
    FUSE one counts as remote). False when that cannot be told."""
    try:
        target = os.path.realpath(path)
        with open(mountinfo, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return False
    best, fstype = "", None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, right.split()[0]
    if fstype is None:
        return False
    return fstype not in NETWORK_FILESYSTEMS and not fstype.startswith("fuse")


# watchdog holds every IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and its
# queue sleeps out that delay even once the pair is found: each write-then-rename into the
# spool (the safe way to submit) would wait half a second. Both halves of a rename arrive in
# the same inotify read, so a few milliseconds pair them just as well.
MOVE_PAIRING_DELAY = 0.005


def _shorten_move_pairing() -> None:
    try:
        from watchdog.observers import inotify_move_event_grouper as grouper
    except ImportError:  # not Linux, or a watchdog without the grouper: nothing to tune
        return
    grouper.InotifyMoveEventGrouper.delay = MOVE_PAIRING_DELAY


class SpoolWatcher:
    """Watchdog observer feeding names of closed/renamed spool files to the main loop.

    The handler runs in watchdog's thread, so it only records names and pokes the
    supervisor's wake-up pipe; all work happens in the main loop.
    """

    def __init__(self, folders: list[Path], wake_fd: int) -> None:
        self._ready: set[str] = set()
        self._control = False  # a request arrived in the second folder (control/)
        self._poked = False  # a spool file appeared or changed, not yet known complete
        self._lock = threading.Lock()
        self._wake_fd = wake_fd
        self._observer = None
        self._folders = folders
        self._folder_names = {str(f) for f in folders}
        self._spool = str(folders[0])

    def start(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event) -> None:  # type: ignore[no-untyped-def]
                if event.is_directory:
                    return
                kind = event.event_type
                if kind == "moved":
                    path = os.fsdecode(event.dest_path)
                elif kind in ("closed", "created", "modified"):
                    path = os.fsdecode(event.src_path)
                else:
                    return
                # Files leaving the folder (our own moves into tasks/) and names we ignore
                # need no wake-up; control replies are not requests.
                folder, name = os.path.split(path)
                if folder not in watcher._folder_names or name.endswith(".reply.json"):
                    return
                if folder == watcher._spool and not candidate_name(name):
                    return
                if folder != watcher._spool:
                    watcher._control = True  # a request: apply_control looks next tick
                    watcher._wake()
                    return
                watcher._notify(path, settled=kind in ("moved", "closed"))

        _shorten_move_pairing()
        observer = Observer()
        for folder in self._folders:
            observer.schedule(Handler(), str(folder), recursive=False)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _notify(self, path: str, *, settled: bool) -> None:
        with self._lock:
            if settled:
                self._ready.add(path)
            else:
                self._poked = True  # created or written (a hard link, a write under way)
        self._wake()

    def _wake(self) -> None:
        try:
            os.write(self._wake_fd, b"w")
        except (BlockingIOError, OSError):
            pass

    def take_control(self) -> bool:
        """Whether a control request arrived since the last call."""
        seen, self._control = self._control, False
        return seen

    def take_poked(self) -> bool:
        """Whether a spool file appeared or changed without being known complete since the
        last call: the next look examines the spool, taking files once they settle."""
        with self._lock:
            poked, self._poked = self._poked, False
        return poked

    def take_ready(self) -> set[str]:
        """Paths known to be complete (closed after writing, or renamed into place)."""
        with self._lock:
            ready, self._ready = self._ready, set()
        return ready

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=2)
            self._observer = None
