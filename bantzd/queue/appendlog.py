"""An append-only JSON-lines file inside a task folder, fsynced on every append.

Workers keep what they have done so far here (the `llm:` answer log, the `agent:` journal):
a checkpoint rewritten after every step grows with the work (each save O(steps so far)); an
append is O(1). A crash in the middle of an append leaves a torn last line: reading drops it
(and cuts it off the file, so the next append starts on a line of its own), and the one step
it held is done again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bantzd.queue.atomic import dumps, fsync_dir


class AppendLog:
    """JSON objects, one a line, appended and fsynced; `read()` drops a torn last line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> list[dict[str, Any]]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        entries: list[dict[str, Any]] = []
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break
            try:
                obj = json.loads(line)
            except ValueError:
                break
            if isinstance(obj, dict):
                entries.append(obj)
            good += len(line)
        if good < len(data):
            os.truncate(self.path, good)
        return entries

    def append(self, entry: dict[str, Any]) -> None:
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, dumps(entry, compact=True))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
