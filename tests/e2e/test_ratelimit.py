"""Rate limits: windows with a fake clock, concurrent units, back-off, persistence across a
restart, and sharing between real processes (the library and the `bantzd take` command)."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from bantzd.clock import FakeClock, hms
from bantzd.config import Limit
from bantzd.ratelimit import (
    LimitError,
    LimitState,
    LimitsView,
    LimitTimeout,
    RateLimits,
    blocked,
    open_limits,
)
from bantzd.worker import Context


def lim(name: str = "llm", per_minute=None, per_hour=None, concurrent=None) -> Limit:  # type: ignore[no-untyped-def]
    return Limit(name, per_minute, per_hour, concurrent)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limits(tmp_path: Path, clock: FakeClock, **by_name: Limit) -> RateLimits:
    return RateLimits(tmp_path, by_name, clock)


# --- windows --------------------------------------------------------------------------------


def test_per_minute_window_with_a_fake_clock(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=3))
    t0 = clock.time()
    for _ in range(3):
        assert rl.take({"llm": 1}, task_id=1) is None
        clock.advance(1)
    assert rl.take({"llm": 1}, task_id=2) == f"rate limit llm: next at {hms(t0 + 60)}"
    assert rl.check({"llm": 1}) == f"rate limit llm: next at {hms(t0 + 60)}"
    assert rl.wait_time("llm") == pytest.approx(57)
    assert rl.wait_time("llm", 2) == pytest.approx(58)  # two units: the two oldest must age out
    clock.advance(57.001)
    assert rl.check({"llm": 1}) is None
    assert rl.check({"llm": 2}) is not None
    assert rl.take({"llm": 1}, task_id=2) is None


def test_per_hour_window(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, api=lim("api", per_minute=100, per_hour=5))
    assert rl.take({"api": 5}, None) is None
    clock.advance(120)
    assert rl.take({"api": 1}, None) == f"rate limit api: next at {hms(clock.time() + 3480)}"
    clock.advance(3481)
    assert rl.take({"api": 1}, None) is None


def test_a_take_is_all_or_nothing(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, a=lim("a", per_minute=5), b=lim("b", per_minute=1))
    assert rl.take({"b": 1}, None) is None
    assert rl.take({"a": 1, "b": 1}, None) is not None
    assert rl.take({"a": 5}, None) is None  # nothing of `a` was taken above


def test_requests_that_can_never_succeed(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=3, concurrent=2))
    assert rl.check({"nope": 1}) == "uses: no limit named nope in config.toml"
    assert (
        rl.check({"llm": 4})
        == "uses: 4 units of llm wanted at once, [limits.llm] allows 3 per minute"
    )
    assert rl.check({"llm": 3}) == (
        "uses: 3 units of llm wanted at once, [limits.llm] allows 2 concurrent"
    )
    with pytest.raises(LimitError):
        rl.acquire("nope")
    with pytest.raises(LimitError):
        rl.wait_time("llm", 9)
    with pytest.raises(LimitError):
        rl.backoff("nope", 10)


# --- concurrent -----------------------------------------------------------------------------


def test_concurrent_units_are_held_until_released(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, gpu_api=lim("gpu_api", concurrent=2))
    assert rl.take({"gpu_api": 1}, task_id=1) is None
    assert rl.take({"gpu_api": 1}, task_id=2) is None
    assert rl.take({"gpu_api": 1}, task_id=3) == "rate limit gpu_api: 2 of 2 in use"
    # A task that holds a unit and takes again (ctx.take per request) still holds one.
    assert rl.take({"gpu_api": 1}, task_id=1) is None
    assert rl.take({"gpu_api": 1}, task_id=None) == "rate limit gpu_api: 2 of 2 in use"
    rl.release(1)
    assert rl.take({"gpu_api": 1}, task_id=3) is None
    assert rl.take({"gpu_api": 1}, task_id=4) == "rate limit gpu_api: 2 of 2 in use"


def test_keep_only_releases_tasks_that_ended_while_no_supervisor_ran(
    tmp_path: Path, clock: FakeClock
) -> None:
    rl = limits(tmp_path, clock, llm=lim(concurrent=3))
    for t in (1, 2, 3):
        assert rl.take({"llm": 1}, task_id=t) is None
    rl.keep_only([2])
    assert rl.take({"llm": 2}, task_id=9) is None
    assert rl.take({"llm": 1}, task_id=10) == "rate limit llm: 3 of 3 in use"


def test_outside_a_task_concurrent_is_checked_but_not_held(
    tmp_path: Path, clock: FakeClock
) -> None:
    rl = limits(tmp_path, clock, llm=lim(concurrent=1))
    assert rl.take({"llm": 1}, task_id=None) is None
    assert rl.take({"llm": 1}, task_id=None) is None
    assert rl.take({"llm": 1}, task_id=5) is None
    assert rl.take({"llm": 1}, task_id=None) == "rate limit llm: 1 of 1 in use"


# --- back-off -------------------------------------------------------------------------------


def test_a_back_off_delays_every_task_using_the_limit(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=50), other=lim("other", per_minute=50))
    rl.backoff("llm", 30)
    until = hms(clock.time() + 30)
    for task_id in (1, 2, None):
        assert rl.take({"llm": 1}, task_id) == f"rate limit llm: next at {until} (backing off)"
    assert rl.take({"other": 1}, 1) is None
    # A shorter back-off does not cut a longer one short.
    rl.backoff("llm", 5)
    clock.advance(10)
    assert rl.check({"llm": 1}) is not None
    clock.advance(20.5)
    assert rl.check({"llm": 1}) is None


def test_a_back_off_reaches_the_supervisors_decision(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=50))
    rl.backoff("llm", 60)
    view = rl.view()
    assert view.check({"llm": 1}, 7).startswith("rate limit llm: next at ")  # type: ignore[union-attr]


# --- persistence and sharing ----------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    config = {"llm": lim(per_minute=2, concurrent=1)}
    first = RateLimits(tmp_path, config, clock)
    assert first.take({"llm": 1}, task_id=4) is None
    assert first.take({"llm": 1}, task_id=4) is None
    again = RateLimits(tmp_path, config, clock)  # a new supervisor on the same home
    assert again.check({"llm": 1}) == f"rate limit llm: next at {hms(clock.time() + 60)}"
    first.backoff("llm", 120)
    assert again.check({"llm": 1}).endswith("(backing off)")  # type: ignore[union-attr]
    clock.advance(121)
    assert again.take({"llm": 1}, task_id=5) == "rate limit llm: 1 of 1 in use"
    again.release(4)
    assert again.take({"llm": 1}, task_id=5) is None
    saved = json.loads((tmp_path / "limits.json").read_text())
    assert saved["limits"]["llm"]["held"] == {"5": 1}


def test_old_takes_are_pruned_from_the_file(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=1000))
    for _ in range(100):
        rl.take({"llm": 1}, None)
        clock.advance(1)
    saved = json.loads((tmp_path / "limits.json").read_text())
    assert len(saved["limits"]["llm"]["takes"]) == 60


def test_a_damaged_state_file_starts_from_zero(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "limits.json").write_text("{not json")
    rl = limits(tmp_path, clock, llm=lim(per_minute=1))
    assert rl.take({"llm": 1}, None) is None
    assert rl.take({"llm": 1}, None) is not None


def _take_many(home: str, now: float, attempts: int, task_id: int | None) -> int:
    rl = RateLimits(home, {"llm": Limit("llm", 15, None, 2)})
    return sum(rl.take({"llm": 1}, task_id, now=now) is None for _ in range(attempts))


def test_processes_never_take_more_than_the_limit(tmp_path: Path) -> None:
    """4 processes race for 15 units a minute, 10 attempts each, at one instant."""
    ctx = multiprocessing.get_context("spawn")
    now = 1_800_000_000.0
    with ctx.Pool(4) as pool:
        got = pool.starmap(_take_many, [(str(tmp_path), now, 10, None)] * 4)
    assert sum(got) == 15
    saved = json.loads((tmp_path / "limits.json").read_text())
    assert len(saved["limits"]["llm"]["takes"]) == 15


def test_processes_never_hold_more_than_concurrent(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    now = 1_800_000_000.0
    with ctx.Pool(5) as pool:
        got = pool.starmap(_take_many, [(str(tmp_path), now, 1, t) for t in range(1, 6)])
    assert sum(got) == 2
    saved = json.loads((tmp_path / "limits.json").read_text())
    assert sum(saved["limits"]["llm"]["held"].values()) == 2


# --- blocking takes -------------------------------------------------------------------------


def test_acquire_waits_for_the_window(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(per_minute=1))
    rl.acquire("llm", task_id=1)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    rl.acquire("llm", task_id=1, sleep=sleep)
    assert 60 <= sum(slept) < 67
    assert max(slept) <= 1.1  # polls, so a lifted back-off or a release is seen soon


def test_acquire_gives_up_after_its_timeout(tmp_path: Path, clock: FakeClock) -> None:
    rl = limits(tmp_path, clock, llm=lim(concurrent=1))
    rl.take({"llm": 1}, task_id=1)
    with pytest.raises(LimitTimeout, match=r"rate limit llm: 1 of 1 in use; gave up after 5s"):
        rl.acquire("llm", task_id=2, timeout=5, sleep=clock.advance)


def test_worker_context_take_and_backoff(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "tasks" / "3").mkdir(parents=True)
    (home / "config.toml").write_text("[limits.llm]\nper_minute = 2\nconcurrent = 1\n")
    monkeypatch.delenv("BANTZ_HOME", raising=False)
    ctx = Context(home / "tasks" / "3")
    ctx.take("llm")
    ctx.take("llm")
    with pytest.raises(LimitTimeout):
        ctx.take("llm", timeout=0.2)
    ctx.backoff("llm", 90)
    rl = open_limits(home)
    assert rl.check({"llm": 1}).endswith("(backing off)")  # type: ignore[union-attr]
    assert json.loads((home / "limits.json").read_text())["limits"]["llm"]["held"] == {"3": 1}
    with pytest.raises(LimitError, match="no limit named nope"):
        ctx.take("nope")


# --- the shell commands ---------------------------------------------------------------------


def bantzd(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bantzd", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_bantzd_take_from_three_processes_never_exceeds_the_limit(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[limits.llm]\nper_minute = 2\n")
    procs = [bantzd(home, "take", "llm", "--timeout", "1s") for _ in range(3)]
    results = [(p.wait(60), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert sorted(rc for rc, _ in results) == [0, 0, 1]
    [err] = [err for rc, err in results if rc]
    assert "bantzd: rate limit llm: next at " in err and "gave up after 1s" in err
    saved = json.loads((home / "limits.json").read_text())
    assert len(saved["limits"]["llm"]["takes"]) == 2


def test_bantzd_backoff_holds_bantzd_take(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text("[limits.llm]\nper_minute = 50\n")
    p = bantzd(home, "backoff", "llm", "1m")
    assert p.wait(60) == 0, p.stderr.read()  # type: ignore[union-attr]
    p = bantzd(home, "take", "llm", "--timeout", "0.3")
    assert p.wait(60) == 1
    assert "(backing off)" in p.stderr.read()  # type: ignore[union-attr]
    p = bantzd(home, "take", "nope")
    assert p.wait(60) == 1
    assert "no limit named nope in config.toml" in p.stderr.read()  # type: ignore[union-attr]
    p = bantzd(home, "backoff", "llm", "soon")
    assert p.wait(60) == 2


def test_blocked_is_pure_and_reports_the_binding_constraint() -> None:
    now = 1_800_000_000.0
    state = LimitState(takes=[now - 30, now - 10], held={"1": 1})
    limit = lim(per_minute=2, concurrent=1)
    why, wait = blocked(limit, state, 1, now, task_id=2)
    assert why == f"rate limit llm: next at {hms(now + 30)}" and wait == pytest.approx(30)
    why, wait = blocked(limit, state, 1, now + 31, task_id=2)
    assert why == "rate limit llm: 1 of 1 in use" and wait == 0
    assert blocked(limit, state, 1, now + 31, task_id=1) == (None, 0.0)
    view = LimitsView({"llm": limit}, {"llm": state}, now + 31)
    assert view.check({"llm": 1}, 1) is None
    assert state.held == {"1": 1}  # the view works on a copy
