"""One error hierarchy for bantzd, and the exit codes the CLI promises (SPEC section 7).

Every error carries enough context (a path, a task id, a key) to be printed to a user as is;
the CLI maps the class to an exit code instead of parsing messages.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_NO_TASK = 3


class BantzError(Exception):
    """Base of every error bantzd raises on purpose; its message is meant for the user."""

    exit_code = EXIT_FAILURE


class UsageError(BantzError):
    """The user asked for something malformed (bad TIME, bad duration on the command line)."""

    exit_code = EXIT_USAGE


class ConfigError(BantzError):
    """config.toml is unreadable or a setting has a bad value; the message names the key."""


class NoSuchTask(BantzError):
    """No task has that id, or that name, or the name is ambiguous."""

    exit_code = EXIT_NO_TASK


class IllegalTransition(BantzError):
    """A status change the transition table does not allow (e.g. cancel a finished task)."""


class AlreadyRunning(BantzError):
    """Another supervisor holds the single-instance lock of this home."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        who = f"pid {pid}" if pid else "pid unknown"
        super().__init__(f"bantzd is already running on this home ({who})")


class IoPathError(BantzError):
    """An I/O failure with the path and what we were doing, so the log line is actionable."""

    def __init__(self, path: object, action: str, cause: OSError) -> None:
        self.path = path
        self.action = action
        self.cause = cause
        super().__init__(f"{action} {path}: {cause.strerror or cause}")
