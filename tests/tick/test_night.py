"""Windows and `--until` at fixed local times, DST nights included (Europe/Berlin).

The clock is fake and set to the instant; the zone is the process's (TZ), as on a user's
machine. 2026-03-29 02:00 CET does not exist (clocks jump to 03:00 CEST); 2026-10-25
02:00-03:00 happens twice.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from bantzd.supervisor.timing import local_now, resolve_until
from tests.tick.conftest import Harness

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def berlin_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(*args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=BERLIN, fold=fold).timestamp()


def _harness(tmp_path, now: float, until: float | None = None) -> Harness:  # type: ignore[no-untyped-def]
    return Harness(tmp_path / "home", "max_parallel = 2", fake=True, now=now, until=until)


def test_until_0700_on_the_spring_night_is_seven_hours_after_2300(tmp_path) -> None:
    start = at(2026, 3, 28, 23, 0)
    until = resolve_until("07:00", local_now(start)).timestamp()
    assert until - start == 7 * 3600  # 8 clock hours, one of which does not exist
    h = _harness(tmp_path, start, until)
    try:
        h.submit("a.yaml", "name: a\nrun: x\n")
        h.tick()
        assert h.status(1) == "running"
        h.clock.advance(7 * 3600 - 1)
        h.tick()
        assert h.executor.signals == [] and not h.sup.stopping
        h.clock.advance(1)
        h.tick()
        assert h.sup.stopping and h.executor.signals == [(1, signal.SIGTERM)]
        h.tick()
        state = h.state(1)
        assert state["status"] == "queued" and state["interruptions"] == 1
        assert h.sup.should_exit()
    finally:
        h.close()


def test_until_0700_on_the_autumn_night_is_nine_hours_after_2300(tmp_path) -> None:
    start = at(2026, 10, 24, 23, 0)
    until = resolve_until("07:00", local_now(start)).timestamp()
    assert until - start == 9 * 3600
    h = _harness(tmp_path, start, until)
    try:
        h.clock.advance(9 * 3600 - 1)
        h.tick()
        assert not h.sup.stopping
        h.clock.advance(1)
        h.tick()
        assert h.sup.stopping
    finally:
        h.close()


def test_a_window_opens_at_its_local_time_after_the_spring_jump(tmp_path) -> None:
    h = _harness(tmp_path, at(2026, 3, 29, 1, 59))
    try:
        h.submit("w.yaml", "name: w\nrun: x\nwindow: '03:00-04:00'\n")
        h.tick()
        state = h.state(1)
        assert state["status"] == "queued" and "window" in state["reason"]
        h.clock.advance(60)  # 01:59 CET + 1 min = 03:00 CEST
        h.tick()
        assert h.status(1) == "running"
    finally:
        h.close()


def test_a_window_in_the_repeated_hour_starts_at_its_first_occurrence(tmp_path) -> None:
    h = _harness(tmp_path, at(2026, 10, 25, 1, 59))
    try:
        h.submit("w.yaml", "name: w\nrun: x\nwindow: '02:00-02:30'\n")
        h.tick()
        assert h.status(1) == "queued"
        h.clock.advance(60)  # 02:00 CEST, the first of the two
        h.tick()
        assert h.status(1) == "running"
    finally:
        h.close()


def test_a_window_that_closed_keeps_the_task_waiting_with_the_window_as_reason(
    tmp_path,
) -> None:
    h = _harness(tmp_path, at(2026, 11, 22, 6, 0))
    try:
        h.submit("w.yaml", "name: w\nrun: x\nwindow: '23:00-05:00'\n")
        h.tick()
        state = h.state(1)
        assert state["status"] == "queued" and "23:00-05:00" in state["reason"]
        h.clock.advance(17 * 3600 - 1)  # 22:59:59
        h.tick()
        assert h.status(1) == "queued"
        h.clock.advance(1)
        h.tick()
        assert h.status(1) == "running"
    finally:
        h.close()
