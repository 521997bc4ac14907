"""A task's `window:` as written: `23:00-07:00`, or with days, `mon-fri 23:00-07:00` (SPEC 9).

Only parsing lives here (the task file's layer); what a window means at a given instant,
DST included, is supervisor/timing.py's.

Days name the day a window *opens*: `mon-fri 23:00-07:00` opens Monday to Friday at 23:00,
so it runs from Friday 23:00 into Saturday morning, and Monday 03:00 is outside it (that
would be Sunday's window). The forms:

* a day: `mon` ... `sun`, or the full English name (`monday`), in any case;
* a range `fri-mon`, which may wrap past Sunday: fri, sat, sun, mon (like cron's and
  systemd's readers would have you spell it out; wrapping is what a person means by it);
* a list of either, with commas: `mon,wed,fri` or `mon-wed,sat`.

A window without days opens every day, exactly as before days existed.
"""

from __future__ import annotations

import difflib
import re
from datetime import time
from typing import NamedTuple

from bantzd import units

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # datetime.weekday() order
FULL_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
EVERY_DAY: frozenset[int] = frozenset(range(7))
_DAY_NUMBER = {**{d: i for i, d in enumerate(DAYS)}, **{d: i for i, d in enumerate(FULL_DAYS)}}
WINDOW_HINT = "a window like 23:00-07:00 or mon-fri 23:00-07:00"


class Window(NamedTuple):
    """One window: open from `start` to `end` local time (crossing midnight when `end` is
    not after `start`), opening on the weekdays in `days` (0 is Monday)."""

    start: time
    end: time
    days: frozenset[int] = EVERY_DAY

    @property
    def every_day(self) -> bool:
        return self.days == EVERY_DAY


def parse_window(text: str) -> Window:
    """`23:00-07:00`, `sat-sun 09:00-21:00`; ValueError saying what is wrong."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a time window; use {WINDOW_HINT}")
    digit = _DIGIT.search(text)  # day names have no digits: the times start at the first
    days_part = (text[: digit.start()] if digit else text).strip()
    clock_part = text[digit.start() :] if digit else ""
    if not clock_part:
        try:
            parse_days(days_part)
        except ValueError:
            raise ValueError(f"{text.strip()!r} is not a time window; use {WINDOW_HINT}") from None
        raise ValueError(
            f"{text.strip()!r} gives days but no times; use days then START-END, "
            "like mon-fri 23:00-07:00"
        )
    days = parse_days(days_part, whole=text) if days_part else EVERY_DAY
    try:
        start, end = units.parse_window(clock_part)
    except ValueError as e:
        if not days_part:
            message = str(e).replace("like 23:00-07:00", f"like {WINDOW_EXAMPLES}")
            raise ValueError(message) from None
        why = (
            "the window starts and ends at the same time"
            if _same_times(clock_part)
            else f"{clock_part.strip()!r} is not START-END; use {WINDOW_HINT}"
        )
        raise ValueError(f"{text.strip()!r}: {why}") from None
    return Window(start, end, days)


def _same_times(clock_part: str) -> bool:
    start, dash, end = clock_part.partition("-")
    try:
        return bool(dash) and units.parse_clock(start) == units.parse_clock(end)
    except ValueError:
        return False


_DIGIT = re.compile(r"\d")
WINDOW_EXAMPLES = "23:00-07:00 or mon-fri 23:00-07:00"


def parse_days(text: str, *, whole: str | None = None) -> frozenset[int]:
    """`mon-fri`, `sat,sun`, `fri-mon` (wraps: fri sat sun mon) as weekday numbers.
    Errors quote `whole` (the window the days are part of), else `text`."""
    shown = (whole if whole is not None else text).strip()
    days: set[int] = set()
    for item in text.replace(" ", "").lower().split(","):
        if not item:
            raise ValueError(f"{shown!r}: an empty day in the list, like mon,,fri")
        first, dash, last = item.partition("-")
        if dash and not (first and last):
            raise ValueError(f"{shown!r}: a range needs a day on each side, like mon-fri")
        a = _day(first, shown)
        if not dash:
            days.add(a)
            continue
        b = _day(last, shown)
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _day(word: str, whole: str) -> int:
    number = _DAY_NUMBER.get(word)
    if number is not None:
        return number
    close = difflib.get_close_matches(word, DAYS + FULL_DAYS, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0][:3]!r}?)" if close else ""
    shown = word or "nothing"
    raise ValueError(
        f"{whole!r}: {shown!r} is not a day{hint}; days are {' '.join(DAYS)}, "
        "ranges like mon-fri, lists like sat,sun"
    )


def day_name(weekday: int) -> str:
    """`Mon` for 0: reasons say the day a window opens in English, whatever the locale."""
    return DAYS[weekday].capitalize()
