"""Durations, sizes and clock times: every accepted form, the refusals, and round trips."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bantzd.units import (
    format_duration,
    format_size,
    in_window,
    parse_clock,
    parse_duration,
    parse_size,
    parse_when,
    parse_window,
)

# --- durations ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("90m", 5400),
        ("4h", 14400),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("1d2h3m4s", 93784),
        ("500ms", 0.5),
        ("1m500ms", 60.5),
        ("1.5h", 5400),
        (".5s", 0.5),
        ("0.5s", 0.5),
        ("30", 30),
        ("2.5", 2.5),
        ("0", 0),
        ("  2m  ", 120),
        ("1H", 3600),
        ("2 hours", 7200),
        ("5 min", 300),
        ("10 sec", 10),
        ("3 days", 259200),
        (30, 30),
        (2.5, 2.5),
        (0, 0),
    ],
)
def test_parse_duration_accepts(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)
    assert isinstance(parse_duration(text), float)


@pytest.mark.parametrize(
    "text",
    ["", "   ", "abc", "5x", "h", "1h-30m", "1..5s", "s5", "5 s s", "1h,30m", "0x10", "1e3"],
)
def test_parse_duration_rejects_garbage_and_says_what_is_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"30s.*90m.*4h"):
        parse_duration(text)


@pytest.mark.parametrize("value", ["-5s", "-1", -1, -0.5, " -2m"])
def test_parse_duration_rejects_negative(value: str | float) -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1], float("inf"), float("nan")])
def test_parse_duration_rejects_non_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.04, "0s"),
        (0.4, "0.4s"),
        (0.96, "1s"),
        (12, "12s"),
        (12.4, "12s"),
        (59.4, "59s"),
        (59.6, "1m"),
        (60, "1m"),
        (725, "12m 5s"),
        (720, "12m"),
        (3599.6, "1h"),
        (3600, "1h"),
        (4320, "1h 12m"),
        (4349, "1h 12m"),
        (86400, "1d"),
        (2 * 86400 + 3 * 3600, "2d 3h"),
        (-5, "-5s"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def _tolerance(seconds: float) -> float:
    if seconds < 1:
        return 0.0501
    if seconds < 3600:
        return 0.5
    if seconds < 86400:
        return 30
    return 1800


@given(st.floats(min_value=0, max_value=400 * 86400, allow_nan=False))
def test_format_duration_parses_back_within_its_precision(seconds: float) -> None:
    text = format_duration(seconds)
    assert parse_duration(text) == pytest.approx(seconds, abs=_tolerance(seconds))
    # Formatting what was parsed gives the same text: the format is a fixed point.
    assert format_duration(parse_duration(text)) == text


@given(
    st.integers(0, 30),
    st.integers(0, 23),
    st.integers(0, 59),
    st.integers(0, 59),
    st.sampled_from(["", " "]),
)
def test_parse_duration_of_any_combination(d: int, h: int, m: int, s: int, sep: str) -> None:
    parts = [f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")) if n] or ["0s"]
    assert parse_duration(sep.join(parts)) == d * 86400 + h * 3600 + m * 60 + s


# --- sizes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512MiB", 512 * 2**20),
        ("16GiB", 16 * 2**30),
        ("2GB", 2_000_000_000),
        ("1.5GiB", 1610612736),
        ("100K", 102400),
        ("100KB", 100_000),
        ("100KiB", 102400),
        ("100k", 102400),
        ("100kb", 100_000),
        ("16G", 16 * 2**30),
        ("16Gi", 16 * 2**30),
        ("1 GiB", 2**30),
        ("1gib", 2**30),
        ("2TB", 2 * 10**12),
        ("1TiB", 2**40),
        ("4096", 4096),
        ("4096B", 4096),
        ("0", 0),
        ("0.1KB", 100),
        (4096, 4096),
        (0, 0),
        (1.5e9, 1_500_000_000),
    ],
)
def test_parse_size_accepts(text: str | int, size: int) -> None:
    assert parse_size(text) == size
    assert isinstance(parse_size(text), int)


@pytest.mark.parametrize(
    "value", ["", "GiB", "12XB", "1.2.3MB", "1 2 GiB", "ten", "1e9", True, None, [1]]
)
def test_parse_size_rejects_garbage_and_says_what_is_accepted(value: object) -> None:
    with pytest.raises(ValueError, match="512MiB"):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", ["-1GiB", -5, -1.0])
def test_parse_size_rejects_negative(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (900, "900 B"),
        (1023, "1023 B"),
        (1024, "1 KiB"),
        (1536, "1.5 KiB"),
        (512 * 2**20, "512 MiB"),
        (1610612736, "1.5 GiB"),
        (2**30 - 1, "1 GiB"),
        (2**50, "1 PiB"),
        (3 * 2**50, "3 PiB"),
    ],
)
def test_format_size(n: int, text: str) -> None:
    assert format_size(n) == text


@given(st.integers(0, 2**55))
def test_format_size_parses_back_within_a_rounding(n: int) -> None:
    back = parse_size(format_size(n).replace(" ", ""))
    assert abs(back - n) <= max(0.05 * n, 1)


# --- clock times, windows, when -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("07:00", time(7, 0)),
        ("7:00", time(7, 0)),
        ("23:59", time(23, 59)),
        ("00:00", time(0, 0)),
        ("23:59:59", time(23, 59, 59)),
        (" 01:30 ", time(1, 30)),
    ],
)
def test_parse_clock(text: str, expected: time) -> None:
    assert parse_clock(text) == expected


@pytest.mark.parametrize("text", ["24:00", "12:60", "12:00:60", "1200", "12:5", "", "ab:cd", "7"])
def test_parse_clock_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_clock(text)


def test_parse_window_within_a_day() -> None:
    assert parse_window("09:00-17:00") == (time(9), time(17))


def test_parse_window_crossing_midnight() -> None:
    start, end = parse_window("23:00-07:00")
    assert (start, end) == (time(23), time(7))
    assert in_window(start, end, time(23, 30))
    assert in_window(start, end, time(0, 0))
    assert in_window(start, end, time(6, 59))
    assert not in_window(start, end, time(7, 0))
    assert not in_window(start, end, time(12, 0))
    assert in_window(start, end, time(23, 0))


def test_in_window_same_day_is_half_open() -> None:
    assert in_window(time(9), time(17), time(9))
    assert not in_window(time(9), time(17), time(17))
    assert not in_window(time(9), time(17), time(8, 59))


def test_parse_window_allows_spaces() -> None:
    assert parse_window(" 23:00 - 07:00 ") == (time(23), time(7))


def test_parse_window_rejects_an_empty_window() -> None:
    with pytest.raises(ValueError, match="same time"):
        parse_window("23:00-23:00")


@pytest.mark.parametrize("text", ["23:00", "23:00-25:00", "a-b-c", "23:00-", "-07:00", ""])
def test_parse_window_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="23:00-07:00"):
        parse_window(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:00", time(1, 0)),
        ("2026-11-22T01:00", datetime(2026, 11, 22, 1, 0)),
        ("2026-11-22T01:00:30", datetime(2026, 11, 22, 1, 0, 30)),
        ("2026-11-22 01:00", datetime(2026, 11, 22, 1, 0)),
        ("2026-11-22", datetime(2026, 11, 22)),
        (
            "2026-11-22T01:00+02:00",
            datetime(2026, 11, 22, 1, 0, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("2026-11-22T01:00Z", datetime(2026, 11, 22, 1, 0, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime | time) -> None:
    got = parse_when(text)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, datetime):
        assert (got.tzinfo is None) == (expected.tzinfo is None)  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["tomorrow", "2026-13-01T00:00", "", "25:00", "01:00pm", "2026"])
def test_parse_when_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM or an ISO date-time"):
        parse_when(text)


# --- no duration overflows (issue 11: a 400-digit timeout stopped intake for good) -----------


@pytest.mark.parametrize(
    "value", [10**400, "9" * 400, "9" * 400 + "d", "9" * 305 + "w", float("inf"), 1e301]
)
def test_parse_duration_of_a_huge_value_is_a_value_error_not_overflow(value: object) -> None:
    from bantzd.units import TooLong

    with pytest.raises(TooLong, match="too long to be a duration"):
        parse_duration(value)  # type: ignore[arg-type]


@given(st.one_of(st.integers(min_value=0), st.floats(min_value=0), st.text(max_size=60)))
def test_parse_duration_is_finite_or_a_value_error(value: int | float | str) -> None:
    import math

    try:
        seconds = parse_duration(value)
    except ValueError:
        return
    assert math.isfinite(seconds) and seconds >= 0


def test_negative_zero_duration_is_zero() -> None:
    assert str(parse_duration(-0.0)) == "0.0"
