"""Checkpoint-aware ends (SPEC 11, supervisor/nightend.py), with a fake clock.

`stop_grace` (2s, the tests' config) before `--until`: the tasks that can resume get
SIGTERM (and none starts again), so they have saved and exited by `--until`; a task that
cannot resume keeps running to `--until` and is stopped then, as before. `fit_night =
false` turns it off.
"""

from __future__ import annotations

import signal

from tests.tick.conftest import Harness

T0 = 1_800_000_000.0  # the start of the run
HOUR = 3600.0
GRACE = 2.0  # tests/conftest.py config_text


def harness(tmp_path, *lines: str, until: float) -> Harness:  # type: ignore[no-untyped-def]
    return Harness(tmp_path / "home", "max_parallel = 4", *lines, fake=True, now=T0, until=until)


def terms(h: Harness) -> set[int]:
    return {task for task, sig in h.executor.signals if sig == signal.SIGTERM}


def test_resumable_tasks_get_sigterm_stop_grace_before_until_the_others_at_it(tmp_path) -> None:
    until = T0 + HOUR
    h = harness(tmp_path, until=until)
    try:
        h.submit("1.yaml", "name: resumes\nrun: x\ncheckpoints: true\n")
        h.submit("2.yaml", "name: stepped\nsteps: [{name: a, run: x}, {name: b, run: y}]\n")
        h.submit("3.yaml", "name: plain\nrun: x\n")
        h.tick()
        assert [h.status(i) for i in (1, 2, 3)] == ["running"] * 3
        # The supervisor wakes for the wind-down itself.
        assert h.sup.next_wake() <= until - GRACE - h.clock.time()
        h.clock.advance(HOUR - GRACE - 1)
        h.tick()
        assert terms(h) == set()
        h.clock.advance(1)  # until - stop_grace
        h.tick()
        assert terms(h) == {1, 2}
        for i in (1, 2):
            assert h.status(i) == "queued" and h.state(i)["reason"] == "interrupted", i
        assert h.status(3) == "running"
        # The tasks just stopped do not start again in the last seconds.
        h.clock.advance(GRACE / 2)
        h.tick()
        assert h.status(1) == h.status(2) == "queued"
        assert not h.sup.should_exit()
        h.clock.advance(GRACE / 2)  # --until: the one that cannot resume is stopped now
        h.tick()
        assert terms(h) == {1, 2, 3}
        assert h.status(3) == "queued"
        assert h.sup.should_exit()
    finally:
        h.close()


def test_in_the_last_seconds_only_tasks_that_cannot_resume_may_start(tmp_path) -> None:
    until = T0 + HOUR
    h = harness(tmp_path, until=until)
    try:
        h.submit("1.yaml", "name: resumes\nrun: x\ncheckpoints: true\n")
        h.tick()
        h.clock.advance(HOUR - GRACE)
        h.tick()  # SIGTERM; the fake worker exits at once and goes back to the queue
        h.submit("2.yaml", "name: plain\nrun: x\n")
        h.submit("3.yaml", "name: saves\nrun: x\ncheckpoints: true\n")
        h.clock.advance(1)  # the spool's next scan
        h.tick()
        # The one that can resume would be stopped at once: it waits, its reason kept.
        assert (h.status(1), h.state(1)["reason"]) == ("queued", "interrupted")
        assert h.status(3) == "queued"
        assert h.status(2) == "running"  # it may still finish (the fit rule decides)
        assert not h.sup.should_exit()
        h.clock.advance(GRACE - 1)
        h.tick()
        assert terms(h) == {1, 2}
        assert h.sup.should_exit()
        assert h.status(1) == h.status(2) == "queued"
    finally:
        h.close()


def test_a_task_that_saved_a_checkpoint_is_stopped_early_too(tmp_path) -> None:
    h = harness(tmp_path, until=T0 + HOUR)
    try:
        h.submit("1.yaml", "name: plain-but-saved\nrun: x\n")
        h.tick()
        (h.task_dir(1) / "checkpoint.json").write_text('{"step": 3}')
        h.clock.advance(HOUR - GRACE)
        h.tick()
        assert terms(h) == {1}
    finally:
        h.close()


def test_fit_night_false_stops_everything_at_until_as_before(tmp_path) -> None:
    h = harness(tmp_path, "fit_night = false", until=T0 + HOUR)
    try:
        h.submit("1.yaml", "name: resumes\nrun: x\ncheckpoints: true\n")
        # and the fit rule is off: a task that would not finish starts all the same
        h.submit("2.yaml", "name: big\nrun: x\nestimate: 3h\n")
        h.tick()
        assert h.status(1) == h.status(2) == "running"
        h.clock.advance(HOUR - 1)
        h.tick()
        assert terms(h) == set()
        h.clock.advance(1)
        h.tick()
        assert terms(h) == {1, 2}
    finally:
        h.close()


def test_a_run_shorter_than_stop_grace_is_stopped_at_until_only(tmp_path) -> None:
    h = harness(tmp_path, until=T0 + 1.5)
    try:
        h.submit("1.yaml", "name: resumes\nrun: x\ncheckpoints: true\n")
        h.tick()
        assert h.status(1) == "running"
        h.clock.advance(1)
        h.tick()
        assert terms(h) == set()
        h.clock.advance(0.5)
        h.tick()
        assert terms(h) == {1}
    finally:
        h.close()
