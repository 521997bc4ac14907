"""Local-time rules as pure functions of an injected `now` (STYLE 4)."""

from __future__ import annotations

from datetime import datetime, time, timedelta, tzinfo


def next_occurrence(clock_time: time, now: datetime) -> datetime:
    """The next local `clock_time` strictly after `now` (today, else tomorrow).

    Built from the local date and normalised through a UTC round trip, so a time that does
    not exist on a DST night (02:30 in spring) lands on the real instant after the gap.
    """
    tz = now.tzinfo
    candidate = _local(now.date(), clock_time, tz)
    if candidate <= now:
        candidate = _local(now.date() + timedelta(days=1), clock_time, tz)
    return candidate


def _local(day: object, clock_time: time, tz: tzinfo | None) -> datetime:
    naive = datetime.combine(day, clock_time)  # type: ignore[arg-type]
    if tz is None:
        return naive.astimezone()
    aware = naive.replace(tzinfo=tz)
    return aware.astimezone(tz)


def resolve_until(text: str, now: datetime) -> datetime:
    """`--until`: `07:00` is the next 07:00 local time; an ISO date-time is taken as given.

    Raises ValueError for garbage or a time already past.
    """
    text = text.strip()
    try:
        clock_time = time.fromisoformat(text)
    except ValueError:
        clock_time = None
    if clock_time is not None and "T" not in text and "-" not in text:
        return next_occurrence(clock_time, now)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use HH:MM (the next one) or an ISO date-time"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone() if now.tzinfo is None else when.replace(tzinfo=now.tzinfo)
    if when <= now:
        raise ValueError(f"{text} is already past")
    return when
