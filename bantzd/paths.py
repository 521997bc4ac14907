"""Where everything lives in a bantzd home (SPEC section 2).

Every path is derived from the home folder, never from the current directory, so cron,
systemd and a shell in any folder all see the same queue.
"""

from __future__ import annotations

import functools
import os
import stat
from dataclasses import dataclass
from pathlib import Path

# Everything bantzd writes is private to the user (SPEC "Security"): folders 0700, files
# 0600. Explicit modes where files are created make this hold whatever the umask; the CLI
# also sets PRIVATE_UMASK for its own process (`make_private`), which covers what libraries
# create. Tasks run with the umask the user had (`user_umask`), not ours.
PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
FILE_MODE = 0o600
# The user's umask before `make_private` changed it; None until then.
_user_umask: int | None = None
# How many exposed paths `exposure_warnings` names before it only counts them.
EXPOSED_NAMED = 5
# In reports/: the period the last morning report covered (reports/morning.py writes it;
# `status` reads it without importing the report).
REPORT_MARKER = ".last.json"


def current_umask() -> int:
    """The process's umask, without changing it (Linux reads /proc; elsewhere set it back)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def make_private() -> None:
    """Give bantzd's own process umask 077, remembering the user's for the tasks."""
    global _user_umask
    if _user_umask is None:
        _user_umask = current_umask()
    os.umask(PRIVATE_UMASK)


def user_umask() -> int:
    """The umask tasks should run with: the user's own, from before `make_private`."""
    return _user_umask if _user_umask is not None else current_umask()


def open_private(path: str | os.PathLike[str], flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """Open a file of ours that lives on (a lock file, bantzd.log), created 0600 and made
    0600 if an older one was not: a lock another user can open is a lock another user can
    hold, and liveness must not hang on it; a log others can read names every task."""
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, FILE_MODE)
    except OSError:
        pass  # a file we cannot chmod is reported by `status` (exposure_warnings)
    return fd


