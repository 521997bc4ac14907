"""The `agent:` mapping of a task file (SPEC section 12), checked on taskfile.py's YAML nodes.

taskfile.py calls `check_agent` with its checker, so problems carry the same key paths, lines
and columns as every other key (`agent.tools[2]: no tool named 'browse' ...`).

The rule, in short (README "Agent tasks" says it for users):

* `goal` (required): what the agent is to do, in plain words;
* `tools`: built-in tools from TOOLS, default [read, write, ask]; `read` also offers `list`;
* `shell_allow`: shell-style patterns (`ls *`) of commands that run without asking; only
  with `shell` in tools;
* `mcp`: MCP servers, each `{command: ARGV or LINE, args: [...]}` (stdio) or `{url: ...}`
  (streamable HTTP), with an optional `name` (letters, digits, `_`, `-`; default mcp1,
  mcp2, ...): their tools are offered as `NAME__TOOL`;
* `max_steps` (model turns, default 30), `max_tokens` (prompt + completion over the whole
  task), `model`, `system`, `temperature`;
* `plan`: true to plan first, work through the plan, then check the result against the goal
  (bantzd.workers.agentplan).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from yaml.nodes import Node, ScalarNode, SequenceNode

from bantzd.queue.taskfile import LIMITS, BadValue, NodeChecker

AGENT_KEYS = (
    "goal", "tools", "shell_allow", "max_steps", "max_tokens", "model", "system", "temperature",
    "mcp", "plan",
)  # fmt: skip
MCP_KEYS = ("name", "command", "args", "url")
MCP_NAME = re.compile(r"^[A-Za-z0-9_-]{1,20}$")
TOOLS = ("read", "list", "write", "fetch", "shell", "ask")
DEFAULT_TOOLS = ("read", "write", "ask")
DEFAULT_MAX_STEPS = 30
MAX_STEPS = 10_000


def check_agent(checker: NodeChecker, node: Node, path: str) -> Mapping[str, Any]:
    """The validated `agent:` mapping (tools a tuple, defaults filled in); problems are
    recorded on `checker`, a wrong shape raises BadValue."""
    entries = checker.items(node, path, AGENT_KEYS)
    checks: dict[str, Callable[[Node, str], Any]] = {
        "goal": lambda n, p: checker.text(n, "the goal, in plain words"),
        "tools": lambda n, p: _tools(checker, n, p),
        "shell_allow": lambda n, p: checker.text_list(n, p, "a command pattern like 'ls *'"),
        "max_steps": lambda n, p: checker.integer(n, "a whole number > 0", 1, MAX_STEPS),
        "max_tokens": lambda n, p: checker.integer(
            n, "a whole number > 0", 1, LIMITS["max_tokens"]
        ),
        "model": lambda n, p: checker.text(n, "a model name"),
        "system": lambda n, p: checker.text(n, "the system prompt", empty_ok=True),
        "temperature": lambda n, p: checker.number(n, "a number from 0 to 2", 0, 2),
        "mcp": lambda n, p: _mcp(checker, n, p),
        "plan": lambda n, p: checker._approval(n, p),  # true or false, as approval:
    }
    out: dict[str, Any] = {}
    for key, (_, value_node) in entries.items():
        value = checker.each(f"{path}.{key}", value_node, checks[key])
        if value is not None:
            out[key] = value
    if "goal" not in entries:
        checker.problem("missing goal: what the agent is to do", path, node)
    out.setdefault("tools", DEFAULT_TOOLS)
    out.setdefault("max_steps", DEFAULT_MAX_STEPS)
    if "shell_allow" in entries and "shell" not in out["tools"]:
        checker.problem(
            "only used with shell in tools", f"{path}.shell_allow", entries["shell_allow"][0]
        )
    return MappingProxyType(out)


def _tools(checker: NodeChecker, node: Node, path: str) -> tuple[str, ...]:
    if not isinstance(node, SequenceNode):
        raise BadValue("expected a list of tools, like [read, write, ask]", node)
    names: list[str] = []
    for i, item in enumerate(node.value):
        name = checker.each(
            f"{path}[{i}]", item, lambda n, p: checker.text(n, "a tool name").strip()
        )
        if name is None:
            continue
        if name not in TOOLS:
            checker.problem(
                f"no tool named {name!r}; the tools are {', '.join(TOOLS)}", f"{path}[{i}]", item
            )
        elif name not in names:
            names.append(name)
    return tuple(names)


def _mcp(checker: NodeChecker, node: Node, path: str) -> tuple[Mapping[str, Any], ...]:
    if not isinstance(node, SequenceNode):
        raise BadValue("expected a list of servers, like [{command: [python, -m, srv]}]", node)
    out: list[Mapping[str, Any]] = []
    names: set[str] = set()
    for i, item in enumerate(node.value):
        server = checker.each(f"{path}[{i}]", item, lambda n, p, i=i: _server(checker, n, p, i))
        if server is None:
            continue
        if server["name"] in names:
            checker.problem(f"a second server named {server['name']!r}", f"{path}[{i}]", item)
            continue
        names.add(server["name"])
        out.append(server)
    return tuple(out)


def _server(checker: NodeChecker, node: Node, path: str, index: int) -> Mapping[str, Any]:
    entries = checker.items(node, path, MCP_KEYS)
    name = f"mcp{index + 1}"
    if "name" in entries:
        name_node = entries["name"][1]
        name = checker.text(name_node, "a server name").strip()
        if not MCP_NAME.match(name):
            raise BadValue(f"{name!r}: a name of letters, digits, _ and - (at most 20)", name_node)
    has_command, has_url = "command" in entries, "url" in entries
    if has_command == has_url:
        raise BadValue("give either command (a server over stdio) or url (over HTTP)", node)
    if has_url:
        if "args" in entries:
            raise BadValue("args go with command, not with url", entries["args"][0])
        url_node = entries["url"][1]
        url = checker.text(url_node, "an http:// or https:// URL").strip()
        if not url.startswith(("http://", "https://")):
            raise BadValue(f"expected an http:// or https:// URL, got {url!r}", url_node)
        return MappingProxyType({"name": name, "url": url})
    command = checker.command(entries["command"][1], f"{path}.command")
    argv = list(shlex.split(command) if isinstance(command, str) else command)
    if "args" in entries:
        args_node = entries["args"][1]
        if not isinstance(args_node, SequenceNode) or not all(
            isinstance(a, ScalarNode) for a in args_node.value
        ):
            raise BadValue("expected a list of arguments", args_node)
        argv += [checker.text(a, "an argument", empty_ok=True) for a in args_node.value]
    if not argv:
        raise BadValue("expected a command", entries["command"][1])
    return MappingProxyType({"name": name, "command": tuple(argv)})
