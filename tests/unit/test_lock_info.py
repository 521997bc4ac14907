"""The lock file's info: a stopping supervisor says so, and a reader never sees it torn."""

from __future__ import annotations

import json
from pathlib import Path

from bantzd.paths import Home
from bantzd.supervisor.lock import acquire, mark_stopping, supervisor_info


def test_a_stopping_supervisor_says_so_in_its_lock_info(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    lock = acquire(home)
    try:
        info = supervisor_info(home)
        assert info is not None and info["stopping"] is None
        mark_stopping(lock, 1_800_000_000.5)
        info = supervisor_info(home)
        assert info is not None
        assert (info["stopping"], info["since"]) == (1_800_000_000.5, lock.info["since"])
        text = home.lockfile.read_text()
        assert json.loads(text)["stopping"] == 1_800_000_000.5  # one valid JSON text
    finally:
        lock.release()
    assert supervisor_info(home) is None


def test_a_shorter_info_is_padded_not_left_with_the_old_tail(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    lock = acquire(home)
    try:
        # An info that gets shorter (a long pid and role replaced) leaves no stale bytes.
        lock.info["role"] = "supervisor" * 5
        mark_stopping(lock, 1.0)
        lock.info["role"] = "supervisor"
        mark_stopping(lock, 2.0)
        data = json.loads(home.lockfile.read_text())
        assert (data["role"], data["stopping"]) == ("supervisor", 2.0)
    finally:
        lock.release()
