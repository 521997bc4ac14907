"""Schedule files: the rule checked with its key named, the task part as any task file."""

from __future__ import annotations

from datetime import date, datetime, time

import pytest

from bantzd.queue.schedulefile import (
    ScheduleSpec,
    describe,
    instance_yaml,
    is_schedule_file,
    parse_spool_file,
)
from bantzd.queue.taskfile import TaskSpec, parse_task
from bantzd.queue.yamlnodes import TaskFileError

NOW = datetime(2026, 11, 23, 12, 0).timestamp()


def parse(text: str) -> ScheduleSpec:
    spec = parse_spool_file(text, default_name="file", now=NOW)
    assert isinstance(spec, ScheduleSpec)
    return spec


def problems(text: str) -> str:
    with pytest.raises(TaskFileError) as e:
        parse_spool_file(text, default_name="file", now=NOW)
    return str(e.value)


def test_a_task_file_without_schedule_is_a_task() -> None:
    spec = parse_spool_file("run: 'true'\n", default_name="t", now=NOW)
    assert isinstance(spec, TaskSpec) and spec.name == "t"


def test_the_spec_example_is_a_schedule() -> None:
    spec = parse(
        "name: weekly-notes\n"
        "schedule:\n"
        '  cron: "0 23 * * 1-5"\n'
        "  tz: Europe/Istanbul\n"
        "  catch_up: one\n"
        "  overlap: skip\n"
        "  jitter: 5m\n"
        "  ends: 2027-03-31\n"
        "llm:\n"
        '  prompt: "Summarise this week\'s notes."\n'
        '  inputs: "~/notes/week/*.md"\n'
    )
    rule = spec.rule
    assert spec.name == "weekly-notes" and spec.task.kind == "llm"
    assert (rule.kind, rule.cron, rule.tz) == ("cron", "0 23 * * 1-5", "Europe/Istanbul")
    assert (rule.catch_up, rule.overlap, rule.jitter) == ("one", "skip", 300)
    assert rule.ends == date(2027, 3, 31)
    assert describe(rule) == "at 23:00 on Monday through Friday"


def test_defaults_and_the_other_two_rules() -> None:
    every = parse("schedule: {every: 6h}\nrun: x\n").rule
    assert (every.kind, every.every, every.tz, every.catch_up, every.overlap) == (
        "every",
        21600,
        None,
        "one",
        "skip",
    )
    assert describe(every) == "every 6h, from midnight"
    at = parse("schedule:\n  at: [14:00, '09:00']\n  days: [mon, fri]\nrun: x\n").rule
    assert at.at == (time(9), time(14)) and at.days == (0, 4)
    assert describe(at) == "at 09:00 and 14:00, Monday and Friday"
    weekdays = parse("schedule: {at: '23:30', days: mon-fri}\nrun: x\n").rule
    assert weekdays.days == (0, 1, 2, 3, 4)
    assert describe(weekdays) == "at 23:30, Monday to Friday"


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("{cron: '0 0 31 2 *'}", "schedule.cron: '0 0 31 2 *' cannot fire: no month has that day"),
        ("{cron: '0 23 * *'}", "schedule.cron: '0 23 * *' has 4 field(s)"),
        ("{cron: '61 * * * *'}", "schedule.cron: '61 * * * *' cannot fire: Bad minute"),
        ("{every: 0s}", "schedule.every: must be more than zero, got '0s'"),
        ("{every: 90s}", "schedule.every: must be whole minutes, at least 1m"),
        ("{every: 2d}", "schedule.every: at most 1d"),
        ("{every: 1h, tz: Europe/Istambul}", "schedule.tz: unknown time zone 'Europe/Istambul'"),
        ("{every: 1h, ends: 2020-01-01}", "schedule.ends: 2020-01-01 is in the past"),
        ("{cron: '* * * * *', days: [mon]}", "schedule.days: only with at:"),
        ("{at: '25:00'}", "schedule.at: '25:00' is not a clock time"),
        ("{at: '09:00', days: [someday]}", "schedule.days: 'someday' is not a day"),
        ("{every: 1h, at: '09:00'}", "schedule.at: every and at each say when it fires"),
        ("{every: 1h, catch_up: all}", "schedule.catch_up: expected none or one, got 'all'"),
        ("{every: 1h, overlap: maybe}", "schedule.overlap: expected skip or queue"),
        ("{every: 1h, jitter: 1h}", "schedule.jitter: 1h is not less than every: 1h"),
        ("{evry: 1h}", "schedule.evry: unknown key (did you mean 'every'?)"),
        ("{}", "schedule: give one of cron, every, at"),
        ("'0 23 * * *'", "schedule: expected a mapping like {cron: '0 23 * * 1-5'}"),
    ],
)
def test_a_bad_schedule_is_rejected_naming_the_field(schedule: str, expected: str) -> None:
    assert expected in problems(f"name: s\nschedule: {schedule}\nrun: 'true'\n")


def test_the_task_part_gets_the_messages_of_any_task_file() -> None:
    body = "retries: many\nrun: 'true'\nbogus: 1\n"
    with pytest.raises(TaskFileError) as plain:
        parse_task(body, default_name="s")
    text = problems("schedule: {every: 1h}\n" + body)
    for problem in plain.value.problems:
        # The same message, one line lower (the schedule line comes first).
        assert f"line {problem.line + 1}, column {problem.column}: {problem.key}" in text
        assert problem.message in text
    # Both halves are reported at once, in file order.
    both = problems("schedule: {every: 0s}\nretries: many\nrun: x\n")
    assert both.index("schedule.every") < both.index("retries")


def test_a_schedule_name_has_no_at_sign() -> None:
    assert "name: a schedule's name cannot contain '@'" in problems(
        "name: a@b\nschedule: {every: 1h}\nrun: x\n"
    )


def test_an_ended_schedule_reads_again_without_the_end_check() -> None:
    text = "schedule: {every: 1h, ends: 2020-01-01}\nrun: x\n"
    spec = parse_spool_file(text, default_name="old", now=NOW, check_ends=False)
    assert isinstance(spec, ScheduleSpec) and spec.rule.ends == date(2020, 1, 1)


def test_instance_yaml_drops_the_schedule_and_names_the_task() -> None:
    text = (
        b"name: digest\nschedule:\n  cron: '30 23 * * *'\n"
        b"env: {CODE: 010, FLAG: yes}\ndeadline: 07:00\nrun: [echo, '1.10']\n"
    )
    assert is_schedule_file(text) and not is_schedule_file(b"run: x\n")
    data = instance_yaml(text, "digest@2026-11-23T23:30")
    spec = parse_task(data, default_name="x")
    assert spec.name == "digest@2026-11-23T23:30"
    assert dict(spec.env) == {"CODE": "010", "FLAG": "yes"}  # as written, not 8 and True
    assert spec.deadline == time(7) and spec.run == ("echo", "1.10")
    assert b"schedule" not in data.split(b"\n", 1)[1]
