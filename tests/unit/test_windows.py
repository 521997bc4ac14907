"""Windows with days (SPEC 9): parsing, and what they mean at an instant, DST nights included.

Zones and their 2026 changes, all on Sundays:
  Europe/Berlin     2026-03-29 02:00 -> 03:00;  2026-10-25 03:00 -> 02:00
  America/New_York  2026-03-08 02:00 -> 03:00;  2026-11-01 02:00 -> 01:00
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.queue.windows import EVERY_DAY, Window, parse_days, parse_window
from bantzd.supervisor.timing import check_timing, in_window, next_window_open, window_close

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
MON, TUE, WED, THU, FRI, SAT, SUN = range(7)


def at(zone: ZoneInfo, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=zone, fold=fold)  # type: ignore[misc]


def w(text: str) -> tuple[Window, ...]:
    return (parse_window(text),)


def real(a: datetime, b: datetime) -> timedelta:
    """b - a in real time (Python subtracts two datetimes of one zone by their wall times)."""
    return b.astimezone(UTC) - a.astimezone(UTC)


def flips(windows, start: datetime, hours: float, step_minutes: int = 5) -> list[str]:
    """Sample `in_window` in real time from `start`; where the answer flips, in local time."""
    zone = start.tzinfo
    t = start.astimezone(UTC)
    end = t + timedelta(hours=hours)
    prev = None
    out = []
    while t < end:
        local = t.astimezone(zone)
        inside = in_window(windows, local)
        if prev is not None and inside != prev:
            out.append(f"{'open' if inside else 'close'} {local:%a %H:%M%z}")
        prev = inside
        t += timedelta(minutes=step_minutes)
    return out


# --- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", {MON, TUE, WED, THU, FRI}),
        ("sat-sun", {SAT, SUN}),
        ("fri-mon", {FRI, SAT, SUN, MON}),  # a range wraps past Sunday
        ("sun-sun", {SUN}),
        ("Mon,Wed,FRI", {MON, WED, FRI}),
        ("mon-wed, sat", {MON, TUE, WED, SAT}),
        ("monday-friday", {MON, TUE, WED, THU, FRI}),
        ("sat-fri", set(range(7))),
    ],
)
def test_parse_days(text: str, days: set[int]) -> None:
    assert parse_days(text) == frozenset(days)


def test_parse_window_with_and_without_days() -> None:
    assert parse_window("23:00-07:00") == Window(time(23), time(7), EVERY_DAY)
    assert parse_window("mon-fri 23:00-07:00") == Window(time(23), time(7), frozenset(range(5)))
    assert parse_window("  sat-sun   09:00 - 21:00 ") == Window(time(9), time(21), {SAT, SUN})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("mon-fry 23:00-07:00", "'fry' is not a day (did you mean 'fri'?)"),
        ("moon 23:00-07:00", "'moon' is not a day (did you mean 'mon'?)"),
        ("mon-fri", "gives days but no times"),
        ("mon,,fri 23:00-07:00", "an empty day"),
        ("mon- 23:00-07:00", "a range needs a day on each side"),
        ("mon-fri 25:00-07:00", "'25:00-07:00' is not START-END"),
        ("mon-fri 23:00", "'23:00' is not START-END"),
        ("nonsense", "is not a time window; use a window like 23:00-07:00 or mon-fri"),
        ("23:00", "use START-END like 23:00-07:00 or mon-fri 23:00-07:00"),
        ("sat 09:00-09:00", "starts and ends at the same time"),
    ],
)
def test_parse_window_errors_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError) as e:
        parse_window(text)
    assert words in str(e.value)


def test_a_bad_window_in_a_task_file_names_the_field_and_the_item() -> None:
    with pytest.raises(TaskFileError) as e:
        parse_task(
            "run: x\nwindow: ['sat-sun 09:00-21:00', 'mon-fry 23:00-07:00']\n", default_name="t"
        )
    (problem,) = e.value.problems
    assert problem.key == "window"
    assert (problem.line, problem.column) == (2, 33)
    assert "'fry' is not a day (did you mean 'fri'?)" in problem.message


def test_a_task_file_keeps_the_window_text_for_its_reason() -> None:
    spec = parse_task(
        "run: x\nwindow: [mon-fri 23:00-07:00, sat-sun 09:00-21:00]\n", default_name="t"
    )
    assert spec.window_text == ("mon-fri 23:00-07:00", "sat-sun 09:00-21:00")
    assert spec.window[1].days == {SAT, SUN}


# --- meaning: a window belongs to the day it opens ------------------------------------------

WEEKNIGHTS = w("mon-fri 23:00-07:00")


@pytest.mark.parametrize(
    ("when", "inside"),
    [
        ((2026, 11, 20, 23, 30), True),  # Friday night
        ((2026, 11, 21, 3, 0), True),  # Saturday morning: Friday's window
        ((2026, 11, 21, 7, 0), False),  # its end
        ((2026, 11, 21, 23, 30), False),  # Saturday night: no window opens on Saturday
        ((2026, 11, 22, 23, 30), False),  # Sunday night
        ((2026, 11, 23, 3, 0), False),  # Monday 03:00 would be Sunday's window
        ((2026, 11, 23, 23, 0), True),  # Monday's opening
        ((2026, 11, 24, 6, 59), True),  # Tuesday morning: Monday's window
    ],
)
def test_a_window_that_crosses_midnight_belongs_to_the_day_it_opens(when, inside) -> None:
    assert in_window(WEEKNIGHTS, at(BERLIN, *when)) is inside


def test_next_opening_and_close_of_a_day_window() -> None:
    saturday = at(BERLIN, 2026, 11, 21, 12)
    assert next_window_open(WEEKNIGHTS, saturday) == at(BERLIN, 2026, 11, 23, 23)
    assert window_close(WEEKNIGHTS, at(BERLIN, 2026, 11, 21, 3)) == at(BERLIN, 2026, 11, 21, 7)
    assert window_close(WEEKNIGHTS, saturday) is None


def test_a_list_of_windows_with_days() -> None:
    windows = (parse_window("mon-fri 23:00-07:00"), parse_window("sat-sun 09:00-21:00"))
    assert in_window(windows, at(BERLIN, 2026, 11, 21, 10))  # Saturday day
    assert not in_window(windows, at(BERLIN, 2026, 11, 21, 22))  # Saturday night
    assert next_window_open(windows, at(BERLIN, 2026, 11, 22, 22)) == at(BERLIN, 2026, 11, 23, 23)


def test_the_reason_says_when_a_day_window_opens() -> None:
    got = check_timing(
        at(BERLIN, 2026, 11, 21, 12), windows=WEEKNIGHTS, window_text=["mon-fri 23:00-07:00"]
    )
    assert got.wait == "outside window mon-fri 23:00-07:00 (opens Mon 23:00)"
    assert got.wake_at == at(BERLIN, 2026, 11, 23, 23)
    # A window without days keeps SPEC 4's words.
    plain = check_timing(at(BERLIN, 2026, 11, 21, 12), windows=w("23:00-07:00"))
    assert plain.wait == "outside window 23:00-07:00"


def test_plain_pairs_still_work_as_every_day() -> None:
    assert in_window(((time(23), time(7)),), at(BERLIN, 2026, 11, 23, 3))


# --- DST nights, two zones -------------------------------------------------------------------


def test_berlin_spring_a_weekend_window_over_the_jump() -> None:
    # Saturday 2026-03-28 22:00 CET -> Sunday 06:00 CEST: 7 real hours, not 8.
    win = w("sat 22:00-06:00")
    opens = at(BERLIN, 2026, 3, 28, 22)
    assert flips(win, opens - timedelta(hours=1), 12) == [
        "open Sat 22:00+0100",
        "close Sun 06:00+0200",
    ]
    assert real(opens, window_close(win, opens)) == timedelta(hours=7)


def test_berlin_spring_a_window_inside_the_skipped_hour_waits_a_week() -> None:
    win = w("sun 02:15-02:45")  # the clock never shows it on 2026-03-29
    assert flips(win, at(BERLIN, 2026, 3, 29, 0), 6) == []
    got = check_timing(at(BERLIN, 2026, 3, 28, 12), windows=win, window_text=["sun 02:15-02:45"])
    assert next_window_open(win, at(BERLIN, 2026, 3, 28, 12)) == at(BERLIN, 2026, 4, 5, 2, 15)
    assert got.wait == "outside window sun 02:15-02:45 (opens Sun 2026-04-05 02:15)"


def test_berlin_autumn_a_weekend_night_is_an_hour_longer() -> None:
    # Saturday 2026-10-24 23:00 CEST -> Sunday 07:00 CET: 9 real hours.
    win = w("sat 23:00-07:00")
    opens = at(BERLIN, 2026, 10, 24, 23)
    assert real(opens, window_close(win, opens)) == timedelta(hours=9)
    assert in_window(win, at(BERLIN, 2026, 10, 25, 2, 30, fold=0))
    assert in_window(win, at(BERLIN, 2026, 10, 25, 2, 30, fold=1))
    # Sunday night: not a Saturday, not open; Monday 03:00 neither.
    assert not in_window(win, at(BERLIN, 2026, 10, 25, 23, 30))
    assert not in_window(w("mon-fri 23:00-07:00"), at(BERLIN, 2026, 10, 26, 3))


def test_new_york_spring_sunday_morning() -> None:
    # Sunday 2026-03-08: 02:00 EST jumps to 03:00 EDT. Saturday's window ends on Sunday.
    win = w("fri-sat 23:00-04:00")
    assert flips(win, at(NEW_YORK, 2026, 3, 7, 22), 8) == [
        "open Sat 23:00-0500",
        "close Sun 04:00-0400",
    ]
    opens = at(NEW_YORK, 2026, 3, 7, 23)
    assert real(opens, window_close(win, opens)) == timedelta(hours=4)
    # Monday 03:00 after the change: Sunday's window would hold it, and Sunday has none.
    assert not in_window(win, at(NEW_YORK, 2026, 3, 9, 3))
    assert next_window_open(win, at(NEW_YORK, 2026, 3, 8, 12)) == at(NEW_YORK, 2026, 3, 13, 23)


def test_new_york_autumn_the_repeated_hour_is_inside_once_each() -> None:
    # Sunday 2026-11-01: 02:00 EDT falls back to 01:00 EST; 01:00-01:59 happens twice.
    win = w("sat 22:00-01:30")
    opens = at(NEW_YORK, 2026, 10, 31, 22)
    close = window_close(win, opens)
    assert close == at(NEW_YORK, 2026, 11, 1, 1, 30)  # the first 01:30 (the first pass)
    assert real(opens, close) == timedelta(hours=3, minutes=30)
    assert in_window(win, at(NEW_YORK, 2026, 11, 1, 1, 15, fold=0))
    assert not in_window(win, at(NEW_YORK, 2026, 11, 1, 1, 15, fold=1))  # the second pass
    assert flips(win, opens - timedelta(hours=1), 8) == [
        "open Sat 22:00-0400",
        "close Sun 01:30-0400",
    ]


# --- properties -------------------------------------------------------------------------------

_DAYSETS = st.frozensets(st.integers(0, 6), min_size=1)
_CLOCKS = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))
_INSTANTS = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC)
)
_ZONES = st.sampled_from([BERLIN, NEW_YORK])


@settings(max_examples=300, deadline=None)
@given(_DAYSETS, _DAYSETS, _CLOCKS, _CLOCKS, _INSTANTS, _ZONES)
def test_days_split_a_window_into_its_openings(a, b, start, end, instant, zone) -> None:
    if start == end:
        return
    now = instant.astimezone(zone)
    plain = in_window(((start, end),), now)
    in_a = in_window((Window(start, end, a),), now)
    in_b = in_window((Window(start, end, b - a),), now) if b - a else False
    in_both = in_window((Window(start, end, a | b),), now)
    assert in_both == (in_a or in_b)  # openings on disjoint days add up
    assert not in_a or plain  # days only take openings away
    assert in_window((Window(start, end, EVERY_DAY),), now) == plain


@settings(max_examples=300, deadline=None)
@given(_DAYSETS, _CLOCKS, _CLOCKS, _INSTANTS, _ZONES)
def test_the_next_opening_is_open_and_opens_on_one_of_its_days(days, start, end, instant, zone):
    if start == end:
        return
    win = (Window(start, end, days),)
    now = instant.astimezone(zone)
    opens = next_window_open(win, now)
    assert opens.astimezone(UTC) >= now.astimezone(UTC)
    if opens != now:  # outside: the opening is a real one, on one of its days
        assert in_window(win, opens)
        assert opens.astimezone(zone).weekday() in days
        assert window_close(win, opens).astimezone(UTC) > opens.astimezone(UTC)
        before = opens - timedelta(minutes=1)
        assert not in_window(win, before.astimezone(zone)) or before < now


def test_the_reason_gives_the_date_when_the_day_name_would_read_as_today() -> None:
    win = w("sat 02:00-02:30")
    got = check_timing(at(BERLIN, 2026, 11, 21, 3), windows=win, window_text=["sat 02:00-02:30"])
    assert got.wait == "outside window sat 02:00-02:30 (opens Sat 2026-11-28 02:00)"
    got = check_timing(at(BERLIN, 2026, 11, 21, 1), windows=win, window_text=["sat 02:00-02:30"])
    assert got.wait == "outside window sat 02:00-02:30 (opens Sat 02:00)"  # today
