"""The night through the real CLI: `run --until`, time windows, not_before, deadline."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Bantz
from tests.e2e.test_resume import ledger_lines, python_task

pytestmark = pytest.mark.slow


def test_until_stops_checkpointing_task_writes_report_and_next_run_resumes(
    bantz: Bantz, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop("train.yaml", python_task(tmp_path, epochs=200, ledger=str(ledger), pause=0.05))
    until = (datetime.now().astimezone() + timedelta(seconds=3)).isoformat(timespec="seconds")
    res = bantz("run", "--until", until, timeout=60)
    assert res.returncode == 0, res.stderr
    # cron mails stdout: the report's path and one summary line.
    assert res.stdout.strip().splitlines()[-1].startswith("bantzd: ")
    state = bantz.state(1)
    assert (state["status"], state["reason"]) == ("queued", "interrupted")
    assert state["failures"] == 0
    saved = json.loads((bantz.task_dir(1) / "checkpoint.json").read_text())["epoch"]
    assert 0 < saved < 200
    reports = list((bantz.home / "reports").glob("*.md"))
    assert reports, "the morning report was not written"

    res = bantz("run", "--once", timeout=120)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    second = [epoch for attempt, epoch in ledger_lines(ledger) if attempt == 2]
    assert second[0] == saved and second[-1] == 199


def test_until_in_the_past_is_a_usage_error(bantz: Bantz) -> None:
    past = (datetime.now().astimezone() - timedelta(minutes=5)).isoformat(timespec="seconds")
    res = bantz("run", "--until", past)
    assert res.returncode == 2
    assert "already past" in res.stderr


def test_windows_not_before_and_deadline(bantz: Bantz) -> None:
    now = datetime.now().astimezone()
    closed = f"{(now + timedelta(hours=2)):%H:%M}-{(now + timedelta(hours=3)):%H:%M}"
    later = (now + timedelta(hours=1)).isoformat(timespec="minutes")
    gone = (now - timedelta(minutes=1)).isoformat(timespec="seconds")
    bantz.drop("window.yaml", f"name: window\nwindow: '{closed}'\nrun: 'true'\n")
    bantz.drop("later.yaml", f"name: later\nnot_before: '{later}'\nrun: 'true'\n")
    bantz.drop("missed.yaml", f"name: missed\ndeadline: '{gone}'\nrun: 'true'\n")
    bantz.drop("now.yaml", "name: now\nrun: 'true'\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr  # --once does not wait for windows or not_before
    by_name = {bantz.state(i)["name"]: bantz.state(i) for i in range(1, 5)}
    assert by_name["window"]["status"] == "queued"
    assert by_name["window"]["reason"] == f"outside window {closed}"
    assert by_name["later"]["status"] == "queued"
    assert by_name["later"]["reason"].startswith("not before ")
    assert by_name["missed"]["status"] == "failed"
    assert by_name["missed"]["error"] == "missed deadline"
    assert by_name["now"]["status"] == "done"