def default_home() -> Path:
    """`$BANTZ_HOME`, else `$XDG_DATA_HOME/bantzd`, else `~/.local/share/bantzd`."""
    env = os.environ.get("BANTZ_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "bantzd"


# Task folder paths kept per Home (see Home.task_dir); past this many, the cache starts over.
TASK_DIR_CACHE = 65536


@dataclass(frozen=True)
class Home:
    """The home folder and the fixed names inside it. Each name is joined once per Home
    (cached_property): the supervisor asks for them on every transition, and a pathlib join
    costs microseconds that add up over a night of short tasks."""

    root: Path

    @classmethod
    def resolve(cls, given: str | os.PathLike[str] | None = None) -> Home:
        root = Path(given).expanduser() if given else default_home()
        return cls(root.absolute())

    @functools.cached_property
    def config(self) -> Path:
        return self.root / "config.toml"

    @functools.cached_property
    def spool(self) -> Path:
        return self.root / "spool"

    @functools.cached_property
    def rejected(self) -> Path:
        return self.spool / "rejected"

    @functools.cached_property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @functools.cached_property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @functools.cached_property
    def reports(self) -> Path:
        return self.root / "reports"

    @functools.cached_property
    def log(self) -> Path:
        return self.root / "bantzd.log"

    @functools.cached_property
    def estimates(self) -> Path:
        """The runs of each task name, for estimates (SPEC 11, queue/estimates.py)."""
        return self.root / "estimates.json"

    @functools.cached_property
    def load_history(self) -> Path:
        """One line per machine probe, for `status` and the report's Machine section."""
        return self.root / "load.jsonl"

    @functools.cached_property
    def pidfile(self) -> Path:
        return self.root / "bantzd.pid"

    @functools.cached_property
    def lockfile(self) -> Path:
        """Held (flock) by the supervisor for its whole life; see supervisor/lock.py."""
        return self.root / "bantzd.lock"

    @functools.cached_property
    def control(self) -> Path:
        """Requests from CLI commands to whoever holds the lock (see supervisor/control.py)."""
        return self.root / "control"

    @functools.cached_property
    def next_id(self) -> Path:
        return self.root / "next_id.json"

    @functools.cached_property
    def supervisor_state(self) -> Path:
        """Supervisor-wide settings that survive restarts (global pause)."""
        return self.root / "supervisor.json"

    def task_dir(self, task_id: int) -> Path:
        cache = self.__dict__.setdefault("_task_dirs", {})
        path = cache.get(task_id)
        if path is None:
            if len(cache) >= TASK_DIR_CACHE:
                cache.clear()
            path = cache[task_id] = self.tasks / str(task_id)
        return path

    @functools.cached_property
    def schedules(self) -> Path:
        """One folder per accepted schedule (SPEC 9; queue/schedules.py)."""
        return self.root / "schedules"

    def ensure(self) -> None:
        """Create the folders every command may need, private to the user (0700).

        Folders that already exist keep their mode: changing a home the user set up is
        theirs to decide; `exposure_warnings` tells them when it is open to others.
        """
        self.root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        for d in (self.tasks, self.reports, self.control, self.spool, self.rejected):
            d.mkdir(mode=DIR_MODE, exist_ok=True)


@dataclass(frozen=True)
class TaskPaths:
    """The files of one task folder (SPEC section 2) plus bantzd's private ones, each
    joined once per instance (see Home)."""

    dir: Path

    @functools.cached_property
    def task_yaml(self) -> Path:
        return self.dir / "task.yaml"

    @functools.cached_property
    def state(self) -> Path:
        return self.dir / "state.json"

    @functools.cached_property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.json"

    @functools.cached_property
    def output(self) -> Path:
        return self.dir / "output.log"

    @functools.cached_property
    def result_md(self) -> Path:
        return self.dir / "result.md"

    @functools.cached_property
    def result_json(self) -> Path:
        return self.dir / "result.json"

    @functools.cached_property
    def progress(self) -> Path:
        """Written by the worker side (`ctx.progress`, `bantzd progress`)."""
        return self.dir / "progress.json"

    @functools.cached_property
    def tokens(self) -> Path:
        """Written by `llm:` workers: tokens used so far, summed over calls."""
        return self.dir / "tokens.json"

    @functools.cached_property
    def agent_stats(self) -> Path:
        """Written by `agent:` workers: steps, tool calls per tool, the current step."""
        return self.dir / "agent.json"

    @functools.cached_property
    def question(self) -> Path:
        """Written by the worker side when it asks (`ctx.ask`, `bantzd ask`)."""
        return self.dir / "question.json"

    @functools.cached_property
    def reason(self) -> Path:
        """One line a worker may write before it exits non-zero (`ctx.fail`): why it failed,
        in words the failure reason and the report show after the exit code."""
        return self.dir / "reason.txt"

    @functools.cached_property
    def worker_lock(self) -> Path:
        """flock'ed by every process of a live attempt; free means the attempt is gone."""
        return self.dir / "worker.lock"

    @functools.cached_property
    def exit_record(self) -> Path:
        """Written by the attempt's wrapper as it ends, so a restarted supervisor learns the
        outcome of an attempt it did not start."""
        return self.dir / "exit.json"


def exposure_warnings(home: Home) -> list[str]:
    """What in `home` other local users can reach, each with the fix; [] when private.

    A home others cannot enter (no group/other bits on its folder) hides everything in it,
    so only then is the rest looked at: the common case costs one stat.
    """
    try:
        st = os.stat(home.root)
    except OSError:
        return []
    fix = f"chmod -R go-rwx {home.root}"
    warnings: list[str] = []
    if st.st_uid != os.geteuid():
        warnings.append(
            f"the home {home.root} belongs to uid {st.st_uid}, not to you (uid "
            f"{os.geteuid()}); its owner and root can read and change your tasks"
        )
    if not st.st_mode & 0o077:
        return warnings
    warnings.append(
        f"the home {home.root} is open to other users (mode {stat.filemode(st.st_mode)}): "
        f"they may read task files (with their env: secrets), outputs and the journal, and "
        f"block the supervisor by locking bantzd.lock; fix: {fix}"
    )
    if not st.st_mode & (stat.S_IXGRP | stat.S_IXOTH):
        return warnings  # readable listing, but nothing inside can be opened
    exposed = list(_exposed_paths(home.root))
    if exposed:
        named = ", ".join(str(p.relative_to(home.root)) for p in exposed[:EXPOSED_NAMED])
        more = f" and {len(exposed) - EXPOSED_NAMED} more" if len(exposed) > EXPOSED_NAMED else ""
        warnings.append(
            f"{len(exposed)} file(s) or folder(s) in it can be read or opened by others "
            f"({named}{more}); fix: {fix}"
        )
    return warnings


def _exposed_paths(root: Path) -> list[Path]:
    """Files and folders under `root` with any group/other permission bit, sorted."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if not stat.S_ISLNK(mode) and mode & 0o077:
                found.append(path)
    return sorted(found)
