"""`llm:` tasks (SPEC section 8) against a real HTTP server on 127.0.0.1.

tests/llm_server.py speaks the OpenAI chat API, so bantzd's worker and the real `openai`
client run unchanged; only the model is fake. The server counts requests per document,
which is how these tests see that a resumed run does not send a finished document again.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from bantzd.paths import TaskPaths
from bantzd.workers.llmanswers import AnswerLog
from bantzd.workers.llmcall import MAX_RETRY_AFTER, retry_after
from bantzd.workers.llminputs import expand_inputs, pack, split_text
from bantzd.workers.spawn import worker_alive
from tests.conftest import Bantz, config_text, run_demo, wait_for
from tests.llm_server import FakeLLM

pytest.importorskip("openai")


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    server = FakeLLM(models=("local",))
    server.start()
    yield server
    server.stop()


def use_server(
    bantz: Bantz, server: FakeLLM, *lines: str, llm: tuple[str, ...] = (), timeout: str = "5s"
) -> None:
    """config.toml pointing [llm] at the test server, with a [limits.llm]."""
    text = config_text(
        "max_parallel = 2",
        *lines,
        "[llm]",
        f'base_url = "{server.base_url}"',
        'model = "local"',
        f'timeout = "{timeout}"',
        *llm,
        "[limits.llm]",
        "concurrent = 2",
        "per_minute = 600",
    )
    (bantz.home / "config.toml").write_text(text)


def run_once(bantz: Bantz, timeout: float = 120) -> None:
    res = bantz("run", "--once", timeout=timeout)
    assert res.returncode in (0, 1), res.stderr


def notes(folder: Path, count: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(1, count + 1):
        name = f"doc{i:02d}.md"
        (folder / name).write_text(f"Note {i}: the quarterly plan item {i} moves ahead.\n")
        names.append(f"{folder.name}/{name}")
    return names


# the pure parts ------------------------------------------------------------------------------


def test_split_text_cuts_at_paragraphs_and_keeps_every_word() -> None:
    paragraphs = [f"paragraph {i} " + "word " * 30 for i in range(20)]
    text = "\n\n".join(paragraphs)
    pieces = split_text(text, 500)
    assert len(pieces) > 1
    assert all(len(p) <= 500 for p in pieces)
    assert all(p.startswith("paragraph") for p in pieces)  # cut at a paragraph break
    assert " ".join(pieces).split() == text.split()
    # One long line with no breaks at all is still cut, inside words if it must.
    blob = "x" * 1234
    assert "".join(split_text(blob, 500)) == blob
    assert split_text("short", 500) == ["short"]


def test_pack_fills_groups_in_order_and_never_drops_an_item() -> None:
    items = [(f"d{i}", "t" * 90) for i in range(10)]
    groups = pack(items, 300)
    assert [item for group in groups for item in group] == items
    assert all(sum(len(a) + len(b) + 8 for a, b in g) <= 300 for g in groups)
    huge = [("big", "t" * 1000), ("small", "t")]
    assert pack(huge, 300) == [[huge[0]], [huge[1]]]


def test_retry_after_reads_seconds_and_dates() -> None:
    def resp(value: str | None) -> SimpleNamespace:
        return SimpleNamespace(headers={"retry-after": value} if value is not None else {})

    now = time.time()
    assert retry_after(resp("7"), now) == 7
    assert retry_after(resp("1.5"), now) == 1.5
    assert retry_after(resp(None), now) is None
    assert retry_after(resp("soon"), now) is None
    assert retry_after(resp("99999"), now) == MAX_RETRY_AFTER
    when = email.utils.formatdate(now + 30, usegmt=True)
    assert 28 <= (retry_after(resp(when), now) or 0) <= 31
    past = email.utils.formatdate(now - 30, usegmt=True)
    assert retry_after(resp(past), now) == 0


def test_the_answer_log_drops_a_torn_last_line_and_appends_after_it(tmp_path: Path) -> None:
    log = AnswerLog(tmp_path / "answers.jsonl")
    assert log.read() == []
    log.append({"k": "part", "doc": "a.md", "text": "one"})
    log.append({"k": "part", "doc": "b.md", "text": "two"})
    with open(log.path, "ab") as f:
        f.write(b'{"k": "part", "doc": "c.md", "te')  # the power went mid-append
    assert [e["doc"] for e in log.read()] == ["a.md", "b.md"]
    assert log.path.read_bytes().endswith(b'"two"}\n')  # the torn line is cut off
    log.append({"k": "part", "doc": "c.md", "text": "three"})
    assert [e["doc"] for e in log.read()] == ["a.md", "b.md", "c.md"]


def test_expand_inputs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.md").write_text("1")
    (tmp_path / "a" / "two.md").write_text("2")
    (tmp_path / "a" / "sub.md").mkdir()  # a folder a glob matches is skipped
    sources, empty = expand_inputs(["a/*.md", "a/one.md", "missing.txt", "none/*.md"], tmp_path)
    assert [s.name for s in sources] == ["a/one.md", "a/two.md", "missing.txt"]
    assert empty == ["none/*.md"]
    assert sources[0].path == str(tmp_path / "a" / "one.md")


# end to end ----------------------------------------------------------------------------------


def test_a_folder_survives_a_power_cut_without_resending_finished_documents(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    docs = notes(tmp_path / "notes", 20)
    (tmp_path / "notes" / "doc21.md").write_bytes(b"\x00\x01binary")
    bantz.drop(
        "news.yaml",
        f"name: weekly-notes\ncwd: {tmp_path}\nuses: {{llm: 1}}\n"
        "llm:\n  prompt: Summarise these notes.\n  inputs: notes/*.md\n"
        "  system: You are precise.\n  max_tokens: 200\n",
    )
    llm.hold("notes/doc08.md")
    proc = bantz.start("run")
    llm.wait_for(lambda s: s.count("notes/doc08.md") == 1, timeout=60)
    # Documents 1-7 are answered and checkpointed; 8 is in flight. The power goes.
    # state.json of a task accepted and started in one tick is written just after the
    # start (the writer thread): wait for it rather than read it once.
    pid = int(wait_for(lambda: bantz.state(1).get("pid"), what="the pid in state.json"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: not worker_alive(TaskPaths(bantz.task_dir(1))), what="the worker to die")
    llm.release_all()

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert state["attempts"] == 2 and state["interruptions"] == 1 and state["failures"] == 0
    counts = llm.per_doc()
    assert {d: counts[d] for d in docs} == {d: 2 if d.endswith("doc08.md") else 1 for d in docs}
    assert counts["notes/doc21.md"] == 0  # unreadable: never sent
    combines = [r for r in llm.seen() if r.combine]
    assert len(combines) == 1 and combines[0].status == 200
    assert all(r.max_tokens == 200 for r in llm.seen())

    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("[local] Combined answer from 20 partial answers")
    assert "Documents: 21, 20 read, 1 could not be read:" in result
    assert "- notes/doc21.md: binary file, not text" in result
    tokens = state["tokens"]
    assert tokens["prompt"] > 0 and tokens["completion"] > 0
    assert f"Tokens: {tokens['prompt']:,} prompt + {tokens['completion']:,} completion" in result
    # The answers are in an append-only log; the checkpoint stays small however many there are.
    answers = (bantz.task_dir(1) / "llm-answers.jsonl").read_text().splitlines()
    assert len(answers) == 21 + 1  # 20 documents, the binary one, the combined answer
    checkpoint = json.loads((bantz.task_dir(1) / "checkpoint.json").read_text())
    assert checkpoint["stage"] == "done" and set(checkpoint) == {"llm", "stage", "answer"}


def test_until_stops_a_folder_halfway_and_the_next_night_finishes_it(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    from datetime import datetime, timedelta

    use_server(bantz, llm)
    docs = notes(tmp_path / "notes", 12)
    bantz.drop(
        "news.yaml",
        f"name: weekly-notes\ncwd: {tmp_path}\nuses: {{llm: 1}}\n"
        "llm:\n  prompt: Summarise these notes.\n  inputs: notes/*.md\n",
    )
    llm.hold("notes/doc05.md")  # the server is slow on this one when the night ends
    until = (datetime.now().astimezone() + timedelta(seconds=4)).isoformat(timespec="seconds")
    res = bantz("run", "--until", until, timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert (state["status"], state["reason"]) == ("queued", "interrupted"), state
    assert state["failures"] == 0
    assert state["progress"]["message"] == "document 5 of 12: notes/doc05.md"
    first_tokens = state["tokens"]["prompt"]
    report = next((bantz.home / "reports").glob("*.md")).read_text()
    assert "`weekly-notes`" in report.split("## Still queued")[1]
    llm.release_all()

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    counts = llm.per_doc()
    assert {d: counts[d] for d in docs} == {d: 2 if d.endswith("doc05.md") else 1 for d in docs}
    assert state["tokens"]["prompt"] > first_tokens  # the totals go on across attempts


def test_a_429_and_503_storm_is_ridden_out_and_other_llm_tasks_wait(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    notes(tmp_path / "notes", 3)
    llm.fail_next(2, status=429, retry_after=2)
    llm.fail_next(1, status=503, retry_after=1.5)
    bantz.drop(
        "a.yaml",
        f"name: summary\ncwd: {tmp_path}\nuses: {{llm: 1}}\n"
        "llm:\n  prompt: Summarise.\n  inputs: notes/*.md\n",
    )
    proc = bantz.start("run")
    llm.wait_for(lambda s: any(r.status == 429 for r in s.requests), timeout=60)
    # The summary says why it sits still (`bantzd status` shows its progress message).
    progress = bantz.task_dir(1) / "progress.json"
    wait_for(
        lambda: "waiting for rate limit llm until" in progress.read_text(),
        timeout=10,
        what="the progress message to show the wait",
    )
    stamp = tmp_path / "b-started"
    bantz.drop("b.yaml", f"name: other\nuses: {{llm: 1}}\nrun: date +%s.%N > {stamp}\n")
    # While the back-off holds, the other task waits, and says why.
    wait_for(
        lambda: (bantz.state(2).get("reason") or "").startswith("rate limit llm: next at"),
        timeout=20,
        what="the other task to wait for the back-off",
    )
    wait_for(lambda: bantz.status_of(1) == "done", timeout=60, what="the summary to finish")
    wait_for(lambda: bantz.status_of(2) == "done", timeout=30, what="the other task")
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)

    state = bantz.state(1)
    assert state["attempts"] == 1 and state["failures"] == 0, state
    hold = {429: 2.0, 503: 1.5}  # the Retry-After of each
    storm = [(r.at, hold[r.status]) for r in llm.seen() if r.status in hold]
    assert [r.status for r in llm.seen() if r.status != 200] == [429, 429, 503]
    # Every answer held the limit for its Retry-After; the other task started outside
    # those windows (or in the few ms between an answer and the worker's back-off).
    started = float(stamp.read_text())
    for at, seconds in storm:
        assert started <= at + 0.3 or started >= at + seconds - 0.05, (started, storm)
    assert "HTTP 429 from the server; waiting 2.0s" in bantz.output(1)
    assert "HTTP 503 from the server; waiting 1.5s" in bantz.output(1)


def test_fallback_model_tokens_in_state_show_and_report(bantz: Bantz, llm: FakeLLM) -> None:
    use_server(bantz, llm, llm=('fallback_models = ["small"]',))
    llm.models = {"small"}
    bantz.drop(
        "agenda.yaml",
        "name: agenda\nllm:\n  prompt: Draft tomorrow's agenda.\n  model: big\n"
        "  temperature: 0.2\n",
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    seen = llm.seen()
    assert [(r.model, r.status) for r in seen] == [("big", 404), ("small", 200)]
    answered = [r for r in seen if r.status == 200]
    assert state["tokens"] == {
        "prompt": sum(r.prompt_tokens for r in answered),
        "completion": sum(r.completion_tokens for r in answered),
    }
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("[small] Answer to: Draft tomorrow's agenda.")
    assert "Not available: big (The model `big` does not exist)" in result
    assert "model big is not available" in bantz.output(1)

    show = bantz("show", "1", check=True).stdout.splitlines()
    prompt, completion = state["tokens"]["prompt"], state["tokens"]["completion"]
    assert f"  tokens:     {prompt:,} prompt + {completion:,} completion" in show
    report = bantz("report", "--stdout", check=True).stdout
    done = report.split("## Done")[1].split("##")[0]
    total = state["tokens"]["prompt"] + state["tokens"]["completion"]
    assert "tokens (prompt + completion)" in done
    assert "[small] Answer to: Draft tomorrow" in done
    assert f"= {total}" in report


def test_confirm_asks_after_the_result_and_records_the_answer(bantz: Bantz, llm: FakeLLM) -> None:
    use_server(bantz, llm)
    bantz.drop(
        "agenda.yaml",
        "name: agenda\nllm:\n  prompt: Draft tomorrow's agenda.\n"
        "  confirm: Put the budget on the agenda?\n  choices: [yes, no]\n",
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"] == {
        "key": "confirm",
        "text": "Put the budget on the agenda?",
        "choices": ["yes", "no"],
    }
    result = bantz.task_dir(1) / "result.md"
    assert result.read_text().startswith("[local] Answer to: Draft tomorrow's agenda.")
    report = bantz("report", "--stdout", check=True).stdout
    assert "asks: Put the budget on the agenda? (choices: yes, no)" in report
    requests = len(llm.seen())

    bantz("answer", "1", "yes", check=True)
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert len(llm.seen()) == requests  # the answer costs no request
    text = result.read_text()
    assert text.rstrip().endswith("## Decision\n\nPut the budget on the agenda?\n\n**yes**")
    assert text.count("## Decision") == 1


def test_long_documents_are_chunked_and_answers_combined_in_rounds(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm, llm=("context_chars = 1200",))
    folder = tmp_path / "papers"
    folder.mkdir()
    long = "\n\n".join(f"Paragraph {i}: " + "findings " * 20 for i in range(12))
    (folder / "long.txt").write_text(long)
    for i in range(12):
        (folder / f"p{i:02d}.txt").write_text(f"Paper {i} " + "claims " * 10)
    bantz.drop(
        "mr.yaml",
        f"name: claims\ncwd: {tmp_path}\nllm:\n  prompt: List the claims.\n"
        "  inputs: [papers/*.txt]\n  max_tokens: 12\n",
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    seen = llm.seen()
    parts = sorted(r.part for r in seen if r.doc == "papers/long.txt")
    assert len(parts) > 1 and parts == list(range(1, len(parts) + 1))
    assert all(len(r.user) <= 1200 for r in seen if r.doc is not None)
    combines = [r for r in seen if r.combine]
    assert len(combines) > 1  # the partial answers did not fit one request: rounds
    assert all(r.status == 200 for r in seen)
    # Every fake answer is longer than 12 tokens (48 characters): each one was cut.
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert f"Cut short: {len(seen)} answers reached max_tokens (12)" in result


def test_connection_drops_are_retried(bantz: Bantz, llm: FakeLLM) -> None:
    use_server(bantz, llm)
    llm.drop_next(2)
    bantz.drop("q.yaml", "name: q\nllm:\n  prompt: Hello?\n")
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert [r.status for r in llm.seen()] == [0, 0, 200]
    assert "the request failed: connection error (Server disconnected" in bantz.output(1)
    assert bantz.output(1).count("trying again") == 2


def test_failures_end_the_attempt_with_a_clear_reason(
    bantz: Bantz, llm: FakeLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm, timeout="0.3s")
    # A key the server refuses: no retry can help, the reason says what to check.
    llm.fail_next(1, status=401, retry_after=None)
    bantz.drop("a.yaml", "name: refused\nllm:\n  prompt: Hello?\n")
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "failed"
    assert state["error"].startswith("exit 1: the server refused the request for model local")
    assert "HTTP 401" in state["error"] and "api_key_env" in state["error"]
    assert len(llm.seen()) == 1

    # A server too slow for [llm] timeout: a few tries, then the task's own retries.
    llm.delay = 1.0
    bantz.drop("b.yaml", "name: slow\nretries: 1\nretry_delay: 0s\nllm:\n  prompt: Hi\n")
    run_once(bantz)
    state = bantz.state(2)
    assert state["status"] == "failed", state
    assert state["error"] == (
        "exit 1: the request got no answer within [llm] timeout (0.3s), 4 times in a row"
    )
    assert state["attempts"] == 2 and len([r for r in llm.seen() if r.user == "Hi"]) == 8
    llm.delay = 0

    # Inputs that match nothing, and a model nobody has.
    bantz.drop(
        "c.yaml", f"name: empty\ncwd: {tmp_path}\nllm:\n  prompt: x\n  inputs: nothing/*.md\n"
    )
    bantz.drop("d.yaml", "name: nomodel\nllm:\n  prompt: x\n  model: gone\n")
    run_once(bantz)
    assert bantz.state(3)["error"] == (
        f"exit 1: inputs matched no files: nothing/*.md (from {tmp_path})"
    )
    error = bantz.state(4)["error"]
    assert error.startswith("exit 1: no model available: the server said 404 for gone")
    assert "reason.txt" not in json.dumps(bantz.state(4))


@pytest.mark.slow
def test_demo_runs_the_llm_examples_against_the_server(llm: FakeLLM, tmp_path: Path) -> None:
    out = run_demo(tmp_path, tmp_path / "no-home", "--llm", llm.base_url)
    assert "LLM examples skipped" not in out
    report = out[out.index("# Morning report") :]
    done = report.split("## Done")[1].split("## Failed")[0]
    # The agent examples run too, so the table has an agent column (empty for llm: tasks).
    assert re.search(
        r"\| `weekly-notes` \| [^|]+ \| 1 \| \d+ \+ \d+ \|  \| \[local\] Combined", done
    )
    assert re.search(
        r"\| `paper-claims` \| [^|]+ \| 1 \| \d+ \+ \d+ \|  \| \[local\] Combined", done
    )
    needs = report.split("## Needs you")[1].split("## Done")[0]
    assert "`agenda-draft` asks: Put the budget on the agenda? (choices: yes, no)" in needs
    # Every sample note was sent once; the prompt file was read.
    per_doc = llm.per_doc()
    assert per_doc["week/2026-12-02-wed.md"] == 1 and per_doc["todo.md"] == 1
    assert any("List the main claims" in r.user for r in llm.seen())


def test_the_llm_examples_are_valid_and_their_inputs_exist_in_the_sample_notes() -> None:
    from bantzd.queue.taskfile import parse_task

    folder = Path(__file__).resolve().parents[2] / "bantzd" / "examples" / "llm"
    files = sorted(folder.glob("*.yaml"))
    assert len(files) == 3
    for path in files:
        spec = parse_task(path.read_bytes(), default_name=path.stem)
        assert spec.kind == "llm" and spec.cwd == "~/notes" and dict(spec.uses) == {"llm": 1}
        inputs = spec.llm["inputs"] if spec.llm else []
        sources, empty = expand_inputs(list(inputs), folder / "notes")
        assert sources and not empty, path.name
        assert all(Path(s.path).is_file() for s in sources)
        if spec.llm and "prompt_file" in spec.llm:
            assert (folder / "notes" / spec.llm["prompt_file"]).is_file()
