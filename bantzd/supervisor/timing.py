"""Local-time rules as pure functions of an injected `now` (STYLE 4).

Every function takes the time zone from its `now` (or `reference`): pass an aware datetime
in a zone with DST rules (`local_now()` gives one for the machine; tests pass
`ZoneInfo("Europe/Berlin")`). The fixed offset `datetime.now().astimezone()` returns works
too, but cannot know that 07:00 tomorrow is in another offset on a DST night. Compare
results in UTC, never two datetimes of one zone directly (Python ignores `fold` then).

One rule turns a clock time on a day into an instant: the first instant at which the local
clock reads that time or later. So on the night clocks go back, 02:30 means the first 02:30
(summer time); on the night they go forward, 02:30 does not exist and means 03:00, the moment
the clock jumps past it. Windows, `not_before`, `deadline` and `--until` all use it, which
is why a window opens and closes once on either night.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo

from bantzd.queue.windows import EVERY_DAY, Window, day_name
from bantzd.units import parse_when

# A window as task files give it (queue/windows.py), or a plain (start, end) pair: every day.
AnyWindow = Window | tuple[time, time]

# How far `next_window_open` looks ahead: a window opens at least once in any week, and a
# window on one weekday that a DST change skips (`sun 02:15-02:45` in spring) a week later.
_LOOKAHEAD_DAYS = 8
_LOOKAHEAD_MORE = 15


# --- the local zone ---------------------------------------------------------------------------


def local_zone() -> tzinfo:
    """The machine's zone with its DST rules: `$TZ` if it names a zone, else /etc/localtime.

    Falls back to the current fixed offset when neither can be read (then DST nights are
    off by the DST difference, which is the best the C library's view allows).
    """
    return _zone_for(os.environ.get("TZ"))


@lru_cache(maxsize=8)
def _zone_for(tz_env: str | None) -> tzinfo:
    try:
        if tz_env:
            name = tz_env.removeprefix(":")
            if name.startswith("/"):
                with open(name, "rb") as f:
                    return ZoneInfo.from_file(f, key=name)
            return ZoneInfo(name)
        link = os.path.realpath("/etc/localtime")
        key = link.partition("/zoneinfo/")[2]
        if key:
            try:
                return ZoneInfo(key)
            except (ValueError, OSError, KeyError):
                pass
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (ValueError, OSError, KeyError):  # ZoneInfoNotFoundError is a KeyError
        pass  # a POSIX TZ rule string, or no zone files at all
    fixed = datetime.now().astimezone().tzinfo
    return fixed if fixed is not None else UTC


def local_now(ts: float | None = None, tz: tzinfo | None = None) -> datetime:
    """`ts` (default: now) as an aware datetime in `tz` (default: `local_zone()`)."""
    zone = tz or local_zone()
    if ts is None:
        return datetime.now(zone)
    return datetime.fromtimestamp(ts, zone)


# --- clock times to instants ------------------------------------------------------------------


def at_clock(day: date, clock_time: time, tz: tzinfo | None) -> datetime:
    """The first instant of `day` at which the local clock in `tz` reads `clock_time` or later.

    An ambiguous time (clocks going back) is its first occurrence; a time skipped by clocks
    going forward is the instant of the jump. `tz=None` means the machine's zone.
    """
    zone = tz or local_zone()
    naive = datetime.combine(day, clock_time.replace(tzinfo=None))
    first = naive.replace(tzinfo=zone, fold=0)
    back = first.astimezone(UTC).astimezone(zone)
    if back.replace(tzinfo=None) == naive:
        return back
    return _jump_instant(naive, zone)


def _jump_instant(naive: datetime, zone: tzinfo) -> datetime:
    """For a wall time inside a gap: the instant the clock jumps over it.

    PEP 495: in a gap, fold=1 applies the offset after the change (an instant before the
    jump) and fold=0 the offset before it (an instant after). Bisect between the two.
    """
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if lo > hi:  # defensive: a tzinfo that reads fold the other way round
        lo, hi = hi, lo
    before = lo.astimezone(zone).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        mid = mid.replace(microsecond=0)
        if mid <= lo:
            break
        if mid.astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi.astimezone(zone)


def _utc(dt: datetime) -> datetime:
    """`dt` in UTC, for comparing: Python compares two datetimes of the same zone by their
    wall times, ignoring `fold`, which gets the repeated hour in autumn wrong."""
    return dt.astimezone(UTC)


def _aware(now: datetime) -> datetime:
    """`now` itself, or a naive `now` read as local wall time in the machine's zone."""
    if now.tzinfo is not None:
        return now
    return at_clock(now.date(), now.time(), None).replace(microsecond=now.microsecond)


def next_occurrence(clock_time: time, now: datetime) -> datetime:
    """The next local `clock_time` strictly after `now` (today, else tomorrow).

    On the night clocks go back a time shown twice counts twice: at 02:10 on the second
    pass, the next 02:30 is twenty minutes away.
    """
    now = _aware(now)
    tz = now.tzinfo
    day = now.date()
    candidate = now
    for _ in range(3):  # a zone that skips a whole day (Samoa 2011) needs the third
        candidate = at_clock(day, clock_time, tz)
        if _utc(candidate) > _utc(now):
            return candidate
        second = _second_occurrence(candidate, tz)
        if second is not None and _utc(second) > _utc(now):
            return second
        day += timedelta(days=1)
    return candidate


def _second_occurrence(first: datetime, tz: tzinfo | None) -> datetime | None:
    """The later instant of an ambiguous wall time (clocks going back), else None."""
    if tz is None:
        return None
    naive = first.replace(tzinfo=None)
    later = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if later == first.astimezone(UTC) or later.astimezone(tz).replace(tzinfo=None) != naive:
        return None
    return later.astimezone(tz)


def resolve_when(value: datetime | time, reference: datetime) -> datetime:
    """A task's `not_before` / `deadline` as an instant, in the zone of `reference`.

    A clock time is its next occurrence after `reference` (pass the time the task was
    accepted, so "07:00" is fixed once and does not move on every tick); a naive date-time
    is local time; an aware one keeps its instant.
    """
    reference = _aware(reference)
    tz = reference.tzinfo
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return at_clock(value.date(), value.time(), tz).replace(microsecond=value.microsecond)
        return value.astimezone(tz)
    return next_occurrence(value, reference)


def resolve_until(text: str, now: datetime) -> datetime:
    """`--until`: `07:00` is the next 07:00 local time; an ISO date-time is taken as given.

    Raises ValueError for garbage or a time already past.
    """
    now = _aware(now)
    when = resolve_when(parse_when(text), now)
    if _utc(when) <= _utc(now):
        raise ValueError(f"{text.strip()} is already past")
    return when


# --- windows ----------------------------------------------------------------------------------


def _openings(window: AnyWindow, day: date, tz: tzinfo | None) -> tuple[datetime, datetime] | None:
    """The [open, close) instants of `window` opening on `day`; may be empty on a DST night.

    None when the window does not open on that weekday: a window that crosses midnight
    belongs to the day it opens, so `mon-fri 23:00-07:00` is open early on Saturday and
    closed early on Monday.
    """
    start, end = window[0], window[1]
    days = window[2] if len(window) > 2 else EVERY_DAY
    if day.weekday() not in days:
        return None
    opens = at_clock(day, start, tz)
    close_day = day + timedelta(days=1) if end <= start else day
    return opens, at_clock(close_day, end, tz)


def _spans(
    windows: Sequence[AnyWindow], now: datetime, days: range
) -> list[tuple[datetime, datetime]]:
    tz = now.tzinfo
    today = now.date()
    out = []
    for offset in days:
        for window in windows:
            span = _openings(window, today + timedelta(days=offset), tz)
            if span is not None and _utc(span[0]) < _utc(span[1]):
                out.append(span)
    return out


def in_window(windows: Sequence[AnyWindow], now: datetime) -> bool:
    """Whether `now` lies inside one of `windows` (half-open: start counts, end does not).

    No windows means no restriction. A window whose end is not after its start crosses
    midnight. A window lying wholly in the hour skipped in spring does not open that night:
    the clock never shows a time inside it.
    """
    if not windows:
        return True
    now = _aware(now)
    at = _utc(now)
    return any(_utc(o) <= at < _utc(c) for o, c in _spans(windows, now, range(-1, 1)))


def next_window_open(windows: Sequence[AnyWindow], now: datetime) -> datetime:
    """When one of `windows` is next open: `now` itself while inside one (or with none)."""
    now = _aware(now)
    if in_window(windows, now):
        return now
    at = _utc(now)
    for days in (range(0, _LOOKAHEAD_DAYS), range(_LOOKAHEAD_DAYS, _LOOKAHEAD_MORE)):
        later = [opens for opens, _ in _spans(windows, now, days) if _utc(opens) > at]
        if later:
            return min(later, key=_utc)
    return now + timedelta(days=1)


def window_close(windows: Sequence[AnyWindow], now: datetime) -> datetime | None:
    """When the window `now` lies in closes (the latest close among overlapping ones).

    None when `now` is outside every window, or when there are no windows.
    """
    if not windows:
        return None
    now = _aware(now)
    at = _utc(now)
    closes = [c for o, c in _spans(windows, now, range(-1, 1)) if _utc(o) <= at < _utc(c)]
    return max(closes, key=_utc) if closes else None


def window_reason(window_text: Sequence[str] | str) -> str:
    """`outside window 23:00-07:00`; several windows are joined with ", "."""
    texts = [window_text] if isinstance(window_text, str) else list(window_text)
    return "outside window " + ", ".join(t.strip() for t in texts)


def opens_text(opens: datetime, now: datetime) -> str:
    """When a window opens next, for a reason: `Mon 23:00`; with the date where the day's
    name alone would read as today or as this week (a week or more away: a window on one
    day that a DST change skipped)."""
    here = _aware(now)
    local = opens.astimezone(here.tzinfo)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    week_on = local.date() != here.date() and (
        local.weekday() == here.weekday() or _utc(opens) - _utc(here) >= timedelta(days=7)
    )
    if week_on:
        return f"{day_name(local.weekday())} {local.date().isoformat()} {clock}"
    return f"{day_name(local.weekday())} {clock}"


# --- per task ---------------------------------------------------------------------------------

MISSED_DEADLINE = "missed deadline"
NOT_BEFORE = "not before"
OUTSIDE_WINDOW = "outside window"


def not_before_reason(when: datetime, now: datetime) -> str:
    """`not before 01:00` when `when` falls on `now`'s day, else with the date.

    Seconds are shown only when they are not zero.
    """
    now = _aware(now)
    local = when.astimezone(now.tzinfo)
    clock = local.strftime("%H:%M:%S" if local.second else "%H:%M")
    if local.date() == now.date():
        return f"{NOT_BEFORE} {clock}"
    return f"{NOT_BEFORE} {local.date().isoformat()} {clock}"


@dataclass(frozen=True)
class TimingCheck:
    """What a task's time rules say now: wait (with a reason), fail, or neither.

    `wake_at` is when the answer changes next (the window opens, not_before passes, the
    deadline passes), for the supervisor's sleep; None when nothing timed is ahead.
    """

    wait: str | None = None
    fail: str | None = None
    wake_at: datetime | None = None


def check_timing(
    now: datetime,
    *,
    windows: Sequence[AnyWindow] = (),
    window_text: Sequence[str] = (),
    not_before: datetime | None = None,
    deadline: datetime | None = None,
) -> TimingCheck:
    """Judge one queued task's `deadline`, `not_before` and `window` at `now`.

    `not_before` and `deadline` are instants already resolved with `resolve_when` against
    the time the task was accepted. Order: a passed deadline fails the task (reason
    `missed deadline`) before anything else; then `not before HH:MM`; then
    `outside window A-B`. Pass `deadline=None` for a task that has started before (a resumed
    or retried task is not "not started by then").
    """
    now = _aware(now)
    if deadline is not None and _utc(now) >= _utc(deadline):
        return TimingCheck(fail=MISSED_DEADLINE)
    if not_before is not None and _utc(now) < _utc(not_before):
        return TimingCheck(
            wait=not_before_reason(not_before, now), wake_at=_first(not_before, deadline)
        )
    if windows and not in_window(windows, now):
        texts = window_text or [f"{w[0]:%H:%M}-{w[1]:%H:%M}" for w in windows]
        opens = next_window_open(windows, now)
        wait = window_reason(texts)
        if any(len(w) > 2 and w[2] != EVERY_DAY for w in windows):
            wait += f" (opens {opens_text(opens, now)})"
        return TimingCheck(wait=wait, wake_at=_first(opens, deadline))
    return TimingCheck(wake_at=deadline)


def _first(a: datetime, b: datetime | None) -> datetime:
    return a if b is None or _utc(a) <= _utc(b) else b
