"""Local-time rules with fixed clocks: windows, not_before, deadline, --until, DST nights.

Europe/Berlin changes clocks on 2026-03-29 (02:00 CET -> 03:00 CEST) and on 2026-10-25
(03:00 CEST -> 02:00 CET, so 02:00-02:59 happens twice).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd import units
from bantzd.supervisor.timing import (
    MISSED_DEADLINE,
    at_clock,
    check_timing,
    in_window,
    local_now,
    local_zone,
    next_occurrence,
    next_window_open,
    not_before_reason,
    resolve_until,
    resolve_when,
    window_close,
    window_reason,
)

BERLIN = ZoneInfo("Europe/Berlin")
SPRING = date(2026, 3, 29)  # clocks jump 02:00 -> 03:00
AUTUMN = date(2026, 10, 25)  # clocks fall 03:00 -> 02:00
NIGHT = ((time(23), time(7)),)


def berlin(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=BERLIN, fold=fold)  # type: ignore[misc]


def offset_hours(dt: datetime) -> float:
    off = dt.utcoffset()
    assert off is not None
    return off.total_seconds() / 3600


def transitions(windows, start: datetime, hours: float, step_minutes: int = 5) -> list[str]:
    """Sample `in_window` in real time from `start`; the local times where the answer flips."""
    t = start.astimezone(UTC)
    end = t + timedelta(hours=hours)
    prev = None
    flips = []
    while t < end:
        local = t.astimezone(BERLIN)
        inside = in_window(windows, local)
        if prev is not None and inside != prev:
            flips.append(f"{'open' if inside else 'close'} {local:%H:%M%z}")
        prev = inside
        t += timedelta(minutes=step_minutes)
    return flips


# --- clock times to instants -----------------------------------------------------------------


def test_at_clock_on_an_ordinary_day() -> None:
    assert at_clock(date(2026, 11, 22), time(7), BERLIN) == berlin(2026, 11, 22, 7)


def test_at_clock_in_the_spring_gap_is_the_moment_of_the_jump() -> None:
    for skipped in (time(2), time(2, 30), time(2, 59, 59)):
        got = at_clock(SPRING, skipped, BERLIN)
        assert got.astimezone(UTC) == datetime(2026, 3, 29, 1, 0, tzinfo=UTC)
        assert (got.hour, got.minute, offset_hours(got)) == (3, 0, 2)


def test_at_clock_in_the_repeated_autumn_hour_is_the_first_one() -> None:
    got = at_clock(AUTUMN, time(2, 30), BERLIN)
    assert got.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert offset_hours(got) == 2


def test_next_occurrence_today_or_tomorrow_strictly_after() -> None:
    assert next_occurrence(time(7), berlin(2026, 11, 22, 6)) == berlin(2026, 11, 22, 7)
    assert next_occurrence(time(7), berlin(2026, 11, 22, 7)) == berlin(2026, 11, 23, 7)
    assert next_occurrence(time(7), berlin(2026, 11, 22, 23)) == berlin(2026, 11, 23, 7)


def test_next_occurrence_counts_the_repeated_hour_twice() -> None:
    second_pass = berlin(2026, 10, 25, 2, 10, fold=1)  # 02:10 CET, after 02:10 CEST
    got = next_occurrence(time(2, 30), second_pass)
    assert got.astimezone(UTC) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    later = next_occurrence(time(2, 30), berlin(2026, 10, 25, 2, 40, fold=1))
    assert later.date() == date(2026, 10, 26)


# --- --until ---------------------------------------------------------------------------------


def test_until_at_23_00_means_tomorrow_morning() -> None:
    assert resolve_until("07:00", berlin(2026, 11, 22, 23)) == berlin(2026, 11, 23, 7)


def test_until_at_06_00_means_today() -> None:
    assert resolve_until("07:00", berlin(2026, 11, 23, 6)) == berlin(2026, 11, 23, 7)


def test_until_accepts_a_one_digit_hour_and_seconds() -> None:
    assert resolve_until("7:00", berlin(2026, 11, 23, 6)) == berlin(2026, 11, 23, 7)
    assert resolve_until("06:30:15", berlin(2026, 11, 23, 6)) == berlin(2026, 11, 23, 6, 30, 15)


def test_until_iso_is_taken_as_given() -> None:
    now = berlin(2026, 11, 22, 23)
    assert resolve_until("2026-11-24T05:00", now) == berlin(2026, 11, 24, 5)
    with_offset = resolve_until("2026-11-23T05:00+00:00", now)
    assert with_offset.astimezone(UTC) == datetime(2026, 11, 23, 5, tzinfo=UTC)
    assert with_offset.tzinfo == BERLIN


@pytest.mark.parametrize("text", ["2026-11-22T22:00", "2026-11-22T23:00", "2026-01-01T00:00"])
def test_until_in_the_past_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="already past"):
        resolve_until(text, berlin(2026, 11, 22, 23))


@pytest.mark.parametrize("text", ["tomorrow", "25:00", "", "7", "2026-13-01T00:00"])
def test_until_garbage_is_an_error(text: str) -> None:
    with pytest.raises(ValueError, match="is not a time"):
        resolve_until(text, berlin(2026, 11, 22, 23))


def test_until_on_the_spring_night_is_seven_real_hours_after_23_00() -> None:
    start = berlin(2026, 3, 28, 23)
    until = resolve_until("07:00", start)
    assert (until.hour, offset_hours(until)) == (7, 2)
    assert until.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=7)


def test_until_on_the_autumn_night_is_nine_real_hours_after_23_00() -> None:
    start = berlin(2026, 10, 24, 23)
    until = resolve_until("07:00", start)
    assert (until.hour, offset_hours(until)) == (7, 1)
    assert until.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=9)


def test_until_a_fixed_offset_cannot_see_the_change() -> None:
    # What `datetime.now().astimezone()` gives: documented as the reason to use local_now().
    fixed = datetime(2026, 3, 28, 23, tzinfo=timezone(timedelta(hours=1)))
    assert resolve_until("07:00", fixed).astimezone(BERLIN).hour == 8


# --- not_before and deadline -----------------------------------------------------------------


def test_resolve_when_clock_time_is_the_next_one_after_the_reference() -> None:
    accepted_afternoon = berlin(2026, 11, 22, 14)
    assert resolve_when(time(1), accepted_afternoon) == berlin(2026, 11, 23, 1)
    accepted_after_midnight = berlin(2026, 11, 23, 0, 30)
    assert resolve_when(time(1), accepted_after_midnight) == berlin(2026, 11, 23, 1)


def test_resolve_when_naive_datetime_is_local_and_aware_keeps_its_instant() -> None:
    ref = berlin(2026, 11, 22, 14)
    assert resolve_when(datetime(2026, 11, 22, 1), ref) == berlin(2026, 11, 22, 1)
    aware = datetime(2026, 11, 22, 1, tzinfo=UTC)
    got = resolve_when(aware, ref)
    assert got == aware and got.tzinfo == BERLIN


def test_resolve_when_in_the_spring_gap() -> None:
    got = resolve_when(datetime(2026, 3, 29, 2, 30), berlin(2026, 3, 28, 12))
    assert (got.hour, got.minute, offset_hours(got)) == (3, 0, 2)
    assert resolve_when(time(2, 30), berlin(2026, 3, 28, 12)) == got


def test_not_before_waits_with_the_time_then_lets_go() -> None:
    nb = resolve_when(time(1), berlin(2026, 11, 22, 14))
    at_23 = check_timing(berlin(2026, 11, 22, 23), not_before=nb)
    assert at_23.wait == "not before 2026-11-23 01:00"  # not today: with the date
    assert at_23.wake_at == nb and at_23.fail is None
    at_0030 = check_timing(berlin(2026, 11, 23, 0, 30), not_before=nb)
    assert at_0030.wait == "not before 01:00"
    assert check_timing(berlin(2026, 11, 23, 1), not_before=nb).wait is None


def test_not_before_reason_shows_seconds_only_when_set() -> None:
    now = berlin(2026, 11, 22, 20)
    assert not_before_reason(berlin(2026, 11, 22, 21, 5, 7), now) == "not before 21:05:07"
    assert not_before_reason(berlin(2026, 11, 22, 21, 5), now) == "not before 21:05"


def test_deadline_passed_fails_the_task_before_anything_else() -> None:
    deadline = resolve_when(time(7), berlin(2026, 11, 22, 14))
    assert deadline == berlin(2026, 11, 23, 7)
    before = check_timing(berlin(2026, 11, 23, 6, 59), windows=NIGHT, deadline=deadline)
    assert before.fail is None and before.wait is None
    assert before.wake_at == deadline  # the supervisor looks again when it passes
    for now in (berlin(2026, 11, 23, 7), berlin(2026, 11, 23, 12)):
        late = check_timing(now, windows=NIGHT, window_text=["23:00-07:00"], deadline=deadline)
        assert late.fail == MISSED_DEADLINE == "missed deadline"
        assert late.wait is None


def test_a_waiting_task_wakes_at_its_deadline_when_that_comes_first() -> None:
    deadline = berlin(2026, 11, 22, 22)
    got = check_timing(
        berlin(2026, 11, 22, 12), windows=NIGHT, window_text=["23:00-07:00"], deadline=deadline
    )
    assert got.wait == "outside window 23:00-07:00"
    assert got.wake_at == deadline


def test_no_rules_no_wait() -> None:
    assert check_timing(berlin(2026, 11, 22, 12)) == check_timing(berlin(2026, 11, 22, 13))
    assert check_timing(berlin(2026, 11, 22, 12)).wait is None


# --- windows ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hh", "mm", "inside"),
    [(23, 0, True), (23, 30, True), (0, 0, True), (6, 59, True), (7, 0, False), (12, 0, False),
     (22, 59, False)],
)  # fmt: skip
def test_window_across_midnight(hh: int, mm: int, inside: bool) -> None:
    assert in_window(NIGHT, berlin(2026, 11, 22, hh, mm)) is inside


def test_window_within_a_day_is_half_open() -> None:
    day = ((time(9), time(17)),)
    assert in_window(day, berlin(2026, 11, 22, 9))
    assert not in_window(day, berlin(2026, 11, 22, 17))
    assert not in_window(day, berlin(2026, 11, 22, 8, 59))


def test_several_windows_and_none() -> None:
    two = ((time(1), time(5)), (time(12), time(13, 30)))
    assert in_window(two, berlin(2026, 11, 22, 12, 15))
    assert in_window(two, berlin(2026, 11, 22, 4))
    assert not in_window(two, berlin(2026, 11, 22, 6))
    assert in_window((), berlin(2026, 11, 22, 6))


def test_window_reason_wording() -> None:
    assert window_reason(["23:00-07:00"]) == "outside window 23:00-07:00"
    assert window_reason("23:00-07:00") == "outside window 23:00-07:00"
    assert (
        window_reason(["01:00-05:00", "12:00-13:30"]) == "outside window 01:00-05:00, 12:00-13:30"
    )


def test_outside_window_waits_until_it_opens() -> None:
    got = check_timing(berlin(2026, 11, 22, 12), windows=NIGHT, window_text=["23:00-07:00"])
    assert got.wait == "outside window 23:00-07:00"
    assert got.wake_at == berlin(2026, 11, 22, 23)
    assert check_timing(berlin(2026, 11, 22, 23), windows=NIGHT).wait is None


def test_next_window_open() -> None:
    assert next_window_open(NIGHT, berlin(2026, 11, 22, 12)) == berlin(2026, 11, 22, 23)
    inside = berlin(2026, 11, 23, 3)
    assert next_window_open(NIGHT, inside) == inside
    assert next_window_open(NIGHT, berlin(2026, 11, 23, 7)) == berlin(2026, 11, 23, 23)
    assert next_window_open((), inside) == inside
    two = ((time(1), time(5)), (time(12), time(13, 30)))
    assert next_window_open(two, berlin(2026, 11, 22, 6)) == berlin(2026, 11, 22, 12)
    assert next_window_open(two, berlin(2026, 11, 22, 14)) == berlin(2026, 11, 23, 1)


def test_window_close() -> None:
    assert window_close(NIGHT, berlin(2026, 11, 23, 3)) == berlin(2026, 11, 23, 7)
    assert window_close(NIGHT, berlin(2026, 11, 22, 23)) == berlin(2026, 11, 23, 7)
    assert window_close(NIGHT, berlin(2026, 11, 22, 12)) is None
    assert window_close((), berlin(2026, 11, 22, 12)) is None


# --- windows on DST nights -------------------------------------------------------------------


def test_night_window_opens_and_closes_once_when_clocks_go_forward() -> None:
    flips = transitions(NIGHT, berlin(2026, 3, 28, 20), hours=14)
    assert flips == ["open 23:00+0100", "close 07:00+0200"]


def test_night_window_opens_and_closes_once_when_clocks_go_back() -> None:
    flips = transitions(NIGHT, berlin(2026, 10, 24, 20), hours=14)
    assert flips == ["open 23:00+0200", "close 07:00+0100"]


def test_window_starting_in_the_spring_gap_opens_at_the_jump() -> None:
    window = ((time(2, 30), time(5)),)
    assert transitions(window, berlin(2026, 3, 28, 20), hours=14, step_minutes=1) == [
        "open 03:00+0200",
        "close 05:00+0200",
    ]
    assert next_window_open(window, berlin(2026, 3, 29, 1, 30)) == berlin(2026, 3, 29, 3)
    assert not in_window(window, berlin(2026, 3, 29, 1, 59))


def test_window_ending_in_the_spring_gap_closes_at_the_jump() -> None:
    window = ((time(23), time(2, 30)),)
    assert transitions(window, berlin(2026, 3, 28, 20), hours=14) == [
        "open 23:00+0100",
        "close 03:00+0200",
    ]


def test_window_ending_in_the_repeated_hour_does_not_reopen() -> None:
    window = ((time(1), time(2, 30)),)
    assert transitions(window, berlin(2026, 10, 24, 20), hours=14) == [
        "open 01:00+0200",
        "close 02:30+0200",
    ]
    assert not in_window(window, berlin(2026, 10, 25, 2, 10, fold=1))


def test_window_starting_in_the_repeated_hour_lasts_through_both() -> None:
    window = ((time(2, 30), time(3, 30)),)
    assert transitions(window, berlin(2026, 10, 24, 20), hours=14) == [
        "open 02:30+0200",
        "close 03:30+0100",
    ]


def test_window_wholly_inside_the_skipped_hour_waits_for_the_next_night() -> None:
    window = ((time(2), time(2, 45)),)
    assert transitions(window, berlin(2026, 3, 28, 20), hours=14, step_minutes=1) == []
    assert next_window_open(window, berlin(2026, 3, 29, 1)) == berlin(2026, 3, 30, 2)


times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
dst_days = st.sampled_from([date(2026, 3, 28), date(2026, 10, 24), date(2026, 6, 1)])


@settings(max_examples=60, deadline=None)
@given(start=times, end=times, day=dst_days)
def test_any_window_opens_and_closes_at_most_once_a_day_even_on_dst_nights(
    start: time, end: time, day: date
) -> None:
    if start == end:
        return
    noon = berlin(day.year, day.month, day.day, 12)
    next_noon = berlin(day.year, day.month, day.day + 1, 12)
    hours = (next_noon.astimezone(UTC) - noon.astimezone(UTC)) / timedelta(hours=1)  # 23, 24, 25
    flips = transitions(((start, end),), noon, hours=hours, step_minutes=15)
    assert len([f for f in flips if f.startswith("open")]) <= 1
    assert len([f for f in flips if f.startswith("close")]) <= 1


@settings(max_examples=100, deadline=None)
@given(start=times, end=times, at=times, day=st.dates(date(2026, 1, 1), date(2026, 12, 31)))
def test_away_from_dst_nights_windows_are_wall_clock_windows(
    start: time, end: time, at: time, day: date
) -> None:
    if start == end or day in (SPRING, AUTUMN, SPRING - timedelta(1), AUTUMN - timedelta(1)):
        return
    now = berlin(day.year, day.month, day.day, at.hour, at.minute)
    assert in_window(((start, end),), now) == units.in_window(start, end, at)


@settings(max_examples=60, deadline=None)
@given(start=times, end=times, at=times, day=dst_days)
def test_next_window_open_is_open_and_nothing_earlier_is(
    start: time, end: time, at: time, day: date
) -> None:
    if start == end:
        return
    window = ((start, end),)
    now = berlin(day.year, day.month, day.day, at.hour, at.minute)
    opens = next_window_open(window, now)
    assert in_window(window, opens)
    t = now.astimezone(UTC)
    while t < opens.astimezone(UTC):
        assert not in_window(window, t.astimezone(BERLIN))
        t += timedelta(minutes=15)


# --- the local zone --------------------------------------------------------------------------


def test_local_zone_follows_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    assert local_zone() == BERLIN
    monkeypatch.setenv("TZ", ":Europe/Berlin")
    assert local_zone() == BERLIN
    ts = datetime(2026, 3, 29, 1, 0, tzinfo=UTC).timestamp()
    assert local_now(ts) == berlin(2026, 3, 29, 3)
    assert local_now(ts, BERLIN).tzinfo == BERLIN


def test_local_zone_survives_a_tz_it_cannot_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "CET-1CEST,M3.5.0,M10.5.0/3")
    assert local_now().utcoffset() is not None


def test_naive_now_is_read_as_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Berlin")
    got = resolve_until("07:00", datetime(2026, 3, 28, 23))
    assert got == berlin(2026, 3, 29, 7)
    assert in_window(NIGHT, datetime(2026, 3, 29, 1))
