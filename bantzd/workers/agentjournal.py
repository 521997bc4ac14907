"""agent-journal.jsonl: every step of an `agent:` task, durable before the next one.

One JSON object a line, appended and fsynced (bantzd.queue.appendlog; a torn last line is
dropped). The entries, in the order they happen:

- `model`: a reply (`step` from 1, `text`, `calls` [{id, name, arguments}], `model`,
  `tokens` [prompt, completion]) -- written before any of its calls runs;
- `begin`: a call that is not read-only is about to run (`id`); a `begin` without a
  `result` is a call the attempt died in, which is only run again if the person says so;
- `result`: what a call gave back (`id`, `name`, `ok`, `text`);
- `user`: a line bantzd said to the model (after an empty reply; with `plan: true`, before
  the plan, the work and the check).

With `plan: true` (bantzd.workers.agentplan) a `model` entry may carry `phase` (`plan`, with
the parsed steps as `plan`, or `check`) and a `plan_done` result carries `plan_step`.

From these the conversation is rebuilt on every attempt, so the model is never asked again
for a step it already answered. Call ids are made unique when the reply is recorded (some
local servers number every reply's calls from 0), so a result always finds its call.
`transcript()` renders the same entries for a person (transcript.md).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from bantzd.queue.appendlog import AppendLog
from bantzd.workers.llmcall import Reply

TRANSCRIPT_RESULT_LINES = 6
_PHASE_TITLES = {"plan": ": the plan", "check": ": checking the result against the goal"}


class AgentJournal:
    """The journal of one task, read once per attempt and appended to as it goes."""

    def __init__(self, path: Path) -> None:
        self.log = AppendLog(path)
        self.entries: list[dict[str, Any]] = self.log.read()
        self._ids = {c["id"] for e in self._models() for c in e.get("calls") or []}
        self._done = {e.get("id") for e in self.entries if e.get("k") == "result"}
        self._begun = {e.get("id") for e in self.entries if e.get("k") == "begin"}

    def add(self, entry: dict[str, Any]) -> None:
        self.log.append(entry)
        self.entries.append(entry)
        if entry["k"] == "result":
            self._done.add(entry["id"])
        elif entry["k"] == "begin":
            self._begun.add(entry["id"])

    def clear(self) -> None:
        self.log.clear()
        self.entries = []
        self._ids, self._done, self._begun = set(), set(), set()

    # what is recorded --------------------------------------------------------------------

    def add_reply(self, reply: Reply, **extra: Any) -> dict[str, Any]:
        """Record a model reply (ids made unique; `extra` fields added, like a plan's
        `phase`); returns its entry."""
        step = self.steps + 1
        calls = []
        for i, call in enumerate(reply.tool_calls):
            call_id = call.get("id") or ""
            if not call_id or call_id in self._ids:
                call_id = f"call_{step}_{i}"
            self._ids.add(call_id)
            calls.append({"id": call_id, "name": call["name"], "arguments": call["arguments"]})
        entry: dict[str, Any] = {"k": "model", "step": step, "text": reply.text, "calls": calls}
        entry["model"] = reply.model
        entry["tokens"] = [reply.prompt_tokens, reply.completion_tokens]
        if reply.finish_reason == "length":
            entry["cut"] = True
        entry.update(extra)
        self.add(entry)
        return entry

    def add_result(
        self, call: dict[str, Any], text: str, *, ok: bool, invalid: bool = False, **extra: Any
    ) -> None:
        """Record what a call gave back; `invalid`: the call itself was malformed."""
        entry = {"k": "result", "id": call["id"], "name": call["name"], "ok": ok, "text": text}
        if invalid:
            entry["invalid"] = True
        entry.update(extra)
        self.add(entry)

    def begun(self, call: dict[str, Any]) -> bool:
        return call["id"] in self._begun

    # what it says ------------------------------------------------------------------------

    def _models(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if e.get("k") == "model"]

    @property
    def steps(self) -> int:
        return sum(1 for e in self.entries if e.get("k") == "model")

    def last_reply(self) -> dict[str, Any] | None:
        for entry in reversed(self.entries):
            if entry.get("k") == "model":
                return entry
        return None

    def pending(self) -> list[dict[str, Any]]:
        """The calls of the last reply that have no result yet, in order."""
        last = self.last_reply()
        return [c for c in (last or {}).get("calls") or [] if c["id"] not in self._done]

    def final(self) -> str | None:
        """The final answer: the last reply, when it has text and no calls."""
        last = self.last_reply()
        if last is None or last.get("calls") or not str(last.get("text") or "").strip():
            return None
        return str(last["text"]).strip()

    def tool_counts(self) -> dict[str, int]:
        """Calls that ran, per tool (a malformed call counts as `invalid`)."""
        counts: Counter[str] = Counter()
        for e in self.entries:
            if e.get("k") == "result":
                counts["invalid" if e.get("invalid") else str(e.get("name") or "invalid")] += 1
        return dict(counts)

    def messages(self, system: str, goal: str) -> list[dict[str, Any]]:
        """The conversation so far, as chat messages."""
        out: list[dict[str, Any]] = [
            {"role": "system", "content": system},
            {"role": "user", "content": goal},
        ]
        for e in self.entries:
            kind = e.get("k")
            if kind == "model":
                message: dict[str, Any] = {"role": "assistant", "content": e.get("text") or ""}
                if e.get("calls"):
                    message["tool_calls"] = [
                        {
                            "id": c["id"],
                            "type": "function",
                            "function": {"name": c["name"], "arguments": c["arguments"]},
                        }
                        for c in e["calls"]
                    ]
                out.append(message)
            elif kind == "result":
                out.append({"role": "tool", "tool_call_id": e["id"], "content": e["text"]})
            elif kind == "user":
                out.append({"role": "user", "content": e["text"]})
        return out

    # for a person ------------------------------------------------------------------------

    def transcript(self, goal: str, *, ending: str | None = None) -> str:
        """transcript.md: the goal, then every step (model text, calls with their
        arguments, results cut to a few lines)."""
        lines = ["# Transcript", "", f"**Goal:** {goal}", ""]
        for e in self.entries:
            kind = e.get("k")
            if kind == "model":
                title = _PHASE_TITLES.get(str(e.get("phase")), "")
                lines += [f"## Step {e.get('step')}{title}", ""]
                if e.get("text"):
                    lines += [str(e["text"]), ""]
                elif not e.get("calls"):
                    lines += ["(an empty reply)", ""]
                for c in e.get("calls") or []:
                    lines.append(f"- **{c['name'] or '?'}** `{_one_line(c['arguments'])}`")
                if e.get("calls"):
                    lines.append("")
            elif kind == "result":
                mark = "result" if e.get("ok") else "refused"
                shown = str(e.get("text", "")).splitlines() or [""]
                more = len(shown) - TRANSCRIPT_RESULT_LINES
                body = shown[:TRANSCRIPT_RESULT_LINES] + (
                    [f"[{more} more lines]"] if more > 0 else []
                )
                lines += [f"{mark} of {e.get('name') or '?'}:", "", "```text", *body, "```", ""]
            elif kind == "user":
                lines += [f"*bantzd:* {e['text']}", ""]
        if ending:
            lines += ["---", "", ending, ""]
        return "\n".join(lines)


def parse_arguments(raw: str) -> dict[str, Any]:
    """A call's arguments as an object; ValueError saying what is wrong with them."""
    if raw is None or not str(raw).strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise ValueError(f"the arguments are not JSON ({e}): {_one_line(raw)}") from None
    if not isinstance(value, dict):
        raise ValueError(f"the arguments must be a JSON object, got {_one_line(raw)}")
    return value


def _one_line(text: Any, limit: int = 200) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
