"""One tick at a time with the fake executor and probe: starts, retries and backoff,
timeouts, memory limits, rate-limit units, a refused spawn, the disk-full latch."""

from __future__ import annotations

import errno
import signal

from bantzd.errors import IoPathError
from tests.tick.conftest import Harness


def _start(h: Harness, name: str, text: str) -> None:
    h.submit(f"{name}.yaml", text)
    h.tick()


def test_a_task_runs_to_done_and_gives_back_what_it_held(fake: Harness) -> None:
    _start(fake, "a", "name: a\nrun: 'echo hi'\nresources: {cpus: 1, memory: 1GiB}\n")
    assert fake.status(1) == "running"
    (launch,) = fake.executor.launches
    assert launch.argv[-1] == "echo hi" or "echo hi" in " ".join(launch.argv)
    assert launch.env["BANTZ_TASK_ID"] == "1" and launch.env["BANTZ_ATTEMPT"] == "1"
    assert fake.state(1)["pid"] == 40_001
    assert 1 in fake.sup.attempts.held
    fake.executor.finish(1, 0)
    fake.tick()
    state = fake.state(1)
    assert (state["status"], state["exit_code"], state["pid"]) == ("done", 0, None)
    assert fake.sup.attempts.held == {} and len(fake.sup.attempts) == 0


def test_failures_retry_with_doubling_delay_capped_by_max_retry_delay(tmp_path) -> None:
    h = Harness(tmp_path / "home", 'max_retry_delay = "25s"', fake=True)
    try:
        _start(h, "r", "name: r\nrun: 'false'\nretries: 3\nretry_delay: 10s\n")
        delays = []
        for attempt in (1, 2, 3):
            assert h.status(1) == "running" and h.state(1)["attempts"] == attempt
            h.executor.finish(1, 1)
            h.tick()
            state = h.state(1)
            assert state["status"] == "queued" and state["reason"].startswith("retry at")
            delays.append(round(state["retry_at"] - h.clock.time()))
            h.clock.advance(delays[-1] - 1)
            h.tick()
            assert h.status(1) == "queued"  # not a second early
            h.clock.advance(1)
            h.tick()
        assert delays == [10, 20, 25]
        h.executor.finish(1, 1)
        h.tick()
        assert h.status(1) == "failed" and h.state(1)["failures"] == 4
    finally:
        h.close()


def test_a_timeout_sends_sigterm_then_sigkill_after_the_grace(fake: Harness) -> None:
    fake.executor.stop_on_term = False  # a worker that ignores SIGTERM
    _start(fake, "t", "name: t\nrun: 'sleep 1000'\ntimeout: 30s\n")
    fake.clock.advance(29)
    fake.tick()
    assert fake.executor.signals == []
    fake.clock.advance(1)
    fake.tick()
    assert fake.executor.signals == [(1, signal.SIGTERM)]
    fake.clock.advance(2)  # stop_grace of the test config
    fake.tick()
    assert fake.executor.signals[-1] == (1, signal.SIGKILL)
    fake.tick()
    state = fake.state(1)
    assert state["status"] == "failed" and "timeout" in state["reason"]
    assert fake.sup.attempts.held == {}


def test_a_task_over_its_memory_is_stopped_at_the_next_probe(fake: Harness) -> None:
    _start(fake, "m", "name: m\nrun: 'x'\nresources: {memory: 1GiB}\n")
    fake.executor.rss[1] = 2 << 30
    fake.clock.advance(fake.sup.config.probe_interval)
    fake.tick()
    assert (1, signal.SIGTERM) in fake.executor.signals
    fake.tick()
    state = fake.state(1)
    assert state["status"] == "failed" and "memory limit" in state["reason"]


def test_rate_limit_units_are_taken_at_start_and_freed_at_the_end(tmp_path) -> None:
    h = Harness(tmp_path / "home", "max_parallel = 4\n[limits.api]\nconcurrent = 1", fake=True)
    try:
        h.submit("a.yaml", "name: a\nrun: x\nuses: {api: 1}\n")
        h.submit("b.yaml", "name: b\nrun: x\nuses: {api: 1}\n")
        h.tick()
        assert (h.status(1), h.status(2)) == ("running", "queued")
        assert "api" in h.state(2)["reason"]
        h.executor.finish(1, 0)
        h.tick()  # reaped and its unit given back, then b starts in the same tick
        assert (h.status(1), h.status(2)) == ("done", "running")
        h.executor.finish(2, 0)
        h.tick()
        assert h.sup.limits.view(h.clock.time()).check({"api": 1}) is None
    finally:
        h.close()


def test_a_spawn_the_machine_refuses_goes_back_to_the_queue_without_using_an_attempt(
    fake: Harness,
) -> None:
    fake.executor.refuse = OSError(errno.EMFILE, "Too many open files")
    _start(fake, "a", "name: a\nrun: x\nretries: 0\n")
    state = fake.state(1)
    assert state["status"] == "queued" and "Too many open files" in (state["reason"] or "")
    assert fake.sup.attempts.held == {}
    fake.clock.advance(60)
    fake.tick()
    assert fake.status(1) == "running"
    fake.executor.finish(1, 0)
    fake.tick()
    assert fake.status(1) == "done"


def test_a_full_disk_stops_intake_and_starts_until_a_write_works_again(fake: Harness) -> None:
    store = fake.sup.store
    real_commit = store._commit
    full = {"on": False}

    def commit(batch, lines):  # type: ignore[no-untyped-def]
        if full["on"]:
            raise IoPathError(fake.home.journal, "writing", OSError(errno.ENOSPC, "No space"))
        real_commit(batch, lines)

    store._commit = commit  # type: ignore[method-assign]
    _start(fake, "a", "name: a\nrun: x\n")
    full["on"] = True
    fake.executor.finish(1, 0)
    fake.tick()
    assert fake.sup.disk.full
    assert fake.status(1) == "running"  # on disk: the change stays staged, not lost
    fake.submit("b.yaml", "name: b\nrun: x\n")
    fake.clock.advance(5)
    fake.tick()
    assert (fake.home.spool / "b.yaml").exists()  # not taken in while the disk is full
    full["on"] = False
    fake.tick()
    assert not fake.sup.disk.full
    assert fake.status(1) == "done"
    assert any(e["event"] == "disk_space_back" for e in fake.journal())
    fake.tick()
    assert fake.status(2) == "running"
