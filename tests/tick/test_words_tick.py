"""`started` is the first start, each attempt's own start is in its log, and the loop
closes every attempt in output.log with how it ended (issue 13, item 4)."""

from __future__ import annotations

from bantzd.clock import iso
from bantzd.queue.task import TaskState, attempt_started, took
from tests.tick.conftest import Harness


def test_started_stays_the_first_start_across_a_retry(fake: Harness) -> None:
    fake.submit("a.yaml", "name: a\nrun: x\nretries: 1\nretry_delay: 1m\n")
    fake.tick()
    first = iso(fake.clock.time())
    fake.clock.advance(5)
    fake.executor.finish(1, 2)
    fake.tick()
    assert fake.status(1) == "queued"
    fake.clock.advance(61)  # the retry delay
    fake.tick()
    second = iso(fake.clock.time())
    assert fake.status(1) == "running"
    state = fake.state(1)
    assert state["started"] == first != second
    assert attempt_started(TaskState.from_json(state)) == second
    fake.clock.advance(7)
    fake.executor.finish(1, 0)
    fake.tick()
    done = TaskState.from_json(fake.state(1))
    assert (done.status, done.started, done.attempts) == ("done", first, 2)
    assert took(done) == 12  # 5s + 7s, not the minute it waited in between
    log = (fake.task_dir(1) / "output.log").read_text()
    assert "=== bantzd: attempt 1 ended: exit code 2 after 5s; retry at " in log
    assert log.endswith("=== bantzd: attempt 2 ended: exit code 0 after 7s ===\n")


def test_started_stays_the_first_start_across_an_interruption(fake: Harness) -> None:
    fake.submit("a.yaml", "name: a\nrun: x\n")
    fake.tick()
    first = fake.state(1)["started"]
    fake.clock.advance(3)
    fake.sup.request_stop()
    fake.tick()
    assert fake.status(1) == "queued"
    log = (fake.task_dir(1) / "output.log").read_text()
    assert log.endswith(
        "=== bantzd: attempt 1 stopped as the supervisor stopped after 3s "
        "(no checkpoint: starts over) ===\n"
    )
    fake.sup.close()
    fake.sup = fake.new_supervisor()
    fake.sup.recover()
    fake.clock.advance(100)
    fake.tick()
    state = fake.state(1)
    assert state["status"] == "running" and state["started"] == first
    assert attempt_started(TaskState.from_json(state)) == iso(fake.clock.time())


def test_an_attempt_that_never_ran_leaves_no_start(fake: Harness) -> None:
    fake.executor.refuse = OSError(24, "Too many open files")
    fake.submit("a.yaml", "name: a\nrun: x\n")
    fake.tick()
    state = fake.state(1)
    assert (state["status"], state["attempts"], state["started"]) == ("queued", 0, None)
    assert not (fake.task_dir(1) / "output.log").exists()  # no attempt, no end line


def test_a_start_recovery_records_gets_its_own_attempt_log_entry(fake: Harness) -> None:
    """The crash came between the spawn and the state write: recovery marks the task
    running; the attempt's start goes in the log, so its timeout counts from there."""
    fake.submit("a.yaml", "name: a\nrun: x\nnot_before: '2099-01-01T00:00'\n")
    fake.tick()
    fake.sup.close()
    fake.executor.lock(fake.task_dir(1), 1, alive=True)
    fake.clock.advance(10)
    fake.sup = fake.new_supervisor()
    fake.sup.recover()
    state = fake.state(1)
    now = iso(fake.clock.time())
    assert (state["status"], state["started"]) == ("running", now)
    assert state["attempt_log"] == [{"attempt": 1, "start": now, "end": None, "outcome": None}]
