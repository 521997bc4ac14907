"""The in-task API: checkpoints, progress, results and questions (SPEC section 5).

`python:` tasks receive a `Context`; any Python process under a task gets the same one from
`bantzd.worker.context()`. Underneath it is only files in the task folder and environment
variables, so a worker in any language can do the same (README: "The worker protocol").

The code lives here, with the rest of what runs a task; `bantzd.worker` is the public path
SPEC documents and re-exports it. bantzd's own modules import from here.

This module is imported inside tasks: it must stay light (no click, rich or yaml).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, NoReturn

from bantzd.errors import BantzError
from bantzd.paths import TaskPaths
from bantzd.queue.atomic import dumps, read_json, write_bytes_atomic, write_json_atomic

__all__ = ["Context", "NotInTask", "context"]


class NotInTask(BantzError, RuntimeError):
    """Raised by `context()` outside a bantzd task (no BANTZ_TASK_DIR)."""


class Context:
    """One attempt's view of its task folder."""

    def __init__(
        self,
        task_dir: str | os.PathLike[str],
        *,
        task_id: int | None = None,
        attempt: int | None = None,
    ) -> None:
        self.dir = Path(task_dir)
        self.paths = TaskPaths(self.dir)  # the file names of the worker protocol, in one place
        self.task_id = task_id if task_id is not None else int(self.dir.name)
        self.attempt = attempt if attempt is not None else 1
        self._checkpoint_loaded = False
        self._checkpoint: Any = None
        self._limits_cache: Any = None  # the home's RateLimits, once a limit is used

    # checkpoints -------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.paths.checkpoint

    @property
    def checkpoint(self) -> Any:
        """The last saved checkpoint, or None when none was ever saved."""
        if not self._checkpoint_loaded:
            self._checkpoint = read_json(self.checkpoint_path)
            self._checkpoint_loaded = True
        return self._checkpoint

    def save(self, state: Any) -> None:
        """Replace checkpoint.json with `state` (JSON-able), atomically and durably."""
        data = dumps(state, compact=True)
        write_bytes_atomic(self.checkpoint_path, data)
        self._checkpoint = json.loads(data)
        self._checkpoint_loaded = True

    # progress and results ----------------------------------------------------------------

    def progress(self, fraction: float, message: str | None = None) -> None:
        """Report progress (0..1) and a short message; `bantzd status` shows it."""
        percent = max(0.0, min(100.0, float(fraction) * 100.0))
        write_json_atomic(self.paths.progress, {"percent": round(percent, 1), "message": message})

    def result(self, obj: Any) -> None:
        """Write result.json; a `summary` key is what the morning report quotes."""
        write_json_atomic(self.paths.result_json, obj)

    def fail(self, reason: str, code: int = 1) -> NoReturn:
        """End this attempt as failed, saying why in one line (reason.txt): the task's
        reason reads `exit 1: REASON` instead of a bare exit code. `retries:` apply."""
        text = " ".join(str(reason).split()) or "failed"
        write_bytes_atomic(self.paths.reason, (text + "\n").encode())
        print(f"bantzd: {text}", file=sys.stderr, flush=True)
        sys.exit(code)

    # questions ---------------------------------------------------------------------------

    def answer(self, key: str) -> str | None:
        """The person's answer to question `key`, or None while unanswered."""
        state = read_json(self.paths.state, default={}) or {}
        answers = state.get("answers") or {}
        value = answers.get(key)
        return value if isinstance(value, str) else None

    def ask(self, key: str, question: str, choices: list[str] | None = None) -> None:
        """Ask a person and stop this attempt; the task resumes once `bantzd answer` runs.

        Does not return: the question is saved, then the attempt's process group is ended.
        """
        write_question(self.dir, key, question, choices, self.attempt)
        end_attempt()

    # rate limits -------------------------------------------------------------------------

    def take(self, name: str, n: int = 1, *, timeout: float | None = None) -> None:
        """Take `n` units of rate limit `name` (`[limits.NAME]`), waiting until they are free.

        Call it before each request to a rate-limited API. Counts against `per_minute` and
        `per_hour`; for `concurrent` the task holds `n` units until it ends. Raises
        `bantzd.ratelimit.LimitError` for a limit config.toml does not define, and
        `LimitTimeout` when `timeout` seconds pass first.
        """
        self._limits().acquire(name, n, self.task_id, timeout=timeout)

    def limit_wait(self, name: str, n: int = 1) -> float:
        """Seconds until `n` units of `name` could be taken (0: now, or only `concurrent`
        is full); for telling people why a task sits still. Takes nothing."""
        return float(self._limits().wait_time(name, n))

    def backoff(self, name: str, seconds: float) -> None:
        """Tell every task that uses `name` to wait `seconds` (e.g. after an HTTP 429)."""
        self._limits().backoff(name, seconds)

    def _limits(self) -> Any:
        # Only tasks that use limits pay for the import and for reading config.toml, once.
        if self._limits_cache is None:
            from bantzd.ratelimit import open_limits

            self._limits_cache = open_limits(self.home)
        return self._limits_cache

    @property
    def home(self) -> Path:
        """The bantzd home: $BANTZ_HOME (set by the supervisor), else two folders up."""
        env = os.environ.get("BANTZ_HOME")
        return Path(env) if env else self.dir.parent.parent


def write_question(
    task_dir: Path, key: str, question: str, choices: list[str] | None, attempt: int
) -> None:
    """Save a question where the supervisor looks for it when the attempt ends."""
    write_json_atomic(
        TaskPaths(Path(task_dir)).question,
        {
            "key": key,
            "text": question,
            "choices": list(choices or []),
            "attempt": attempt,
        },
    )


def end_attempt() -> None:
    """Stop the whole attempt (every process of its group) after a question."""
    try:
        os.killpg(os.getpgrp(), signal.SIGTERM)
    finally:
        os._exit(0)


def context() -> Context:
    """The Context of the task this process runs under (from BANTZ_* variables)."""
    task_dir = os.environ.get("BANTZ_TASK_DIR")
    if not task_dir:
        raise NotInTask("not running under a bantzd task (BANTZ_TASK_DIR is not set)")
    task_id = os.environ.get("BANTZ_TASK_ID")
    attempt = os.environ.get("BANTZ_ATTEMPT")
    return Context(
        task_dir,
        task_id=int(task_id) if task_id and task_id.isdigit() else None,
        attempt=int(attempt) if attempt and attempt.isdigit() else None,
    )
