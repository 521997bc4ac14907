"""A real crontab entry runs `bantzd run --until ...` and produces the morning report.

Installs Debian's `cron` when it is missing (needs root and apt-get), writes a one-off entry
for the next minute into root's crontab (keeping what was there), starts cron in the
foreground, and waits for the run to end. cron gives the job no terminal, no stdin and a
minimal environment (PATH=/usr/bin:/bin, cwd = $HOME), which is what is being tested.
Skipped, with the reason, where cron cannot be had or does not run jobs in this container;
in CI (`CI=true`) that is a failure instead: CI must run a real night from cron.

In the same minute, the issue-13 path from install to a scheduled night: it follows only
what `bantzd init` and `bantzd doctor --cron` print (the crontab line, with its time fields
and `--until` moved to the next minute), and ends with `bantzd doctor` finding the entry ok.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import config_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600), pytest.mark.xdist_group("cron")]

MARK = "# bantzd test_cron"


def _cannot(reason: str) -> NoReturn:
    """Skip on a machine that cannot run cron; in CI, fail: there it must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the real-cron test, but: {reason}")
    pytest.skip(reason)


def _run(
    *argv: str, input: str | None = None, timeout: float = 300, env: dict | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
        stdin=None if input is not None else subprocess.DEVNULL,
        env=env,
    )


def _ensure_cron() -> tuple[str, str]:
    """Paths of cron and crontab, installing the Debian package if needed; else skip."""
    cron, crontab = shutil.which("cron") or "/usr/sbin/cron", shutil.which("crontab")
    if os.path.exists(cron) and crontab:
        return cron, crontab
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        _cannot("cron is not installed, and installing it needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        steps = (
            ("apt-get", "update", "-q"),
            ("apt-get", "install", "-y", "-q", "--no-install-recommends", "cron"),
        )
        for argv in steps:
            res = _run(*argv, env=env)
            if res.returncode != 0:
                _cannot(f"{' '.join(argv)} failed: {res.stderr.strip()[-300:]}")
    except (OSError, subprocess.TimeoutExpired) as e:
        _cannot(f"cannot install cron: {e}")
    cron, crontab = shutil.which("cron") or "/usr/sbin/cron", shutil.which("crontab")
    if not (os.path.exists(cron) and crontab):
        _cannot("cron was installed but its programs are not found")
    return cron, crontab


