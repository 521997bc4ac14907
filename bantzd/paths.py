"""Where everything lives in a bantzd home (SPEC section 2).

Every path is derived from the home folder, never from the current directory, so cron,
systemd and a shell in any folder all see the same queue.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def default_home() -> Path:
    """`$BANTZ_HOME`, else `$XDG_DATA_HOME/bantzd`, else `~/.local/share/bantzd`."""
    env = os.environ.get("BANTZ_HOME")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "bantzd"


@dataclass(frozen=True)
class Home:
    """The home folder and the fixed names inside it."""

    root: Path

    @classmethod
    def resolve(cls, given: str | os.PathLike[str] | None = None) -> Home:
        root = Path(given).expanduser() if given else default_home()
        return cls(root.absolute())

    @property
    def config(self) -> Path:
        return self.root / "config.toml"

    @property
    def spool(self) -> Path:
        return self.root / "spool"

    @property
    def rejected(self) -> Path:
        return self.spool / "rejected"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def log(self) -> Path:
        return self.root / "bantzd.log"

    @property
    def pidfile(self) -> Path:
        return self.root / "bantzd.pid"

    @property
    def lockfile(self) -> Path:
        """Held (flock) by the supervisor for its whole life; see supervisor/lock.py."""
        return self.root / "bantzd.lock"

    @property
    def control(self) -> Path:
        """Requests from CLI commands to whoever holds the lock (see supervisor/control.py)."""
        return self.root / "control"

    @property
    def next_id(self) -> Path:
        return self.root / "next_id.json"

    @property
    def supervisor_state(self) -> Path:
        """Supervisor-wide settings that survive restarts (global pause)."""
        return self.root / "supervisor.json"

    def task_dir(self, task_id: int) -> Path:
        return self.tasks / str(task_id)

    def ensure(self) -> None:
        """Create the folders every command may need; the spool is private to the user."""
        self.root.mkdir(parents=True, exist_ok=True)
        for d in (self.tasks, self.reports, self.control):
            d.mkdir(exist_ok=True)
        if not self.spool.exists():
            self.spool.mkdir(mode=0o700)
        self.rejected.mkdir(exist_ok=True)


@dataclass(frozen=True)
class TaskPaths:
    """The files of one task folder (SPEC section 2) plus bantzd's private ones."""

    dir: Path

    @property
    def task_yaml(self) -> Path:
        return self.dir / "task.yaml"

    @property
    def state(self) -> Path:
        return self.dir / "state.json"

    @property
    def checkpoint(self) -> Path:
        return self.dir / "checkpoint.json"

    @property
    def output(self) -> Path:
        return self.dir / "output.log"

    @property
    def result_md(self) -> Path:
        return self.dir / "result.md"

    @property
    def result_json(self) -> Path:
        return self.dir / "result.json"

    @property
    def progress(self) -> Path:
        """Written by the worker side (`ctx.progress`, `bantzd progress`)."""
        return self.dir / "progress.json"

    @property
    def tokens(self) -> Path:
        """Written by `llm:` workers: tokens used so far, summed over calls."""
        return self.dir / "tokens.json"

    @property
    def question(self) -> Path:
        """Written by the worker side when it asks (`ctx.ask`, `bantzd ask`)."""
        return self.dir / "question.json"

    @property
    def reason(self) -> Path:
        """One line a worker may write before it exits non-zero (`ctx.fail`): why it failed,
        in words the failure reason and the report show after the exit code."""
        return self.dir / "reason.txt"

    @property
    def worker_lock(self) -> Path:
        """flock'ed by every process of a live attempt; free means the attempt is gone."""
        return self.dir / "worker.lock"

    @property
    def exit_record(self) -> Path:
        """Written by the attempt's wrapper as it ends, so a restarted supervisor learns the
        outcome of an attempt it did not start."""
        return self.dir / "exit.json"
