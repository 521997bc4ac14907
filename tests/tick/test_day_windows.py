"""Windows with days (SPEC 9) in the supervisor's start decisions, with a fake clock.

The zone is the process's (TZ), as on a user's machine; two zones, each over a DST weekend:
Europe/Berlin falls back on Sunday 2026-10-25, America/New_York springs forward on Sunday
2026-03-08. 2026-11-20 is a Friday.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.tick.conftest import Harness

WEEKNIGHTS = "name: w\nrun: x\nwindow: 'mon-fri 23:00-07:00'\n"


@pytest.fixture
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[ZoneInfo]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield ZoneInfo(request.param)
    monkeypatch.undo()
    time.tzset()


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> float:
    return datetime(*args, tzinfo=zone, fold=fold).timestamp()  # type: ignore[misc]


def goto(h: Harness, when: float) -> None:
    h.clock.advance(when - h.clock.time())


def harness(tmp_path, now: float) -> Harness:  # type: ignore[no-untyped-def]
    return Harness(tmp_path / "home", "max_parallel = 2", fake=True, now=now)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"], indirect=True)
def test_friday_night_runs_into_saturday_and_saturday_night_waits_for_monday(
    tmp_path, zone: ZoneInfo
) -> None:
    h = harness(tmp_path, at(zone, 2026, 11, 21, 3, 0))  # Saturday 03:00: Friday's window
    try:
        h.submit("a.yaml", WEEKNIGHTS)
        h.tick()
        assert h.status(1) == "running"
        h.executor.finish(1)
        h.clock.advance(5 * 3600)  # Saturday 08:00: closed, and no window opens on Saturday
        h.submit("b.yaml", WEEKNIGHTS.replace("name: w", "name: b"))
        h.tick()
        state = h.state(2)
        assert state["status"] == "queued"
        assert state["reason"] == "outside window mon-fri 23:00-07:00 (opens Mon 23:00)"
        # Sunday 23:30 and Monday 03:00 are still outside (Sunday opens no window).
        goto(h, at(zone, 2026, 11, 22, 23, 30))
        h.tick()
        assert h.status(2) == "queued"
        goto(h, at(zone, 2026, 11, 23, 3, 0))
        h.tick()
        assert h.status(2) == "queued"
        assert h.sup.starter.last.wake_at == at(zone, 2026, 11, 23, 23, 0)
        goto(h, at(zone, 2026, 11, 23, 22, 59, 59))
        h.tick()
        assert h.status(2) == "queued"
        h.clock.advance(1)  # Monday 23:00
        h.tick()
        assert h.status(2) == "running"
    finally:
        h.close()


@pytest.mark.parametrize("zone", ["Europe/Berlin"], indirect=True)
def test_a_weekend_window_on_the_autumn_night_opens_once_at_its_first_0200(
    tmp_path, zone: ZoneInfo
) -> None:
    # Sunday 2026-10-25: 02:00-02:59 happens twice; `sun 02:00-02:30` opens on the first.
    h = harness(tmp_path, at(zone, 2026, 10, 25, 1, 59))
    try:
        h.submit("w.yaml", "name: w\nrun: x\nwindow: 'sat-sun 02:00-02:30'\n")
        h.tick()
        assert h.status(1) == "queued"
        h.clock.advance(60)  # 02:00 CEST
        h.tick()
        assert h.status(1) == "running"
        h.executor.finish(1, exit_code=1)  # fails: no retry; the next task waits
        h.clock.advance(3600)  # 02:00 CET, the second pass: closed since 02:30 CEST
        h.submit("v.yaml", "name: v\nrun: x\nwindow: 'sat-sun 02:00-02:30'\n")
        h.tick()
        assert h.status(2) == "queued"
        assert h.state(2)["reason"].endswith("(opens Sat 02:00)")
    finally:
        h.close()


@pytest.mark.parametrize("zone", ["America/New_York"], indirect=True)
def test_a_saturday_night_window_over_the_spring_jump_closes_at_its_local_end(
    tmp_path, zone: ZoneInfo
) -> None:
    # Saturday 2026-03-07 23:00 EST -> Sunday 04:00 EDT: four real hours, not five.
    h = harness(tmp_path, at(zone, 2026, 3, 7, 22, 0))
    try:
        h.submit("w.yaml", "name: w\nrun: x\nwindow: 'sat 23:00-04:00'\n")
        h.tick()
        assert h.status(1) == "queued"
        h.clock.advance(3600)
        h.tick()
        assert h.status(1) == "running"
        h.executor.finish(1)
        h.clock.advance(4 * 3600 - 1)  # 03:59:59 EDT
        h.submit("v.yaml", "name: v\nrun: x\nwindow: 'sat 23:00-04:00'\n")
        h.tick()
        assert h.status(2) == "running"
        h.executor.finish(2)
        h.clock.advance(1)  # 04:00 EDT: closed until next Saturday
        h.submit("u.yaml", "name: u\nrun: x\nwindow: 'sat 23:00-04:00'\n")
        h.tick()
        assert h.state(3)["reason"] == "outside window sat 23:00-04:00 (opens Sat 23:00)"
    finally:
        h.close()
