"""A full disk: the supervisor says so once, moves nothing, starts nothing, and carries on
by itself when space returns. The home lives on a small tmpfs (root and mount needed)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.paths import Home
from tests.conftest import Bantz, config_text, tmpfs, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def small_home(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "3m") as mnt:
        home = mnt / "home"
        Home(home).ensure()
        (home / "config.toml").write_text(config_text("max_parallel = 1"))
        yield home


def test_disk_full_pauses_and_recovers(small_home: Path, tmp_path: Path) -> None:
    bantz = Bantz(small_home)
    filler = small_home.parent / "filler"
    # Task 1 fills the disk (and succeeds); tasks 2 and 3 wait behind it in the queue. It
    # waits for their state.json first: accepted in the tick that started task 1, they are
    # written by the writer thread just after, and a disk filled before that would leave
    # them only in task.yaml (recoverable, but not what this test looks at).
    wait_state = small_home / "tasks" / "3" / "state.json"
    bantz.drop(
        "a-fill.yaml",
        f"run: for i in $(seq 200); do [ -e {wait_state} ] && break; sleep 0.05; done;"
        f" head -c 20000000 /dev/zero > {filler} || true\n",
    )
    bantz.drop("b.yaml", "run: echo second\nafter: [a-fill]\n")
    bantz.drop("c.yaml", "run: echo third\nafter: [a-fill]\n")
    stderr = tmp_path / "stderr"
    proc = bantz.start("run", stderr=stderr)
    try:
        wait_for(lambda: "disk full" in stderr.read_text(), timeout=30, what="the disk-full line")
        # While full: nothing else starts, every task stays where it was.
        statuses = {i: bantz.status_of(i) for i in (1, 2, 3)}
        assert statuses[2] == statuses[3] == "queued"
        assert "second" not in bantz.output(2) and "third" not in bantz.output(3)
        filler.unlink()
        wait_for(
            lambda: all(bantz.status_of(i) == "done" for i in (1, 2, 3)),
            timeout=30,
            what="all tasks done after space returned",
        )
    finally:
        proc.terminate()
        proc.wait(20)
    log = stderr.read_text()
    assert log.count("disk full") == 1, log
    assert "disk space is back" in log
    for i in (1, 2, 3):
        state = json.loads((bantz.task_dir(i) / "state.json").read_text())
        assert state["status"] == "done"
        # A start refused for lack of space went back to the queue without using an attempt.
        assert state["attempts"] == 1
        assert "failed" not in [h["status"] for h in state["history"]]
    assert "third" in bantz.output(3)
    assert not [n for n in os.listdir(small_home / "tasks" / "1") if n.endswith(".tmp")]


def test_disk_full_at_intake_leaves_the_spool_file_in_place(
    small_home: Path, tmp_path: Path
) -> None:
    bantz = Bantz(small_home)
    filler = small_home.parent / "filler"
    subprocess.run(f"head -c 20000000 /dev/zero > {filler}", shell=True, check=False)
    # The disk is full: the task file only fits because it is tiny; free a little room.
    with open(filler, "r+b") as f:
        f.truncate(os.path.getsize(filler) - 8192)
    bantz.drop("late.yaml", "run: echo late\n")
    with open(filler, "ab") as f:
        try:
            f.write(b"\0" * 16384)
        except OSError:
            pass
    stderr = tmp_path / "stderr"
    proc = bantz.start("run", stderr=stderr)
    try:
        wait_for(lambda: "disk full" in stderr.read_text(), timeout=30, what="the disk-full line")
        assert (small_home / "spool" / "late.yaml").exists()
        filler.unlink()
        wait_for(lambda: bantz.status_of(1) == "done", timeout=30, what="the late task")
    finally:
        proc.terminate()
        proc.wait(20)
    assert not (small_home / "spool" / "late.yaml").exists()
    assert os.listdir(small_home / "tasks") == ["1"], "the spool file became exactly one task"
