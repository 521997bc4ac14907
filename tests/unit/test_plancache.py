"""The Tonight page's forecast cache (web/planpage.py): one real forecast of a real home
per end of night per PLAN_FRESH seconds, one at a time, a bounded number kept."""

from __future__ import annotations

import os
import threading
import time

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")

from bantzd.paths import Home
from bantzd.web import planpage
from bantzd.web.planpage import PlanCache


class Mono:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def home(tmp_path) -> Home:
    home = Home(tmp_path / "home")
    home.ensure()
    spooled = home.spool / "a.yaml"
    spooled.write_text("name: big\nrun: 'true'\nestimate: 2h\n")
    old = time.time() - 60  # settled: intake takes it at once
    os.utime(spooled, (old, old))
    return home


def test_a_forecast_is_kept_for_a_minute_per_end_of_night(home: Home) -> None:
    mono = Mono()
    cache = PlanCache(home, monotonic=mono)
    until = time.time() + 10 * 3600
    first = cache.get(until)
    assert [r.task_id for r in first.forecast.runs] == [1]
    mono.now += planpage.PLAN_FRESH - 1
    assert cache.get(until) is first and cache.runs == 1
    assert cache.get(until + 60) is not first and cache.runs == 2
    mono.now += 2
    again = cache.get(until)
    assert again is not first and cache.runs == 3


def test_only_a_few_ends_of_night_are_kept(home: Home) -> None:
    cache = PlanCache(home, monotonic=Mono())
    until = time.time() + 10 * 3600
    for i in range(planpage.KEPT + 3):
        cache.get(until + 60 * i)
    assert len(cache._kept) == planpage.KEPT
    cache.get(until + 60 * (planpage.KEPT + 2))  # the newest is kept
    assert cache.runs == planpage.KEPT + 3


def test_pages_asking_at_once_share_one_forecast(home: Home) -> None:
    cache = PlanCache(home, monotonic=Mono())
    until = time.time() + 10 * 3600
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(until))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(got) == 4 and all(g is got[0] for g in got) and cache.runs == 1


def test_a_bad_until_names_the_field() -> None:
    with pytest.raises(planpage.BadUntil, match=r"^until: "):
        planpage.resolve("soon")
