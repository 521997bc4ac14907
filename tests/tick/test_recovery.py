"""The recovery matrix: what a restarted supervisor does with each task it finds.

The first supervisor starts a task through the fake executor and is then dropped without
ending anything (a crash, as far as the home can tell); the fake says what the second one
finds in worker.lock and whether that worker still runs; the real recovery decides.
"""

from __future__ import annotations

import shutil

import pytest

from bantzd.workers.spawn import Outcome
from tests.tick.conftest import Harness

TASK = "name: a\nrun: x\nretries: 0\n"


def _crash_while_running(h: Harness, text: str = TASK) -> None:
    h.submit("a.yaml", text)
    h.tick()
    assert h.status(1) == "running"
    h.sup.close()  # the supervisor is gone; its attempt is not ended
    h.executor.ends.clear()


def _restart(h: Harness) -> None:
    h.sup = h.new_supervisor()
    h.sup.recover()


@pytest.mark.parametrize("lock_attempt", [None, 0])
def test_running_but_never_spawned_goes_back_to_the_queue(fake: Harness, lock_attempt) -> None:
    _crash_while_running(fake)
    if lock_attempt is not None:  # a lock left by an older attempt says nothing of this one
        fake.executor.lock(fake.task_dir(1), lock_attempt, alive=False)
    _restart(fake)
    state = fake.state(1)
    assert state["status"] == "queued" and state["pid"] is None
    assert len(fake.sup.attempts) == 0


def test_a_live_worker_is_adopted_and_its_end_settled_later(fake: Harness) -> None:
    _crash_while_running(fake)
    fake.executor.lock(fake.task_dir(1), 1, alive=True)
    _restart(fake)
    state = fake.state(1)
    assert (state["status"], state["pid"], state["attempts"]) == ("running", 50_001, 1)
    assert 1 in fake.sup.attempts and 1 in fake.sup.attempts.held
    fake.executor.finish(1, 0)
    fake.tick()
    assert fake.status(1) == "done" and fake.sup.attempts.held == {}


@pytest.mark.parametrize(
    ("record", "status"),
    [
        (Outcome(exit_code=0), "done"),
        (Outcome(exit_code=3), "failed"),
        (Outcome(known=False), "queued"),
    ],
)
def test_a_worker_that_ended_unwatched_is_settled_from_its_exit_record(
    fake: Harness, record: Outcome, status: str
) -> None:
    _crash_while_running(fake)
    fake.executor.lock(fake.task_dir(1), 1, alive=False)
    fake.executor.ends[1] = record  # what its exit record says (or no record at all)
    _restart(fake)
    state = fake.state(1)
    assert state["status"] == status
    if status == "failed":
        assert state["exit_code"] == 3
    assert len(fake.sup.attempts) == 0 and fake.sup.attempts.held == {}


def test_a_start_the_crash_kept_from_being_recorded_is_adopted(fake: Harness) -> None:
    fake.submit("a.yaml", "name: a\nrun: x\nnot_before: '2099-01-01T00:00'\n")
    fake.tick()
    assert fake.status(1) == "queued" and fake.state(1)["attempts"] == 0
    fake.sup.close()
    fake.executor.lock(fake.task_dir(1), 1, alive=True)
    _restart(fake)
    state = fake.state(1)
    assert (state["status"], state["attempts"], state["pid"]) == ("running", 1, 50_001)


def test_the_lock_of_an_attempt_whose_end_is_recorded_changes_nothing(fake: Harness) -> None:
    fake.submit("a.yaml", "name: a\nrun: x\nretries: 1\nretry_delay: 1h\n")
    fake.tick()
    fake.executor.finish(1, 1)
    fake.tick()
    before = fake.state(1)
    assert (before["status"], before["attempts"]) == ("queued", 1)  # waits to retry
    fake.sup.close()
    fake.executor.lock(fake.task_dir(1), 1, alive=False)
    _restart(fake)
    state = fake.state(1)
    assert state == before  # not made running again, not settled a second time
    assert len(fake.sup.attempts) == 0 and len(fake.executor.launches) == 1


def test_a_steps_task_resumes_at_the_step_its_worker_was_in(fake: Harness) -> None:
    steps = "name: s\nsteps:\n" + "".join(
        f"  - {{name: {n}, run: x}}\n" for n in ("one", "two", "three")
    )
    _crash_while_running(fake, steps)
    fake.executor.lock(fake.task_dir(1), 1, alive=True, step_index=1)
    _restart(fake)
    state = fake.state(1)
    assert (state["step"], state["steps_done"]) == ("two", ["one"])
    fake.executor.finish(1, 0)
    fake.tick()  # step two done: step three starts within the same attempt
    assert fake.executor.launches[-1].step == "three"
    assert fake.state(1)["steps_done"] == ["one", "two"] and fake.status(1) == "running"


def test_a_lost_state_json_is_rebuilt_as_queued(fake: Harness) -> None:
    fake.submit("a.yaml", "name: lost\nrun: x\nnot_before: '2099-01-01T00:00'\n")
    fake.tick()
    fake.sup.close()
    (fake.task_dir(1) / "state.json").unlink()
    _restart(fake)
    state = fake.state(1)
    assert (state["status"], state["name"], state["reason"]) == (
        "queued",
        "lost",
        "state rebuilt after a crash",
    )


def test_a_task_folder_whose_intake_never_committed_is_removed(fake: Harness) -> None:
    fake.submit("a.yaml", TASK)
    fake.tick()
    fake.sup.close()
    half = fake.task_dir(7)
    shutil.copytree(fake.task_dir(1), half)
    (half / "task.yaml").unlink()
    _restart(fake)
    assert not half.exists() and fake.status(1) is not None


def test_an_unreadable_task_yaml_fails_the_task_not_the_start(fake: Harness) -> None:
    fake.submit("a.yaml", "name: a\nrun: x\nnot_before: '2099-01-01T00:00'\n")
    fake.submit("b.yaml", "name: b\nrun: x\n")
    fake.tick()
    fake.sup.close()
    fake.executor.ends.clear()
    (fake.task_dir(1) / "task.yaml").write_text("run: [unclosed\n")
    _restart(fake)
    state = fake.state(1)
    assert state["status"] == "failed" and "task.yaml can no longer be read" in state["reason"]
    fake.tick()
    assert fake.status(2) == "running"  # the others go on
