"""The start decision and the transition table, as pure functions (no files, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bantzd.errors import IllegalTransition
from bantzd.queue.states import ALLOWED, Status, check_transition
from bantzd.supervisor.scheduler import Candidate, TaskBrief, backoff, decide

NOW = 1_800_000_000.0


def briefs(*items: tuple[int, str, Status]) -> list[TaskBrief]:
    return [TaskBrief(i, n, s) for i, n, s in items]


def test_priority_then_lowest_id_into_free_slots() -> None:
    cands = [
        Candidate(1, "a"),
        Candidate(2, "b", priority=10),
        Candidate(3, "c"),
        Candidate(4, "d", priority=10),
    ]
    d = decide(cands, [], running=0, max_parallel=3, now=NOW)
    assert d.start == [2, 4, 1]
    assert d.waiting == {3: "waiting for a free slot (3 of 3 running)"}


def test_running_tasks_take_slots() -> None:
    d = decide([Candidate(1, "a")], [], running=2, max_parallel=2, now=NOW)
    assert d.start == [] and d.waiting[1] == "waiting for a free slot (2 of 2 running)"
    assert d.transient_waits()


def test_dependency_by_name_uses_newest_task_of_that_name() -> None:
    tasks = briefs(
        (1, "prep", Status.FAILED), (2, "prep", Status.DONE), (3, "train", Status.QUEUED)
    )
    d = decide([Candidate(3, "train", after=("prep",))], tasks, running=0, max_parallel=1, now=NOW)
    assert d.start == [3]


def test_dependency_waits_and_fails() -> None:
    tasks = briefs((1, "prep", Status.RUNNING), (2, "bad", Status.CANCELLED))
    cands = [
        Candidate(3, "x", after=("prep",)),
        Candidate(4, "y", after=(2,)),
        Candidate(5, "z", after=("ghost",)),
    ]
    d = decide(cands, tasks, running=1, max_parallel=4, now=NOW)
    assert d.waiting[3] == "after: prep (running)"
    assert d.fail[4] == "dependency failed: 2"
    assert d.waiting[5] == "after: ghost (no such task yet)"
    assert not d.transient_waits()


def test_a_task_never_depends_on_itself_by_name() -> None:
    d = decide(
        [Candidate(1, "x", after=("x",))],
        briefs((1, "x", Status.QUEUED)),
        running=0,
        max_parallel=1,
        now=NOW,
    )
    assert d.waiting[1] == "after: x (no such task yet)"


def test_retry_time_and_pause() -> None:
    cands = [
        Candidate(1, "a", retry_at=NOW + 30),
        Candidate(2, "b", paused=True),
        Candidate(3, "c", retry_at=NOW - 1),
    ]
    d = decide(cands, [], running=0, max_parallel=3, now=NOW)
    assert d.waiting[1].startswith("retry at ")
    assert d.wake_at == NOW + 30
    assert d.waiting[2] == "paused"
    assert d.start == [3]
    g = decide([Candidate(4, "d")], [], running=0, max_parallel=1, now=NOW, paused=True)
    assert g.start == [] and g.waiting[4].startswith("paused")


@given(st.floats(min_value=0.1, max_value=3600), st.integers(min_value=1, max_value=10))
def test_backoff_doubles(delay: float, failures: int) -> None:
    cap = 1e12  # far above: only the doubling shows
    assert backoff(delay, failures, cap) == pytest.approx(delay * 2 ** (failures - 1))
    assert backoff(delay, failures + 1, cap) == pytest.approx(2 * backoff(delay, failures, cap))


def test_backoff_stops_at_the_cap_default_one_hour() -> None:
    # Uncapped, retries: 10 with retry_delay: 1h waited 2**9 hours (21 days) before the last.
    assert backoff(3600, 10) == 3600
    assert backoff(60, 1) == 60 and backoff(60, 6) == 1920 and backoff(60, 7) == 3600
    assert backoff(60, 3, 100) == 100
    assert backoff(60, 10**6, 7200) == 7200
    assert backoff(0, 50) == 0  # retry_delay: 0 stays 0
    assert backoff(60, 0) == 60  # no failure counted yet: the first delay


@given(
    st.floats(min_value=0, max_value=366 * 86400, allow_nan=False),
    st.integers(min_value=-5, max_value=10**12),
    st.floats(min_value=0, max_value=366 * 86400, allow_nan=False),
)
def test_backoff_never_overflows_and_never_passes_the_cap(
    delay: float, failures: int, cap: float
) -> None:
    # 2**failures with failures = 10**6 is a 300000-digit int, and float() of it raises.
    wait = backoff(delay, failures, cap)
    assert isinstance(wait, float)
    assert 0 <= wait <= cap
    assert wait == min(cap, delay) or failures > 1
    assert backoff(delay, failures + 1, cap) >= wait  # never shorter after another failure


@given(
    st.lists(
        st.tuples(st.integers(1, 50), st.integers(-5, 5)), max_size=30, unique_by=lambda t: t[0]
    ),
    st.integers(0, 5),
    st.integers(1, 6),
)
def test_never_more_than_free_slots_and_in_order(
    items: list[tuple[int, int]], running: int, max_parallel: int
) -> None:
    cands = [Candidate(i, f"t{i}", priority=p) for i, p in items]
    d = decide(cands, [], running=running, max_parallel=max_parallel, now=NOW)
    assert len(d.start) <= max(0, max_parallel - running)
    order = sorted(cands, key=lambda c: (-c.priority, c.id))
    assert d.start == [c.id for c in order[: len(d.start)]]
    assert set(d.start) | set(d.waiting) == {c.id for c in cands}


def test_transition_table() -> None:
    check_transition(1, Status.QUEUED, Status.RUNNING)
    check_transition(1, Status.FAILED, Status.QUEUED)
    check_transition(1, Status.DONE, Status.QUEUED)  # `bantzd rerun`
    with pytest.raises(IllegalTransition, match="task 7 is done; it cannot become running"):
        check_transition(7, Status.DONE, Status.RUNNING)
    with pytest.raises(IllegalTransition):
        check_transition(1, Status.HELD, Status.RUNNING)
    assert set(ALLOWED) == set(Status)


@given(
    st.lists(
        st.tuples(
            st.integers(-2, 2),  # priority
            st.booleans(),  # paused
            st.sampled_from([None, NOW - 5, NOW + 60]),  # retry_at
            st.sampled_from([(), ("done-dep",), ("failed-dep",), ("running-dep",)]),
            st.booleans(),  # refused by admission
        ),
        max_size=40,
    ),
    st.integers(0, 4),
    st.integers(1, 4),
)
def test_stop_when_full_starts_the_same_and_agrees_on_what_it_looked_at(
    rows: list[tuple[int, bool, float | None, tuple[str, ...], bool]], running: int, slots: int
) -> None:
    tasks = briefs(
        (1000, "done-dep", Status.DONE),
        (1001, "failed-dep", Status.FAILED),
        (1002, "running-dep", Status.RUNNING),
    )
    cands = [
        Candidate(i, f"t{i}", priority=p, paused=paused, retry_at=retry, after=after)
        for i, (p, paused, retry, after, _) in enumerate(rows)
    ]
    refused = {i for i, row in enumerate(rows) if row[4]}

    def admit(c: Candidate) -> str | None:
        return "throttled: test" if c.id in refused else None

    full = decide(cands, tasks, running=running, max_parallel=slots, now=NOW, admit=admit)
    ordered = sorted(cands, key=lambda c: (-c.priority, c.id))
    quick = decide(
        ordered,
        tasks,
        running=running,
        max_parallel=slots,
        now=NOW,
        admit=admit,
        ordered=True,
        stop_when_full=True,
    )
    assert quick.start == full.start
    assert not full.partial
    for task_id, why in quick.waiting.items():
        assert full.waiting[task_id] == why
    for task_id, why in quick.fail.items():
        assert full.fail[task_id] == why
    looked = set(quick.waiting) | set(quick.fail) | set(quick.start)
    if quick.partial:
        # It stopped at the first candidate after the slots ran out.
        assert len(full.start) == max(0, slots - running)
        assert looked == {c.id for c in ordered[: len(looked)]}
    else:
        assert looked == {c.id for c in cands}
