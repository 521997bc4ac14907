"""Fitting the night (SPEC 11) in the supervisor's start decisions, with a fake clock.

Europe/Berlin; 2026-11-23 is a Monday. The rule: a task that cannot resume and has an
estimate does not start when it would not finish before `--until`, its window's end or
its deadline; without an estimate, or when it can resume, it starts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.tick.conftest import Harness

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.fixture(autouse=True)
def berlin_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def at(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def harness(tmp_path, now: float, until: float | None) -> Harness:  # type: ignore[no-untyped-def]
    return Harness(tmp_path / "home", "max_parallel = 8", fake=True, now=now, until=until)


def test_what_cannot_resume_and_would_not_finish_waits_the_rest_start(tmp_path) -> None:
    h = harness(tmp_path, at(2026, 11, 23, 4, 0), until=at(2026, 11, 23, 7, 0))
    try:
        h.submit("1.yaml", "name: big\nrun: x\nestimate: 3h10m\n")
        h.submit("2.yaml", "name: resumes\nrun: x\nestimate: 3h10m\ncheckpoints: true\n")
        h.submit("3.yaml", "name: stepped\nestimate: 3h10m\nsteps: [{name: a, run: x}]\n")
        h.submit("4.yaml", "name: unknown\nrun: x\n")  # no estimate: never held back
        h.submit("5.yaml", "name: fits\nrun: x\nestimate: 2h\n")
        h.tick()
        names = {h.state(i)["name"]: h.state(i) for i in range(1, 6)}
        big = names["big"]
        assert big["status"] == "queued"
        assert big["reason"] == "would not finish before 07:00 (estimate 3h10m from the task file)"
        for name in ("resumes", "stepped", "unknown", "fits"):
            assert names[name]["status"] == "running", name
        assert not h.sup.starter.last.transient_waits()  # `--once` would not wait for it
    finally:
        h.close()


def test_window_end_and_deadline_count_too(tmp_path) -> None:
    h = harness(tmp_path, at(2026, 11, 23, 1, 0), until=None)
    try:
        h.submit("w.yaml", "name: w\nrun: x\nestimate: 5h\nwindow: '23:00-05:00'\n")
        h.submit("d.yaml", "name: d\nrun: x\nestimate: 5h\ndeadline: '05:30'\n")
        h.submit("ok.yaml", "name: ok\nrun: x\nestimate: 3h\nwindow: '23:00-05:00'\n")
        h.tick()
        by_name = {h.state(i)["name"]: h.state(i) for i in range(1, 4)}
        assert (
            by_name["w"]["reason"]
            == "would not finish before 05:00 (estimate 5h from the task file)"
        )
        assert (
            by_name["d"]["reason"]
            == "would not finish before 05:30 (estimate 5h from the task file)"
        )
        assert by_name["ok"]["status"] == "running"
    finally:
        h.close()


def test_the_estimate_is_learned_from_the_names_runs_and_raised_after_an_overrun(tmp_path) -> None:
    h = harness(tmp_path, at(2026, 11, 22, 23, 0), until=at(2026, 11, 23, 7, 0))
    try:
        h.submit("a.yaml", "name: train\nrun: x\n")
        h.tick()
        assert h.status(1) == "running"
        h.clock.advance(2 * 3600)
        h.executor.finish(1)
        # 01:00: a second run, taken in the tick the first ends: its estimate (2h) fits.
        h.submit("b.yaml", "name: train\nrun: x\n")
        h.tick()
        assert h.status(1) == "done"
        book = json.loads(h.home.estimates.read_text())
        assert book["names"]["train"] == [{"task": 1, "took": 7200.0, "estimate": None}]
        assert h.status(2) == "running"
        h.clock.advance(3 * 3600)  # it overruns its 2h: 3h
        h.executor.finish(2)
        h.tick()
        assert h.status(2) == "done"
        # 04:00: the mean would be 2h30m, the overrun raises it to 3h: it would end at
        # 07:00 exactly, which fits; at 04:01 it does not.
        h.clock.advance(60)
        h.submit("c.yaml", "name: train\nrun: x\n")
        h.tick()
        state = h.state(3)
        assert state["status"] == "queued"
        assert state["reason"] == "would not finish before 07:00 (estimate 3h from 2 runs)"
    finally:
        h.close()


def test_a_task_that_saved_a_checkpoint_may_start_the_next_night(tmp_path) -> None:
    h = harness(tmp_path, at(2026, 11, 23, 1, 0), until=at(2026, 11, 23, 5, 0))
    try:
        h.submit("a.yaml", "name: long\nrun: x\nestimate: 3h\n")
        h.submit("b.yaml", "name: plain\nrun: x\nestimate: 3h\n")
        h.tick()
        assert h.status(1) == h.status(2) == "running"
        (h.task_dir(1) / "checkpoint.json").write_text('{"step": 3}')
        h.clock.advance(4 * 3600)  # 05:00: --until; both are stopped and go back to the queue
        h.tick()
        h.tick()
        assert h.status(1) == h.status(2) == "queued"
        # The next night, 06:00 with --until 07:00: 3h does not fit, but task 1 resumes.
        h.clock.advance(25 * 3600)
        h.sup.close()
        h.sup = h.new_supervisor(until=h.clock.time() + 3600)
        h.sup.recover()
        h.tick()
        assert h.status(1) == "running"
        assert (
            h.state(2)["reason"] == "would not finish before 07:00 (estimate 3h from the task file)"
        )
    finally:
        h.close()
