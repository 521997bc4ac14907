"""Tier 2: what a foreground `bantzd run` prints, line by line, tick by tick (fake clock).

The narrator's streams are StringIOs in the harness; the lines are checked exactly.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.clock import hms
from tests.tick.conftest import Harness


@pytest.fixture
def one(tmp_path: Path) -> Iterator[Harness]:
    """A fake harness with one slot."""
    h = Harness(tmp_path / "home", "max_parallel = 1", fake=True)
    h.sup.recover()
    yield h
    h.close()


def test_a_start_and_its_end_are_one_line_each(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("train.yaml", "name: train-model\nrun: 'true'\n")
    fake.tick()
    t0 = fake.clock.time()
    assert fake.lines() == [f"{hms(t0)} started #1 train-model (attempt 1)"]
    fake.tick()
    assert fake.lines() == []  # nothing new: nothing said
    fake.clock.advance(36 * 60 + 51)
    fake.executor.finish(1, 0)
    fake.tick()
    assert fake.lines() == [f"{hms(fake.clock.time())} done    #1 train-model in 36m 51s"]
    assert fake.alerts.getvalue() == ""


def test_failures_retries_and_a_failed_dependency_are_told(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", "run: 'false'\nretries: 1\nretry_delay: 1m\n")
    fake.submit("b.yaml", "run: 'true'\nafter: [a]\n")
    fake.tick()
    now = fake.clock.time()
    assert fake.lines() == [f"{hms(now)} started #1 a (attempt 1)"]
    fake.executor.finish(1, 2)
    fake.tick()
    assert fake.lines() == [f"{hms(now)} failed  #1 a: exit 2; retry at {hms(now + 60)}"]
    fake.clock.advance(61)
    fake.tick()
    assert fake.lines() == [f"{hms(fake.clock.time())} started #1 a (attempt 2)"]
    fake.executor.finish(1, 2)
    fake.tick()  # a fails for good; b learns it on the same tick
    at = hms(fake.clock.time())
    assert fake.lines() == [
        f"{at} failed  #1 a: exit 2",
        f"{at} failed  #2 b: dependency failed: a",
    ]


def test_a_question_says_how_to_answer(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("pub.yaml", "name: publish\nrun: 'true'\n")
    fake.tick()
    fake.lines()
    question = {"key": "publish", "text": "Upload?", "choices": ["yes", "no"], "attempt": 1}
    (fake.task_dir(1) / "question.json").write_text(json.dumps(question))
    fake.executor.finish(1, 0)
    fake.tick()
    assert fake.lines() == [
        f"{hms(fake.clock.time())} waiting #1 publish: asks 'publish' "
        "(bantzd answer 1 --key publish TEXT)"
    ]


@pytest.mark.parametrize("checkpointed", [True, False], ids=["checkpoint", "none"])
def test_ctrl_c_says_what_it_does_and_the_stopped_task_says_if_it_resumes(
    fake: Harness, checkpointed: bool
) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", "run: 'true'\n")
    fake.submit("b.yaml", "run: 'true'\n")
    fake.tick()
    fake.lines()
    if checkpointed:
        (fake.task_dir(1) / "checkpoint.json").write_text('{"epoch": 3}')
    fake.executor.stop_on_term = False  # they take their grace time to save
    fake.sup.signals.received, fake.sup.signals.first = 1, signal.SIGINT
    fake.tick()
    assert fake.alerts.getvalue() == (
        "stopping: 2 tasks get SIGTERM, 2s to save; Ctrl-C again kills them\n"
    )
    assert fake.lines() == []
    fake.executor.finish(1, sig=signal.SIGTERM)
    fake.executor.finish(2, sig=signal.SIGTERM)
    fake.tick()
    at = hms(fake.clock.time())
    first = (
        "checkpointed, resumes next run" if checkpointed else "no checkpoint, starts over next run"
    )
    assert fake.lines() == [
        f"{at} stopped #1 a ({first})",
        f"{at} stopped #2 b (no checkpoint, starts over next run)",
    ]
    assert fake.sup.should_exit()


def test_a_second_stop_signal_says_it_kills(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", "run: 'true'\n")
    fake.tick()
    fake.executor.stop_on_term = False
    fake.sup.signals.received, fake.sup.signals.first = 1, signal.SIGTERM
    fake.tick()
    fake.sup.signals.received = 2
    fake.tick()
    assert fake.alerts.getvalue().splitlines() == [
        "stopping: 1 task gets SIGTERM, 2s to save; a second SIGTERM kills them",
        "killing 1 task",
    ]
    assert (1, signal.SIGKILL) in fake.executor.signals


def test_until_is_told_in_the_running_account(tmp_path: Path) -> None:
    h = Harness(tmp_path / "home", "max_parallel = 1", fake=True, now=1_800_000_000.0)
    h.sup = h.new_supervisor(until=1_800_000_100.0)
    try:
        h.sup.recover()
        h.submit("a.yaml", "run: 'true'\n")
        h.tick()
        h.lines()
        h.clock.advance(100)
        h.tick()
        assert h.lines()[0] == f"{hms(h.clock.time())} --until {hms(1_800_000_100.0)} reached: " + (
            "1 task gets SIGTERM, 2s to save"
        )
        assert h.alerts.getvalue() == ""  # nobody pressed anything
    finally:
        h.close()


def test_without_streams_nothing_is_printed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path / "home", fake=True)
    h.out = h.alerts = None  # type: ignore[assignment]
    h.sup = h.new_supervisor()
    try:
        h.sup.recover()
        h.submit("a.yaml", "run: 'true'\n")
        h.tick()
        h.executor.finish(1, 0)
        h.tick()
        assert h.status(1) == "done"
        assert capsys.readouterr() == ("", "")
    finally:
        h.close()


# the reason of a task waiting for a slot ---------------------------------------------------

SLOT = "waiting for a free slot (1 of 1 running)"


def test_a_task_waiting_for_a_slot_has_a_persisted_reason_written_once(one: Harness) -> None:
    for name in ("a", "b", "c"):
        one.submit(f"{name}.yaml", "run: 'true'\n")
    one.tick()
    assert one.status(1) == "running"
    assert [one.state(i)["reason"] for i in (2, 3)] == [SLOT, SLOT]
    assert [one.state(i)["status"] for i in (2, 3)] == ["queued", "queued"]

    writes = one.count_state_writes()
    for _ in range(5):
        one.clock.advance(1.5)  # past the full pass that refreshes every reason
        one.tick()
    assert writes[2] == writes[3] == 0, "the same reason was written again"

    one.executor.finish(1, 0)
    one.tick()  # 1 ends, 2 starts: 3's reason has the same words, so no write
    assert (one.status(1), one.status(2), one.state(2)["reason"]) == ("done", "running", None)
    assert one.state(3)["reason"] == SLOT and writes[3] == 0
    assert writes[1] == writes[2] == 1  # the counter does see the writes that happen
    one.executor.finish(2, 0)
    one.tick()
    assert (one.status(3), one.state(3)["reason"]) == ("running", None)


def test_another_cause_replaces_the_slot_reason_when_the_slot_frees(one: Harness) -> None:
    one.submit("a.yaml", "run: 'true'\n")
    one.submit("gpu.yaml", "run: 'true'\nresources: {gpus: 1}\n")
    one.tick()
    assert one.state(2)["reason"] == SLOT
    one.executor.finish(1, 0)
    one.tick()  # a slot is free now, but the machine has no GPU
    assert one.state(2)["status"] == "queued"
    assert one.state(2)["reason"].startswith("gpu: ")


def test_a_task_that_becomes_startable_but_loses_the_race_says_so(one: Harness) -> None:
    one.submit("a.yaml", "run: 'true'\n")
    one.submit("b.yaml", "run: 'true'\nafter: [a]\npriority: low\n")
    one.submit("c.yaml", "run: 'true'\nafter: [a]\n")
    one.tick()
    one.tick()  # the first tick saw `a` still queued
    assert one.state(2)["reason"] == one.state(3)["reason"] == "after: a (running)"
    one.executor.finish(1, 0)
    one.tick()  # both may start now; c (normal priority) takes the one slot
    assert (one.status(3), one.status(2)) == ("running", "queued")
    assert one.state(2)["reason"] == SLOT
    history = [e.get("reason") for e in one.state(2)["history"]]
    assert history[-2:] == ["after: a (running)", SLOT]


def test_the_slot_reason_follows_max_parallel(tmp_path: Path) -> None:
    h = Harness(tmp_path / "home", "max_parallel = 2", fake=True)
    try:
        h.sup.recover()
        for name in ("a", "b", "c"):
            h.submit(f"{name}.yaml", "run: 'true'\n")
        h.tick()
        assert h.state(3)["reason"] == "waiting for a free slot (2 of 2 running)"
    finally:
        h.close()
