"""The value checks of config.toml (config.py): each takes a TOML value and returns it
converted, or raises ValueError with words a person reads (`expected a number > 0, got
'high'`). Kept apart so config.py holds what the settings are, and this how they are read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bantzd import units

MAX_NUMBER = 1e9  # `above=` numbers (max_load): per core


def _did_you_mean(word: str, choices: Any) -> str:
    import difflib  # only on the error path: it costs ~10 ms to import

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _or(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " or " + words[-1]


# --- value checks: each takes the TOML value and returns it converted or raises ValueError ---


def _int(
    minimum: int, maximum: int | None = None, *, cap: int | None = None
) -> Callable[[Any], int]:
    """A whole number from `minimum` to `maximum` (a real range, shown in the message), or
    from `minimum` up to `cap` (a sanity bound only, named only when it is passed)."""
    want = f"a whole number >= {minimum}"
    if maximum is not None:
        want = f"a whole number from {minimum} to {maximum}"

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected {want}, got {_short(value)}")
        if value < minimum or (maximum is not None and value > maximum):
            raise ValueError(f"expected {want}, got {_short(value)}")
        if cap is not None and value > cap:
            raise ValueError(f"too large: at most {cap}, got {_short(value)}")
        return value

    return check


def _number(
    low: float | None = None, high: float | None = None, *, above: float | None = None
) -> Callable[[Any], float]:
    if above is not None:
        want = f"a number > {above:g}"
    else:
        want = f"a number from {low:g} to {high:g}"

    def check(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value == value
        if ok and above is not None:
            ok = above < value <= MAX_NUMBER  # compared as is: float(10**400) overflows
        elif ok:
            ok = low <= value <= high  # type: ignore[operator]
        if not ok:
            raise ValueError(f"expected {want}, got {_short(value)}")
        return float(value) + 0.0  # -0.0 is 0.0

    return check


def _duration(*, zero_ok: bool = False) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        want = "a duration like 30s, 5m or 1h30m" + ("" if zero_ok else " (more than zero)")
        try:
            seconds = units.parse_duration(value)
        except units.TooLong:
            seconds = float("inf")
        except ValueError:
            raise ValueError(f"expected {want}, got {_short(value)}") from None
        if not zero_ok and seconds <= 0:
            raise ValueError(f"expected {want}, got {_short(value)}")
        if seconds > units.MAX_DURATION:
            raise ValueError(f"too long: at most {units.MAX_DURATION_TEXT}, got {_short(value)}")
        return seconds

    return check


def _size(value: Any) -> int:
    try:
        n = units.parse_size(value)
    except ValueError:
        raise ValueError(f"expected a size like 2GiB or 512MiB, got {_short(value)}") from None
    if n > units.MAX_SIZE:
        raise ValueError(f"too large: at most {units.MAX_SIZE_TEXT}, got {_short(value)}")
    return n


def _short(value: Any) -> str:
    """`value!r`, cut to a readable length (a 400-digit number is not worth printing)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {_short(value)}")
    return value


def _text(*, empty_ok: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or (not empty_ok and not value.strip()):
            raise ValueError(f"expected a text, got {value!r}")
        return value

    return check


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise ValueError(f"expected a list of texts, got {value!r}")
    return tuple(value)


def _fetch_allow(value: Any) -> tuple[str, ...]:
    entries = _texts(value)
    if entries:  # the default, none, needs no parsing (nor http.client and ssl imported)
        from bantzd.workers.agentfetch import Allow  # stdlib only: the rule lives beside its use

        Allow.parse(entries)  # ValueError naming the entry
    return entries


def _url(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
    return value
