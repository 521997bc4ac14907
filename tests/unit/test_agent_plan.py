"""`plan: true` for agent tasks: the plan parsed from a reply, the phase and what bantzd says
next read back from journal entries, plan_done calls, progress."""

from __future__ import annotations

import pytest

from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.workers.agentplan import (
    CHECK_ASK,
    PLAN_AGAIN,
    PLAN_ASK,
    WORK_ASK,
    Plan,
    parse_plan,
)


def test_a_numbered_list_is_the_plan_in_any_usual_spelling() -> None:
    text = (
        "Here is my plan:\n\n1. Read the notes\n2) List the open points\n"
        "   with their owners\n**3.** Write the agenda\nStep 4: Check it\n- not a step\n"
    )
    assert parse_plan(text) == [
        "Read the notes",
        "List the open points with their owners",
        "Write the agenda",
        "Check it",
    ]
    assert parse_plan("I will read the notes, then write.") == []
    assert parse_plan("") == []


def model(step: int, text: str = "", calls: int = 0, **extra: object) -> dict:
    made = [{"id": f"c{step}_{i}", "name": "read", "arguments": "{}"} for i in range(calls)]
    return {"k": "model", "step": step, "text": text, "calls": made, **extra}


def test_the_phase_and_what_bantzd_says_next_come_from_the_journal() -> None:
    entries: list[dict] = []
    plan = Plan(entries)
    assert (plan.phase, plan.instruction("goal")) == ("plan", PLAN_ASK)
    entries += [{"k": "user", "text": PLAN_ASK}, model(1, "I will just start.", phase="plan")]
    plan = Plan(entries)
    assert (plan.phase, plan.instruction("goal")) == ("plan", PLAN_AGAIN)
    entries += [{"k": "user", "text": PLAN_AGAIN}]
    assert Plan(entries).instruction("goal") is None  # said already: not said twice
    entries += [model(2, "1. Read\n2. Write", phase="plan", plan=["Read", "Write"])]
    plan = Plan(entries)
    assert (plan.phase, plan.instruction("goal"), plan.items) == (
        "work",
        WORK_ASK,
        ["Read", "Write"],
    )
    entries += [{"k": "user", "text": WORK_ASK}, model(3, calls=1)]
    assert (Plan(entries).phase, Plan(entries).instruction("goal")) == ("work", None)
    entries += [{"k": "result", "id": "c3_0", "name": "plan_done", "ok": True, "plan_step": 1}]
    entries += [model(4, "The answer.")]
    plan = Plan(entries)
    assert (plan.phase, plan.answer, plan.done) == ("check", "The answer.", {1})
    assert plan.instruction("Find X.") == CHECK_ASK.format(goal="Find X.")
    assert "Find X." in CHECK_ASK.format(goal="Find X.")
    entries += [{"k": "user", "text": "check"}, model(5, "Missing: step 2.", phase="check")]
    plan = Plan(entries)
    assert (plan.phase, plan.answer, plan.check) == ("done", "The answer.", "Missing: step 2.")
    assert plan.summary() == {"steps": ["Read", "Write"], "done": [1]}
    assert "1. [x] Read\n2. [ ] Write" in plan.result_text()
    assert plan.result_text().endswith("## Checked against the goal\n\nMissing: step 2.\n")


def test_a_work_reply_after_a_text_answer_takes_the_answer_back() -> None:
    entries = [model(1, "1. A", phase="plan", plan=["A"]), model(2, "Done."), model(3, calls=1)]
    assert Plan(entries).phase == "work" and Plan(entries).answer is None


def test_plan_done_marks_a_step_of_the_plan_and_names_the_next() -> None:
    plan = Plan([model(1, "", phase="plan", plan=["Read", "Write", "Check"])])
    assert plan.progress() == (0.0, "plan 0/3 done")
    assert plan.mark({"step": 2}) == (2, "Step 2 of 3 is done (1 of 3). Next: 1. Read")
    assert plan.mark({"step": "1"})[0] == 1
    for bad, why in (
        ({}, "got None"),
        ({"step": 4}, "steps 1 to 3, not 4"),
        ({"step": True}, "True"),
    ):
        with pytest.raises(ValueError, match=why):
            plan.mark(bad)
    plan.done = {1, 3}
    assert plan.mark({"step": 2})[1].endswith("All steps are done: give the final answer.")
    plan.done = {1, 3, 7}  # a number outside the plan never counts
    assert plan.progress() == (2 / 3, "plan 2/3 done")
    assert Plan([]).progress() == (0.0, "writing the plan")


def test_plan_is_true_or_false_in_the_task_file() -> None:
    spec = parse_task("agent:\n  goal: x\n  plan: true\n", default_name="t")
    assert spec.agent is not None and spec.agent["plan"] is True
    with pytest.raises(TaskFileError) as e:
        parse_task("agent:\n  goal: x\n  plan: soon\n", default_name="t")
    shown = [f"{p.key}: {p.message}" for p in e.value.problems]
    assert shown == ["agent.plan: expected true or false, got 'soon'"]
