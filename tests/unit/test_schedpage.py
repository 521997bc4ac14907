"""The Schedules page's pure parts: times in words, and a `schedules --json` object as a row
(skipped and missed firings newest first, a schedule that ended, one that can't be read)."""

from __future__ import annotations

from datetime import datetime

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")

from bantzd.web.render import render
from bantzd.web.schedpage import SHOWN, schedule_row, when_text

NOW = datetime.fromisoformat("2026-12-02T12:00:00+03:00").timestamp()


def obj(**over: object) -> dict:
    base = {
        "name": "weekly",
        "error": None,
        "words": "at 23:00 on Monday through Friday",
        "tz": "Europe/Istanbul",
        "next_fire": "2026-12-02T23:00:00+03:00",
        "paused": False,
        "last_fired": None,
        "last_task": None,
        "instances": [],
        "skipped": [],
        "missed": [],
    }
    return {**base, **over}


def test_when_text() -> None:
    assert when_text("2026-12-02T20:20:00+03:00", NOW) == "2026-12-02 20:20 +0300 (in 8h 20m)"
    assert when_text("2026-12-01T23:00:00+03:00", NOW) == "2026-12-01 23:00 +0300 (13h ago)"
    assert when_text("2026-12-02T12:00:30+03:00", NOW).endswith("(now)")
    assert when_text("2026-12-02T12:00", NOW) == "2026-12-02 12:00"  # no zone: no distance
    assert when_text(None, NOW) is None and when_text("soon", NOW) == "soon"


def test_a_row_lists_skipped_and_missed_firings_newest_first() -> None:
    skipped = [
        {"firing": f"2026-11-{d:02d}T23:00:00+03:00", "because": f"task {d} (running)"}
        for d in range(1, 9)
    ]
    missed = [{"firing": "2026-11-30T23:00:00+03:00", "count": 3, "because": "catch_up: none"}]
    row = schedule_row(obj(skipped=skipped, missed=missed, paused=True), NOW)
    assert row["skipped_count"] == 8 and len(row["skipped"]) == SHOWN
    assert row["skipped"][0]["because"] == "task 8 (running)"
    assert row["skipped"][-1]["because"] == f"task {8 - SHOWN + 1} (running)"
    html = render("_schedules_rows.html", {"rows": [row], "here": "/schedules", "mask": str})
    assert "8 firing(s)" in html and "2026-11-08 23:00 +0300" in html
    assert "2026-11-03 23:00" not in html  # older than the last SHOWN
    assert "2026-11-30 23:00 +0300 (1d 13h ago) and 2 before it: catch_up: none" in html
    assert 'value="resume"' in html and 'value="pause"' not in html


def test_an_ended_and_a_broken_schedule() -> None:
    ended = schedule_row(obj(next_fire=None), NOW)
    assert ended["ended"] and ended["next"] is None
    html = render("_schedules_rows.html", {"rows": [ended], "here": "/", "mask": str})
    assert "none (it has ended)" in html and "status ended" in html
    broken = schedule_row(obj(error="schedule.yaml can no longer be read: x", words=None), NOW)
    html = render("_schedules_rows.html", {"rows": [broken], "here": "/", "mask": str})
    assert "can no longer be read" in html and 'value="fire"' not in html
    assert "remove…" in html  # it can still be removed
