"""Tier 2: the supervisor stepped one tick at a time on a real home with a fake clock."""

from __future__ import annotations

import json
import os

from bantzd.clock import hms
from tests.tick.conftest import Harness


def test_one_tick_takes_in_and_starts_a_spooled_task(harness: Harness) -> None:
    harness.sup.recover()
    spooled = harness.submit("job.yaml", "run: 'true'\n")
    harness.tick()
    assert not spooled.exists()
    state = harness.state(1)
    assert state is not None, "the spool file did not become task 1 in one tick"
    assert (state["name"], state["status"], state["attempts"]) == ("job", "running", 1)
    assert state["source"] == "job.yaml"
    harness.tick_until(lambda: harness.status(1) == "done", "task 1 done")
    state = harness.state(1)
    assert (state["exit_code"], state["pid"], state["error"]) == (0, None, None)
    assert [e["outcome"] for e in state["attempt_log"]] == ["done"]


def test_a_file_still_being_written_waits_for_the_settle_time(harness: Harness) -> None:
    harness.sup.recover()
    spooled = harness.submit("job.yaml", "run: 'true'\n")
    now = harness.clock.time()
    os.utime(spooled, (now, now))  # just written
    harness.tick()
    assert spooled.exists() and harness.state(1) is None
    harness.clock.advance(2.0)  # past intake's settle time and the scan interval
    harness.tick()
    assert not spooled.exists() and harness.status(1) == "running"


def test_a_retry_waits_until_the_clock_passes_retry_at(harness: Harness) -> None:
    harness.sup.recover()
    harness.submit("flaky.yaml", "run: 'false'\nretries: 1\nretry_delay: 10m\n")
    harness.tick()
    failed_at = harness.clock.time()  # the clock stands still while the attempt runs
    harness.tick_until(lambda: harness.state(1)["failures"] == 1, "the first attempt to fail")
    state = harness.state(1)
    assert state["status"] == "queued"
    assert state["retry_at"] == failed_at + 600
    assert state["reason"] == f"retry at {hms(failed_at + 600)}"
    assert (state["exit_code"], state["error"], state["attempts"]) == (1, "exit 1", 1)

    for _ in range(3):  # ticks before retry_at start nothing
        harness.tick()
    harness.clock.advance(599)
    harness.tick()
    assert (harness.status(1), harness.state(1)["attempts"]) == ("queued", 1)

    harness.clock.advance(2)
    harness.tick()
    assert (harness.status(1), harness.state(1)["attempts"]) == ("running", 2)
    harness.tick_until(lambda: harness.status(1) == "failed", "the last attempt to fail")
    state = harness.state(1)
    assert (state["failures"], state["error"], state["retry_at"]) == (2, "exit 1", None)
    assert [e["outcome"] for e in state["attempt_log"]] == ["failed", "failed"]


def test_a_task_whose_cwd_is_missing_fails_at_its_start(harness: Harness, tmp_path) -> None:
    harness.sup.recover()
    missing = tmp_path / "nope"
    harness.submit("lost.yaml", f"run: 'true'\ncwd: {json.dumps(str(missing))}\n")
    harness.tick()
    state = harness.state(1)
    assert state["status"] == "failed"
    assert str(missing) in state["error"]
    assert (state["attempts"], state["failures"], state["exit_code"]) == (1, 1, None)
    assert [e["outcome"] for e in state["attempt_log"]] == ["failed"]
    assert harness.sup.attempts.held == {}  # what the start took is given back
