"""The `agent:` mapping of a task file (SPEC section 12), checked on taskfile.py's YAML nodes.

taskfile.py calls `check_agent` with its checker, so problems carry the same key paths, lines
and columns as every other key (`agent.tools[2]: no tool named 'browse' ...`).

The rule, in short (README "Agent tasks" says it for users):

* `goal` (required): what the agent is to do, in plain words;
* `tools`: built-in tools from TOOLS, default [read, write, ask]; `read` also offers `list`;
* `shell_allow`: shell-style patterns (`ls *`) of commands that run without asking; only
  with `shell` in tools;
* `max_steps` (model turns, default 30), `max_tokens` (prompt + completion over the whole
  task), `model`, `system`, `temperature`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from yaml.nodes import Node, SequenceNode

from bantzd.queue.taskfile import LIMITS, BadValue, NodeChecker

AGENT_KEYS = (
    "goal", "tools", "shell_allow", "max_steps", "max_tokens", "model", "system", "temperature",
)  # fmt: skip
TOOLS = ("read", "list", "write", "shell", "ask")
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
