"""The supervisor's own log: bantzd.log, rotated by size, plus stderr in the foreground.

Rotation happens in the process (RotatingFileHandler), so no logrotate rule is needed: only
the supervisor writes bantzd.log, and the single-instance lock means one supervisor at a time.

A daemon has no stderr (python-daemon points it at /dev/null), so in daemon mode there is no
stderr handler. Daemon mode sticks for the life of the process: `bantzd start` sets it up
before detaching (to keep the file's descriptor open across the detach), and a later call
that does not say (`daemon=None`, as `run_supervisor` makes it) keeps it and the same file
handler.
"""

from __future__ import annotations

import logging
import os
import sys
from logging.handlers import RotatingFileHandler

from bantzd.paths import DIR_MODE, Home, open_private

MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5
FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
STDERR_FORMAT = "bantzd: %(message)s"

_daemon_mode = False


class PrivateRotatingFileHandler(RotatingFileHandler):
    """RotatingFileHandler whose files (bantzd.log and each new one after a rollover) are
    0600 whatever the umask: the log names tasks, commands and errors."""

    def _open(self):  # type: ignore[no-untyped-def]
        fd = open_private(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)


def setup_logging(
    home: Home, *, verbose: bool = False, daemon: bool | None = None
) -> RotatingFileHandler:
    """Log the `bantzd` logger to home/bantzd.log (10 MB x 5) and, unless a daemon, stderr.

    stderr gets warnings, or everything with `verbose`. Returns the file handler, whose
    `stream` a daemon keeps open across the detach. Calling it again reuses the handler.
    """
    global _daemon_mode
    if daemon is not None:
        _daemon_mode = daemon
    root = logging.getLogger("bantzd")
    root.setLevel(logging.INFO)
    path = os.path.abspath(home.log)
    keep: RotatingFileHandler | None = None
    for handler in list(root.handlers):
        if (
            keep is None
            and isinstance(handler, RotatingFileHandler)
            and handler.baseFilename == path
        ):
            keep = handler
            continue
        root.removeHandler(handler)
        handler.close()
    if keep is None:
        home.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        keep = PrivateRotatingFileHandler(
            path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
        )
        keep.setFormatter(logging.Formatter(FILE_FORMAT))
        root.addHandler(keep)
    if not _daemon_mode:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setLevel(logging.INFO if verbose else logging.WARNING)
        stderr.setFormatter(logging.Formatter(STDERR_FORMAT))
        root.addHandler(stderr)
    root.propagate = False
    # watchdog complains on shutdown about its inotify thread; nothing a user can act on.
    logging.getLogger("watchdog").setLevel(logging.ERROR)
    return keep


def daemon_mode() -> bool:
    """Whether this process was set up as a daemon (no stderr)."""
    return _daemon_mode
