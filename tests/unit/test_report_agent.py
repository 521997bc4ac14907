"""The morning report's line for an `agent:` task (steps, tool calls per tool, the plan)."""

from __future__ import annotations

from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports.agentline import agent_line
from bantzd.reports.i18n import language


def state(agent: object) -> TaskState:
    return TaskState(id=1, name="a", status=Status.DONE, agent=agent)  # type: ignore[arg-type]


def test_steps_and_calls_per_tool_in_each_language() -> None:
    stats = {"steps": 1234, "tool_calls": {"write": 1, "fetch": 1001, "search__web": 2}}
    assert agent_line(state(stats), language("en")) == (
        "1,234 steps · tool calls: fetch 1,001, search__web 2, write 1"
    )
    assert agent_line(state(stats), language("tr")) == (
        "1.234 adım · araç çağrıları: fetch 1.001, search__web 2, write 1"
    )
    assert agent_line(state({"steps": 1, "tool_calls": {}}), language("en")) == (
        "1 step · no tool calls"
    )


def test_the_plan_counts_only_steps_it_has() -> None:
    plan = {"steps": ["a", "b", "c"], "done": [1, 3, 3, 9, "2"]}
    line = agent_line(
        state({"steps": 5, "tool_calls": {"plan_done": 4}, "plan": plan}), language("en")
    )
    assert line == "5 steps · tool calls: plan_done 4 · plan 2/3 done"
    empty_plan = {"steps": 1, "plan": {"steps": [], "done": []}}
    assert agent_line(state(empty_plan), language("tr")) == "1 adım · araç çağrısı yok"


def test_a_task_without_agent_steps_has_no_line() -> None:
    for stats in (None, {}, {"steps": "many"}, ["steps"]):
        assert agent_line(state(stats), language("en")) is None
