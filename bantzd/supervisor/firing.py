"""When a schedule fires: pure functions of a rule and an injected `now` (STYLE 2, 4).

A firing has its own time, the *slot* (what cron would run it at, and what its task is
named after: `NAME@YYYY-MM-DDTHH:MM` in the schedule's zone), and the instant it is made,
the slot plus the schedule's jitter.

Local times follow timing.py's one rule for `at:` and `every:` slots: a time the clock
skips (spring forward) fires at the jump, a time it repeats (autumn) fires once, at its
first occurrence. `cron:` slots are cronsim's, which follows Debian's cron: a job in the
skipped hour runs at the jump, a fixed-time job in the repeated hour runs once, and a job
with a wildcard hour runs in both; the second of two slots with the same wall time is told
apart by its offset (`NAME@2026-10-25T02:00+01:00`).

What is due (`plan`): the firings whose instant has come since the last one considered.
The newest of them is made when it is on time (at most LATE_AFTER late, which a running
supervisor always is) or when the schedule says `catch_up: one`; all the older ones are
missed (never one made up per missed period), and so is a late newest one with
`catch_up: none`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

from bantzd.queue.schedulefile import Rule, end_instant
from bantzd.supervisor.timing import at_clock, local_zone

# A firing made later than this after its instant counts as missed, not on time (the
# supervisor was not running, or the machine slept).
LATE_AFTER = 300.0
# `plan` looks for the newest due slot in this span before now first; only a rule with no
# slot in it is walked from the last slot considered (few slots, then).
_RECENT = 2 * 86400.0


def zone_of(rule: Rule) -> tzinfo:
    """The schedule's zone: its `tz`, else the machine's (with its DST rules)."""
    return ZoneInfo(rule.tz) if rule.tz else local_zone()


def jitter_of(name: str, rule: Rule) -> int:
    """The schedule's delay in seconds, from 0 to `jitter`: the same for every firing and
    every restart (derived from the name, like systemd's FixedRandomDelay), and different
    between schedules, so that schedules at the same time do not all start at once."""
    if not rule.jitter:
        return 0
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return seed % (rule.jitter + 1)


def slots_after(rule: Rule, t: float) -> Iterator[datetime]:
    """The rule's slots strictly after instant `t`, in order, as aware datetimes in its
    zone; they stop at `ends`."""
    zone = zone_of(rule)
    end = end_instant(rule.ends, rule.tz) if rule.ends is not None else None
    if rule.kind == "cron":
        source = _cron_slots(rule, t, zone)
    else:
        source = _daily_slots(rule, t, zone)
    for slot in source:
        if end is not None and slot.timestamp() > end:
            return
        yield slot


def next_slot(rule: Rule, t: float) -> datetime | None:
    """The first slot after `t`; None when the schedule has ended."""
    return next(slots_after(rule, t), None)


def _cron_slots(rule: Rule, t: float, zone: tzinfo) -> Iterator[datetime]:
    from cronsim import CronSim

    assert rule.cron is not None
    start = datetime.fromtimestamp(t, zone)
    try:
        yield from CronSim(rule.cron, start)
    except StopIteration:  # nothing in the next 50 years
        return


def _day_times(rule: Rule) -> list[time]:
    if rule.kind == "at":
        return list(rule.at)
    assert rule.every is not None
    minutes = range(0, 1440, rule.every // 60)
    return [time(m // 60, m % 60) for m in minutes]


def _daily_slots(rule: Rule, t: float, zone: tzinfo) -> Iterator[datetime]:
    times = _day_times(rule)
    day = datetime.fromtimestamp(t, zone).date() - timedelta(days=1)
    last = t
    for _ in range(366 * 50):  # ends, at the latest, after fifty years
        if not rule.days or day.weekday() in rule.days:
            for clock in times:
                slot = at_clock(day, clock, zone)
                if slot.timestamp() > last:  # a gap maps two times onto one jump: once
                    last = slot.timestamp()
                    yield slot
        day += timedelta(days=1)


def instance_name(name: str, slot: datetime) -> str:
    """`NAME@YYYY-MM-DDTHH:MM`: the slot's local time; the second of two slots with the
    same wall time (a wildcard-hour cron in the repeated hour of autumn) gets its offset."""
    text = f"{name}@{slot:%Y-%m-%dT%H:%M}"
    if slot.fold and slot.replace(fold=0).utcoffset() != slot.utcoffset():
        offset = slot.isoformat()[-6:]
        text += offset
    return text


def slot_text(slot: datetime) -> str:
    """ISO with seconds and offset: how state.json records a slot."""
    return slot.isoformat(timespec="seconds")


def manual_slot(rule: Rule, now: float) -> datetime:
    """The slot of `bantzd schedule fire`: the current minute in the schedule's zone."""
    return datetime.fromtimestamp(now - now % 60, zone_of(rule))


@dataclass(frozen=True)
class Plan:
    """What a schedule does now: make `fire` (a slot) or nothing; `missed` are the slots
    passed without a task; `next` is the slot to wait for next (None: ended)."""

    fire: datetime | None
    next: datetime | None
    missed: list[datetime] = field(default_factory=list)
    late: bool = False  # `fire` is a missed firing made up (catch_up: one)


def plan(rule: Rule, jitter: int, pending: float | None, now: float) -> Plan | None:
    """What is due at `now` for a schedule whose next slot is `pending` (an instant; None
    when it has ended). None: nothing is due yet."""
    if pending is None or pending + jitter > now:
        return None
    due = _due_slots(rule, pending, now - jitter)
    newest = due[-1]
    following = next_slot(rule, newest.timestamp())
    on_time = now - (newest.timestamp() + jitter) <= LATE_AFTER
    if on_time or rule.catch_up == "one":
        return Plan(newest, following, due[:-1], late=not on_time)
    return Plan(None, following, due)


def _due_slots(rule: Rule, pending: float, limit: float) -> list[datetime]:
    """The slots from `pending` (the slot waited for) to `limit`, both included, oldest
    first. A long stretch (a week switched off) is cut to its last two days: the slots
    before those are all missed alike."""
    found = [_slot_at(rule, pending)]
    if limit - pending > _RECENT:
        recent = list(_until(rule, limit - _RECENT, limit))
        if recent:
            return [*found, *recent]
    found.extend(_until(rule, pending, limit))
    return found


def _until(rule: Rule, after: float, limit: float) -> Iterator[datetime]:
    for slot in slots_after(rule, after):
        if slot.timestamp() > limit:
            return
        yield slot


def _slot_at(rule: Rule, instant: float) -> datetime:
    """The slot at `instant` as the rule makes it (with the fold cronsim gives it)."""
    made = next(slots_after(rule, instant - 1), None)
    if made is not None and made.timestamp() == instant:
        return made
    return datetime.fromtimestamp(instant, zone_of(rule))
