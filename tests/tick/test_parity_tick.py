"""Tick by tick: `edit` and `priority` reach the running supervisor's cached queue."""

from __future__ import annotations

from tests.tick.conftest import Harness


def test_an_edit_replaces_the_spec_the_scheduler_sees(fake: Harness) -> None:
    fake.submit("job.yaml", "run: 'true'\nafter: [nobody]\n")
    fake.tick()
    fake.tick()
    assert fake.status(1) == "queued" and "nobody" in (fake.state(1)["reason"] or "")
    reply = fake.sup.handler.apply(
        {"action": "edit", "task": 1, "params": {"text": "name: job\nrun: 'true'\n"}}
    )
    assert reply["ok"], reply
    fake.tick()
    assert fake.status(1) == "running"  # the cached candidate with `after:` was dropped


def test_a_priority_change_reorders_the_queue(fake: Harness) -> None:
    fake.sup._set_parallel(1)
    for name in ("a", "b", "c"):
        fake.submit(f"{name}.yaml", f"name: {name}\nrun: 'true'\n")
    fake.tick()
    assert [fake.status(i) for i in (1, 2, 3)] == ["running", "queued", "queued"]
    reply = fake.sup.handler.apply({"action": "priority", "task": 3, "params": {"priority": 5}})
    assert reply["ok"], reply
    order = [s.id for s in fake.sup.table.order()]
    assert order.index(3) < order.index(2)
