"""The clock is injected, never called deep inside (STYLE 4).

Scheduling, backoff, windows and `--until` all take a `Clock`; tests pass a `FakeClock`
and step it, so nothing in the decision code needs sleeping or monkey-patching.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


class Clock(Protocol):
    """Wall time for records and local-time rules, monotonic time for durations."""

    def time(self) -> float: ...

    def monotonic(self) -> float: ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


@dataclass
class FakeClock:
    """A clock that only moves when told to; `advance` moves wall and monotonic together."""

    now: float = 1_763_852_400.0  # 2025-11-22 23:00 UTC, an arbitrary fixed night
    mono: float = field(default=1000.0)

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.mono += seconds


def iso(ts: float | None) -> str | None:
    """Local ISO-8601 with offset and seconds, the form used in state.json and the journal.

    Every transition stamps a few of these, mostly within the same second: the last one
    is kept, keyed by the whole second and the zone (which `time.tzset` may change), so the
    datetime work is done once a second. A fraction that rounds up to the next whole
    microsecond is not cached (fromtimestamp would carry it into the next second)."""
    if ts is None:
        return None
    whole = math.floor(ts)
    if ts - whole < 0.999999:
        key = (whole, time.tzname, time.timezone, time.altzone)
        if _last_iso[0] == key:
            return _last_iso[1]
        text = datetime.fromtimestamp(whole).astimezone().isoformat(timespec="seconds")
        _last_iso[:] = [key, text]
        return text
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


_last_iso: list = [None, ""]


def hms(ts: float) -> str:
    """Local HH:MM:SS, the form reasons use (`retry at 23:41:07`)."""
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def epoch(text: object) -> float | None:
    """Seconds since the epoch for an ISO string (naive ones read as local time); None for
    anything else. The one reader of state.json's and the journal's times as instants."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
