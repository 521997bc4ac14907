"""What the spool holds and says, read by every layer: which names are task files, which
files wait there still, and the command that resubmits a rejected file.

The supervisor's intake (supervisor/intake.py) takes the files in; this module only reads,
so `status`, `list` and the report can show what waits without taking any lock.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from bantzd.paths import Home

IGNORED_SUFFIXES = (".tmp", ".part", "~")
TASK_SUFFIXES = (".yaml", ".yml")
ERROR_SUFFIX = ".error.txt"
# The line of NAME.error.txt before the resubmit command (supervisor/intake.py writes it).
RESUBMIT_LINE = "Fix it, then submit it again with:"


def candidate_name(name: str) -> bool:
    """Whether a spool entry's name marks a finished task file."""
    if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
        return False
    return name.endswith(TASK_SUFFIXES)


def waiting_files(home: Home) -> list[str]:
    """The task files in the spool not yet taken in, oldest first (as the intake takes
    them). Files that are written but not yet renamed into place are not listed: they are
    not submitted until they are."""
    try:
        entries = list(os.scandir(home.spool))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not candidate_name(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # taken in while we looked
        found.append((st.st_mtime, entry.name))
    return [name for _, name in sorted(found)]


def rejected_since(home: Home, since: float | None) -> list[str]:
    """The files in spool/rejected/ that were rejected after `since` (all when None), by the
    time of their NAME.error.txt, which the intake writes when it rejects the file.

    The folder rather than the journal: `status` must stay cheap, and the journal grows all
    year. The report reads the journal's `rejected` notes of its period instead.
    """
    try:
        entries = list(os.scandir(home.rejected))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        if not entry.name.endswith(ERROR_SUFFIX):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            continue
        if since is None or mtime > since:
            found.append((mtime, entry.name.removesuffix(ERROR_SUFFIX)))
    return [name for _, name in sorted(found)]


def resubmit_command(home: Home, path: Path) -> str:
    """The exact command that submits `path` (a rejected file, once fixed) to `home`.

    `--home` is named unless the home is the default one without $BANTZ_HOME: the command
    is read in a morning shell, which may not have the variable cron or systemd had.
    """
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    plain = (base / "bantzd").absolute()
    words = ["bantzd"]
    if home.root.absolute() != plain:
        words += ["--home", str(home.root)]
    words += ["submit", str(path)]
    return shlex.join(words)
