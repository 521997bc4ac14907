"""The `mcp:` list of an agent task file, and MCP tool names and re-run rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.workers.agentmcp import McpTool, offered_name
from bantzd.workers.agenttools import Toolbox


def problems(text: str) -> list[str]:
    with pytest.raises(TaskFileError) as e:
        parse_task(text, default_name="t")
    return [f"{p.key}: {p.message}" for p in e.value.problems]


def test_mcp_servers_are_checked_and_named() -> None:
    spec = parse_task(
        "agent:\n  goal: x\n  mcp:\n"
        "    - {command: [python, -m, search]}\n"
        "    - {name: files, command: 'npx server-files', args: [/tmp, '']}\n"
        "    - {url: 'http://127.0.0.1:9000/mcp'}\n",
        default_name="t",
    ).agent
    assert spec is not None
    assert [dict(s) for s in spec["mcp"]] == [
        {"name": "mcp1", "command": ("python", "-m", "search")},
        {"name": "files", "command": ("npx", "server-files", "/tmp", "")},
        {"name": "mcp3", "url": "http://127.0.0.1:9000/mcp"},
    ]
    assert problems(
        "agent:\n  goal: x\n  mcp:\n"
        "    - {name: a, command: x}\n"
        "    - {name: a, command: y}\n"
        "    - {name: 'b c', command: x}\n"
        "    - {command: x, url: 'http://h/mcp'}\n"
        "    - {url: 'ftp://h'}\n"
        "    - {url: 'http://h/mcp', args: [x]}\n"
        "    - {commnd: x}\n"
    ) == [
        "agent.mcp[1]: a second server named 'a'",
        "agent.mcp[2]: 'b c': a name of letters, digits, _ and - (at most 20)",
        "agent.mcp[3]: give either command (a server over stdio) or url (over HTTP)",
        "agent.mcp[4]: expected an http:// or https:// URL, got 'ftp://h'",
        "agent.mcp[5]: args go with command, not with url",
        "agent.mcp[6]: give either command (a server over stdio) or url (over HTTP)",
        "agent.mcp[6].commnd: unknown key (did you mean 'command'?)",
    ]
    assert problems("agent:\n  goal: x\n  mcp: {command: x}\n") == [
        "agent.mcp: expected a list of servers, like [{command: [python, -m, srv]}]"
    ]


def test_offered_names_are_valid_function_names() -> None:
    assert offered_name("conf", "lookup") == "conf__lookup"
    assert offered_name("web", "search.pages v2") == "web__search_pages_v2"
    assert len(offered_name("s", "x" * 100)) == 64


class FakeMcp:
    """What Toolbox needs of McpTools, without a server (the e2e tests start real ones)."""

    def __init__(self) -> None:
        self.tools = {
            "s__look": McpTool("s__look", "s", "look", "Look.", {"type": "object"}, True),
            "s__act": McpTool("s__act", "s", "act", "Act.", {"type": "object"}, False),
        }

    def schemas(self) -> list[dict]:
        return [{"type": "function", "function": {"name": n}} for n in self.tools]


def test_the_read_only_hint_decides_reruns(tmp_path: Path) -> None:
    box = Toolbox(["read"], cwd=tmp_path, work=tmp_path / "w", mcp=FakeMcp())  # type: ignore[arg-type]
    assert box.names == ("read", "list", "s__look", "s__act")
    assert [s["function"]["name"] for s in box.schemas()] == list(box.names)
    assert box.read_only("s__look") and not box.read_only("s__act")
    assert box.read_only("fetch") and not box.read_only("write")
    assert box.knows("s__act") and not box.knows("act")
