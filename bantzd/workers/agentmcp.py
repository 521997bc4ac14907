"""MCP servers' tools for an `agent:` task (SPEC section 12), with the official `mcp` client.

Each server in the task's `mcp:` list (a command over stdio, or a streamable-HTTP `url`) is
connected when the attempt starts; its tools are offered to the model as `SERVER__TOOL`
(OpenAI function names allow only letters, digits, `_` and `-`, so no dot). A tool whose
annotations say `readOnlyHint: true` runs again by itself after a crash; any other is
asked about, like `write` and `shell`.

The `mcp` client is async and the agent loop is not: the clients live in an anyio blocking
portal (an event loop on one thread), and each call crosses into it and waits. The stdio
server runs in its own session (the `mcp` client starts it so, and stops its whole tree on
close); if the worker is SIGKILLed, the server reads end-of-file on stdin and exits.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

CALL_TIMEOUT = 120.0
CONNECT_TIMEOUT = 30.0
NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 64  # OpenAI's limit on a function name


class McpProblem(Exception):
    """A server could not be started or listed (the task cannot run as written)."""


class McpCallError(Exception):
    """A tool call failed; the message goes back to the model."""


@dataclass(frozen=True)
class McpTool:
    offered: str  # the name the model sees
    server: str
    name: str  # the name on its server
    description: str
    schema: Mapping[str, Any]
    read_only: bool


def offered_name(server: str, tool: str) -> str:
    """`SERVER__TOOL`, made a valid function name (letters, digits, _ and -, at most 64)."""
    name = NAME_CHARS.sub("_", f"{server}__{tool}")
    return name[:MAX_NAME]


class McpTools:
    """The connected servers of one attempt and their tools; close() stops them."""

    def __init__(self, servers: Sequence[Mapping[str, Any]], *, cwd: Path) -> None:
        from anyio.from_thread import start_blocking_portal

        self.tools: dict[str, McpTool] = {}
        self._clients: dict[str, Any] = {}
        self._stack = ExitStack()
        try:
            self._portal = self._stack.enter_context(start_blocking_portal())
            for server in servers:
                self._connect(server, cwd)
        except BaseException:
            self._stack.close()
            raise

    def _connect(self, server: Mapping[str, Any], cwd: Path) -> None:
        from mcp import Client, StdioServerParameters

        name = str(server["name"])
        if server.get("url"):
            target: Any = str(server["url"])
            shown = target
        else:
            argv = list(server["command"])
            target = StdioServerParameters(command=argv[0], args=argv[1:], cwd=str(cwd))
            shown = shlex.join(argv)
        try:
            client = self._stack.enter_context(
                self._portal.wrap_async_context_manager(
                    Client(target, read_timeout_seconds=CONNECT_TIMEOUT)
                )
            )
            listed = []
            cursor = None
            while True:
                page = self._portal.call(partial(client.list_tools, cursor=cursor))
                listed += page.tools
                cursor = page.next_cursor
                if not cursor:
                    break
        except Exception as e:
            raise McpProblem(f"MCP server {name} ({shown}): {_reason(e)}") from None
        self._clients[name] = client
        for tool in listed:
            offered = offered_name(name, tool.name)
            if offered in self.tools:
                raise McpProblem(f"MCP server {name}: two tools are both offered as {offered}")
            hints = tool.annotations
            self.tools[offered] = McpTool(
                offered=offered,
                server=name,
                name=tool.name,
                description=tool.description or tool.title or f"{tool.name} on {name}",
                schema=tool.input_schema or {"type": "object", "properties": {}},
                read_only=bool(hints is not None and hints.read_only_hint),
            )

    def schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": t.offered,
                    "description": t.description,
                    "parameters": dict(t.schema),
                },
            }
            for t in self.tools.values()
        ]

    def call(self, offered: str, args: Mapping[str, Any]) -> str:
        """The tool's result as text; McpCallError when it failed."""
        tool = self.tools[offered]
        client = self._clients[tool.server]
        try:
            result = self._portal.call(
                lambda: client.call_tool(tool.name, dict(args), read_timeout_seconds=CALL_TIMEOUT)
            )
        except Exception as e:
            raise McpCallError(f"{tool.server}: {_reason(e)}") from None
        text = result_text(result)
        if result.is_error:
            raise McpCallError(text or "the tool reported an error")
        return text

    def close(self) -> None:
        self._stack.close()


def result_text(result: Any) -> str:
    """A CallToolResult as text: text blocks as they are, other blocks named."""
    parts = []
    for block in result.content or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource" and getattr(block.resource, "text", None) is not None:
            parts.append(block.resource.text)
        else:
            parts.append(f"[{kind or 'content'} block, {getattr(block, 'mime_type', '')}]")
    if not parts and result.structured_content is not None:
        import json

        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


def _reason(error: BaseException) -> str:
    # anyio task groups wrap the cause in ExceptionGroups: show the innermost.
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def missing_library() -> str | None:
    try:
        import mcp  # noqa: F401
    except ImportError:
        return "mcp: servers need the mcp package: pip install 'bantzd[agent]'"
    return None
