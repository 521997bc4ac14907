"""`max_queued` (SPEC 10) one tick at a time: past it, spool files wait untouched (not read,
not rejected, not even listed while the queue stays full), and are taken in oldest first as
tasks end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.supervisor import intake
from tests.tick.conftest import Harness
from tests.tick.test_take import reply, request


@pytest.fixture
def full(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "home", "max_parallel = 2", "max_queued = 2", fake=True)
    yield h
    h.close()


def scan(h: Harness) -> None:
    h.clock.advance(h.sup.config.scan_interval + 0.1)
    h.tick()


def spool_files(h: Harness) -> list[str]:
    return sorted(p.name for p in h.home.spool.glob("*.yaml"))


def drop(h: Harness, names: str, age: float = 60) -> dict[str, tuple[int, float]]:
    """Drop one task file per letter (oldest first); their inode and mtime."""
    seen = {}
    for i, name in enumerate(names):
        path = h.submit(f"{name}.yaml", f"name: {name}\nrun: x\n")
        when = h.clock.time() - age + i
        os.utime(path, (when, when))
        st = path.stat()
        seen[path.name] = (st.st_ino, st.st_mtime)
    return seen


def test_past_max_queued_files_wait_untouched_and_are_not_looked_at(
    full: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    full.sup.recover()
    before = drop(full, "abcde")
    broken = full.submit("broken.yaml", "run: [unclosed\n")  # not even rejected while full
    os.utime(broken, (full.clock.time() - 1, full.clock.time() - 1))  # the newest
    examined: list[str] = []
    listed: list[str] = []
    real_examine, real_scandir = intake.examine, os.scandir

    def counting_examine(path, *args, **kwargs):  # type: ignore[no-untyped-def]
        examined.append(path.name)
        return real_examine(path, *args, **kwargs)

    def counting_scandir(path=".", *args):  # type: ignore[no-untyped-def]
        if Path(path) == full.home.spool:
            listed.append(str(path))
        return real_scandir(path, *args)

    monkeypatch.setattr(intake, "examine", counting_examine)
    monkeypatch.setattr(intake.os, "scandir", counting_scandir)
    full.tick()
    assert sorted(full.sup.table.states) == [1, 2]
    assert [full.state(i)["name"] for i in (1, 2)] == ["a", "b"]  # oldest first
    assert examined == ["a.yaml", "b.yaml"]  # the rest were not read
    assert full.sup.intake.held_back
    assert spool_files(full) == ["broken.yaml", "c.yaml", "d.yaml", "e.yaml"]
    for name in ("c.yaml", "d.yaml", "e.yaml"):
        st = (full.home.spool / name).stat()
        assert (st.st_ino, st.st_mtime) == before[name]
    assert not full.home.rejected.exists() or not any(full.home.rejected.iterdir())

    examined.clear()
    listed.clear()
    for _ in range(50):  # a long wait while full: no file read, the spool not even listed
        scan(full)
    assert (examined, listed) == ([], [])

    full.executor.finish(1)
    full.tick()  # the task ends: room for one, looked at at once (no scan interval to wait)
    assert full.status(1) == "done"
    full.tick()
    assert full.state(3)["name"] == "c" and examined == ["c.yaml"]
    assert len(full.sup.table.unfinished) == 2
    assert spool_files(full) == ["broken.yaml", "d.yaml", "e.yaml"]


def test_the_oldest_waiting_file_goes_first_once_there_is_room(full: Harness) -> None:
    full.sup.recover()
    drop(full, "abcd")
    full.tick()
    assert spool_files(full) == ["c.yaml", "d.yaml"]
    full.executor.finish(2)
    full.tick()
    full.tick()
    assert full.state(3)["name"] == "c" and spool_files(full) == ["d.yaml"]


def test_a_take_request_when_full_leaves_the_file_and_says_why(full: Harness) -> None:
    full.sup.recover()
    drop(full, "ab")
    full.tick()
    path = full.submit("c.yaml", "name: c\nrun: x\n")
    req = request(full, path)
    full.sup.apply_control()
    answer = reply(req)
    assert answer["ok"] is True and answer["pending"] is True
    assert answer["message"].startswith("queue full (max_queued 2, 2 unfinished tasks)")
    assert path.exists() and sorted(full.sup.table.states) == [1, 2]


def test_once_does_not_wait_for_files_held_back_behind_held_tasks(tmp_path: Path) -> None:
    h = Harness(tmp_path / "home", "max_queued = 1", fake=True)
    try:
        h.sup.once = True
        h.sup.recover()
        h.submit("a.yaml", "name: a\napproval: true\nrun: x\n")
        h.submit("b.yaml", "name: b\nrun: x\n")
        h.tick()
        assert h.status(1) == "held" and spool_files(h) == ["b.yaml"]
        assert h.sup.should_exit()  # held tasks stay; so do the files behind them
    finally:
        h.close()
