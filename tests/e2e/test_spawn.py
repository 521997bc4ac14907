"""`spawn` itself, called directly: real wrappers, real task folders, no supervisor.

The niceness is given by renicing the wrapper while it waits at its gate (no nice(1)
exec), so the very first process the task forks must already run at it; the command gets
/dev/null as stdin, not the gate's pipe.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bantzd.paths import TaskPaths
from bantzd.workers import spawn
from tests.conftest import wait_for


def _nice_of(stat: str) -> int:
    return int(stat[stat.rfind(")") + 2 :].split()[16])


def _run(tmp_path: Path, script: str, nice: int) -> tuple[TaskPaths, spawn.Outcome]:
    paths = TaskPaths(tmp_path / "000001")
    paths.dir.mkdir()
    popen = spawn.spawn(
        paths,
        spawn.command_argv(script),
        attempt=1,
        cwd=str(paths.dir),
        env=dict(os.environ),
        nice=nice,
        marker="=== test ===\n",
    )
    att = spawn.Attempt(1, 1, popen.pid, paths, 0.0, popen=popen)
    wait_for(lambda: spawn.exited(att), timeout=10, what="the attempt to end")
    return paths, spawn.reap(att)


def test_the_task_and_its_first_child_run_at_the_niceness(tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    if ours >= 19:
        pytest.skip("already at the highest niceness")
    nice = min(19, ours + 7)
    # The first thing the script does is fork cat: renicing after the start would miss it.
    script = "cat /proc/self/stat > child; cat /proc/$$/stat > shell; read -r x || echo eof > in"
    paths, outcome = _run(tmp_path, script, nice)
    assert outcome.ok, (outcome.describe(), paths.output.read_text())
    assert _nice_of((paths.dir / "child").read_text()) == nice
    assert _nice_of((paths.dir / "shell").read_text()) == nice
    assert (paths.dir / "in").read_text() == "eof\n"  # stdin is /dev/null, not the gate
    assert not (paths.dir / "worker.lock").read_text().startswith("0 ")
    assert "nice" not in paths.output.read_text()  # no nice(1) complaining in the log


def test_at_our_own_niceness_nothing_is_gated(tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    paths, outcome = _run(tmp_path, "cat /proc/self/stat > child; read -r x || exit 3", ours)
    assert outcome.exit_code == 3, outcome.describe()  # stdin: /dev/null
    assert _nice_of((paths.dir / "child").read_text()) == ours
