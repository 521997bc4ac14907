"""What fires when: slots across DST nights, catch-up, jitter, instance names."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import islice
from zoneinfo import ZoneInfo

from bantzd.queue.schedulefile import Rule, ScheduleSpec, parse_spool_file
from bantzd.supervisor.firing import (
    LATE_AFTER,
    instance_name,
    jitter_of,
    next_slot,
    plan,
    slots_after,
)

BERLIN = ZoneInfo("Europe/Berlin")  # back from 03:00 CEST to 02:00 CET on 2026-10-25
NEW_YORK = ZoneInfo("America/New_York")  # forward from 02:00 EST to 03:00 EDT on 2026-03-08


def rule(text: str) -> Rule:
    spec = parse_spool_file(f"schedule: {text}\nrun: x\n", default_name="s", check_ends=False)
    assert isinstance(spec, ScheduleSpec)
    return spec.rule


def names(r: Rule, start: datetime, n: int) -> list[str]:
    return [instance_name("s", slot) for slot in islice(slots_after(r, start.timestamp()), n)]


def test_cron_follows_debian_on_the_autumn_night() -> None:
    start = datetime(2026, 10, 25, 0, 30, tzinfo=BERLIN)
    # A wildcard-hour job runs in both 02:00s; the second is told apart by its offset.
    assert names(rule("{cron: '0 * * * *', tz: Europe/Berlin}"), start, 5) == [
        "s@2026-10-25T01:00",
        "s@2026-10-25T02:00",
        "s@2026-10-25T02:00+01:00",
        "s@2026-10-25T03:00",
        "s@2026-10-25T04:00",
    ]
    # A fixed-time job in the repeated hour runs once.
    fixed = names(rule("{cron: '30 2 * * *', tz: Europe/Berlin}"), start, 2)
    assert fixed == ["s@2026-10-25T02:30", "s@2026-10-26T02:30"]


def test_at_and_every_fire_once_per_wall_time_and_at_the_jump_in_spring() -> None:
    start = datetime(2026, 3, 7, 12, 0, tzinfo=NEW_YORK)
    at = rule("{at: '02:30', tz: America/New_York}")
    assert names(at, start, 3) == ["s@2026-03-08T03:00", "s@2026-03-09T02:30", "s@2026-03-10T02:30"]
    every = rule("{every: 30m, tz: America/New_York}")
    night = names(every, datetime(2026, 3, 8, 1, 0, tzinfo=NEW_YORK), 4)
    # 02:00 and 02:30 do not exist: both are the jump, which fires once.
    assert night == [
        "s@2026-03-08T01:30",
        "s@2026-03-08T03:00",
        "s@2026-03-08T03:30",
        "s@2026-03-08T04:00",
    ]
    autumn = names(
        rule("{every: 1h, tz: Europe/Berlin}"), datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN), 3
    )
    assert autumn == ["s@2026-10-25T02:00", "s@2026-10-25T03:00", "s@2026-10-25T04:00"]


def test_days_and_ends() -> None:
    r = rule("{at: '09:00', days: [mon, fri], tz: UTC, ends: 2026-11-30}")
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # a Friday, after 09:00
    assert names(r, start, 5) == ["s@2026-11-23T09:00", "s@2026-11-27T09:00", "s@2026-11-30T09:00"]
    assert next_slot(r, datetime(2026, 11, 30, 10, 0, tzinfo=UTC).timestamp()) is None


def test_jitter_is_stable_per_name_and_within_bounds() -> None:
    r = rule("{every: 1h, jitter: 5m}")
    values = {jitter_of(f"schedule-{i}", r) for i in range(50)}
    assert all(0 <= v <= 300 for v in values) and len(values) > 10
    assert jitter_of("nightly", r) == jitter_of("nightly", r)
    assert jitter_of("nightly", rule("{every: 1h}")) == 0


def at(hour: int, minute: int = 0, day: int = 23) -> float:
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC).timestamp()


def test_plan_makes_a_due_firing_on_time_and_waits_otherwise() -> None:
    r = rule("{cron: '0 23 * * *', tz: UTC, catch_up: none}")
    assert plan(r, 0, at(23), at(22, 59)) is None
    p = plan(r, 0, at(23), at(23, 0) + 1)
    assert p is not None and p.fire is not None and p.fire.timestamp() == at(23)
    assert p.next is not None and p.next.timestamp() == at(23, day=24) and not p.missed
    # Jitter delays the firing, not its name.
    assert plan(r, 120, at(23), at(23, 1)) is None
    late = plan(r, 120, at(23), at(23, 2))
    assert late is not None and late.fire is not None and late.fire.timestamp() == at(23)


def test_a_long_gap_makes_up_one_firing_with_catch_up_one_and_none_without() -> None:
    one = rule("{cron: '0 * * * *', tz: UTC}")
    none = rule("{cron: '0 * * * *', tz: UTC, catch_up: none}")
    back = at(9, 30, day=24)  # ten and a half hours after the 23:00 slot
    p = plan(one, 0, at(23), back)
    assert p is not None and p.fire is not None and p.late
    assert p.fire.timestamp() == at(9, day=24)  # the newest missed slot
    assert len(p.missed) == 10 and p.next is not None and p.next.timestamp() == at(10, day=24)
    q = plan(none, 0, at(23), back)
    assert q is not None and q.fire is None and len(q.missed) == 11
    # A firing only a little late is on time whatever catch_up says.
    r = plan(none, 0, at(23), at(23) + LATE_AFTER - 1)
    assert r is not None and r.fire is not None and not r.late


def test_a_week_switched_off_is_still_one_firing() -> None:
    r = rule("{every: 1m, tz: UTC}")
    p = plan(r, 0, at(0), at(0, day=30))
    assert p is not None and p.fire is not None and p.fire.timestamp() == at(0, day=30)
