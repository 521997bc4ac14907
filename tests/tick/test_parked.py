"""Parked tasks (supervisor/table.py): a queued task held by its `after:` is left out of the
start order until a task its list names is added or moves. Parking is a shortcut, so a
supervisor that parks must leave every task exactly as one that never parks would: the
differential test drives both through the same random nights and compares every state."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.supervisor.starter import FULL_PASS_QUEUE
from bantzd.supervisor.table import TaskTable
from tests.tick.conftest import Harness

NAMES = ["a", "b", "c", "d", "e"]


def test_tasks_waiting_for_a_missing_task_are_parked_and_start_once_it_is_done(
    fake: Harness,
) -> None:
    n = FULL_PASS_QUEUE + 8  # more than a tick looks at in full every time
    for i in range(n):
        fake.submit(f"w{i:02d}.yaml", f"name: w{i:02d}\nrun: 'true'\nafter: [gate]\n")
    fake.tick()
    table = fake.sup.table
    assert table.parked() == n
    assert table.order() == []
    assert fake.state(1)["reason"] == "after: gate (no such task yet)"
    fake.submit("gate.yaml", "name: gate\nrun: 'true'\n")
    fake.clock.advance(0.5)  # the spool's next look (scan_interval)
    fake.tick()  # gate joins the queue and starts: every waiter is looked at again
    gate = n + 1
    assert fake.status(gate) == "running"
    assert table.parked() == 0  # their verdict (gate queued) is already old
    fake.tick()
    assert fake.state(1)["reason"] == "after: gate (running)"
    assert table.parked() == n
    fake.executor.finish(gate, 0)
    fake.tick()
    assert table.parked() == 0
    assert [fake.status(i) for i in (1, 2, 3)] == ["running", "running", "queued"]


def test_a_waiter_is_not_parked_on_a_verdict_its_own_tick_made_old(fake: Harness) -> None:
    """`a` starts in the tick that found `b` waiting for it while it was queued: `b` must
    be looked at again, not parked with `after: a (queued)`."""
    fake.submit("a.yaml", "name: a\nrun: 'true'\n")
    fake.submit("b.yaml", "name: b\nrun: 'true'\nafter: [a]\n")
    fake.tick()
    assert fake.sup.table.parked() == 0
    fake.tick()
    assert fake.state(2)["reason"] == "after: a (running)"
    assert fake.sup.table.parked() == 1


def state(task_id: int, name: str, status: Status = Status.QUEUED, **kw: object) -> TaskState:
    return TaskState(id=task_id, name=name, status=status, **kw)  # type: ignore[arg-type]


def test_the_table_finds_the_newest_task_of_a_name_and_follows_renames() -> None:
    table = TaskTable()
    old, new = state(1, "x", Status.DONE), state(2, "x")
    for s in (old, new, state(3, "y", schedule="nightly")):
        table.add(s)
    assert table.deps.find("x", exclude=9) is new
    assert table.deps.find("x", exclude=2) is old
    assert table.deps.find("nightly", exclude=9).id == 3
    assert table.deps.find(2, exclude=2) is None
    table.park({3: ("x",)}, table.moves)
    assert table.parked() == 1
    new.name = "renamed"  # what `bantzd edit` does through the store
    table.touched(new)
    assert table.parked() == 0  # its waiter is looked at again
    assert table.deps.find("x", exclude=9) is old
    assert table.deps.find("renamed", exclude=9) is new
    del table.states[1]  # `bantzd clean` of a finished task
    assert table.deps.find("x", exclude=9) is None


def test_a_parked_task_comes_back_in_its_place_in_the_order() -> None:
    table = TaskTable()
    tasks = [state(i, f"t{i}", priority=p) for i, p in ((1, 0), (2, 10), (3, 0), (4, -10))]
    for s in tasks:
        table.add(s)
    assert [s.id for s in table.order()] == [2, 1, 3, 4]
    table.park({1: ("gate",), 4: ("gate", "t2")}, table.moves)
    assert [s.id for s in table.order()] == [2, 3]
    gate = state(5, "gate")
    table.add(gate)  # both wake; the add also rebuilds the order
    assert [s.id for s in table.order()] == [2, 1, 3, 5, 4]
    table.park({1: ("gate",), 4: ("gate",)}, table.moves)
    assert [s.id for s in table.order()] == [2, 3, 5]
    gate.status = Status.RUNNING
    table.track(gate, Status.QUEUED)
    assert [s.id for s in table.order() if s.status is Status.QUEUED] == [2, 1, 3, 4]
    assert len({id(s) for s in table.order()}) == len(table.order())  # no entry twice


def _task_text(rng: random.Random, name: str, ids: int) -> str:
    refs: list[str] = []
    for _ in range(rng.choice((0, 1, 1, 2))):
        if ids and rng.random() < 0.3:
            refs.append(str(rng.randint(1, ids + 2)))  # an id, maybe one not there yet
        else:
            refs.append(rng.choice([*NAMES, "nobody"]))
    priority = rng.choice(("low", "normal", "high"))
    after = f"after: [{', '.join(refs)}]\n" if refs else ""
    return f"name: {name}\nrun: 'true'\npriority: {priority}\n{after}"


def _snapshot(h: Harness, ids: int) -> list[tuple[str | None, str | None]]:
    out = []
    for i in range(1, ids + 1):
        data = h.state(i)
        out.append((data["status"], data.get("reason")) if data else (None, None))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_parking_changes_nothing_a_supervisor_does(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    parks = Harness(tmp_path / "parks", "max_parallel = 2", fake=True)
    plain = Harness(tmp_path / "plain", "max_parallel = 2", fake=True)
    plain.sup.table.park = lambda *args, **kwargs: None  # type: ignore[method-assign]
    both = (parks, plain)
    submitted = most_parked = 0
    try:
        for step in range(90):
            for _ in range(rng.choice((0, 0, 1, 3, 12))):
                submitted += 1
                text = _task_text(rng, rng.choice(NAMES), submitted)
                for h in both:
                    h.submit(f"t{submitted:04d}.yaml", text)
            running = [i for i in range(1, submitted + 1) if parks.status(i) == "running"]
            for task_id in running:
                if rng.random() < 0.4:
                    code = 0 if rng.random() < 0.8 else 1
                    for h in both:
                        h.executor.finish(task_id, code)
            seconds = rng.choice((0.0, 0.3, 1.1))
            for h in both:
                h.clock.advance(seconds)
                h.tick()
            assert _snapshot(parks, submitted) == _snapshot(plain, submitted), f"step {step}"
            most_parked = max(most_parked, parks.sup.table.parked())
        assert most_parked > FULL_PASS_QUEUE // 2  # the shortcut was really taken
    finally:
        for h in both:
            h.close()
