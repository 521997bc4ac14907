"""The pure parts of the pueue / task-spooler controls (issue 13, item 3): what `wait`
makes of the states it sees, `--columns`, priorities as task files take them, the
`parallel.json` override and the `[hooks]` table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bantzd.cli.columns import COLUMNS, command_text, parse_columns
from bantzd.cli.wait import EXIT_TIMEOUT, Watch
from bantzd.config import config_from_mapping
from bantzd.errors import ConfigError, UsageError
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import parse_task
from bantzd.supervisor import overrides
from bantzd.supervisor.taskedits import parse_priority


def test_wait_watch_exit_status_and_human_notes() -> None:
    watch = Watch([1, 2, 3])
    asking = TaskState(2, "b", Status.WAITING_HUMAN, question={"key": "go", "text": "Go on?"})
    lines, notes = watch.observe(
        {1: TaskState(1, "a", Status.DONE), 2: asking, 3: TaskState(3, "c", Status.HELD)}
    )
    assert lines == ["#1 a: done"]
    assert notes == [
        "#2 b waits for an answer to 'Go on?': bantzd answer 2 --key go TEXT",
        "#3 c waits for approval: bantzd approve 3 (or bantzd reject 3)",
    ]
    # Said once, not every poll.
    assert watch.observe({1: None, 2: asking, 3: TaskState(3, "c", Status.HELD)}) == ([], [])
    assert not watch.over
    lines, _ = watch.observe(
        {2: TaskState(2, "b", Status.DONE), 3: TaskState(3, "c", Status.CANCELLED, reason="x")}
    )
    assert lines == ["#2 b: done", "#3 c: cancelled: x"]
    assert watch.over and watch.exit_code() == 1
    all_done = Watch([4])
    all_done.observe({4: TaskState(4, "d", Status.DONE)})
    assert all_done.exit_code() == 0
    gone = Watch([5])
    assert gone.observe({5: None})[0] == ["#5: removed before it ended"]
    assert gone.exit_code() == 1
    assert EXIT_TIMEOUT == 124


def test_columns_are_parsed_and_unknown_ones_listed() -> None:
    assert parse_columns("id, NAME,took,info,id") == ("id", "name", "took", "reason")
    with pytest.raises(UsageError, match="unknown column 'nmae'; the columns are id, name"):
        parse_columns("id,nmae")
    with pytest.raises(UsageError, match="no column given"):
        parse_columns(" , ")
    assert set(COLUMNS) >= {
        "id",
        "name",
        "status",
        "reason",
        "command",
        "cwd",
        "start",
        "end",
        "took",
    }


def test_command_text_is_what_a_person_would_type() -> None:
    spec = parse_task("run: [printf, '%s', a b]\n", default_name="x")
    assert command_text(spec) == "printf %s 'a b'"
    spec = parse_task(
        "steps:\n  - {name: one, run: 'true'}\n  - {name: two, run: 'true'}\n", default_name="x"
    )
    assert command_text(spec) == "steps: one, two"
    assert command_text(parse_task("run: |\n  a\n  b\n", default_name="x")) == "a ..."
    assert command_text(None) == "?"


def test_priority_takes_what_task_files_take() -> None:
    assert [parse_priority(p) for p in ("high", "Normal", "low", "-3", " 7 ")] == [
        10,
        0,
        -10,
        -3,
        7,
    ]
    for bad in ("urgent", "1.5", "", "2000000"):
        with pytest.raises(ValueError):
            parse_priority(bad)


def test_parallel_override_file(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    config = config_from_mapping({"max_parallel": 2})
    assert overrides.effective(home, config) is config
    overrides.write_parallel(home, 5, 0.0)
    assert overrides.effective(home, config).max_parallel == 5
    assert overrides.parallel_status(home) == {"value": 5, "config": 2, "override": 5}
    # A damaged file is ignored, with the reason: the night must still start.
    overrides.parallel_path(home).write_text('{"max_parallel": 0}')
    value, problem = overrides.read_parallel(home)
    assert value is None and "from 1 to" in problem
    assert overrides.effective(home, config).max_parallel == 2
    assert overrides.clear_parallel(home) and not overrides.clear_parallel(home)


def test_hooks_table_is_validated() -> None:
    hooks = config_from_mapping({"hooks": {"on_finish": "echo $BANTZ_TASK_ID"}}).hooks
    assert (hooks.on_finish, hooks.timeout) == ("echo $BANTZ_TASK_ID", 60.0)
    assert config_from_mapping({}).hooks.on_finish == ""
    with pytest.raises(ConfigError) as e:
        config_from_mapping({"hooks": {"on_finsh": "x", "timeout": "never"}})
    assert "hooks.on_finsh: unknown setting (did you mean 'on_finish'?)" in str(e.value)
    assert "hooks.timeout: expected a duration" in str(e.value)
    with pytest.raises(ConfigError, match="expected a table"):
        config_from_mapping({"hooks": "echo"})
