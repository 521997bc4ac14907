"""What an `agent:` task did, on one line of the morning report: `9 steps · tool calls:
fetch 6, write 1 · plan 3/4 done`.

Read from state.json's `agent` (the worker's agent.json, SPEC section 12). Tool names are
the task's own (an MCP tool is `server__tool`), so they are shown as recorded.
"""

from __future__ import annotations

from typing import Any

from bantzd.queue.task import TaskState
from bantzd.reports.i18n import Language


def agent_line(state: TaskState, lang: Language) -> str | None:
    """Steps, tool calls per tool and, with `plan: true`, the plan done; None when the task
    recorded no agent steps."""
    stats: Any = state.agent
    if not isinstance(stats, dict) or not isinstance(stats.get("steps"), int):
        return None
    parts = [lang.n("agent_steps", stats["steps"])]
    counts = stats.get("tool_calls")
    calls = []
    if isinstance(counts, dict):
        calls = [
            f"{name} {lang.integer(n)}"
            for name, n in sorted(counts.items())
            if isinstance(n, int) and n > 0
        ]
    parts.append(
        lang.t("agent_calls", calls=", ".join(calls)) if calls else lang.t("agent_no_calls")
    )
    plan = stats.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("steps"), list) and plan["steps"]:
        total = len(plan["steps"])
        done = [d for d in plan.get("done") or [] if isinstance(d, int) and 1 <= d <= total]
        parts.append(
            lang.t("agent_plan", done=lang.integer(len(set(done))), total=lang.integer(total))
        )
    return " · ".join(parts)
