"""Kill the supervisor at each point of a schedule's firing, restart it, and find the
firing made exactly once: one task of that name, run once, recorded by the schedule.

Two ways to a firing: `bantzd schedule fire` (a control request; the command, finding the
supervisor dead, applies it itself), and a firing that is due when the supervisor starts
(the schedule's state.json is set to a slot a minute ago: the one thing faked is the
wait for the clock).
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from datetime import datetime

import pytest

from bantzd.crash import FIRING_POINTS
from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow


def schedule_file(ledger: str) -> str:
    # Fires on the 1st of January at 03:00 only: no firing of its own during the test.
    return (
        "name: nightly\n"
        "schedule: {cron: '0 3 1 1 *', catch_up: none}\n"
        f"run: echo begin >> {ledger}; sleep 0.2; echo end >> {ledger}\n"
    )


def schedule_state(bantz: Bantz) -> dict:
    return json.loads((bantz.home / "schedules" / "nightly" / "state.json").read_text())


def make_due(bantz: Bantz) -> str:
    """Set the pending slot to the last full minute: due, and on time, at the next start."""
    path = bantz.home / "schedules" / "nightly" / "state.json"
    state = json.loads(path.read_text())
    now = time.time()
    slot = datetime.fromtimestamp(now - now % 60).astimezone()
    state["next_slot"] = state["next_fire"] = slot.isoformat(timespec="seconds")
    tmp = path.with_name(".state.json.test")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, path)
    return f"nightly@{slot:%Y-%m-%dT%H:%M}"


@pytest.mark.parametrize("via", ["fire", "due"])
@pytest.mark.parametrize("point", FIRING_POINTS)
def test_crash_while_firing_then_restart(bantz: Bantz, point: str, via: str, tmp_path) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop("nightly.yaml", schedule_file(str(ledger)))
    res = bantz("run", "--once", timeout=60)  # takes the schedule in; nothing to run
    assert res.returncode == 0, res.stderr
    assert schedule_state(bantz)["last_task"] is None
    expected = make_due(bantz) if via == "due" else None

    bantz.env["BANTZ_CRASH_AT"] = point
    proc = bantz.start("run")
    del bantz.env["BANTZ_CRASH_AT"]  # only the supervisor crashes, not the CLI commands
    if via == "fire":
        wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
        res = bantz("schedule", "fire", "nightly", timeout=30)
        # Applied by the supervisor (which dies at the point), then by the command itself.
        assert res.returncode == 0, res.stderr
        expected = re.search(r"nightly@[-0-9T:]+", res.stdout).group()  # type: ignore[union-attr]
    assert proc.wait(30) == -signal.SIGKILL, f"did not crash at {point}"

    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    tasks = sorted((bantz.home / "tasks").iterdir())
    states = [json.loads((p / "state.json").read_text()) for p in tasks]
    assert [s["name"] for s in states] == [expected], states
    (only,) = states
    assert only["status"] == "done" and only["schedule"] == "nightly"
    assert ledger.read_text().split() == ["begin", "end"]  # it ran once
    state = schedule_state(bantz)
    assert state["last_task"] == only["id"] and state["instances"] == [only["id"]]
    assert not (bantz.home / "schedules" / "nightly" / "firing.yaml").exists()
    assert state["next_slot"][5:16] == "01-01T03:00"  # the next 1st of January, as before
