"""`bantzd tonight`'s pure parts: task files out of a model's reply, and their checks."""

from __future__ import annotations

import json

from bantzd.cli.tonight import Draft, check, drafts_of


def call(tool: str, **args: object) -> dict:
    return {"id": "c", "name": tool, "arguments": json.dumps(args)}


def test_file_names_are_safe_and_unique() -> None:
    drafts = drafts_of(
        "ignored when there are calls",
        [
            call("task_file", name="../../etc/passwd", yaml="a: 1\n"),
            call("task_file", name="etc-passwd", yaml="a: 2\n"),
            call("task_file", name="", yaml="a: 3\n"),
        ],
    )
    assert [d.file for d in drafts] == ["etc-passwd.yaml", "etc-passwd-2.yaml", "tonight-3.yaml"]


def test_yaml_blocks_are_read_when_the_reply_has_no_call() -> None:
    text = (
        "One:\n```yaml\nname: 'news digest'\nllm: {prompt: x}\n```\n"
        "Two:\n```yml\nagent: {goal: y}\n```\n"
    )
    drafts = drafts_of(text, [])
    assert [(d.file, d.data) for d in drafts] == [
        ("news-digest.yaml", b"name: 'news digest'\nllm: {prompt: x}\n"),
        ("tonight-2.yaml", b"agent: {goal: y}\n"),
    ]
    assert drafts_of("no blocks here", []) == []


def test_only_agent_and_llm_tasks_pass() -> None:
    ok = Draft("a", b"agent: {goal: Find things}\n")
    check(ok)
    assert ok.problems == []
    steps = Draft("s", b"steps:\n  - run: ls\n")
    check(steps)
    assert steps.problems[0].startswith("a steps: task: tonight places only agent: and llm:")
    empty = Draft("e", b"  \n")
    check(empty)
    assert empty.problems == ["the task file is empty"]
    schedule = Draft("d", b"name: d\nllm: {prompt: x}\nschedule: {every: 6h}\n")
    check(schedule)
    assert schedule.problems == ["a schedule file: tonight places only tasks for tonight"]
