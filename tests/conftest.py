"""Shared fixtures: a private home per test, the real CLI in a subprocess, polling waits."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bantzd.paths import Home
from tests.slurmcluster import Cluster
from tests.slurmcluster import cluster as slurm_cluster


def wait_for(
    cond: Callable[[], object],
    timeout: float = 20.0,
    interval: float = 0.02,
    what: str = "condition",
) -> object:
    """Poll `cond` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Bantz:
    """Runs `bantzd --home HOME ...` as a real process."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.env = dict(os.environ)
        self.env.pop("BANTZ_TASK_DIR", None)
        self.env["BANTZ_HOME"] = str(home)
        self.procs: list[subprocess.Popen[str]] = []

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "bantzd", "--home", str(self.home), *args]

    def __call__(
        self, *args: str, check: bool = False, timeout: float = 60, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        res = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            input=input,
            stdin=None if input else subprocess.DEVNULL,
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"bantzd {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
            )
        return res

    def start(self, *args: str, stderr: Path | None = None) -> subprocess.Popen[str]:
        """Start a long-running command (a supervisor). Its stderr goes to a file when
        given, so a test can read it while the process runs."""
        err = open(stderr, "w") if stderr else subprocess.PIPE  # noqa: SIM115
        proc = subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
            env=self.env,
            stdin=subprocess.DEVNULL,
        )
        if stderr:
            err.close()
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

    # files -------------------------------------------------------------------------------

    def drop(self, name: str, text: str) -> Path:
        """Write a task file into the spool the safe way (temp name, then rename)."""
        spool = self.home / "spool"
        spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = spool / f".{name}.tmp"
        tmp.write_text(text)
        os.rename(tmp, spool / name)
        return spool / name

    def state(self, task_id: int) -> dict:
        try:
            return json.loads((self.home / "tasks" / str(task_id) / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def status_of(self, task_id: int) -> str | None:
        return self.state(task_id).get("status")

    def task_dir(self, task_id: int) -> Path:
        return self.home / "tasks" / str(task_id)

    def output(self, task_id: int) -> str:
        try:
            return (self.task_dir(task_id) / "output.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""


def run_demo(tmp_path: Path, user_home: Path, *args: str) -> str:
    """`bantzd demo ARGS` as a user would run it: its temporary home under `tmp_path`, the
    user's own home at `user_home`. Returns stdout (and fails the test on a non-zero exit)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's temporary home lands here
    env["BANTZ_HOME"] = str(user_home)
    res = subprocess.run(
        [sys.executable, "-m", "bantzd", "demo", *args],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=180,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def config_text(*lines: str) -> str:
    """A test config.toml: fast scans, short grace, no niceness, and no load throttle.

    The load throttle is off because a 2-core CI box running these tests is often above
    1.5 per core; tests of throttling turn it on themselves.
    """
    top = ['stop_grace = "2s"', "nice = 0", 'scan_interval = "0.5s"', *lines]
    return "\n".join(top) + "\n[throttle]\nmax_load = 1000\n"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    Home(root).ensure()
    cfg = root / "config.toml"
    cfg.write_text(config_text("max_parallel = 2"))
    return root


@pytest.fixture
def bantz(home: Path) -> Iterator[Bantz]:
    b = Bantz(home)
    yield b
    b.stop_all()


@contextlib.contextmanager
def tmpfs(mnt: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `mnt` (created) for as long as the block runs: a disk that
    fills up for real. Skips the test where mounting is not allowed."""
    mnt.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip() or res.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.fixture(scope="session")
def slurm() -> Cluster:
    """A real one-node Slurm cluster (tests/slurmcluster.py): skipped where none can be had,
    except in CI, where that fails."""
    return slurm_cluster()
