"""Durations, sizes and clock times as people write them in task files, config and the CLI.

One parser per kind, shared by every place that reads one, so `90m` means the same thing in a
task's `timeout`, in config.toml's `stop_grace` and in `bantzd clean --older-than`. Pure and
stdlib-only: workers and the CLI import this, and import time matters there.

Errors are `ValueError`s whose message says what is accepted; callers add the key or option
name in front.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, time

from bantzd.errors import BantzError

# --- durations ------------------------------------------------------------------------------

_DURATION_UNITS: dict[str, float] = {}
for _names, _seconds in (
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 0.001),
    (("s", "sec", "secs", "second", "seconds"), 1.0),
    (("m", "min", "mins", "minute", "minutes"), 60.0),
    (("h", "hr", "hrs", "hour", "hours"), 3600.0),
    (("d", "day", "days"), 86400.0),
    (("w", "week", "weeks"), 604800.0),
):
    for _name in _names:
        _DURATION_UNITS[_name] = _seconds

# The longest duration and the largest size a task file or config.toml takes. Anything beyond
# is a typo or an attack: a 400-digit timeout became `inf` seconds, and a year-long retry
# delay overflowed `datetime` in the supervisor. One year and 1 PiB leave room for any real
# overnight job (a machine with 1 PiB of RAM or GPU memory does not exist yet).
MAX_DURATION = 366 * 86400.0
MAX_DURATION_TEXT = "366d"
MAX_SIZE = 1024**5
MAX_SIZE_TEXT = "1PiB"

_NUMBER = r"\d+(?:\.\d*)?|\.\d+"
_DURATION_PART = re.compile(rf"\s*({_NUMBER})\s*([a-z]+)\s*")
_PLAIN_NUMBER = re.compile(rf"\s*(?:{_NUMBER})\s*")
_DURATION_HELP = "use seconds or units like 30s, 90m, 4h, 1d, 1h30m, 500ms"


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`: `30s`, `90m`, `4h`, `1d`, `1h30m`, `1h 30m`, `500ms`, or plain seconds.

    Numbers (int or float, or a numeric string) are seconds. Negative, empty, infinite and
    unrecognised values raise ValueError, and so does a value too large for a float (a
    400-digit number): the result is always a finite float. No upper bound beyond that:
    callers that take durations from files compare with MAX_DURATION.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HELP}")
    if isinstance(text, int | float):
        if isinstance(text, float) and math.isnan(text):
            raise ValueError(f"{text!r} is not a duration; {_DURATION_HELP}")
        if text < 0:
            raise ValueError(f"{text!r}: a duration cannot be negative")
        if text > 1e300:  # compared as int: float() of a 400-digit int raises OverflowError
            _too_long(text)
        return float(text) + 0.0  # + 0.0 turns -0.0 into 0.0
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HELP}")
    raw = text.strip()
    if not raw:
        raise ValueError(f"an empty text is not a duration; {_DURATION_HELP}")
    if raw.startswith("-"):
        raise ValueError(f"{text!r}: a duration cannot be negative")
    low = raw.lower()
    if _PLAIN_NUMBER.fullmatch(low):
        return _finite(float(low), text)
    total = 0.0
    pos = 0
    while pos < len(low):
        m = _DURATION_PART.match(low, pos)
        if m is None or m.group(2) not in _DURATION_UNITS:
            raise ValueError(f"{text!r} is not a duration; {_DURATION_HELP}")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return _finite(total, text)


def _finite(seconds: float, text: object) -> float:
    # float("9" * 400) is inf, not an error; inf seconds would reach datetime arithmetic.
    if not math.isfinite(seconds):
        _too_long(text)
    return seconds


class TooLong(BantzError, ValueError):
    """A duration too large for a float (a 400-digit number of seconds)."""


def _too_long(text: object) -> None:
    shown = repr(text)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    raise TooLong(f"{shown} is too long to be a duration; {_DURATION_HELP}")


def format_duration(seconds: float) -> str:
    """A short human duration: `0.4s`, `12s`, `12m 5s`, `1h 12m`, `2d 3h`.

    Two units at most, so precision drops as the duration grows (seconds are dropped from an
    hour on, minutes from a day on); the text always parses back with `parse_duration`.
    """
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if not math.isfinite(seconds):
        return "forever"
    if seconds < 0.95:
        tenths = round(seconds * 10)
        return f"0.{tenths}s" if tenths else "0s"
    total = round(seconds)
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return _two_parts(total, 60, "m", "s")
    minutes = round(seconds / 60)
    if minutes < 1440:
        return _two_parts(minutes, 60, "h", "m")
    return _two_parts(round(seconds / 3600), 24, "d", "h")


def _two_parts(n: int, base: int, big: str, small: str) -> str:
    high, low = divmod(n, base)
    return f"{high}{big} {low}{small}" if low else f"{high}{big}"


# --- sizes ----------------------------------------------------------------------------------

# Bare letters (K, M, G) are binary, as in `ls -h`, `sort -S` and docker; `KB`, `MB`, `GB`
# are decimal; `KiB`, `Ki` are binary.
_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1, "byte": 1, "bytes": 1}
for _i, _letter in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_letter] = 1024**_i
    _SIZE_UNITS[_letter + "i"] = 1024**_i
    _SIZE_UNITS[_letter + "ib"] = 1024**_i
    _SIZE_UNITS[_letter + "b"] = 1000**_i

_SIZE = re.compile(r"\s*(\d+)(?:\.(\d*))?\s*([a-z]*)\s*")
_SIZE_HELP = "use bytes or units like 512MiB, 16GiB, 2GB, 100K"


def parse_size(text: str | int) -> int:
    """Bytes in `text`: `512MiB`, `16GiB`, `1.5GiB`, `2GB` (decimal), `100K`, or plain bytes.

    Fractions are allowed with a unit and rounded down to whole bytes.
    """
    if isinstance(text, bool):
        raise ValueError(f"{text!r} is not a size; {_SIZE_HELP}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{text!r}: a size cannot be negative")
        return text
    if isinstance(text, float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"{text!r} is not a size; {_SIZE_HELP}")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a size; {_SIZE_HELP}")
    if text.strip().startswith("-"):
        raise ValueError(f"{text!r}: a size cannot be negative")
    m = _SIZE.fullmatch(text.lower())
    if m is None or m.group(3) not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a size; {_SIZE_HELP}")
    whole, frac, unit = m.group(1), m.group(2) or "", m.group(3)
    mult = _SIZE_UNITS[unit]
    # Integer arithmetic: 1.5GiB is exactly 1610612736, with no float rounding on the way.
    return int(whole) * mult + (int(frac) * mult // 10 ** len(frac) if frac else 0)


def format_size(n: int) -> str:
    """Binary units with at most one decimal: `900 B`, `512 MiB`, `1.5 GiB`."""
    if n < 0:
        return "-" + format_size(-n)
    if n < 1024:
        return f"{n} B"
    for power, unit in ((5, "PiB"), (4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
        if n >= 1024**power or power == 1:
            value = round(n / 1024**power, 1)
            if value >= 1024 and power < 5:
                value, unit = round(value / 1024, 1), _BIGGER[unit]
            text = f"{value:.1f}".removesuffix(".0")
            return f"{text} {unit}"
    raise AssertionError("unreachable")


_BIGGER = {"KiB": "MiB", "MiB": "GiB", "GiB": "TiB", "TiB": "PiB"}


# --- clock times ----------------------------------------------------------------------------

_CLOCK = re.compile(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*")


def parse_clock(text: str) -> time:
    """A local clock time, `HH:MM` or `HH:MM:SS` (24-hour)."""
    m = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if m is not None:
        hour, minute, second = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)
        if hour < 24 and minute < 60 and second < 60:
            return time(hour, minute, second)
    raise ValueError(f"{text!r} is not a clock time; use HH:MM (24-hour), like 07:00 or 23:30")


def parse_window(text: str) -> tuple[time, time]:
    """`23:00-07:00` as (start, end); a window whose end is before its start crosses midnight."""
    if not isinstance(text, str) or text.count("-") != 1:
        raise ValueError(f"{text!r} is not a time window; use START-END like 23:00-07:00")
    start_text, end_text = text.split("-")
    try:
        start, end = parse_clock(start_text), parse_clock(end_text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time window; use START-END like 23:00-07:00") from None
    if start == end:
        raise ValueError(f"{text!r}: the window starts and ends at the same time")
    return start, end


def in_window(start: time, end: time, at: time) -> bool:
    """Whether `at` lies in [start, end), wrapping past midnight when end < start."""
    if start < end:
        return start <= at < end
    return at >= start or at < end


def parse_when(text: str) -> datetime | time:
    """An ISO date-time (`2026-11-22T01:00`, naive or with offset, as given) or a clock time.

    A clock time comes back as `datetime.time`; which day it means ("the next 01:00") is for
    the caller to decide against its clock.
    """
    if isinstance(text, str):
        if _CLOCK.fullmatch(text):
            try:
                return parse_clock(text)
            except ValueError:
                pass
        raw = text.strip()
        if raw[:4].isdigit() and raw[4:5] == "-":
            try:
                # fromisoformat in 3.11 takes "Z", offsets, a space for "T", and a bare date.
                return datetime.fromisoformat(raw)
            except ValueError:
                pass
    raise ValueError(f"{text!r} is not a time; use HH:MM or an ISO date-time like 2026-11-22T01:00")
