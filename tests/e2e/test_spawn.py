"""`spawn` itself, called directly: real wrappers, real task folders, no supervisor.

An ended attempt's empty cgroup is handed to the next spawn (`cgroups`), and is then that
attempt's alone: what an older worker.lock says of it must not end the new attempt.

The niceness is given by renicing the wrapper while it waits at its gate (no nice(1)
exec), so the very first process the task forks must already run at it; the command gets
/dev/null as stdin, not the gate's pipe.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.paths import TaskPaths
from bantzd.workers import cgroups, escape, spawn
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


@pytest.fixture
def reuse(tmp_path: Path) -> Iterator[Path]:
    """Attempt cgroups under a base of this test's own, reused (skipped where this
    machine has no usable cgroup v2, or no user xattrs on it)."""
    base, kill = cgroups.find_cgroup_base(tmp_path)
    if base is None:
        pytest.skip("cgroup v2 cannot be used here (not root, no delegated cgroup)")
    try:
        if not cgroups.use(base, kill=kill):
            pytest.skip("no user xattrs on cgroupfs here: nothing is reused")
        yield base
    finally:
        cgroups.use(None, kill=False)
        for child in base.iterdir():
            if child.is_dir():
                cgroups.end(child, None, lambda pid: os.kill(pid, signal.SIGKILL))
                cgroups.rmdir(child)
        cgroups.rmdir(base)


def _start(tmp_path: Path, name: str, script: str) -> spawn.Attempt:
    paths = TaskPaths(tmp_path / "tasks" / name)
    paths.dir.mkdir(parents=True)
    popen = spawn.spawn(
        paths,
        spawn.command_argv(script),
        attempt=1,
        cwd=str(paths.dir),
        env=dict(os.environ),
        nice=os.getpriority(os.PRIO_PROCESS, 0),
        marker="=== test ===\n",
    )
    return spawn.Attempt(1, 1, popen.pid, paths, 0.0, popen=popen)


def _lock(att: spawn.Attempt) -> spawn.LockInfo:
    info = spawn.read_lock_info(att.paths)
    assert info is not None and info.cgroup is not None and info.token is not None
    return info


def _alive(pid: int) -> bool:
    stat = escape.read_proc_stat(pid)
    return stat is not None and stat[stat.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def test_an_ended_attempts_cgroup_goes_to_the_next_spawn_and_is_its_own(
    tmp_path: Path, reuse: Path
) -> None:
    first = _start(tmp_path, "000001", "true")
    wait_for(lambda: spawn.exited(first), timeout=10, what="the first attempt to end")
    assert spawn.reap(first).ok
    old = _lock(first)
    # The next spawn, of another task, gets the same (empty) cgroup, marked as its own.
    second = _start(tmp_path, "000002", "echo $$ > pid; exec sleep 60")
    new = _lock(second)
    assert new.cgroup == old.cgroup and Path(new.cgroup).parent == reuse
    pid_file = second.paths.dir / "pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), what="the pid")
    pid = int(pid_file.read_text())
    assert sorted(cgroups.in_cgroup(Path(new.cgroup))) == sorted([second.pgid, pid])
    assert cgroups.owner_of(Path(new.cgroup)) == ("000002", new.token)
    # What the first attempt's worker.lock still says must not end the second: a
    # restarted supervisor ending the first (adopted) finds the cgroup is not its own.
    escape.end_attempt(old.token, Path(old.cgroup), adopted=True)
    assert _alive(pid)
    cgroups.sweep(reuse, tmp_path, escape._kill_closed)  # its lock names it: kept
    assert _alive(pid)
    spawn.kill_group(second.pgid, signal.SIGKILL)
    wait_for(lambda: spawn.exited(second), timeout=10, what="the second attempt to end")
    assert spawn.reap(second).signal == signal.SIGKILL
    assert not cgroups.populated(Path(new.cgroup))


def test_a_kept_cgroup_that_something_joined_is_not_handed_out(tmp_path: Path, reuse: Path) -> None:
    first = _start(tmp_path, "000001", "true")
    wait_for(lambda: spawn.exited(first), timeout=10, what="the first attempt to end")
    spawn.reap(first)
    kept = Path(_lock(first).cgroup or "")
    intruder = subprocess.Popen(
        ["/bin/sh", "-c", 'echo $$ > "$1/cgroup.procs" && exec sleep 60', "x", str(kept)]
    )
    try:
        wait_for(lambda: cgroups.populated(kept), timeout=10, what="the intruder to join")
        second = _start(tmp_path, "000002", "true")
        assert _lock(second).cgroup != str(kept)
        wait_for(lambda: spawn.exited(second), timeout=10, what="the second attempt to end")
        assert spawn.reap(second).ok
        assert cgroups.in_cgroup(kept) == [intruder.pid]
    finally:
        intruder.kill()
        intruder.wait(10)
