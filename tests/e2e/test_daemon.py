"""Daemon mode through the real CLI: start, status, a second start, stop, restart, a stale
pid file after SIGKILL, the umask, and the log set-up it uses."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from datetime import datetime, timedelta
from logging.handlers import RotatingFileHandler
from pathlib import Path

import pytest

from bantzd.paths import Home
from bantzd.supervisor import logsetup
from bantzd.supervisor.lock import acquire, supervisor_info
from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.timeout(60)


def alive(pid: int) -> bool:
    """Running (a zombie no longer counts: it holds no files and no lock)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def started_pid(res: subprocess.CompletedProcess[str]) -> int:
    assert res.returncode == 0, res.stdout + res.stderr
    m = re.fullmatch(r"bantzd: started, pid (\d+)\n", res.stdout)
    assert m, res.stdout
    return int(m.group(1))


@pytest.fixture
def daemon(bantz: Bantz) -> Iterator[Bantz]:
    """`bantz`, and no supervisor left behind on its home, whatever the test did."""
    yield bantz
    info = supervisor_info(Home(bantz.home))
    pid = info.get("pid") if info else None
    if isinstance(pid, int) and bantz("stop", "--timeout", "10").returncode != 0:
        os.kill(pid, signal.SIGKILL)


def test_start_status_second_start_stop(daemon: Bantz) -> None:
    home = Home(daemon.home)
    pid = started_pid(daemon("start"))

    # The daemon, not the command that started it, holds the lock and wrote bantzd.pid.
    assert alive(pid)
    assert supervisor_info(home)["pid"] == pid
    assert home.pidfile.read_text().strip() == str(pid)
    fds = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert str(home.lockfile) in fds
    # Detached: its own session, the home as working directory, stdio on /dev/null.
    assert os.getsid(pid) != os.getsid(0)
    assert os.readlink(f"/proc/{pid}/cwd") == str(home.root)
    assert {os.readlink(f"/proc/{pid}/fd/{n}") for n in (0, 1, 2)} == {os.devnull}

    status = daemon("status", "--json", check=True)
    sup = json.loads(status.stdout)["supervisor"]
    assert sup["running"] is True and sup["pid"] == pid and sup["since"]

    second = daemon("start")
    assert second.returncode == 1
    assert f"already running, pid {pid}" in second.stderr
    assert supervisor_info(home)["pid"] == pid

    stopped = daemon("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"bantzd: stopped, pid {pid}\n")
    assert supervisor_info(home) is None
    wait_for(lambda: not alive(pid), timeout=10, what="the daemon to exit")
    assert not home.pidfile.exists()

    again = daemon("stop")
    assert (again.returncode, again.stdout) == (0, "bantzd: not running\n")
    log = home.log.read_text()
    assert f"daemon started (pid {pid})" in log and "daemon exiting with status 0" in log


def test_a_stale_pid_file_after_sigkill_does_not_block_a_start(daemon: Bantz) -> None:
    home = Home(daemon.home)
    first = started_pid(daemon("start"))
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: supervisor_info(home) is None, timeout=10, what="the lock to be free")
    assert home.pidfile.read_text().strip() == str(first)  # stale: nobody removed it

    second = started_pid(daemon("start"))
    assert second != first
    assert home.pidfile.read_text().strip() == str(second)
    assert daemon("stop").returncode == 0


def test_the_daemons_files_are_private_and_tasks_get_the_users_umask(
    daemon: Bantz, tmp_path: Path
) -> None:
    home = Home(daemon.home)
    out = tmp_path / "out"
    out.mkdir()
    daemon.drop("touch.yaml", f"run: touch made-by-task\ncwd: {out}\n")
    # Started from a shell with umask 002: bantzd's own files are private all the same, and
    # what the task writes follows the user's umask, not bantzd's.
    res = subprocess.run(
        ["sh", "-c", 'umask 002 && exec "$@"', "sh", *daemon.argv("start")],
        capture_output=True,
        text=True,
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        timeout=30,
    )
    pid = started_pid(res)
    assert "Umask:\t0077" in Path(f"/proc/{pid}/status").read_text()
    wait_for(lambda: daemon.status_of(1) == "done", timeout=15, what="the task to finish")
    for path in (home.pidfile, home.log, home.lockfile, home.journal):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert (out / "made-by-task").stat().st_mode & 0o777 == 0o664


def test_stop_waits_then_names_the_tasks_still_running(daemon: Bantz) -> None:
    home = Home(daemon.home)
    # Ignores SIGTERM (so does its sleep): only the supervisor's SIGKILL after stop_grace
    # (2s in the test config) or a second stop ends it.
    daemon.drop("stubborn.yaml", "run: trap '' TERM; sleep 30\n")
    pid = started_pid(daemon("start"))
    wait_for(lambda: daemon.status_of(1) == "running", timeout=15, what="the task to run")

    slow = daemon("stop", "--timeout", "0.3")
    assert slow.returncode == 1
    assert f"pid {pid} still stopping after 0.3s" in slow.stderr
    assert "still running: #1 stubborn (pid " in slow.stderr
    assert supervisor_info(home)["pid"] == pid

    # A second stop is a second SIGTERM: the supervisor kills the task now.
    assert daemon("stop", "--timeout", "10").returncode == 0
    assert "second stop signal: killing running tasks now" in home.log.read_text()
    state = daemon.state(1)
    assert (state["status"], state["reason"]) == ("queued", "interrupted")


