"""`bantzd plan`'s forecast against a real night of the supervisor (SPEC 11).

The forecast runs the supervisor's own code on a copy of the queue; here the same queue is
then run for real (fake executor, the clock stepped a tick at a time, each attempt ended
when its estimate has passed), and every forecast start must match the real one within a
tick. Europe/Berlin; 2026-11-22 is a Sunday.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bantzd.clock import epoch
from bantzd.config import load_config
from bantzd.supervisor.forecast import forecast, quiet_config
from bantzd.supervisor.probes import Reading
from tests.tick.conftest import Harness

BERLIN = ZoneInfo("Europe/Berlin")
TICK = 60.0
TASKS = {
    "a.yaml": "name: big\nrun: x\nestimate: 3h\n",
    "b.yaml": "name: after-big\nrun: x\nestimate: 20m\nafter: [big]\n",
    "c.yaml": "name: urgent\nrun: x\nestimate: 1h\npriority: high\n",
    "d.yaml": "name: later\nrun: x\nestimate: 2h\nnot_before: '01:30'\n",
    "e.yaml": "name: too-long\nrun: x\nestimate: 9h\n",
    "f.yaml": "name: resumable\nrun: x\nestimate: 9h\ncheckpoints: true\npriority: low\n",
}


@pytest.fixture(autouse=True)
def berlin_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def test_forecast_starts_match_a_real_night_within_one_tick(tmp_path) -> None:
    now, until = at(2026, 11, 22, 23, 0), at(2026, 11, 23, 7, 0)
    h = Harness(tmp_path / "home", "max_parallel = 2", fake=True, now=now, until=until)
    try:
        for name, text in TASKS.items():
            h.submit(name, text)
        config = quiet_config(load_config(h.home.config))
        plan = forecast(h.home, config, now, until, Reading(0.0, 16 << 30, [], 32 << 30))
        assert not (h.home.tasks / "1").exists()  # the forecast changed nothing here
        names = plan.names
        predicted = {names[r.task_id]: r.start for r in plan.runs}
        assert set(predicted) == {"big", "after-big", "urgent", "later", "resumable"}
        assert "would not finish before 07:00" in plan.waiting[5]
        assert names[5] == "too-long"

        ends: dict[int, float] = {}
        while h.clock.time() < until + TICK:
            for task_id, end in ends.items():  # ended since the last tick: seen by this one
                if h.clock.time() >= end and h.sup.table.states[task_id].status.value == "running":
                    h.executor.finish(task_id)
            h.tick()
            for task_id, state in h.sup.table.states.items():
                if state.status.value == "running" and task_id not in ends:
                    est, _ = h.sup.table.fit(state, h.sup.table.specs[task_id])
                    ends[task_id] = h.clock.time() + est.seconds
            h.clock.advance(TICK)
        real = {
            s.name: epoch(s.attempt_log[0]["start"])
            for s in h.sup.table.states.values()
            if s.attempt_log
        }
        assert set(real) == set(predicted)
        for name, start in predicted.items():
            assert abs(real[name] - start) <= TICK, name
        assert h.sup.table.states[5].reason == plan.waiting[5]
    finally:
        h.close()
