"""Signals and the wake-up pipe (STYLE 5: handlers only set flags).

The handlers count stop signals and nothing else; the loop reads the count in its first
step of every tick: one SIGTERM/SIGINT/SIGHUP means stop starting and ask running attempts
to stop (they go back to the queue as `interrupted`), a second one means kill them now.
SIGCHLD, the spool watcher and the store's writer thread all write a byte to the wake-up
pipe, so the loop sleeps in one `select` and wakes for whichever comes first.
"""

from __future__ import annotations

import os
import select
import signal
from collections.abc import Callable
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


class Signals:
    """The stop-signal count and the wake-up pipe of one supervisor."""

    def __init__(self) -> None:
        self.received = 0
        self.first: int | None = None  # the first stop signal: SIGINT makes `run` exit 130
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old: dict[int, Any] = {}

    @property
    def stop(self) -> bool:
        """A first stop signal came: stop starting, let attempts checkpoint and stop."""
        return self.received >= 1

    @property
    def interrupted(self) -> bool:
        """The stop came from Ctrl-C (SIGINT): shells expect exit status 130 (128 + 2).
        SIGTERM and `--until` stay 0, which cron recipes rely on."""
        return self.first == signal.SIGINT

    @property
    def force_stop(self) -> bool:
        """A second one came: kill the attempts at once."""
        return self.received >= 2

    def install(self) -> None:
        """Set the handlers (restored by `restore`), and the pipe as the wake-up fd."""

        def on_stop(signum: int, frame: object) -> None:
            if self.first is None:
                self.first = signum
            self.received += 1

        def on_child(signum: int, frame: object) -> None:
            pass  # the wake-up fd does the work; a Python handler is needed for it to fire

        handlers: list[tuple[int, Callable[[int, Any], None]]] = [
            *((sig, on_stop) for sig in STOP_SIGNALS),
            (signal.SIGCHLD, on_child),
        ]
        for sig, fn in handlers:
            self._old[sig] = signal.signal(sig, fn)
        signal.set_wakeup_fd(self.write_fd, warn_on_full_buffer=False)

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        self._old.clear()
        signal.set_wakeup_fd(-1)

    def poke(self) -> None:
        """Wake the loop (safe from any thread: the store's writer calls it)."""
        try:
            os.write(self.write_fd, b"f")
        except OSError:
            pass

    def wait(self, timeout: float) -> None:
        """Sleep until a signal, a spool/control event, a poke, or `timeout`."""
        if timeout > 0:
            try:
                select.select([self.read_fd], [], [], timeout)
            except InterruptedError:
                pass
        try:
            while os.read(self.read_fd, 4096):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
