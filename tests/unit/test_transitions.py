"""Every legal status change through a real Store sets what the new status implies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bantzd.clock import FakeClock, iso
from bantzd.errors import IllegalTransition
from bantzd.paths import Home
from bantzd.queue.states import ALLOWED, FINISHED, Status
from bantzd.queue.store import Store
from bantzd.queue.task import TaskState

PAIRS = [(src, dst) for src, dsts in ALLOWED.items() for dst in dsts]
ILLEGAL = [(s, d) for s in Status for d in Status if d not in ALLOWED[s]]


def _dirty(status: Status) -> TaskState:
    """A task in `status` with every field a status change may have to clear set."""
    return TaskState(
        id=1,
        name="t",
        status=status,
        pid=4242,
        step="two",
        retry_at=1e9,
        finished="2026-01-01T00:00:00+00:00",
        error="boom",
        exit_code=3,
        signal=9,
    )


def _moved(tmp_path: Path, src: Status, dst: Status, **changes: object) -> dict:
    home = Home(tmp_path / "home")
    home.ensure()
    (home.task_dir(1)).mkdir(parents=True)
    clock = FakeClock()
    store = Store(home, clock)
    state = _dirty(src)
    store.transition(state, dst, "why", **changes)
    store.flush()
    data = json.loads((home.task_dir(1) / "state.json").read_text())
    data["_now"] = iso(clock.time())
    return data


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{s}->{d}" for s, d in PAIRS])
def test_each_transition_sets_what_the_new_status_implies(
    tmp_path: Path, src: Status, dst: Status
) -> None:
    data = _moved(tmp_path, src, dst)
    assert data["status"] == str(dst)
    if dst in FINISHED:
        assert data["finished"] == data["_now"]
        assert (data["pid"], data["step"], data["retry_at"]) == (None, None, None)
    else:
        assert data["finished"] is None
    if src is Status.RUNNING:
        assert data["pid"] is None
        assert data["step"] == ("two" if dst is Status.WAITING_HUMAN else None)
    else:
        assert data["pid"] == (None if dst in FINISHED else 4242)
    if src in FINISHED:
        assert (data["error"], data["exit_code"], data["signal"]) == (None, None, None)
    if dst is Status.RUNNING:
        assert data["retry_at"] is None


def test_the_callers_own_changes_win(tmp_path: Path) -> None:
    data = _moved(tmp_path, Status.RUNNING, Status.QUEUED, retry_at=123.0, step="kept")
    assert (data["retry_at"], data["step"], data["pid"]) == (123.0, "kept", None)


@pytest.mark.parametrize(("src", "dst"), ILLEGAL, ids=[f"{s}->{d}" for s, d in ILLEGAL])
def test_illegal_moves_are_refused(tmp_path: Path, src: Status, dst: Status) -> None:
    with pytest.raises(IllegalTransition):
        _moved(tmp_path, src, dst)
