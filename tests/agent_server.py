"""An OpenAI-compatible server that replays scripted tool-calling conversations, for the
`agent:` tests (and for trying agent tasks by hand).

A task's goal names its script: `[script:NAME]`. The reply to a request is the script's
turn number N, where N is how many assistant messages the request carries, so the server
keeps no conversation state: a resumed agent that sends the same history gets the same
next turn, and `turns(NAME)` counts how often each turn was asked for (a resumed run that
asks again for an answered turn shows up as a count of 2). Past the script's end the last
turn repeats (a model that never stops). A turn is one of:

- `text("...")`: a final answer; `empty()`: no text and no call;
- `calls(("read", {"path": "a.md"}), ...)`: tool calls; an argument given as a str is sent
  as written (so `"{not json"` is arguments that are not JSON);
- `raw({...}, ...)`: tool calls exactly as given (a call with no name, no id).

The request is checked as a strict server would: `tools` present, and every tool call of an
assistant message answered by a `tool` message with its id before the next message (else
400). A goal with no `[script:NAME]` tag is matched by `by_goal` (a phrase in the goal ->
NAME), so shipped examples need no tag; a turn may also be a function of the request's
messages (a script that reads what its tools returned). With `llm_tasks = True` a request
with no tools and no script is answered as FakeLLM answers `llm:` tasks (one server for the
demo's examples of both kinds). Switches: FakeLLM's `fail_next`, `drop_next`;
`hold(NAME, N)` / `release_all()` hold the request for turn N (to kill a run during a model
call).
"""

from __future__ import annotations

import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.llm_server import FakeLLM, _Handler

SCRIPT = re.compile(r"\[script:([\w-]+)\]")


Turn = dict[str, Any] | Callable[[list[dict[str, Any]]], dict[str, Any]]


def text(answer: str) -> dict[str, Any]:
    return {"content": answer}


def empty() -> dict[str, Any]:
    return {"content": ""}


def calls(*items: tuple[str, Any]) -> dict[str, Any]:
    made = []
    for name, args in items:
        raw = args if isinstance(args, str) else json.dumps(args)
        made.append({"type": "function", "function": {"name": name, "arguments": raw}})
    return {"content": "", "tool_calls": made}


def raw(*items: dict[str, Any]) -> dict[str, Any]:
    return {"content": "", "tool_calls": list(items), "raw": True}


class ScriptedLLM(FakeLLM):
    def __init__(self) -> None:
        super().__init__(models=("local",))
        self.scripts: dict[str, list[Turn]] = {}
        self.by_goal: dict[str, str] = {}  # a phrase in an untagged goal -> its script
        self.llm_tasks = False
        self.asked: list[tuple[str, int, int]] = []  # (script, turn, status)
        self.last_messages: dict[str, list[dict[str, Any]]] = {}
        self.last_tools: dict[str, list[dict[str, Any]]] = {}

    def turns(self, script: str, status: int | None = 200) -> Counter[int]:
        with self._cond:
            return Counter(
                t for s, t, st in self.asked if s == script and (status is None or st == status)
            )

    def hold(self, script: str, turn: int) -> None:  # type: ignore[override]
        super().hold(f"{script}#{turn}")


def problem_in(messages: list[dict[str, Any]]) -> str | None:
    """What a strict server would refuse in this conversation."""
    waiting: list[str] = []
    for m in messages:
        role = m.get("role")
        if role == "tool":
            if m.get("tool_call_id") not in waiting:
                return f"tool message for unknown call {m.get('tool_call_id')!r}"
            waiting.remove(m["tool_call_id"])
            continue
        if waiting:
            return f"tool calls {waiting} have no tool message"
        if role == "assistant":
            for c in m.get("tool_calls") or []:
                waiting.append(c.get("id"))
    return f"tool calls {waiting} have no tool message" if waiting else None


class _ScriptHandler(_Handler):
    llm: ScriptedLLM

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        body = json.loads(data or b"{}")
        messages = body.get("messages") or []
        goal = next((str(m.get("content")) for m in messages if m.get("role") == "user"), "")
        found = SCRIPT.search(goal)
        server = self.llm
        name = found[1] if found else "?"
        if not found:
            name = next((n for phrase, n in server.by_goal.items() if phrase in goal), "?")
        if name == "?" and server.llm_tasks and not body.get("tools"):
            self.rfile = io.BytesIO(data)  # an llm: task's request: FakeLLM's answer
            _Handler.do_POST(self)
            return
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        action = server._next_action()
        status = 200
        why = None
        if action is not None:
            status = action[1] or 0
        elif name not in server.scripts:
            status, why = 400, f"no script {name!r}"
        elif not body.get("tools"):
            status, why = 400, "no tools in the request"
        else:
            why = problem_in(messages)
            status = 400 if why else 200
        with server._cond:
            server.asked.append((name, turn, status))
            server.last_messages[name] = messages
            server.last_tools[name] = body.get("tools") or []
            server._cond.notify_all()
        if action is not None and action[0] == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if action is not None:
            headers = {"Retry-After": f"{action[2]:g}"} if action[2] is not None else {}
            self._json(status, {"error": {"message": "rate_limit_exceeded (test)"}}, headers)
            return
        if status != 200:
            self._json(status, {"error": {"message": why, "type": "invalid_request_error"}})
            return
        gate = server._hold_for(f"{name}#{turn}")
        if gate is not None:
            gate.wait(120)
        script = server.scripts[name]
        chosen = script[min(turn, len(script) - 1)]
        step = dict(chosen(messages) if callable(chosen) else chosen)
        message: dict[str, Any] = {"role": "assistant", "content": step.get("content") or None}
        if step.get("tool_calls"):
            made = []
            for i, c in enumerate(step["tool_calls"]):
                c = dict(c)
                if not step.get("raw"):
                    c["id"] = f"call_{i}"  # like llama.cpp: every reply numbers from 0
                made.append(c)
            message["tool_calls"] = made
        prompt_chars = sum(len(json.dumps(m)) for m in messages)
        usage = {"prompt_tokens": max(1, prompt_chars // 4), "completion_tokens": 10}
        usage["total_tokens"] = usage["prompt_tokens"] + 10
        finish = "tool_calls" if step.get("tool_calls") else "stop"
        self._json(
            200,
            {
                "id": f"chatcmpl-{len(server.asked)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "local"),
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": usage,
            },
        )


ScriptedLLM.handler = _ScriptHandler
