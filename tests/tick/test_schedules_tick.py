"""Schedules in the supervisor's tick, with a fake clock: weeks across DST nights in two
zones, overlap, catch-up after a night switched off, replacement, `after:`, and what a
crash between the steps of a firing leaves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bantzd.clock import epoch
from bantzd.reports.morning import report_text
from tests.tick.conftest import Harness

BERLIN = ZoneInfo("Europe/Berlin")  # clocks back 03:00 -> 02:00 on Sunday 2026-10-25
NEW_YORK = ZoneInfo("America/New_York")  # clocks forward 02:00 -> 03:00 on Sunday 2026-03-08


@pytest.fixture
def make(tmp_path: Path) -> Iterator:
    made: list[Harness] = []

    def build(start: datetime) -> Harness:
        h = Harness(tmp_path / f"home{len(made)}", "max_parallel = 4", fake=True)
        h.clock.now = start.timestamp()
        h.sup.recover()
        made.append(h)
        return h

    yield build
    for h in made:
        h.close()


def submit(h: Harness, name: str, schedule: str, extra: str = "") -> None:
    h.submit(f"{name}.yaml", f"name: {name}\nschedule: {schedule}\nrun: 'true'\n{extra}")
    h.clock.advance(1)  # the next look at the spool is due
    h.tick()
    assert name in h.sup.schedules.entries, h.journal()[-3:]


def schedule_state(h: Harness, name: str) -> dict:
    return json.loads((h.home.root / "schedules" / name / "state.json").read_text())


def finish_running(h: Harness) -> None:
    for att in list(h.sup.attempts):
        h.executor.finish(att.task_id)
    h.tick()


def fired(h: Harness) -> list[tuple[str, float]]:
    """(task name, clock time it was made) of every firing, from the journal."""
    return [(e["firing"], e["t"]) for e in h.journal() if e.get("event") == "schedule_fired"]


def step_to_each_firing(h: Harness, end: datetime, late: float = 0.0) -> None:
    """Move the clock to each next firing (plus `late` seconds), tick, let it finish."""
    while True:
        due = [
            t
            for e in h.sup.schedules.entries.values()
            if (t := epoch(e.state.next_fire)) is not None
        ]
        if not due or min(due) > end.timestamp():
            return
        h.clock.advance(max(0.0, min(due) + late - h.clock.time()))
        h.tick()
        finish_running(h)


def step_blindly(h: Harness, end: datetime, every: float) -> None:
    """Tick every `every` seconds, whatever is due."""
    while h.clock.time() < end.timestamp():
        h.clock.advance(every)
        h.tick()
        finish_running(h)


def hourly_names(name: str, start: datetime, end: datetime, zone: ZoneInfo) -> list[str]:
    """What Debian's cron runs for `0 * * * *`: every hour of real time, named by its
    local time; the repeated 02:00 of autumn carries its offset."""
    out, t = [], start.astimezone(UTC).replace(minute=0, second=0) + timedelta(hours=1)
    seen: set[str] = set()
    while t <= end:
        local = t.astimezone(zone)
        text = f"{name}@{local:%Y-%m-%dT%H:%M}"
        out.append(text + local.isoformat()[-6:] if text in seen else text)
        seen.add(text)
        t += timedelta(hours=1)
    return out


def test_a_week_across_the_autumn_night_in_berlin(make) -> None:
    start = datetime(2026, 10, 21, 12, 0, tzinfo=BERLIN)
    end = start + timedelta(days=7)
    h = make(start)
    submit(h, "hourly", "{cron: '0 * * * *', tz: Europe/Berlin}")
    submit(h, "night", "{at: ['02:30', '23:00'], tz: Europe/Berlin}")
    step_to_each_firing(h, end)

    made = fired(h)
    hourly = [n for n, _ in made if n.startswith("hourly@")]
    assert hourly == hourly_names("hourly", start, end, BERLIN)
    assert len(hourly) == 7 * 24 + 1  # one more real hour than 7 * 24 wall hours: 169
    night = [n for n, _ in made if n.startswith("night@")]
    days = [start.date() + timedelta(days=i) for i in range(1, 8)]
    expected = sorted(
        [f"night@{d}T02:30" for d in days]
        + [f"night@{start.date() + timedelta(days=i)}T23:00" for i in range(7)]
    )
    assert sorted(night) == expected  # 02:30 of the repeated hour fires once
    # Exact: each made at its own instant (no jitter), the local time its name says.
    for name, t in made:
        local = datetime.fromtimestamp(t, BERLIN)
        stamp = name.split("@")[1]
        assert stamp[:16] == f"{local:%Y-%m-%dT%H:%M}" and local.second == 0, name
    the_0230 = next(t for n, t in made if n == "night@2026-10-25T02:30")
    assert the_0230 == datetime(2026, 10, 25, 0, 30, tzinfo=UTC).timestamp()  # summer time's
    # Every instance is one task, all done.
    states = h.sup.table.states.values()
    assert sorted(s.name for s in states) == sorted(n for n, _ in made)
    assert {str(s.status) for s in states} == {"done"}


def test_a_week_across_the_spring_night_in_new_york(make) -> None:
    start = datetime(2026, 3, 5, 12, 0, tzinfo=NEW_YORK)
    end = start + timedelta(days=7)
    h = make(start)
    submit(h, "nightly", "{cron: '30 2 * * *', tz: America/New_York, catch_up: none}")
    submit(h, "twice", "{every: 12h, tz: America/New_York, catch_up: none}")
    submit(h, "weekdays", "{at: '02:15', days: mon-fri, tz: America/New_York}")
    # Ticks every 4 minutes, blind to what is due: each firing is seen on time once.
    step_blindly(h, end, every=240)

    made = dict(fired(h))
    days = [start.date() + timedelta(days=i) for i in range(1, 8)]
    nightly = sorted(n for n in made if n.startswith("nightly@"))
    # 02:30 does not exist on 2026-03-08: cron runs it at the jump, 03:00.
    assert nightly == sorted(f"nightly@{d}T{'03:00' if d.day == 8 else '02:30'}" for d in days)
    twice = sorted(n for n in made if n.startswith("twice@"))
    # Accepted a second after 12:00 on the 5th: the first firing is 00:00 on the 6th.
    assert twice == sorted([f"twice@{d}T00:00" for d in days] + [f"twice@{d}T12:00" for d in days])
    weekdays = sorted(n for n in made if n.startswith("weekdays@"))
    assert weekdays == sorted(
        f"weekdays@{d}T{'03:00' if d.day == 8 else '02:15'}" for d in days if d.weekday() < 5
    )
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=UTC).timestamp()  # 03:00 EDT
    assert jump <= made["nightly@2026-03-08T03:00"] < jump + 240
    for name, t in made.items():  # each within one tick of its instant, never before it
        slot = datetime.fromisoformat(name.split("@")[1]).replace(tzinfo=NEW_YORK)
        assert 0 <= t - slot.timestamp() < 240, name
    assert len(h.sup.table.states) == len(made)


def test_overlap_skip_records_the_skipped_firing_and_queue_makes_it(make) -> None:
    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    submit(h, "skipper", "{cron: '0 * * * *', tz: UTC}")
    submit(h, "queuer", "{cron: '0 * * * *', tz: UTC, overlap: queue}")
    for _ in range(2):  # 11:00 and 12:00; nothing finishes
        h.clock.advance(3600)
        h.tick()
    names = sorted(s.name for s in h.sup.table.states.values())
    assert names == [
        "queuer@2026-11-23T11:00",
        "queuer@2026-11-23T12:00",
        "skipper@2026-11-23T11:00",
    ]
    skipped = schedule_state(h, "skipper")["skipped"]
    assert [s["firing"] for s in skipped] == ["2026-11-23T12:00:00+00:00"]
    assert skipped[0]["because"].endswith("(running)")
    assert schedule_state(h, "skipper")["next_slot"] == "2026-11-23T13:00:00+00:00"
    report = report_text(h.home, now=h.clock.time())
    coming = report.split("## Coming up")[1].split("## Machine")[0]
    assert "`skipper`: next firing 2026-11-23 13:00" in coming
    assert "firing of 2026-11-23 12:00 skipped: task" in coming
    assert "`queuer@2026-11-23T12:00`: running" in coming


@pytest.mark.parametrize(("catch_up", "expected"), [("one", 1), ("none", 0)])
def test_a_night_switched_off_makes_up_one_firing_or_none(make, catch_up, expected) -> None:
    h = make(datetime(2026, 11, 23, 21, 30, tzinfo=UTC))
    submit(h, "nightly", f"{{cron: '0 * * * *', tz: UTC, catch_up: {catch_up}}}")
    h.close()
    h.clock.advance(9 * 3600)  # off from 21:30 to 06:30: nine firings passed
    h.sup = h.new_supervisor()
    h.sup.recover()
    for _ in range(3):
        h.tick()
    made = [n for n, _ in fired(h)]
    assert made == (["nightly@2026-11-24T06:00"] if expected else [])
    missed = schedule_state(h, "nightly")["missed"]
    assert sum(m["count"] for m in missed) == 9 - expected
    assert schedule_state(h, "nightly")["next_slot"] == "2026-11-24T07:00:00+00:00"


def test_submitting_a_schedule_again_replaces_it_and_its_instance_goes_on(make) -> None:
    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    submit(h, "job", "{cron: '0 11 * * *', tz: UTC}")
    h.clock.advance(1800)
    h.tick()
    (first,) = h.sup.table.states.values()
    assert first.name == "job@2026-11-23T11:00" and str(first.status) == "running"
    submit(h, "job", "{cron: '15 12 * * *', tz: UTC}")
    state = schedule_state(h, "job")
    assert state["next_slot"] == "2026-11-23T12:15:00+00:00" and state["last_task"] == first.id
    assert (h.home.root / "schedules" / "job" / "schedule.yaml").read_text().count("15 12") == 1
    assert str(first.status) == "running"  # the running instance goes on
    finish_running(h)
    assert str(first.status) == "done"


def test_after_a_schedule_means_its_newest_instance(make) -> None:
    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    submit(h, "pull", "{cron: '0 11 * * *', tz: UTC}")
    h.submit("use.yaml", "name: use\nafter: [pull]\nrun: 'true'\n")
    h.clock.advance(1)
    h.tick()
    use = next(s for s in h.sup.table.states.values() if s.name == "use")
    assert use.reason == "after: pull (no such task yet)"
    h.clock.advance(1800)
    h.tick()
    h.tick()
    assert use.reason == "after: pull (running)"
    finish_running(h)
    h.tick()
    assert str(use.status) == "running"


def test_a_schedule_named_like_a_task_is_rejected(make) -> None:
    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    h.submit("backup.yaml", "name: backup\nrun: 'true'\n")
    h.tick()
    h.submit("backup-s.yaml", "name: backup\nschedule: {every: 1h}\nrun: 'true'\n")
    h.clock.advance(1)
    h.tick()
    error = (h.home.rejected / "backup-s.yaml.error.txt").read_text()
    assert "name: 'backup' is the name of task 1" in error
    assert not (h.home.root / "schedules" / "backup").exists()


def test_a_firing_made_before_a_crash_is_not_made_again(make) -> None:
    """The task of a firing exists, the schedule's state.json does not say so (the crash
    came between the two): the next supervisor finds the task and makes no second one."""
    h = make(datetime(2026, 11, 23, 10, 59, 30, tzinfo=UTC))
    submit(h, "job", "{cron: '0 11 * * *', tz: UTC}")
    path = h.home.root / "schedules" / "job" / "state.json"
    before = path.read_bytes()
    h.clock.advance(30)
    h.tick()
    assert [n for n, _ in fired(h)] == ["job@2026-11-23T11:00"]
    path.write_bytes(before)  # as if the crash came before the schedule's state was written
    (path.parent / "firing.yaml").write_text("name: stray\nrun: 'true'\n")  # and a leftover
    (h.home.task_dir(1) / "state.json").unlink()  # and the task's own state was lost too
    h.close()
    h.clock.advance(5)
    h.sup = h.new_supervisor()
    h.sup.recover()
    h.tick()
    assert [s.name for s in h.sup.table.states.values()] == ["job@2026-11-23T11:00"]
    state = schedule_state(h, "job")
    assert state["last_task"] == 1 and state["next_slot"] == "2026-11-24T11:00:00+00:00"
    assert not (path.parent / "firing.yaml").exists()


def test_pause_resume_and_fire_through_control(make) -> None:
    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    submit(h, "job", "{cron: '0 * * * *', tz: UTC}")
    handler = h.sup.handler
    reply = handler.apply({"action": "schedule", "params": {"op": "pause", "name": "job"}})
    assert reply["ok"], reply
    h.clock.advance(3 * 3600)
    h.tick()
    assert fired(h) == []
    reply = handler.apply({"action": "schedule", "params": {"op": "resume", "name": "job"}})
    assert "next firing 2026-11-23 14:00" in reply["message"]
    h.tick()
    assert fired(h) == []  # the firings passed while paused are not made up
    at = h.clock.time()
    fire = {"action": "schedule", "params": {"op": "fire", "name": "job", "at": at}}
    first = handler.apply(fire)
    again = handler.apply(fire)  # a request applied twice (after a crash) makes one task
    assert first["id"] == again["id"] and "made before" in again["message"]
    assert first["name"] == "job@2026-11-23T13:30"
    h.tick()
    assert str(h.sup.table.states[first["id"]].status) == "running"
    missing = handler.apply({"action": "schedule", "params": {"op": "fire", "name": "nope"}})
    assert not missing["ok"] and missing["exit"] == 3
    gone = handler.apply({"action": "schedule", "params": {"op": "remove", "name": "job"}})
    assert gone["ok"] and not (h.home.root / "schedules" / "job").exists()
    assert first["id"] in h.sup.table.states


def test_jitter_delays_each_firing_by_the_same_amount_and_survives_a_restart(make) -> None:
    from bantzd.supervisor.firing import jitter_of

    h = make(datetime(2026, 11, 23, 10, 30, tzinfo=UTC))
    submit(h, "spread", "{cron: '0 * * * *', tz: UTC, jitter: 10m}")
    delay = jitter_of("spread", h.sup.schedules.entries["spread"].spec.rule)
    assert 0 < delay <= 600  # (this name's delay is not 0: the test would prove nothing)
    assert (
        schedule_state(h, "spread")["next_fire"]
        == (datetime(2026, 11, 23, 11, 0, tzinfo=UTC) + timedelta(seconds=delay)).isoformat()
    )
    h.close()
    h.sup = h.new_supervisor()  # a restart computes the same delay
    h.sup.recover()
    step_to_each_firing(h, datetime(2026, 11, 23, 13, 30, tzinfo=UTC))
    slots = [datetime(2026, 11, 23, hour, 0, tzinfo=UTC).timestamp() for hour in (11, 12, 13)]
    assert fired(h) == [
        (f"spread@2026-11-23T{hour}:00", slot + delay)
        for hour, slot in zip((11, 12, 13), slots, strict=True)
    ]


def test_a_take_of_a_schedule_file_applied_twice_finds_the_schedule(tmp_path: Path) -> None:
    import os

    from bantzd.paths import Home
    from bantzd.supervisor.control import ControlHandler, OfflineQueue

    home = Home(tmp_path / "home")
    home.ensure()
    path = home.spool / "w.yaml"
    path.write_text("name: w\nschedule: {every: 1h}\nrun: x\n")
    st = os.stat(path)
    request = {"action": "take", "params": {"file": "w.yaml", "inode": [st.st_dev, st.st_ino]}}
    handler = ControlHandler(OfflineQueue(home), home, approval_categories=())
    first = handler.apply(request)
    assert first["schedule"] == "w" and "w.yaml: schedule w, every 1h" in first["message"]
    # Replayed (a crash before its reply): the file is schedule.yaml now, found by inode.
    again = ControlHandler(OfflineQueue(home), home, approval_categories=()).apply(request)
    assert again["schedule"] == "w"