def _cron_running() -> bool:
    try:
        pid = int(Path("/run/crond.pid").read_text().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


class Cron:
    """Debian's cron, started only once the test's crontab line is in place.

    cron reads the crontabs when it starts and afterwards only when the spool folder's
    mtime (whole seconds) has changed at a minute's turn: a line installed in the same
    second as cron's start-up read was never seen, and the night never ran. Installing
    first and starting cron after removes that race.
    """

    def __init__(self) -> None:
        self.cron, self.crontab = _ensure_cron()
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if self.proc is not None or _cron_running():
            return  # one runs already (the machine's own): it rereads at the minute's turn
        # cron reads the local time as we do (same TZ), so the minute we pick is its minute.
        proc = self.proc = subprocess.Popen(
            [self.cron, "-f"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        wait_for(lambda: proc.poll() is not None or _cron_running(), timeout=10)
        if proc.poll() is not None:
            _cannot(f"cron cannot start here: {proc.stdout.read().strip()[-300:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def crontab_entry() -> Iterator[Callable[[str], None]]:
    """Installs lines into root's crontab beside what is there, then makes sure cron runs;
    restores the crontab and stops the cron it started afterwards."""
    cron = Cron()
    old = _run(cron.crontab, "-l")
    before = old.stdout if old.returncode == 0 else None

    def install(lines: str) -> None:
        kept = before or ""
        if kept and not kept.endswith("\n"):
            kept += "\n"
        res = _run(cron.crontab, "-", input=f"{kept}{MARK}\n{lines}\n")
        assert res.returncode == 0, res.stderr
        cron.start()

    try:
        yield install
    finally:
        cron.stop()
        if before is None:
            _run(cron.crontab, "-r")
        else:
            _run(cron.crontab, "-", input=before)


def _fire_minute() -> datetime:
    """The next minute's turn that leaves cron time to read the new crontab first."""
    now = datetime.now()
    return (now + timedelta(minutes=1 if now.second < 45 else 2)).replace(second=0, microsecond=0)


def test_nights_started_by_cron_run_and_write_their_reports(
    crontab_entry: Callable[[str], None], home: Path, tmp_path: Path
) -> None:
    """Two nights from one real cron, in the same minute (each waits for a minute's turn,
    so one wait serves both):

    * a hand-written crontab line: cron's bare environment (no terminal, no stdin,
      PATH=/usr/bin:/bin) reaches the task, `run --until` exits 0, writes the report, and
      prints exactly the report line and the closing summary;
    * the issue-13 path from install to a scheduled night: only what `bantzd init` and
      `bantzd doctor --cron` print (the crontab line, with its time fields and `--until`
      moved to the next minute), then `bantzd doctor` finds the entry ok.
    """
    bantzd = Path(sys.executable).with_name("bantzd")
    if not os.access(bantzd, os.X_OK):
        _cannot(f"no bantzd console script beside {sys.executable}")
    fire = _fire_minute()
    hand_line, check_hand = _hand_written_night(bantzd, home, tmp_path, fire)
    printed_line, check_printed = _night_from_init_and_doctor(bantzd, tmp_path, fire)
    crontab_entry(f"{hand_line}\n{printed_line}")
    check_hand()
    check_printed()


def _hand_written_night(
    bantzd: Path, home: Path, tmp_path: Path, fire: datetime
) -> tuple[str, Callable[[], None]]:
    spool = home / "spool"
    (spool / "hello.yaml").write_text('run: echo hello from cron; echo "PATH=$PATH"\n')
    out, err, rc, fired = (tmp_path / n for n in ("out", "err", "rc", "fired"))
    until = (fire + timedelta(seconds=10)).isoformat(timespec="seconds")
    command = (
        f"touch {fired}; {bantzd} --home {home} run --until {until} >{out} 2>{err}; echo $? >{rc}"
    )

    def check() -> None:
        limit = (fire - datetime.now()).total_seconds() + 70
        deadline = time.monotonic() + limit
        while not rc.exists():
            if time.monotonic() > deadline:
                if not fired.exists():
                    _cannot(f"cron runs but did not run the job within {limit:.0f}s here")
                pytest.fail(f"the job started but bantzd did not finish: {err.read_text()!r}")
            time.sleep(0.5)
        wait_for(lambda: rc.read_text().endswith("\n"), timeout=5, what="the exit status")
        assert rc.read_text().strip() == "0", err.read_text()
        lines = out.read_text().splitlines()
        assert len(lines) == 2, lines
        reports = list((home / "reports").glob("*.md"))
        assert len(reports) == 1, reports
        assert lines[0] == f"bantzd: report written to {reports[0]}"
        assert re.fullmatch(
            r"bantzd: 1 done, 0 failed, 0 cancelled, 0 waiting for an answer, .*", lines[1]
        )
        assert err.read_text() == ""
        output = (home / "tasks" / "1" / "output.log").read_text()
        assert "hello from cron" in output
        assert "PATH=/usr/bin:/bin" in output  # cron's environment reached the task unchanged

    # Minute, hour, day and month: it fires once, even if the test dies before cleaning up.
    return f"{fire:%M %H %d %m} * {command}", check


def _night_from_init_and_doctor(
    bantzd: Path, tmp_path: Path, fire: datetime
) -> tuple[str, Callable[[], None]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    home = tmp_path / "nights"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return _run(str(bantzd), "--home", str(home), *args, timeout=60, env=env)

    init = cli("init")
    assert init.returncode == 0, init.stderr
    steps = init.stdout.splitlines()
    at = steps.index("  1. schedule the night: run `crontab -e` and add this line")
    line = steps[at + 1].strip()
    printed = cli("doctor", "--cron")
    assert printed.returncode == 0 and printed.stdout == line + "\n"
    assert line == f"0 23 * * * {bantzd} --home {home} run --until 07:00"
    # The test's only changes: no load throttle (a busy CI box is above 1.5 per core), and
    # the night moved from 23:00-07:00 to the next minute and a few seconds after it.
    (home / "config.toml").write_text(config_text())
    task = tmp_path / "hello.yaml"
    task.write_text("name: hello\nrun: echo hello from a night cron started\n")
    submit = cli("submit", str(task))
    assert submit.returncode == 0, submit.stderr

    until = (fire + timedelta(seconds=20)).isoformat(timespec="seconds")
    fields = line.split(None, 5)
    assert fields[:5] == ["0", "23", "*", "*", "*"] and fields[5].endswith(" --until 07:00")
    command = fields[5].removesuffix("07:00") + until

    def check() -> None:
        limit = (fire - datetime.now()).total_seconds() + 90
        deadline = time.monotonic() + limit
        reports = home / "reports"
        while not list(reports.glob("*.md")):
            if time.monotonic() > deadline:
                if not (home / "bantzd.log").exists():
                    _cannot(f"cron runs but did not run the job within {limit:.0f}s here")
                pytest.fail(f"the night started but wrote no report: {_log(home)}")
            time.sleep(0.5)
        state = json.loads((home / "tasks" / "1" / "state.json").read_text())
        assert state["status"] == "done", _log(home)
        output = (home / "tasks" / "1" / "output.log").read_text()
        assert "hello from a night cron started" in output
        report = next(reports.glob("*.md")).read_text()
        assert "hello" in report and "Done" in report

        # doctor finds the entry it printed, installed, pointing at this bantzd and home.
        doctor = cli("doctor", "--json")
        checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
        assert checks["schedule"]["status"] == "ok", checks["schedule"]
        assert checks["schedule"]["message"].endswith(f"runs {bantzd} on this home")
        assert doctor.returncode == 0, checks

    return f"{fire:%M %H %d %m} * {command}", check


def _log(home: Path) -> str:
    try:
        return (home / "bantzd.log").read_text()[-2000:]
    except OSError:
        return "(no bantzd.log)"