def test_restart_is_stop_then_start(daemon: Bantz) -> None:
    first = started_pid(daemon("start"))
    res = daemon("restart")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == f"bantzd: stopped, pid {first}"
    second = int(re.fullmatch(r"bantzd: started, pid (\d+)", lines[1]).group(1))
    assert second != first and supervisor_info(Home(daemon.home))["pid"] == second
    # With nothing running, restart starts.
    assert daemon("stop").returncode == 0
    res = daemon("restart")
    assert res.stdout.splitlines()[0] == "bantzd: not running"
    assert res.returncode == 0 and "started, pid" in res.stdout


def test_restart_with_a_broken_config_keeps_the_running_supervisor(daemon: Bantz) -> None:
    """A typo made in config.toml while the daemon runs: restart refuses before stopping
    it, instead of stopping it and then failing to start a new one."""
    pid = started_pid(daemon("start"))
    cfg = Path(daemon.home) / "config.toml"
    cfg.write_text(cfg.read_text() + "\n[throttle\n")
    res = daemon("restart")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "line" in res.stderr and "not valid TOML" in res.stderr, res.stderr
    assert "stopped" not in res.stdout
    assert alive(pid) and supervisor_info(Home(daemon.home))["pid"] == pid


def test_start_until_stops_by_itself_and_writes_the_report(daemon: Bantz) -> None:
    home = Home(daemon.home)
    until = (datetime.now().astimezone() + timedelta(seconds=1.5)).isoformat()
    pid = started_pid(daemon("start", "--until", until))
    wait_for(lambda: supervisor_info(home) is None, timeout=15, what="the daemon to stop")
    assert not alive(pid) or wait_for(lambda: not alive(pid), timeout=5)
    reports = list(home.reports.glob("*.md"))
    assert reports, "no report written"
    assert "report written to" in home.log.read_text()


def test_a_daemon_that_fails_after_the_fork_says_why(daemon: Bantz) -> None:
    home = Home(daemon.home)
    home.spool.chmod(0o770)  # the supervisor refuses a spool others can write to
    res = daemon("start")
    assert res.returncode == 1
    assert "not started: the daemon exited before it was up" in res.stderr
    assert "writable by group or others" in res.stderr  # the tail of bantzd.log
    assert supervisor_info(home) is None


def test_a_daemon_that_loses_the_race_for_the_lock_says_so(daemon: Bantz) -> None:
    home = Home(daemon.home)
    held = acquire(home, role="cli")  # looks like no supervisor, but the lock is taken
    try:
        res = daemon("start")
    finally:
        held.release()
    assert res.returncode == 1
    assert "not started" in res.stderr and "already running" in res.stderr


def test_bad_arguments_are_usage_errors(daemon: Bantz) -> None:
    res = daemon("start", "--until", "2001-01-01T00:00")
    assert res.returncode == 2 and "--until: 2001-01-01T00:00 is already past" in res.stderr
    assert daemon("stop", "--timeout", "forever").returncode == 2
    bad = daemon.home / "config.toml"
    bad.write_text("max_parallel = 'many'\n")
    res = daemon("start")
    assert res.returncode == 1 and "max_parallel" in res.stderr
    assert supervisor_info(Home(daemon.home)) is None


# --- the log set-up ----------------------------------------------------------------------------


@pytest.fixture
def clean_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("bantzd")
    saved = (list(logger.handlers), logger.level, logger.propagate, logsetup._daemon_mode)
    yield logger
    for h in list(logger.handlers):
        logger.removeHandler(h)
        if h not in saved[0]:
            h.close()
    for h in saved[0]:
        logger.addHandler(h)
    logger.setLevel(saved[1])
    logger.propagate = saved[2]
    logsetup._daemon_mode = saved[3]


def test_foreground_logging_rotates_and_has_stderr(
    tmp_path: Path, clean_logger: logging.Logger
) -> None:
    home = Home(tmp_path)
    fh = logsetup.setup_logging(home, verbose=False, daemon=False)
    assert isinstance(fh, RotatingFileHandler)
    assert (fh.maxBytes, fh.backupCount) == (10 * 1024 * 1024, 5)
    assert fh.baseFilename == str(home.log)
    streams = [h for h in clean_logger.handlers if type(h) is logging.StreamHandler]
    assert len(streams) == 1 and streams[0].level == logging.WARNING

    fh.maxBytes = 200
    for i in range(20):
        clean_logger.info("line %d %s", i, "x" * 40)
    assert (tmp_path / "bantzd.log.1").exists()
    assert not (tmp_path / "bantzd.log.6").exists()


def test_daemon_logging_has_no_stderr_and_sticks(
    tmp_path: Path, clean_logger: logging.Logger
) -> None:
    home = Home(tmp_path)
    fh = logsetup.setup_logging(home, verbose=True, daemon=True)
    assert clean_logger.handlers == [fh]
    # run_supervisor calls it again without saying: the same handler (its stream was kept
    # open across the detach), still no stderr.
    again = logsetup.setup_logging(home, verbose=True)
    assert again is fh and clean_logger.handlers == [fh]
    assert logsetup.daemon_mode()
    clean_logger.warning("to the file only")
    assert "to the file only" in home.log.read_text()
