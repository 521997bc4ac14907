"""MCP servers' tools in `agent:` tasks: tests/mcp_server.py (written with `mcp`) over stdio,
started by the real worker; the scripted model calls its tools as `conf__TOOL`."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_server import ScriptedLLM, calls, text
from tests.conftest import Bantz, wait_for
from tests.e2e.test_agent import agent_task, journal, journal_or_empty, kill_all, use_server

pytest.importorskip("mcp")

SERVER = Path(__file__).resolve().parents[1] / "mcp_server.py"
MCP = f"mcp: [{{name: conf, command: [{sys.executable}, {SERVER}]}}]"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.start()
    yield server
    server.stop()


def test_mcp_tools_are_offered_called_and_their_errors_returned(
    bantz: Bantz, llm: ScriptedLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    llm.scripts["mcp"] = [
        calls(("conf__lookup", {"city": "Istanbul"}), ("conf__book", {"what": "AI Summit"})),
        calls(("conf__fail", {"why": "test"})),
        text("Booked the AI Summit Istanbul."),
    ]
    bantz.drop("mcp.yaml", agent_task("mcp", tmp_path, "tools: [read]", MCP))
    res = bantz("run", "--once", timeout=90)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    offered = {t["function"]["name"]: t["function"] for t in llm.last_tools["mcp"]}
    assert list(offered) == ["read", "list", "conf__lookup", "conf__book", "conf__fail"]
    assert offered["conf__lookup"]["description"] == "Find the AI conference held in a city."
    assert offered["conf__book"]["parameters"]["required"] == ["what"]
    results = [e for e in journal(bantz, 1) if e["k"] == "result"]
    assert results[0]["text"] == "AI Summit Istanbul, 12-14 March 2027"
    assert results[1]["text"] == "booked: AI Summit" and results[1]["ok"]
    assert not results[2]["ok"] and "failed on purpose: test" in results[2]["text"]
    assert (tmp_path / "booked.txt").read_text() == "AI Summit\n"
    begun = [e["id"] for e in journal(bantz, 1) if e["k"] == "begin"]
    assert begun == [results[1]["id"], results[2]["id"]]  # lookup is read-only: no begin
    assert state["agent"]["tool_calls"] == {"conf__book": 1, "conf__fail": 1, "conf__lookup": 1}


def test_an_mcp_call_killed_midway_is_asked_about_unless_read_only(
    bantz: Bantz, llm: ScriptedLLM, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    llm.scripts["kill"] = [
        calls(("conf__book", {"what": "AI Summit", "seconds": 60})),
        text("Done."),
    ]
    bantz.drop("kill.yaml", agent_task("kill", tmp_path, "tools: [read]", MCP))
    proc = bantz.start("run")
    wait_for(lambda: (tmp_path / "booked.txt").exists(), timeout=30, what="the booking")
    assert any(e["k"] == "begin" for e in journal_or_empty(bantz))
    kill_all(bantz, proc, 1)
    res = bantz("run", "--once", timeout=90)
    assert res.returncode in (0, 1), res.stderr
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"]["text"] == 'the step "conf__book" was interrupted; run it again?'
    assert bantz("answer", "1", "no").returncode == 0
    res = bantz("run", "--once", timeout=90)
    assert bantz.state(1)["status"] == "done", bantz.output(1)
    assert (tmp_path / "booked.txt").read_text() == "AI Summit\n"  # booked once
    assert llm.turns("kill") == {0: 1, 1: 1}


def test_a_server_over_streamable_http(tmp_path: Path) -> None:
    from bantzd.workers.agentmcp import McpProblem, McpTools

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--http", str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        wait_for(listening, timeout=20, what="the MCP server to listen")
        tools = McpTools([{"name": "web", "url": f"http://127.0.0.1:{port}/mcp"}], cwd=tmp_path)
        try:
            assert tools.tools["web__lookup"].read_only
            assert tools.call("web__lookup", {"city": "ankara"}) == "Ankara ML Days"
        finally:
            tools.close()
    finally:
        proc.terminate()
        proc.wait(10)
    with pytest.raises(McpProblem, match=r"MCP server web \(http://127\.0\.0\.1:"):
        McpTools([{"name": "web", "url": f"http://127.0.0.1:{port}/mcp"}], cwd=tmp_path)
