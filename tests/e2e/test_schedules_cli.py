"""The schedule commands through the real CLI, with and without a running supervisor."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow

WEEKLY = """\
name: weekly-notes
schedule:
  cron: "0 23 * * 1-5"
  tz: Europe/Istanbul
  jitter: 5m
run: echo notes
"""


def schedules_json(bantz: Bantz) -> list[dict]:
    res = bantz("schedules", "--json", check=True)
    return json.loads(res.stdout)


def test_schedule_commands_without_a_supervisor(bantz: Bantz, tmp_path) -> None:
    path = tmp_path / "weekly.yaml"
    path.write_text(WEEKLY)
    assert bantz("validate", str(path)).stdout.strip() == f"{path}: ok"
    res = bantz("submit", str(path), check=True)
    assert "schedule weekly-notes, at 23:00 on Monday through Friday; next firing" in res.stdout
    (obj,) = schedules_json(bantz)
    assert obj["name"] == "weekly-notes" and obj["tz"] == "Europe/Istanbul"
    assert obj["words"] == "at 23:00 on Monday through Friday"
    assert obj["rule"]["cron"] == "0 23 * * 1-5" and obj["rule"]["jitter"] == 300
    assert obj["next_fire"].endswith("+03:00") and obj["next_fire"][11:13] == "23"
    assert obj["paused"] is False and obj["last_task"] is None
    assert (bantz.home / "schedules" / "weekly-notes" / "schedule.yaml").read_text() == WEEKLY

    res = bantz("schedule", "fire", "weekly-notes", check=True)
    assert "schedule weekly-notes fired: task 1 (weekly-notes@" in res.stdout
    show = bantz("show", "1", check=True).stdout
    assert "schedule:   weekly-notes (firing of" in show
    assert json.loads(bantz("show", "1", "--json", check=True).stdout)["schedule"] == "weekly-notes"
    (obj,) = schedules_json(bantz)
    assert obj["last_task"]["id"] == 1 and obj["last_task"]["status"] == "queued"

    assert bantz("schedule", "pause", "weekly-notes").returncode == 0
    assert schedules_json(bantz)[0]["paused"] is True
    text = bantz("schedules", check=True).stdout
    assert "weekly-notes  paused" in text and "(Europe/Istanbul)" in text
    assert bantz("schedule", "resume", "weekly-notes").returncode == 0
    missing = bantz("schedule", "pause", "nope")
    assert missing.returncode == 3 and "no schedule named 'nope'" in missing.stderr
    assert bantz("schedule", "remove", "weekly-notes").returncode == 0
    assert schedules_json(bantz) == [] and bantz.status_of(1) == "queued"


def test_bad_schedule_files_are_rejected_with_the_field_named(bantz: Bantz) -> None:
    proc = bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
    bad = {
        "feb.yaml": "schedule: {cron: '0 0 31 2 *'}\nrun: x\n",
        "zero.yaml": "schedule: {every: 0s}\nrun: x\n",
        "zone.yaml": "schedule: {every: 1h, tz: Mars/Olympus}\nrun: x\n",
        "past.yaml": "schedule: {every: 1h, ends: 2020-01-01}\nrun: x\n",
        "days.yaml": "schedule: {cron: '0 1 * * *', days: [mon]}\nrun: x\n",
    }
    for name, text in bad.items():
        bantz.drop(name, text)
    rejected = bantz.home / "spool" / "rejected"
    wait_for(lambda: len(list(rejected.glob("*.error.txt"))) == len(bad), what="the rejections")
    errors = {n: (rejected / f"{n}.error.txt").read_text() for n in bad}
    assert "schedule.cron: '0 0 31 2 *' cannot fire" in errors["feb.yaml"]
    assert "schedule.every: must be more than zero" in errors["zero.yaml"]
    assert "schedule.tz: unknown time zone 'Mars/Olympus'" in errors["zone.yaml"]
    assert "schedule.ends: 2020-01-01 is in the past" in errors["past.yaml"]
    assert "schedule.days: only with at:" in errors["days.yaml"]
    # With a supervisor running, a fire through the command is applied by it.
    bantz.drop("ok.yaml", "name: ok\nschedule: {at: '03:00'}\nrun: 'true'\n")
    wait_for(lambda: (bantz.home / "schedules" / "ok" / "state.json").exists(), what="intake")
    res = bantz("schedule", "fire", "ok", check=True)
    assert "fired: task 1 (ok@" in res.stdout
    wait_for(lambda: bantz.status_of(1) == "done", what="the instance to run")
    proc.terminate()
    assert proc.wait(20) == 0
