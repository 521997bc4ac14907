"""`[hooks] on_finish`: a shell command run when a task ends, like task-spooler's TS_ONFINISH.

The supervisor tells `FinishHooks` about every status change (`noticed`, from the store's
transition hook, so every way a task ends counts: an attempt's exit, a cancel, a failed
dependency, a missed deadline, an internal error); the environment is taken at that
moment. After the tick's writes are durable the loop calls `launch`: each hook starts as
`sh -c COMMAND` in its own session (stdin /dev/null, output appended to hooks.log in the
home) and is watched by a thread, so the loop never waits for it. A hook still running
after `[hooks] timeout` is killed (its whole process group); one that exits non-zero is
logged in bantzd.log. At the supervisor's end, `close` gives running hooks what is left of
their timeout, so the hook of the last task of a `run --once` still runs to its end.

Environment of the hook (the README lists it too): BANTZ_HOME, BANTZ_TASK_ID,
BANTZ_TASK_NAME, BANTZ_TASK_STATUS (done, failed, cancelled), BANTZ_TASK_EXIT_CODE and
BANTZ_TASK_SIGNAL (empty when there is none), BANTZ_TASK_TOOK (seconds, all attempts
added up: queue.task.took), BANTZ_TASK_ATTEMPTS, BANTZ_TASK_REASON, BANTZ_TASK_DIR.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from bantzd.clock import hms
from bantzd.config import HooksConfig
from bantzd.paths import Home, user_umask
from bantzd.queue.states import FINISHED
from bantzd.queue.task import TaskState, took

log = logging.getLogger("bantzd")

HOOKS_LOG = "hooks.log"


def hook_env(home: Home, state: TaskState) -> dict[str, str]:
    """The variables a hook gets for `state` (on top of the supervisor's environment)."""
    seconds = took(state)

    def text(value: object) -> str:
        return "" if value is None else str(value)

    return {
        "BANTZ_HOME": str(home.root),
        "BANTZ_TASK_ID": str(state.id),
        "BANTZ_TASK_NAME": state.name,
        "BANTZ_TASK_STATUS": str(state.status),
        "BANTZ_TASK_EXIT_CODE": text(state.exit_code),
        "BANTZ_TASK_SIGNAL": text(state.signal),
        "BANTZ_TASK_TOOK": "" if seconds is None else f"{seconds:.0f}",
        "BANTZ_TASK_ATTEMPTS": str(state.attempts),
        "BANTZ_TASK_REASON": text(state.error or state.reason),
        "BANTZ_TASK_DIR": str(home.task_dir(state.id)),
    }


class FinishHooks:
    """Runs `[hooks] on_finish` for every task that ends; does nothing when it is empty."""

    def __init__(self, home: Home, config: HooksConfig) -> None:
        self.home = home
        self.command = config.on_finish
        self.timeout = config.timeout
        self._waiting: list[dict[str, str]] = []
        self._watchers: list[threading.Thread] = []

    @property
    def waiting(self) -> bool:
        """Whether hooks wait for `launch` (the loop then waits for this tick's writes)."""
        return bool(self._waiting)

    def noticed(self, state: TaskState) -> None:
        """Called after every status change: a task that ended gets its hook queued."""
        if self.command and state.status in FINISHED:
            self._waiting.append(hook_env(self.home, state))

    def launch(self) -> None:
        """Start the queued hooks; never raises, never waits for them."""
        waiting, self._waiting = self._waiting, []
        for env in waiting:
            try:
                self._start(env)
            except Exception:
                log.exception("task %s: the on_finish hook could not start", env["BANTZ_TASK_ID"])

    def _start(self, extra: dict[str, str]) -> None:
        log_path = self.home.root / HOOKS_LOG
        with open(log_path, "a", encoding="utf-8") as out:
            out.write(
                f"=== {hms(time.time())} task {extra['BANTZ_TASK_ID']} "
                f"{extra['BANTZ_TASK_STATUS']}: {self.command}\n"
            )
            out.flush()
            proc = subprocess.Popen(
                ["/bin/sh", "-c", self.command],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **extra},
                cwd=str(self.home.root),
                start_new_session=True,  # its own group: a timeout kills all it started
                umask=user_umask(),
            )
        deadline = time.monotonic() + self.timeout
        watcher = threading.Thread(
            target=self._watch,
            args=(proc, extra["BANTZ_TASK_ID"], deadline, log_path),
            name=f"bantzd-hook-{extra['BANTZ_TASK_ID']}",
            daemon=True,
        )
        watcher.start()
        self._watchers = [w for w in self._watchers if w.is_alive()] + [watcher]

    def _watch(
        self, proc: subprocess.Popen[bytes], task_id: str, deadline: float, out: Path
    ) -> None:
        try:
            code = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            log.warning(
                "task %s: the on_finish hook ran longer than %gs and was killed (output in %s)",
                task_id,
                self.timeout,
                out,
            )
            return
        if code != 0:
            log.warning(
                "task %s: the on_finish hook exited with status %d (output in %s)",
                task_id,
                code,
                out,
            )

    def close(self) -> None:
        """Start what still waits, then let running hooks finish (each within its timeout)."""
        self.launch()
        for watcher in self._watchers:
            watcher.join()
        self._watchers = []
