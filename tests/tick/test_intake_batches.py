"""A big drop is taken in LOOK_BATCH files a tick (supervisor/intake.py): the first tasks
start, and the rest follow on the next ticks without waiting for the next look."""

from __future__ import annotations

import pytest

from bantzd.supervisor import intake
from tests.tick.conftest import Harness


def test_a_big_drop_is_taken_in_batches_and_the_first_start_at_once(
    fake: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "LOOK_BATCH", 3)
    for i in range(8):
        fake.submit(f"t{i}.yaml", f"name: t{i}\nrun: 'true'\n")
    fake.tick()
    assert len(fake.sup.table.states) == 3
    assert [fake.status(i) for i in (1, 2, 3)] == ["running", "running", "queued"]
    assert fake.sup.next_wake() == 0  # the rest of the look is due at once
    fake.tick()  # the clock stands still: no new look was due, the backlog was
    fake.tick()
    assert len(fake.sup.table.states) == 8
    assert sorted(p.name for p in fake.home.spool.glob("*.yaml")) == []
    names = [fake.state(i)["name"] for i in range(1, 9)]
    assert names == [f"t{i}" for i in range(8)]  # oldest first, as one look
    assert fake.sup.next_wake() > 0


def test_a_file_removed_while_in_the_backlog_is_skipped(
    fake: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intake, "LOOK_BATCH", 2)
    paths = [fake.submit(f"t{i}.yaml", f"name: t{i}\nrun: 'true'\n") for i in range(4)]
    fake.tick()
    paths[2].unlink()  # taken back by its owner before its turn
    fake.tick()
    assert sorted(s.name for s in fake.sup.table.states.values()) == ["t0", "t1", "t3"]
    assert list((fake.home.spool / "rejected").glob("*")) == []
