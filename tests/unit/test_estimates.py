"""Estimates from history (queue/estimates.py) and the fit rule (supervisor/fitting.py)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bantzd.queue.estimates import (
    Estimate,
    EstimateBook,
    Run,
    compact_duration,
    from_history,
    history_key,
    learned,
    work_seconds,
)
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.queue.windows import parse_window
from bantzd.supervisor.fitting import clock_text, fit_reason, night_end

BERLIN = ZoneInfo("Europe/Berlin")
seconds = st.floats(min_value=0, max_value=1e7, allow_nan=False)
a_run = st.builds(Run, st.integers(1, 10**6), seconds, st.none() | seconds)
runs = st.lists(a_run, min_size=1, max_size=12)


def at(*args: int) -> float:
    return datetime(*args, tzinfo=BERLIN).timestamp()  # type: ignore[misc]


def test_no_history_no_estimate() -> None:
    assert learned([]) is None
    assert from_history([]) is None


def test_mean_of_the_last_two() -> None:
    history = [Run(1, 100.0), Run(2, 3000.0), Run(3, 5000.0, 6000.0)]
    assert learned(history) == 4000.0
    assert from_history(history) == Estimate(4000.0, "2 runs")
    assert from_history(history[:1]) == Estimate(100.0, "1 run")


def test_an_overrun_raises_the_estimate_to_that_run() -> None:
    # Estimated 1h, took 3h: the mean (2h) would still be short of the run just seen.
    assert learned([Run(1, 3600.0), Run(2, 10800.0, 3600.0)]) == 10800.0


def test_words() -> None:
    assert Estimate(11400.0, "2 runs").words() == "estimate 3h10m from 2 runs"
    assert compact_duration(90) == "1m30s"


@given(runs)
def test_learned_lies_between_the_last_two_or_is_the_overrun(history: list[Run]) -> None:
    got = learned(history)
    assert got is not None
    recent = [r.took for r in history[-2:]]
    last = history[-1]
    assert got >= min(recent) - 1e-6
    if last.estimate is not None and last.took > last.estimate:
        assert got >= last.took - 1e-6
        assert got <= max(recent) + 1e-6
    else:
        assert got <= max(recent) + 1e-6


@given(st.lists(a_run, min_size=2, max_size=12), st.lists(a_run, max_size=5))
def test_only_the_last_two_runs_count(history: list[Run], older: list[Run]) -> None:
    assert learned(older + history) == learned(history[-2:])


def test_book_is_durable_and_dedups_by_task(tmp_path: Path) -> None:
    path = tmp_path / "estimates.json"
    book = EstimateBook(path)
    book.record("train", Run(1, 100.0))
    book.record("train", Run(2, 300.0, 100.0))
    book.record("train", Run(2, 300.0, 100.0))  # settled twice: counted once
    assert not path.exists()  # in memory until saved: the supervisor batches the writes
    assert book.dirty and book.key_version("train") == 3 and book.key_version("x") == 0
    book.save()
    assert not book.dirty
    again = EstimateBook(path)
    assert [r.task_id for r in again.runs("train")] == [1, 2]
    assert again.estimate("train") == Estimate(300.0, "2 runs")
    assert again.estimate("other") is None
    assert json.loads(path.read_text())["version"] == 1


def test_a_damaged_book_reads_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "estimates.json"
    path.write_text("{not json")
    assert EstimateBook(path).estimate("x") is None
    path.write_text(json.dumps({"names": {"x": [{"task": "1", "took": 5}, {"task": 2}]}}))
    assert EstimateBook(path).estimate("x") is None


def test_schedule_instances_share_their_schedule_name() -> None:
    assert history_key(TaskState(3, "notes@2026-11-22T23:00", schedule="notes")) == "notes"
    assert history_key(TaskState(4, "train")) == "train"


def test_work_seconds_counts_done_and_interrupted_attempts_not_failed_ones() -> None:
    log = [
        {"attempt": 1, "start": "2026-11-22T23:00:00+00:00", "end": "2026-11-22T23:10:00+00:00",
         "outcome": "failed"},
        {"attempt": 2, "start": "2026-11-22T23:20:00+00:00", "end": "2026-11-22T23:50:00+00:00",
         "outcome": "interrupted"},
        {"attempt": 3, "start": "2026-11-23T23:00:00+00:00", "end": "2026-11-23T23:15:00+00:00",
         "outcome": "done"},
    ]  # fmt: skip
    assert work_seconds(TaskState(1, "t", attempt_log=log)) == 45 * 60
    assert work_seconds(TaskState(1, "t")) is None


def test_task_file_keys() -> None:
    spec = parse_task("run: x\nestimate: 3h10m\ncheckpoints: true\n", default_name="a")
    assert spec.estimate == 11400 and spec.checkpoints is True
    assert parse_task("run: x\n", default_name="a").estimate is None
    with pytest.raises(TaskFileError, match="estimate: must be more than zero"):
        parse_task("run: x\nestimate: 0s\n", default_name="a")
    with pytest.raises(TaskFileError, match="checkpoints: expected true or false"):
        parse_task("run: x\ncheckpoints: 3\n", default_name="a")


EST = Estimate(3 * 3600 + 600, "2 runs")


def test_fit_holds_back_what_would_pass_until() -> None:
    now, until = at(2026, 11, 23, 4, 0), at(2026, 11, 23, 7, 0)
    why = fit_reason(now, EST, resumable=False, until=until, tz=BERLIN)
    assert why == "would not finish before 07:00 (estimate 3h10m from 2 runs)"
    assert fit_reason(now - 600, EST, resumable=False, until=until, tz=BERLIN) is None
    assert fit_reason(now, EST, resumable=True, until=until, tz=BERLIN) is None
    assert fit_reason(now, None, resumable=False, until=until, tz=BERLIN) is None
    assert fit_reason(now, EST, resumable=False, until=None, tz=BERLIN) is None


def test_fit_uses_the_first_of_until_window_close_and_deadline() -> None:
    now = at(2026, 11, 23, 1, 0)
    window = (parse_window("23:00-05:00"),)
    until, deadline = at(2026, 11, 23, 7, 0), at(2026, 11, 23, 6, 0)
    assert night_end(now, until=until, tz=BERLIN) == until
    assert night_end(now, until=until, deadline_at=deadline, tz=BERLIN) == deadline
    assert night_end(now, until=until, windows=window, tz=BERLIN) == at(2026, 11, 23, 5, 0)
    why = fit_reason(now, Estimate(4.5 * 3600, "the task file"), resumable=False,
                     until=until, windows=window, tz=BERLIN)  # fmt: skip
    assert why == "would not finish before 05:00 (estimate 4h30m from the task file)"
    assert night_end(now, until=None, tz=BERLIN) is None


def test_clock_text() -> None:
    now = at(2026, 11, 23, 1, 0)
    assert clock_text(at(2026, 11, 23, 7, 0), now, BERLIN) == "07:00"
    assert clock_text(at(2026, 11, 23, 7, 0, 30), now, BERLIN) == "07:00:30"
    assert clock_text(at(2026, 11, 25, 7, 0), now, BERLIN) == "2026-11-25 07:00"
