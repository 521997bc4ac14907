"""A small MCP server over stdio, written with the official `mcp` package, for the agent tests.

Tools: `lookup` (read-only: says so with readOnlyHint) finds a conference by city; `book`
(not read-only) appends a line to `booked.txt` in its working folder, so a test can count
how often it really ran, then waits `seconds`; `fail` reports an error.
Run: `python tests/mcp_server.py` (stdio) or `python tests/mcp_server.py --http PORT`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

CONFERENCES = {"istanbul": "AI Summit Istanbul, 12-14 March 2027", "ankara": "Ankara ML Days"}

server = MCPServer("bantzd-test")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
def lookup(city: str) -> str:
    """Find the AI conference held in a city."""
    return CONFERENCES.get(city.lower(), f"no conference known in {city}")


@server.tool(annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False))
def book(what: str, seconds: float = 0) -> str:
    """Book a place at a conference (and take `seconds` to confirm)."""
    with open(Path("booked.txt"), "a") as f:
        f.write(what + "\n")
    time.sleep(seconds)  # a slow confirmation: the test kills the task during it
    return f"booked: {what}"


@server.tool()
def fail(why: str) -> str:
    """Always fails."""
    raise ToolError(f"failed on purpose: {why}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--http":  # streamable HTTP on 127.0.0.1:PORT/mcp
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
