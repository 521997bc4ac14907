"""Plan, work, check: an `agent:` task with `plan: true` (SPEC section 12).

Three phases, all read back from agent-journal.jsonl, so a resumed attempt is in the same
phase the last one was in:

1. **plan**: bantzd asks for a numbered plan; the reply (a `model` entry with
   `"phase": "plan"`) carries the steps it parsed as `plan`. A reply with no numbered steps
   is asked again (it costs a step, like an empty reply); calls made in this turn are
   answered "not run".
2. **work**: the usual tool loop, with one more tool, `plan_done`, that the model calls with
   a step's number when that step is done (its result entry carries `plan_step`). Progress
   is the share of the plan's steps done.
3. **check**: when the model gives its final answer, bantzd asks it once more to check the
   answer against the goal and say what is missing (`"phase": "check"`). That turn ends the
   task: result.md is the answer and the check; it runs even when the answer used the last
   of `max_steps`.

What bantzd says before each phase is a `user` entry made just before the model is asked
(`instruction`), so a crash between a reply and the next request loses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

PLAN_TOOL = "plan_done"
PLAN_ASK = (
    "Before you start, write a plan: a numbered list of the steps you will take to reach the "
    "goal (1. ..., 2. ...), with the tools you have. Reply with the plan only; call no tool yet."
)
PLAN_AGAIN = (
    "That was not a plan. Reply with a numbered list of steps (1. ..., 2. ...) and call no tool."
)
WORK_ASK = (
    f"Now work through your plan with the tools. Each time a step of the plan is done, call "
    f"{PLAN_TOOL} with its number. When the goal is reached, reply with the final answer in "
    "Markdown and no tool call."
)
CHECK_ASK = (
    "Check your final answer against the goal:\n\n{goal}\n\nSay what the answer covers and "
    "what is missing or uncertain; write 'Missing: nothing.' when nothing is. Call no tool."
)
NOT_NOW = "Not run: {phase} turn calls no tool. Reply with text only."
SCHEMA = {
    "type": "function",
    "function": {
        "name": PLAN_TOOL,
        "description": "Mark a step of your plan as done (its number in the plan).",
        "parameters": {
            "type": "object",
            "properties": {
                "step": {"type": "integer", "description": "the step's number in the plan"},
                "note": {"type": "string", "description": "what the step gave, in a line"},
            },
            "required": ["step"],
        },
    },
}

_NUMBERED = re.compile(r"^\s*(?:\*\*)?(?:step\s+)?(\d{1,3})\s*[.):]\s*(?:\*\*)?\s*(\S.*)$", re.I)


def parse_plan(text: str) -> list[str]:
    """The steps of a numbered list in `text` ('1. Read the notes' -> 'Read the notes'), in
    order; lines that are not numbered items continue the item above them only when
    indented. [] when there is no numbered item."""
    items: list[str] = []
    for line in text.splitlines():
        found = _NUMBERED.match(line)
        if found:
            items.append(found[2].strip().rstrip("*").strip())
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1] += " " + line.strip()
    return items


class Plan:
    """Where a `plan: true` task stands, read from its journal entries."""

    def __init__(self, entries: Sequence[dict[str, Any]]) -> None:
        self.entries = entries
        self.items: list[str] = []
        self.done: set[int] = set()
        self.answer: str | None = None  # the final answer of the work phase
        self.check: str | None = None
        for e in entries:
            kind = e.get("k")
            if kind == "model" and e.get("phase") == "plan" and e.get("plan"):
                self.items = list(e["plan"])
            elif kind == "model" and e.get("phase") == "check":
                self.check = str(e.get("text") or "").strip()
            elif kind == "model" and self.items:
                final = not e.get("calls") and str(e.get("text") or "").strip()
                self.answer = str(e["text"]).strip() if final else None
            elif kind == "result" and e.get("plan_step") is not None:
                self.done.add(int(e["plan_step"]))

    @property
    def phase(self) -> str:
        """plan, work, check, or done (the check is in)."""
        if not self.items:
            return "plan"
        if self.check is not None:
            return "done"
        return "check" if self.answer is not None else "work"

    def instruction(self, goal: str) -> str | None:
        """What bantzd says before the next model turn, unless the journal already has it."""
        last_model = None
        for e in reversed(self.entries):
            if e.get("k") == "user":
                return None  # said after the last reply already
            if e.get("k") == "model":
                last_model = e
                break
        if last_model is None:
            return PLAN_ASK
        if last_model.get("phase") == "plan":
            return WORK_ASK if last_model.get("plan") else PLAN_AGAIN
        if self.phase == "check":
            return CHECK_ASK.format(goal=goal)
        return None

    def progress(self) -> tuple[float, str]:
        """The share of the plan done and `plan 2/5 done`, for progress.json."""
        if not self.items:
            return 0.0, "writing the plan"
        done = len(self.done & set(range(1, len(self.items) + 1)))
        return done / len(self.items), f"plan {done}/{len(self.items)} done"

    def mark(self, args: dict[str, Any]) -> tuple[int, str]:
        """The step a `plan_done` call marks and its result; ValueError when it names none."""
        step = args.get("step")
        if isinstance(step, str) and step.strip().isdigit():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool):
            raise ValueError(f"step must be the number of a step of the plan, got {step!r}")
        if not 1 <= step <= len(self.items):
            raise ValueError(f"the plan has steps 1 to {len(self.items)}, not {step}")
        done = self.done | {step}
        left = [i for i in range(1, len(self.items) + 1) if i not in done]
        said = f"Step {step} of {len(self.items)} is done ({len(done)} of {len(self.items)})."
        if left:
            return step, f"{said} Next: {left[0]}. {self.items[left[0] - 1]}"
        return step, f"{said} All steps are done: give the final answer."

    def summary(self) -> dict[str, Any]:
        """agent.json's `plan`: the steps and which are done."""
        return {"steps": list(self.items), "done": sorted(self.done)}

    def result_text(self) -> str:
        """The plan and the check, for result.md under the answer."""
        lines = ["", "## The plan", ""]
        for i, item in enumerate(self.items, 1):
            lines.append(f"{i}. [{'x' if i in self.done else ' '}] {item}")
        lines += ["", "## Checked against the goal", "", self.check or "(no check)"]
        return "\n".join(lines) + "\n"
