"""`llm:` tasks with several requests in flight (`concurrency:`), against tests/llm_server.py.

The server counts the chat requests it holds at once (`open`, `most_open`) and when each
arrived, so these tests see how many the worker has in flight, that answers arriving in any
order are all kept, that a SIGKILL with requests in flight costs only those, and that the
`per_minute` window holds whichever thread takes the unit.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.config import load_config
from bantzd.paths import TaskPaths
from bantzd.ratelimit import RateLimits
from bantzd.workers.spawn import worker_alive
from tests.conftest import Bantz, config_text, wait_for
from tests.e2e.test_llm import notes, run_once, use_server
from tests.llm_server import FakeLLM

pytest.importorskip("openai")


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM(models=("local",))
    server.start()
    yield server
    server.stop()


def task(tmp_path: Path, concurrency: int, uses: str = "") -> str:
    return (
        f"name: notes\ncwd: {tmp_path}\n{uses}llm:\n  prompt: Summarise these notes.\n"
        f"  inputs: notes/*.md\n  concurrency: {concurrency}\n"
    )


def logged(bantz: Bantz, task_id: int = 1) -> list[dict]:
    path = bantz.task_dir(task_id) / "llm-answers.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_bytes().splitlines(keepends=True)
            if line.endswith(b"\n")]  # fmt: skip


def test_concurrency_requests_are_in_flight_at_once_within_the_concurrent_limit(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)  # [limits.llm] concurrent = 2
    docs = notes(tmp_path / "notes", 8)
    llm.delay = 0.1
    bantz.drop("a.yaml", task(tmp_path, 4))
    run_once(bantz)
    assert bantz.state(1)["status"] == "done", bantz.output(1)
    assert llm.most_open == 4  # no uses: concurrency alone
    assert "4 requests at once" in bantz.output(1)
    # Holding 2 units of a limit with `concurrent = 2`: 2 at once, whatever concurrency says.
    llm.most_open = 0
    bantz.drop("b.yaml", task(tmp_path, 8, uses="uses: {llm: 2}\n").replace("notes\n", "b\n", 1))
    run_once(bantz)
    assert bantz.state(2)["status"] == "done", bantz.output(2)
    assert llm.most_open == 2
    counts = llm.per_doc()
    assert {d: counts[d] for d in docs} == {d: 2 for d in docs}


def test_answers_arriving_in_any_order_are_all_recorded(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    docs = notes(tmp_path / "notes", 6)
    llm.hold("notes/doc01.md")  # the first document answers last
    bantz.drop("a.yaml", task(tmp_path, 3))
    proc = bantz.start("run")
    wait_for(lambda: len(logged(bantz)) == 5, timeout=30, what="the other five answers")
    assert llm.open == 1
    llm.release_all()
    wait_for(lambda: bantz.status_of(1) == "done", timeout=30, what="the task to finish")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    parts = [e["doc"] for e in logged(bantz) if e["k"] == "part"]
    assert sorted(parts) == sorted(docs) and parts[-1] == "notes/doc01.md"
    assert all(n == 1 for n in llm.per_doc().values())
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("[local] Combined answer from 6 partial answers: notes/doc01.md;")


def test_a_kill_with_requests_in_flight_resends_only_those(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    docs = notes(tmp_path / "notes", 12)
    held = {f"notes/doc{i:02d}.md" for i in (2, 5, 7, 11)}
    for doc in held:
        llm.hold(doc)
    bantz.drop("a.yaml", task(tmp_path, 4))
    proc = bantz.start("run")
    # Four held requests fill every slot; the seven before doc11 are answered and logged.
    llm.wait_for(lambda s: s.open == 4 and s.count("notes/doc11.md") == 1, timeout=60)
    wait_for(lambda: len(logged(bantz)) == 7, timeout=30, what="seven answers in the log")
    pid = int(wait_for(lambda: bantz.state(1).get("pid"), what="the pid in state.json"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not worker_alive(TaskPaths(bantz.task_dir(1))), what="the worker to die")
    llm.release_all()

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert state["interruptions"] == 1 and state["failures"] == 0
    counts = llm.per_doc()
    assert {d: counts[d] for d in docs} == {d: 2 if d in held else 1 for d in docs}
    parts = [e["doc"] for e in logged(bantz) if e["k"] == "part"]
    assert sorted(parts) == sorted(docs)  # each once: no document answered twice
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("[local] Combined answer from 12 partial answers")


def test_per_minute_holds_for_requests_in_flight(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    (bantz.home / "config.toml").write_text(
        config_text(
            "[llm]",
            f'base_url = "{llm.base_url}"',
            'model = "local"',
            "[limits.llm]",
            "per_minute = 10",
        )
    )
    notes(tmp_path / "notes", 8)
    first = {f"notes/doc{i:02d}.md" for i in range(1, 5)}
    for doc in first:
        llm.hold(doc)
    bantz.drop("a.yaml", task(tmp_path, 4, uses="uses: {llm: 1}\n"))
    proc = bantz.start("run")
    llm.wait_for(lambda s: s.open == 4, timeout=60)
    # 5 of 10 used (the start, four requests). Another task of the home takes the other 5,
    # 58.5 s ago: the window is full for 1.5 s more, then has room for exactly the 5 requests
    # left (four documents, the combining call).
    limits = RateLimits(bantz.home, load_config(bantz.home / "config.toml").limits)
    taken_at = time.time() - 58.5
    assert limits.take({"llm": 5}, None, now=taken_at) is None
    llm.release_all()
    wait_for(lambda: bantz.status_of(1) == "done", timeout=30, what="the task to finish")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    later = [r for r in llm.seen() if r.doc not in first]
    assert len(later) == 5 and all(r.status == 200 for r in llm.seen())
    assert all(r.at >= taken_at + 60 for r in later), [r.at - taken_at for r in later]
