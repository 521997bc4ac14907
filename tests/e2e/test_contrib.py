"""The files in contrib/ work as written: the crontab line, the systemd units, the plist.

Each check that needs a tool (crontab, systemd-analyze) skips where the tool is missing.
The files name bantzd as `/path/to/bantzd`, the placeholder a person replaces with the path
`bantzd doctor --cron` shows; the tests fill it in with a stand-in `bantzd` that prints its
arguments, so what runs is exactly what the file says.
"""

from __future__ import annotations

import os
import plistlib
import re
import shutil
import subprocess
from configparser import ConfigParser
from pathlib import Path

import pytest

from bantzd.config import config_from_mapping

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
CRONTAB = CONTRIB / "cron" / "bantzd.crontab"
SYSTEMD = CONTRIB / "systemd"
PLIST = CONTRIB / "launchd" / "com.bantzd.night.plist"
PLACEHOLDER = "/path/to/bantzd"


@pytest.fixture
def fake_home(tmp_path: Path) -> Path:
    """A $HOME whose ~/.local/bin/bantzd prints its arguments."""
    home = tmp_path / "user"
    bin_dir = home / ".local" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "bantzd"
    fake.write_text('#!/bin/sh\necho "bantzd $*"\n')
    fake.chmod(0o755)
    return home


def filled(text: str, home: Path) -> str:
    """The placeholder replaced, as a person does: by the stand-in in `home`."""
    assert PLACEHOLDER in text
    return text.replace(PLACEHOLDER, str(home / ".local" / "bin" / "bantzd"))


def sh(command: str, home: Path, path: str = "/usr/bin:/bin") -> str:
    res = subprocess.run(
        ["/bin/sh", "-c", command],
        env={"HOME": str(home), "PATH": path},
        capture_output=True,
        text=True,
        timeout=10,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout


# --- cron --------------------------------------------------------------------------------------


def cron_entries() -> list[tuple[str, str]]:
    """(schedule, command) of the active lines of the crontab file."""
    out = []
    for line in CRONTAB.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            fields = line.split(None, 5)
            out.append((" ".join(fields[:5]), fields[5]))
    return out


def test_crontab_line_runs_the_night_at_23_00(fake_home: Path) -> None:
    assert cron_entries() == [("0 23 * * *", f"{PLACEHOLDER} run --until 07:00")]
    _, command = cron_entries()[0]
    assert sh(filled(command, fake_home), fake_home) == "bantzd run --until 07:00\n"


def test_crontab_line_is_the_one_doctor_prints(
    fake_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bantzd.cli.schedule import bantzd_argv, crontab_line, scheduled_default_home
    from bantzd.paths import Home

    monkeypatch.setenv("HOME", str(fake_home))
    line = crontab_line(Home(scheduled_default_home()))  # the default home: no --home
    program = " ".join(bantzd_argv())
    schedule, command = cron_entries()[0]
    assert line.replace(program, PLACEHOLDER) == f"{schedule} {command}"


def test_crontab_file_installs(tmp_path: Path) -> None:
    crontab = shutil.which("crontab")
    if crontab is None or os.geteuid() != 0:
        pytest.skip("needs crontab and root (to install it for the user nobody)")
    user = "nobody"
    if subprocess.run([crontab, "-u", user, "-l"], capture_output=True).returncode == 0:
        pytest.skip(f"{user} has a crontab of its own; not touching it")
    try:
        res = subprocess.run([crontab, "-u", user, str(CRONTAB)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr  # crontab refuses a file with errors
        listed = subprocess.run([crontab, "-u", user, "-l"], capture_output=True, text=True)
        assert f"0 23 * * * {PLACEHOLDER} run --until 07:00" in listed.stdout
    finally:
        subprocess.run([crontab, "-u", user, "-r"], capture_output=True)


# --- systemd -----------------------------------------------------------------------------------


def unit(name: str) -> ConfigParser:
    parser = ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(SYSTEMD / name)
    return parser


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(s|min)?", text)
    assert m, text
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


def test_systemd_services_stop_gracefully() -> None:
    default_grace = config_from_mapping({}).stop_grace
    for name, args in (("bantzd.service", "run"), ("bantzd-night.service", "run --until 07:00")):
        service = unit(name)["Service"]
        assert service["Type"] == "simple"
        assert service["KillMode"] == "mixed"
        assert seconds(service["TimeoutStopSec"]) > default_grace
        assert service["ExecStart"] == f"{PLACEHOLDER} {args}"
    assert unit("bantzd.service")["Service"]["Restart"] == "on-failure"
    assert "Restart" not in unit("bantzd-night.service")["Service"]
    timer = unit("bantzd-night.timer")["Timer"]
    assert timer["OnCalendar"] == "*-*-* 23:00:00"
    assert "Persistent" not in timer


def test_systemd_analyze_verify(fake_home: Path, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    units = tmp_path / "units"
    shutil.copytree(SYSTEMD, units)
    for service in units.glob("*.service"):
        service.write_text(filled(service.read_text(), fake_home))
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    # ExecStart='s program must exist and be executable.
    env = {**os.environ, "HOME": str(fake_home), "XDG_RUNTIME_DIR": str(runtime)}
    names = sorted(str(p) for p in units.iterdir())
    res = subprocess.run(
        [analyze, "--user", "verify", *names], capture_output=True, text=True, env=env, timeout=60
    )
    if res.returncode != 0 and "Failed to initialize manager" in res.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {res.stderr.strip()[-200:]}")
    assert res.returncode == 0, res.stderr
    assert res.stderr == "", res.stderr


# --- launchd -----------------------------------------------------------------------------------


def test_launchd_plist_starts_the_night_at_23_00(fake_home: Path, tmp_path: Path) -> None:
    with open(PLIST, "rb") as f:
        plist = plistlib.load(f)
    assert plist["Label"] == "com.bantzd.night" == PLIST.stem
    assert plist["StartCalendarInterval"] == {"Hour": 23, "Minute": 0}
    assert plist["ExitTimeOut"] > config_from_mapping({}).stop_grace
    argv = plist["ProgramArguments"]
    assert argv[:2] == ["/bin/sh", "-c"] and len(argv) == 3
    # A stand-in `date` shows what the line does when the job starts at each hour: at 23:00
    # and after a wake before 07:00 it runs the night, after a late wake it does nothing.
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    fake_date = fake_bin / "date"
    fake_date.write_text('#!/bin/sh\necho "$FAKE_HOUR"\n')
    fake_date.chmod(0o755)
    for hour, runs in (("23", True), ("00", True), ("06", True), ("07", False), ("12", False)):
        line = filled(argv[2], fake_home)
        out = sh(f"FAKE_HOUR={hour}; export FAKE_HOUR; {line}", fake_home, f"{fake_bin}:/bin")
        assert out == ("bantzd run --until 07:00\n" if runs else ""), hour
