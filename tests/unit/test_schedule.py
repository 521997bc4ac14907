"""Reading cron lines and systemd units that run bantzd, and writing the crontab line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bantzd.cli import schedule
from bantzd.cli.schedule import cron_entries, crontab_line, systemd_entries
from bantzd.paths import Home


@pytest.fixture(autouse=True)
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "you"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(schedule, "bantzd_argv", lambda: ["/opt/my venv/bin/bantzd"])
    return home


def test_crontab_line_quotes_paths_escapes_percent_and_omits_the_default_home(
    user_home: Path,
) -> None:
    default = Home(user_home / ".local" / "share" / "bantzd")
    assert crontab_line(default) == "0 23 * * * '/opt/my venv/bin/bantzd' run --until 07:00"
    other = Home(Path("/data/50%/nights"))
    assert crontab_line(other) == (
        "0 23 * * * '/opt/my venv/bin/bantzd' --home /data/50\\%/nights run --until 07:00"
    )


def test_cron_entries(user_home: Path) -> None:
    text = "\n".join(
        [
            "# a comment naming bantzd",
            "MAILTO=''",
            "PATH=/opt/bin:/usr/bin",
            "BANTZ_HOME=/srv/bantzd",
            "0 23 * * * $HOME/.local/bin/bantzd run --until 07:00",
            "@reboot /usr/bin/python3 -m bantzd --home ~/h start",
            "30 7 * * * cd /tmp && BANTZ_HOME=/x /v/bantzd report --notify",
            "5 * * * * echo unrelated",
            "0 1 * * * bantzd --home=rel run%input",
        ]
    )
    entries = cron_entries(text)
    assert [(e.where, e.program, e.home, e.runs_night) for e in entries] == [
        ("crontab line 5", f"{user_home}/.local/bin/bantzd", Path("/srv/bantzd"), True),
        ("crontab line 6", "/usr/bin/python3", user_home / "h", True),
        ("crontab line 7", "/v/bantzd", Path("/x"), False),
        ("crontab line 9", "bantzd", user_home / "rel", True),
    ]
    assert entries[3].problem == (
        "crontab line 9 runs `bantzd`, which the PATH the job gets (/opt/bin:/usr/bin) does not "
        "find"
    )


def test_systemd_entries(tmp_path: Path, user_home: Path) -> None:
    folder = tmp_path / "units"
    folder.mkdir()
    (folder / "bantzd.service").write_text(
        "[Service]\nEnvironment=BANTZ_HOME=%h/n PATH=/usr/bin\nExecStart=-%h/venv/bin/bantzd run\n"
    )
    (folder / "bantzd-night.service").write_text(
        "[Service]\nExecStart=/b/bantzd run --until 07:00\n"
    )
    (folder / "bantzd-night.timer").write_text("[Timer]\n")
    (folder / "timers.target.wants").mkdir()
    (folder / "timers.target.wants" / "bantzd-night.timer").write_text("")
    (folder / "other.service").write_text("[Service]\nExecStart=/b/bantzd run\n")
    entries = systemd_entries(folder)
    assert [(Path(e.where).name, e.program, e.home, e.enabled) for e in entries] == [
        ("bantzd-night.service", "/b/bantzd", user_home / ".local/share/bantzd", True),
        ("bantzd.service", f"{user_home}/venv/bin/bantzd", user_home / "n", False),
    ]
    assert entries[1].notes == ["not enabled: systemctl --user enable --now bantzd.service"]
