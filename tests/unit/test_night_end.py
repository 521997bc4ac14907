"""The night's end (SPEC 11): when resumable tasks are stopped, and what the report shows."""

from __future__ import annotations

from datetime import date

import pytest

from bantzd.config import ConfigError, config_from_mapping
from bantzd.queue.estimates import EstimateBook, Run
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports.render import NightFacts, render_report
from bantzd.supervisor.nightend import wind_down_at
from tests.unit.test_report_golden import check_gantt, mermaid_block

T0 = 1_800_000_000.0


def test_wind_down_is_stop_grace_before_until_when_the_run_began_before_it() -> None:
    config = config_from_mapping({"stop_grace": "30s"})
    assert wind_down_at(T0 + 3600, T0, config) == T0 + 3570
    assert wind_down_at(T0 + 20, T0, config) is None  # a run shorter than the grace
    assert wind_down_at(None, T0, config) is None
    assert wind_down_at(T0 + 3600, T0, config_from_mapping({"stop_grace": "0s"})) is None
    off = config_from_mapping({"stop_grace": "30s", "fit_night": False})
    assert wind_down_at(T0 + 3600, T0, off) is None


def test_fit_night_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match=r"fit_night.*expected true or false"):
        config_from_mapping({"fit_night": "yes"})


def test_the_book_gives_the_estimate_each_task_ran_with(tmp_path) -> None:
    book = EstimateBook(tmp_path / "estimates.json")
    book.record("a", Run(1, 100.0, None))
    book.record("a", Run(2, 120.0, 100.0))
    book.record("b", Run(3, 50.0, 60.0))
    book.save()
    assert EstimateBook(tmp_path / "estimates.json").started_with() == {2: 100.0, 3: 60.0}


def _state(task_id: int, name: str, status: Status, **kw) -> TaskState:  # type: ignore[no-untyped-def]
    return TaskState(id=task_id, name=name, status=status, **kw)


def _done(task_id: int) -> TaskState:
    log = [{"attempt": 1, "start": "2026-11-22T00:00:00+00:00",
            "end": "2026-11-22T00:10:00+00:00", "outcome": "done"}]  # fmt: skip
    return _state(task_id, f"t{task_id}", Status.DONE, attempts=1, attempt_log=log)


def test_the_done_table_has_no_estimate_column_without_estimates() -> None:
    text = render_report(NightFacts(date=date(2026, 11, 22), states=[_done(1)]))
    assert "| id | name | took | attempts | result |" in text


def test_the_estimate_is_shown_beside_took_and_blank_for_a_task_without_one() -> None:
    facts = NightFacts(
        date=date(2026, 11, 22), states=[_done(1), _done(2)], estimates={1: 11 * 60.0}
    )
    text = render_report(facts)
    assert "| id | name | took | estimate | attempts | result |" in text
    assert "| 1 | `t1` | 10m | 11m | 1 |  |" in text
    assert "| 2 | `t2` | 10m |  | 1 |  |" in text


def test_tasks_held_back_are_named_and_others_are_not() -> None:
    states = [
        _state(1, "big", Status.QUEUED, reason="would not finish before 07:00 (estimate 3h)"),
        _state(2, "huge", Status.QUEUED, reason="would not finish before 05:00 (estimate 9h)"),
        _state(3, "later", Status.QUEUED, reason="outside window 23:00-05:00"),
    ]
    text = render_report(NightFacts(date=date(2026, 11, 22), states=states))
    assert "Not started, as they would not finish before the end: #1 `big`, #2 `huge`." in text
    tr = render_report(NightFacts(date=date(2026, 11, 22), states=states[2:], language="tr"))
    assert "tamamlanamayacak" not in tr


def test_the_timeline_marks_until_only_when_the_run_had_one() -> None:
    started = {"ts": "2026-11-21T23:00:00+00:00", "event": "supervisor_started"}
    with_until = NightFacts(
        date=date(2026, 11, 22),
        states=[_done(1)],
        events=[{**started, "until": "2026-11-22T07:00:00+00:00"}],
    )
    lines = mermaid_block(render_report(with_until))
    check_gantt(lines)
    assert lines[-2:] == [
        "    section End of the run",
        "    --until :milestone, until, 2026-11-22 07:00:00, 2026-11-22 07:00:00",
    ]
    without = NightFacts(date=date(2026, 11, 22), states=[_done(1)], events=[started])
    assert "milestone" not in render_report(without)
