"""The pure parts of `agent:` tasks: task-file checks, path and shell rules, the journal."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.workers.agentjournal import AgentJournal, parse_arguments
from bantzd.workers.agenttools import Toolbox, ToolError, inside, shell_allowed
from bantzd.workers.llmcall import Reply


def problems(text: str) -> list[str]:
    with pytest.raises(TaskFileError) as e:
        parse_task(text, default_name="t")
    return [f"{p.key}: {p.message}" for p in e.value.problems]


def test_agent_task_files_are_checked_with_defaults_and_named_problems() -> None:
    spec = parse_task("agent:\n  goal: Find things\n", default_name="t")
    assert spec.kind == "agent"
    assert spec.agent is not None and spec.agent["tools"] == ("read", "write", "ask")
    assert spec.agent["max_steps"] == 30
    assert problems("agent:\n  tools: [read, browse]\n  max_steps: 0\n") == [
        "agent: missing goal: what the agent is to do",
        "agent.tools[1]: no tool named 'browse'; the tools are read, list, write, shell, ask",
        "agent.max_steps: expected a whole number > 0, got 0",
    ]
    assert problems("agent:\n  goal: x\n  shell_allow: ['ls *']\n") == [
        "agent.shell_allow: only used with shell in tools"
    ]
    assert problems("agent: {goal: x}\nrun: ls\n") == [
        "None: agent and run each say what to do; give only one of run, steps, python, llm, agent"
    ]


def test_shell_allow_matches_whole_commands_without_control_characters() -> None:
    allow = ["ls *", "grep *", "python scripts/*.py"]
    assert shell_allowed("ls -la", allow)
    assert shell_allowed("python scripts/report.py", allow)
    assert not shell_allowed("python other.py", allow)
    for sneaky in ("ls; rm -rf ~", "ls && curl x", "ls | sh", "ls $(rm x)", "ls `id`",
                   "ls > out", "ls\nrm x"):  # fmt: skip
        assert not shell_allowed(sneaky, allow), sneaky


def test_paths_cannot_leave_their_folder_by_dots_or_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(tmp_path, root / "up")
    assert inside(root, "sub", "working") == (root / "sub").resolve()
    assert inside(root, str(root / "sub"), "working") == (root / "sub").resolve()
    for bad in ("../outside.txt", "up/outside.txt", "/etc/passwd", "sub/../../outside.txt"):
        with pytest.raises(ToolError, match="outside the working folder"):
            inside(root, bad, "working")
    box = Toolbox(["read", "write"], cwd=root, work=tmp_path / "work")
    assert box.names == ("read", "list", "write")
    with pytest.raises(ToolError, match="outside the work folder"):
        box.run("write", {"path": "../x.md", "content": "no"})
    assert box.run("write", {"path": "d/x.md", "content": "yes"}) == "wrote d/x.md (3 bytes)"
    assert (tmp_path / "work" / "d" / "x.md").read_text() == "yes"


def test_arguments_must_be_a_json_object() -> None:
    assert parse_arguments('{"path": "a"}') == {"path": "a"}
    assert parse_arguments("") == {}
    with pytest.raises(ValueError, match="not JSON"):
        parse_arguments("{path: a")
    with pytest.raises(ValueError, match="JSON object"):
        parse_arguments("[1]")


def reply(text: str = "", *names: str) -> Reply:
    tool_calls = tuple({"id": "call_0", "name": n, "arguments": "{}"} for n in names)
    return Reply(text, "m", 5, 1, "stop", tool_calls)


def test_the_journal_rebuilds_the_conversation_and_drops_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "agent-journal.jsonl"
    journal = AgentJournal(path)
    first = journal.add_reply(reply("", "list"))
    journal.add_result(first["calls"][0], "a.md", ok=True)
    second = journal.add_reply(reply("", "read", "write"))
    assert [c["id"] for c in second["calls"]] == ["call_2_0", "call_2_1"]  # made unique
    journal.add_result(second["calls"][0], "text", ok=True)
    with open(path, "ab") as f:
        f.write(b'{"k": "result", "id": "call_2_1", "te')  # the power went mid-append
    again = AgentJournal(path)
    assert [c["name"] for c in again.pending()] == ["write"]
    messages = again.messages("sys", "goal")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "assistant",
                                             "tool"]  # fmt: skip
    assert again.final() is None and again.steps == 2
    again.add_result(second["calls"][1], "wrote", ok=True)
    again.add_reply(reply("All done."))
    assert AgentJournal(path).final() == "All done."
    assert AgentJournal(path).tool_counts() == {"list": 1, "read": 1, "write": 1}
