"""`agent:` tasks (SPEC section 12) against a scripted OpenAI-compatible server on 127.0.0.1.

tests/agent_server.py replays tool-calling conversations turn by turn and counts how often
each turn was asked for: that is how these tests see that a resumed run never asks the model
again for a step it already has. The worker, the openai client, the tools and the
supervisor are the real ones.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.paths import TaskPaths
from bantzd.workers.spawn import worker_alive
from tests.agent_server import ScriptedLLM, calls, empty, raw, text
from tests.conftest import Bantz, config_text, wait_for

pytest.importorskip("openai")


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.md").write_text("Meeting notes: budget, hiring, the March trip.\n")
    (tmp_path / "secret.txt").write_text("not for the agent\n")
    return folder


def use_server(bantz: Bantz, server: ScriptedLLM) -> None:
    text_ = config_text(
        "max_parallel = 3",
        "[llm]",
        f'base_url = "{server.base_url}"',
        'model = "local"',
        'timeout = "10s"',
        "[limits.llm]",
        "concurrent = 3",
        "per_minute = 6000",
    )
    (bantz.home / "config.toml").write_text(text_)


def agent_task(name: str, cwd: Path, *lines: str) -> str:
    body = "\n".join(f"  {line}" for line in lines)
    return (
        f"name: {name}\ncwd: {cwd}\nuses: {{llm: 1}}\n"
        f'agent:\n  goal: "Do the work [script:{name}]"\n{body}\n'
    )


def run_once(bantz: Bantz) -> None:
    res = bantz("run", "--once", timeout=90)
    assert res.returncode in (0, 1), res.stderr


def journal(bantz: Bantz, task_id: int) -> list[dict]:
    path = bantz.task_dir(task_id) / "agent-journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def kill_all(bantz: Bantz, proc, task_id: int) -> None:  # type: ignore[no-untyped-def]
    """The power goes: the supervisor and the task's whole process group, SIGKILL."""
    pid = int(wait_for(lambda: bantz.state(task_id).get("pid"), what="the pid in state.json"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.killpg(pid, signal.SIGKILL)
    paths = TaskPaths(bantz.task_dir(task_id))
    wait_for(lambda: not worker_alive(paths), what="the worker to die")


def test_tools_malformed_calls_an_empty_reply_and_a_429_then_the_result(
    bantz: Bantz, llm: ScriptedLLM, project: Path
) -> None:
    use_server(bantz, llm)
    llm.scripts["main"] = [
        calls(("list", {}), ("read", {"path": "notes.md"})),
        calls(("browse", {"url": "https://example.org"}), ("read", "{not json")),
        raw({"type": "function", "function": {"name": "", "arguments": "{}"}}),
        empty(),
        calls(
            ("read", {"path": "../secret.txt"}),
            ("write", {"path": "plans/agenda.md", "content": "# Agenda\n- budget\n"}),
        ),
        text("Final: the agenda is in work/plans/agenda.md."),
    ]
    bantz.drop("main.yaml", agent_task("main", project, "tools: [read, write]"))
    llm.hold("main", 2)
    proc = bantz.start("run", "--once")
    llm.wait_for(lambda s: s.turns("main")[2] == 1)
    llm.fail_next(1, 429, retry_after=0.2)  # the server is busy in the middle of the run
    llm.release_all()
    assert proc.wait(60) == 0

    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert llm.turns("main") == {t: 1 for t in range(6)}
    assert llm.turns("main", status=429) == {3: 1}
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("Final: the agenda is in work/plans/agenda.md.\n")
    assert "Steps: 6; tool calls: invalid 3, list 1, read 2, write 1" in result
    work = bantz.task_dir(1) / "work" / "plans" / "agenda.md"
    assert work.read_text() == "# Agenda\n- budget\n"
    assert state["agent"]["steps"] == 6
    assert state["agent"]["tool_calls"] == {"invalid": 3, "list": 1, "read": 2, "write": 1}
    assert state["tokens"]["prompt"] > 0 and state["tokens"]["completion"] == 60

    # What went back to the model: results and errors, each under its call's id.
    tool_texts = [m["content"] for m in llm.last_messages["main"] if m["role"] == "tool"]
    assert tool_texts[0] == "notes.md" and tool_texts[1].startswith("Meeting notes")
    assert "no tool named 'browse'" in tool_texts[2]
    assert "the arguments are not JSON" in tool_texts[3]
    assert "has no tool name" in tool_texts[4]
    assert "outside the working folder" in tool_texts[5] and "secret" not in tool_texts[6]
    users = [m["content"] for m in llm.last_messages["main"] if m["role"] == "user"]
    assert users[1].startswith("Your reply was empty")
    ids = [e["id"] for e in journal(bantz, 1) if e["k"] == "result"]
    assert len(ids) == len(set(ids)) == 7  # the server numbered each reply's calls from 0

    transcript = (bantz.task_dir(1) / "transcript.md").read_text()
    assert "## Step 6" in transcript and "**write** `" in transcript
    assert "(an empty reply)" in transcript
    shown = bantz("show", "1").stdout
    assert "6 steps; tool calls: invalid 3, list 1, read 2, write 1" in shown


def test_a_shell_command_outside_shell_allow_waits_for_an_answer_and_runs_once_and_budgets(
    bantz: Bantz, llm: ScriptedLLM, project: Path
) -> None:
    use_server(bantz, llm)
    command = "python3 -c \"open('ran.txt', 'a').write('x')\""
    llm.scripts["sh"] = [
        calls(("shell", {"command": "echo allowed"})),
        calls(("shell", {"command": command})),
        text("Ran it."),
    ]
    llm.scripts["loop"] = [calls(("list", {}))]
    llm.scripts["tokens"] = [calls(("list", {}))]
    tools = "tools: [read, shell]"
    bantz.drop("a.yaml", agent_task("sh", project, tools, 'shell_allow: ["echo *"]'))
    bantz.drop("b.yaml", agent_task("loop", project, "max_steps: 3"))
    bantz.drop("c.yaml", agent_task("tokens", project, "max_tokens: 700"))
    run_once(bantz)

    by_name = {bantz.state(i)["name"]: bantz.state(i) for i in (1, 2, 3)}
    sh, loop, tokens = by_name["sh"], by_name["loop"], by_name["tokens"]
    assert sh["status"] == "waiting_human", sh
    assert command in sh["question"]["text"] and sh["question"]["choices"] == ["yes", "no"]
    assert not (project / "ran.txt").exists()
    assert loop["status"] == "failed" and "max_steps (3) reached" in loop["reason"]
    assert loop["agent"]["steps"] == 3 and llm.turns("loop") == {0: 1, 1: 1, 2: 1}
    assert tokens["status"] == "failed" and "max_tokens (700) used up" in tokens["reason"]
    assert "Failed: max_tokens" in (bantz.task_dir(tokens["id"]) / "transcript.md").read_text()

    assert bantz("answer", str(sh["id"]), "yes").returncode == 0
    run_once(bantz)
    state = bantz.state(sh["id"])
    assert state["status"] == "done", (state, bantz.output(sh["id"]))
    assert (project / "ran.txt").read_text() == "x"  # run once
    assert llm.turns("sh") == {0: 1, 1: 1, 2: 1}
    results = [e["text"] for e in journal(bantz, sh["id"]) if e["k"] == "result"]
    assert results == ["exit status: 0\nallowed\n", "exit status: 0\n"]


def test_sigkill_during_a_tool_call_and_during_a_model_call_then_resume(
    bantz: Bantz, llm: ScriptedLLM, project: Path
) -> None:
    use_server(bantz, llm)
    llm.scripts["kill"] = [
        calls(("write", {"path": "a.md", "content": "A"})),
        calls(("shell", {"command": "sleep 30"})),
        calls(("read", {"path": "notes.md"})),
        text("Finished."),
    ]
    task = agent_task("kill", project, "tools: [read, write, shell]", 'shell_allow: ["sleep *"]')
    bantz.drop("kill.yaml", task)
    # 1. killed during the shell call
    proc = bantz.start("run")
    # The write's `begin` comes first, then the shell's: killed after the second, the shell
    # call is the interrupted one (killed after the first, it is the write).
    wait_for(
        lambda: sum(e["k"] == "begin" for e in journal_or_empty(bantz)) >= 2,
        timeout=30,
        what="the shell call to start",
    )
    kill_all(bantz, proc, 1)
    # 2. the resumed attempt asks before running the interrupted command again
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"]["text"] == 'the step "shell: sleep 30" was interrupted; run it again?'
    assert bantz("answer", "1", "no").returncode == 0
    # 3. killed while the model works on the last turn
    llm.hold("kill", 3)
    proc = bantz.start("run")
    llm.wait_for(lambda s: s.turns("kill")[3] == 1)
    kill_all(bantz, proc, 1)
    llm.release_all()
    # 4. the next run finishes it
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert (bantz.task_dir(1) / "result.md").read_text().startswith("Finished.\n")
    # Each answered turn was asked for once; only the turn killed in flight twice.
    assert llm.turns("kill") == {0: 1, 1: 1, 2: 1, 3: 2}
    entries = journal(bantz, 1)
    assert [e["step"] for e in entries if e["k"] == "model"] == [1, 2, 3, 4]
    assert [e["name"] for e in entries if e["k"] == "result"] == ["write", "shell", "read"]
    assert [e["k"] for e in entries].count("begin") == 2  # the write and the shell, once each
    shell = next(e for e in entries if e["k"] == "result" and e["name"] == "shell")
    assert shell["text"].startswith("Not run again after an interruption")
    assert (bantz.task_dir(1) / "work" / "a.md").read_text() == "A"


def journal_or_empty(bantz: Bantz) -> list[dict]:
    try:
        return journal(bantz, 1)
    except (FileNotFoundError, ValueError):
        return []


def test_until_ends_the_night_during_a_model_call_and_the_next_night_finishes_it(
    bantz: Bantz, llm: ScriptedLLM, project: Path
) -> None:
    from datetime import datetime, timedelta

    use_server(bantz, llm)
    llm.scripts["night"] = [
        calls(("write", {"path": "draft.md", "content": "draft"})),
        calls(("read", {"path": "notes.md"})),
        calls(("list", {})),
        text("Morning: the draft is in work/draft.md."),
    ]
    bantz.drop("night.yaml", agent_task("night", project, "tools: [read, write]"))
    llm.hold("night", 2)  # the model is still working on step 3 when the night ends
    # The model holds step 3 until released, so a longer night still ends during it: 8 s
    # leaves a loaded box time to start the worker and get through steps 1 and 2.
    until = (datetime.now().astimezone() + timedelta(seconds=8)).isoformat(timespec="seconds")
    res = bantz("run", "--until", until, timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert (state["status"], state["reason"]) == ("queued", "interrupted"), state
    assert state["failures"] == 0
    assert state["progress"]["message"] == "step 3/30: asking the model"
    assert state["agent"]["steps"] == 2 and state["agent"]["tool_calls"] == {"read": 1, "write": 1}
    assert [e["k"] for e in journal(bantz, 1)] == ["model", "begin", "result", "model", "result"]
    llm.release_all()

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    # Only the turn in flight at the end of the night was asked for again.
    assert llm.turns("night") == {0: 1, 1: 1, 2: 2, 3: 1}
    entries = journal(bantz, 1)
    assert [e["step"] for e in entries if e["k"] == "model"] == [1, 2, 3, 4]
    assert [e["k"] for e in entries].count("begin") == 1  # the write ran once
    assert (bantz.task_dir(1) / "work" / "draft.md").read_text() == "draft"
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("Morning: the draft is in work/draft.md.\n")
    assert state["agent"]["tool_calls"] == {"list": 1, "read": 1, "write": 1}


def test_plan_true_plans_works_through_the_plan_and_checks_the_result(
    bantz: Bantz, llm: ScriptedLLM, project: Path
) -> None:
    use_server(bantz, llm)
    llm.scripts["planned"] = [
        calls(("list", {})),  # no plan, and a call in the plan turn: not run, asked again
        text("My plan:\n1. Read the notes\n2. Write the agenda"),
        calls(("read", {"path": "notes.md"}), ("plan_done", {"step": 1})),
        calls(("ask", {"question": "Which day is the meeting?"})),
        calls(
            ("write", {"path": "agenda.md", "content": "# Thursday\n- budget\n"}),
            ("plan_done", {"step": 2}),
        ),
        text("The agenda for Thursday is in work/agenda.md."),
        text("Covered: an agenda from the notes. Missing: nothing."),
    ]
    # The check comes after the answer even when the answer used the last step.
    llm.scripts["short"] = [text("1. Answer"), text("42"), text("Missing: the reasons.")]
    bantz.drop("p.yaml", agent_task("planned", project, "tools: [read, write, ask]", "plan: true"))
    bantz.drop("s.yaml", agent_task("short", project, "plan: true", "max_steps: 2"))
    run_once(bantz)
    short = bantz.state(2)
    assert short["status"] == "done" and short["agent"]["steps"] == 3, short
    checked = (bantz.task_dir(2) / "result.md").read_text()
    assert checked.startswith("42\n") and "1. [ ] Answer" in checked
    assert "## Checked against the goal\n\nMissing: the reasons.\n" in checked
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["progress"]["percent"] == 50.0
    assert (
        state["progress"]["message"] == "plan 1/2 done; step 4/30: ask: Which day is the meeting?"
    )

    assert bantz("answer", "1", "Thursday").returncode == 0
    llm.hold("planned", 4)
    proc = bantz.start("run", "--once")
    llm.wait_for(lambda s: s.turns("planned")[4] == 1)
    shown = "plan 1/2 done; step 5/30: asking the model"
    wait_for(lambda: shown in bantz("status").stdout, what="the plan's progress in status")
    llm.release_all()
    assert proc.wait(60) == 0
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert llm.turns("planned") == {t: 1 for t in range(7)}
    assert state["agent"]["plan"] == {
        "steps": ["Read the notes", "Write the agenda"],
        "done": [1, 2],
    }
    assert state["agent"]["tool_calls"] == {
        "list": 1,
        "read": 1,
        "plan_done": 2,
        "ask": 1,
        "write": 1,
    }
    sent = llm.last_messages["planned"]
    said = [m["content"] for m in sent if m["role"] == "user"]
    assert said[1].startswith("Before you start, write a plan")
    assert said[2].startswith("That was not a plan")
    assert said[3].startswith("Now work through your plan")
    assert said[4].startswith("Check your final answer against the goal") and "[script:" in said[4]
    assert [m["content"] for m in sent if m["role"] == "tool"][:1] == [
        "Not run: the plan turn calls no tool. Reply with text only."
    ]
    assert any(t["function"]["name"] == "plan_done" for t in llm.last_tools["planned"])

    transcript = (bantz.task_dir(1) / "transcript.md").read_text()
    assert "## Step 2: the plan\n\nMy plan:\n1. Read the notes\n2. Write the agenda" in transcript
    assert "**plan_done** `" in transcript and "Step 2 of 2 is done" in transcript
    assert "## Step 7: checking the result against the goal\n\nCovered:" in transcript
    result = (bantz.task_dir(1) / "result.md").read_text()
    assert result.startswith("The agenda for Thursday is in work/agenda.md.\n")
    assert "1. [x] Read the notes\n2. [x] Write the agenda" in result
    assert (
        "## Checked against the goal\n\nCovered: an agenda from the notes. Missing: nothing."
        in result
    )
    assert "Plan: 2 of 2 steps done" in result
    assert (bantz.task_dir(1) / "work" / "agenda.md").read_text() == "# Thursday\n- budget\n"
