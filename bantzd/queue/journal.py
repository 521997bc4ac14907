"""journal.jsonl: the append-only record of every state change (SPEC section 2).

Lines are appended with O_APPEND and fsynced once per batch. A crash can leave a torn last
line; readers skip lines that do not parse instead of failing, and the next append starts
on a fresh line. The file is created 0600: its lines name every task and reason.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bantzd.errors import IoPathError
from bantzd.paths import FILE_MODE


class Journal:
    """Buffered appends to journal.jsonl, made durable by `flush()`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._buffer: list[bytes] = []

    def add(self, event: dict[str, Any]) -> None:
        self._buffer.append(
            json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
            + b"\n"
        )

    @property
    def pending(self) -> bool:
        return bool(self._buffer)

    def take(self) -> list[bytes]:
        """Hand over the buffered lines (for a flush done elsewhere, see Store)."""
        lines, self._buffer = self._buffer, []
        return lines

    def put_back(self, lines: list[bytes]) -> None:
        """Lines whose write failed go back in front of newer ones, for the next try."""
        self._buffer[:0] = lines

    def flush(self) -> None:
        lines = self.take()
        try:
            self.write_lines(lines)
        except BaseException:
            self.put_back(lines)
            raise

    def write_lines(self, lines: list[bytes]) -> None:
        """Append `lines` and fsync the journal (one write, one fsync)."""
        if not lines:
            return
        data = b"".join(lines)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
            try:
                if ends_torn(fd):
                    data = b"\n" + data
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise IoPathError(self.path, "appending to", e) from e


def ends_torn(fd: int) -> bool:
    """True when the file's last byte is not a newline (a crash cut the last line)."""
    size = os.fstat(fd).st_size
    if size == 0:
        return False
    return os.pread(fd, 1, size - 1) != b"\n"


def read_journal(path: Path) -> Iterator[dict[str, Any]]:
    """Every event in order; torn or garbled lines are skipped."""
    if not path.exists():
        return
    with open(path, "rb") as f:
        for line in f:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                yield event
