"""The parts of `llm:` concurrency that need no server: the pool, its width, the answer log
folding parts that arrive out of order, the settings, and limits taken from many threads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bantzd.config import Limit, load_config
from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.ratelimit import LimitTimeout, RateLimits
from bantzd.workers.llmanswers import apply_entry, nothing_done
from bantzd.workers.llmpool import in_flight, width_for


def test_in_flight_keeps_width_calls_going_and_records_in_the_calling_thread() -> None:
    lock = threading.Lock()
    now, most = 0, 0
    all_in = threading.Barrier(3, timeout=10)
    recorded: list[tuple[int, str]] = []
    made: list[int] = []

    def jobs():  # type: ignore[no-untyped-def]
        for i in range(9):
            made.append(i)
            yield i

    def call(job: int) -> str:
        nonlocal now, most
        with lock:
            now += 1
            most = max(most, now)
        if job < 3:
            all_in.wait()  # the first three are in flight together
        with lock:
            now -= 1
        return f"answer {job}"

    def record(job: int, result: str) -> None:
        assert threading.current_thread() is threading.main_thread()
        recorded.append((job, result))

    in_flight(jobs(), call, record, width=3)
    assert most == 3
    assert sorted(recorded) == [(i, f"answer {i}") for i in range(9)]
    assert made == list(range(9))


def test_in_flight_stops_at_an_error_but_records_the_answers_in_flight() -> None:
    started: list[int] = []
    failing = threading.Event()
    recorded: list[int] = []

    def call(job: int) -> int:
        started.append(job)
        if job == 1:
            failing.set()
            raise RuntimeError("the server refused")
        failing.wait(10)  # the others were in flight when it failed
        return job

    with pytest.raises(RuntimeError, match="refused"):
        in_flight(iter(range(20)), call, lambda job, r: recorded.append(job), width=3)
    # Every answer that came back is recorded; the jobs started are the first three and at
    # most the two that refill slots freed before the error was seen, not the other 15.
    assert sorted(recorded) == sorted(set(started) - {1}) and {0, 2} <= set(recorded)
    assert len(started) <= 5


def test_width_is_concurrency_within_the_units_held_of_concurrent_limits() -> None:
    limits = {
        "llm": Limit("llm", per_minute=None, per_hour=None, concurrent=4),
        "api": Limit("api", per_minute=60, per_hour=None, concurrent=None),
    }
    assert width_for(8, {}, limits) == 8
    assert width_for(8, {"api": 1}, limits) == 8  # a window, not a count at once
    assert width_for(8, {"llm": 1}, limits) == 1
    assert width_for(8, {"llm": 3, "api": 1}, limits) == 3
    assert width_for(2, {"llm": 3}, limits) == 2


def test_parts_of_a_document_arriving_out_of_order_make_its_answer_in_order() -> None:
    state = nothing_done()
    for part in (2, 0):
        apply_entry(state, {"k": "part", "doc": "a.md", "part": part, "of": 3, "text": f"p{part}"})
    assert "a.md" not in state["partials"] and state["chunks"]["a.md"] == {2: "p2", 0: "p0"}
    apply_entry(state, {"k": "part", "doc": "a.md", "part": 0, "of": 3, "text": "again"})
    apply_entry(state, {"k": "part", "doc": "a.md", "part": 1, "of": 3, "text": "p1"})
    assert state["partials"]["a.md"] == "(part 1 of 3) p0\n\n(part 2 of 3) p1\n\n(part 3 of 3) p2"
    assert state["chunks"] == {}


def test_concurrency_in_the_task_file_and_in_config(tmp_path: Path) -> None:
    def llm(value: str) -> dict:
        text = f"name: a\nllm:\n  prompt: hi\n  concurrency: {value}\n"
        return dict(parse_task(text.encode(), default_name="a").llm or {})

    assert llm("6")["concurrency"] == 6
    for bad, says in (("0", "from 1 to 256"), ("two", "from 1 to 256"), ("1000", "at most 256")):
        with pytest.raises(TaskFileError, match=f"llm.concurrency: .*{says}"):
            llm(bad)
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_config(path).llm.concurrency == 4
    path.write_text("[llm]\nconcurrency = 8\n")
    assert load_config(path).llm.concurrency == 8
    from bantzd.config import ConfigError

    path.write_text("[llm]\nconcurrency = 0\n")
    with pytest.raises(ConfigError, match=r"llm\.concurrency: expected a whole number from 1"):
        load_config(path)


def test_per_minute_holds_when_many_threads_take_at_once(tmp_path: Path) -> None:
    limits = RateLimits(tmp_path, {"llm": Limit("llm", 5, None, None)})
    got: list[bool] = []
    start = threading.Barrier(8, timeout=10)

    def take() -> None:
        start.wait()
        try:
            limits.acquire("llm", 1, task_id=1, timeout=0.3)
            got.append(True)
        except LimitTimeout:
            got.append(False)

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(got) == [False] * 3 + [True] * 5
