"""What a status change sets by itself (queue/states.py `implied_changes`), on disk.

Every legal move of the table goes through a real `Store` on a tmp_path home with a fake
clock, and state.json is read back: the fields the new status implies are set, every other
field is left as it was, a caller's explicit value wins over the implied one, and an
illegal move still raises without changing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bantzd.clock import FakeClock, iso
from bantzd.errors import IllegalTransition
from bantzd.paths import Home
from bantzd.queue.journal import read_journal
from bantzd.queue.states import ALLOWED, Status
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState

NOW = 1_763_852_400.0
NOW_ISO = iso(NOW)
EARLIER = "2025-11-22T20:00:00+00:00"

S = Status
# Nothing runs any more and nothing will.
ENDED = {"finished": NOW_ISO, "pid": None, "step": None, "retry_at": None}
# `bantzd retry`: a person asks again.
RETRIED = {
    "finished": None,
    "error": None,
    "exit_code": None,
    "signal": None,
    "retry_at": None,
    "failures": 0,
    "interruptions": 0,
    "deadline_at": None,
}
# `bantzd rerun`: a done task runs again from the start; its record (attempts, attempt
# log, history, tokens) stays.
RERUN = {
    **RETRIED,
    "steps_done": [],
    "step": None,
    "progress": None,
    "answers": {},
    "answer": None,
    "question": None,
}
# The rule, written out for every legal move: the fields the move sets by itself.
EXPECTED: dict[tuple[Status, Status], dict[str, Any]] = {
    (S.QUEUED, S.RUNNING): {"started": NOW_ISO, "finished": None, "retry_at": None, "pid": None},
    (S.QUEUED, S.HELD): {},
    (S.QUEUED, S.CANCELLED): ENDED,
    (S.QUEUED, S.FAILED): ENDED,
    (S.HELD, S.QUEUED): {},
    (S.HELD, S.CANCELLED): ENDED,
    (S.RUNNING, S.DONE): {**ENDED, "exit_code": 0, "signal": None, "error": None},
    (S.RUNNING, S.FAILED): ENDED,
    (S.RUNNING, S.QUEUED): {"pid": None, "step": None},
    (S.RUNNING, S.WAITING_HUMAN): {"pid": None},  # the step that asked stays
    (S.RUNNING, S.CANCELLED): ENDED,
    (S.WAITING_HUMAN, S.QUEUED): {"question": None},
    (S.WAITING_HUMAN, S.CANCELLED): {**ENDED, "question": None},
    (S.FAILED, S.QUEUED): RETRIED,
    (S.CANCELLED, S.QUEUED): RETRIED,
    (S.DONE, S.QUEUED): RERUN,
}
LEGAL = [(src, dst) for src, dsts in ALLOWED.items() for dst in sorted(dsts)]
ILLEGAL = [(src, dst) for src in Status for dst in Status if dst not in ALLOWED[src]]


def full_state(status: Status) -> TaskState:
    """A task in `status` with every field the rule may touch set to something else."""
    return TaskState(
        id=7,
        name="job",
        status=status,
        reason="before",
        attempts=2,
        failures=2,
        interruptions=1,
        created=EARLIER,
        started=EARLIER,
        finished=EARLIER,
        exit_code=3,
        signal=15,
        error="boom",
        progress={"percent": 50},
        question={"key": "which", "text": "Which one?"},
        answer="a",
        answers={"which": "a"},
        pid=4321,
        retry_at=NOW + 60,
        deadline_at=NOW + 3600,
        not_before_at=NOW - 60,
        steps_done=["a"],
        step="b",
        gpus=[1],
        tokens={"in": 3},
        requests=["r1"],
    )


def on_disk(home: Home, task_id: int) -> dict[str, Any]:
    return json.loads((home.task_dir(task_id) / "state.json").read_text())


@pytest.fixture
def store(tmp_path: Path) -> Store:
    home = Home(tmp_path / "home")
    home.ensure()
    home.task_dir(7).mkdir()
    return Store(home, FakeClock(now=NOW))


def test_every_legal_move_has_an_expectation() -> None:
    assert sorted(EXPECTED) == sorted(LEGAL)


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{s}->{d}" for s, d in LEGAL])
def test_a_move_sets_what_the_new_status_implies(store: Store, src: Status, dst: Status) -> None:
    state = full_state(src)
    before = full_state(src).to_json()
    store.transition(state, dst, "because")
    store.flush()
    data = on_disk(store.home, 7)
    implied = EXPECTED[(src, dst)]
    assert {k: data[k] for k in implied} == implied
    assert (data["status"], data["reason"]) == (str(dst), "because")
    untouched = set(before) - set(implied) - {"status", "reason", "history"}
    assert {k: data[k] for k in untouched} == {k: before[k] for k in untouched}
    assert data["history"][-1] == {"at": NOW_ISO, "status": str(dst), "reason": "because"}
    event = list(read_journal(store.home.journal))[-1]
    assert (event["event"], event["src"], event["status"]) == ("transition", str(src), str(dst))


@pytest.mark.parametrize(("src", "dst"), LEGAL, ids=[f"{s}->{d}" for s, d in LEGAL])
def test_explicit_changes_win(store: Store, src: Status, dst: Status) -> None:
    # A value of the right type for each implied field that no rule would set.
    mine: dict[str, Any] = {
        "started": "2025-11-22T21:00:00+00:00",
        "finished": "2025-11-22T21:30:00+00:00",
        "pid": 99,
        "step": "mine",
        "retry_at": NOW + 5,
        "question": {"key": "mine"},
        "error": "mine",
        "exit_code": 42,
        "signal": 2,
        "failures": 9,
        "interruptions": 9,
        "deadline_at": NOW + 5,
        "steps_done": ["mine"],
        "progress": {"percent": 7},
        "answers": {"k": "mine"},
        "answer": "mine",
    }
    changes = {k: mine[k] for k in EXPECTED[(src, dst)]}
    state = full_state(src)
    store.transition(state, dst, None, **changes, attempts=5)
    store.flush()
    data = on_disk(store.home, 7)
    assert {k: data[k] for k in changes} == changes
    assert data["attempts"] == 5


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{s}->{d}" for s, d in ILLEGAL])
def test_an_illegal_move_raises_and_changes_nothing(store: Store, src: Status, dst: Status) -> None:
    state = full_state(src)
    with pytest.raises(IllegalTransition):
        store.transition(state, dst, "no")
    assert state == full_state(src)
    assert store.empty


def test_an_unknown_field_raises_before_anything_changes(store: Store) -> None:
    state = full_state(Status.RUNNING)
    with pytest.raises(AttributeError, match="nope"):
        store.transition(state, Status.DONE, None, nope=1)
    assert state == full_state(Status.RUNNING)
    assert store.empty


def test_a_rerun_shares_no_list_or_dict_with_another_task(store: Store) -> None:
    # The rule's empty `steps_done` and `answers` are fresh objects for every task: a
    # worker's step appended to one task must not appear in the next rerun's state.
    first, second = full_state(Status.DONE), full_state(Status.DONE)
    store.transition(first, Status.QUEUED, "rerun")
    store.transition(second, Status.QUEUED, "rerun")
    first.steps_done.append("a")
    first.answers["k"] = "v"
    assert second.steps_done == [] and second.answers == {}


def test_finished_is_the_store_clock_at_the_move(store: Store) -> None:
    state = full_state(Status.RUNNING)
    store.clock.advance(90)  # type: ignore[attr-defined]
    store.transition(state, Status.FAILED, "x")
    assert state.finished == iso(NOW + 90)
