"""`bantzd doctor`, `bantzd init`'s next steps, and the config.toml check of every command.

Each test runs the real CLI with a $HOME of its own, a stand-in `crontab` on the PATH that
lists a crontab the test wrote (or says there is none), and its own systemd user folder, so
what doctor reads is exactly what the test set up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import config_text, wait_for

BANTZD = str(Path(sys.executable).with_name("bantzd"))


class User:
    """A person's machine in miniature: $HOME, a crontab, systemd user units."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "user"
        self.bin = tmp_path / "bin"
        self.bin.mkdir(parents=True)
        (self.root / ".config").mkdir(parents=True)
        self.crontab = tmp_path / "crontab.txt"
        fake = self.bin / "crontab"
        fake.write_text(
            "#!/bin/sh\n"
            f'[ "$1" = -l ] && [ -f {self.crontab} ] && exec cat {self.crontab}\n'
            'echo "no crontab for $USER" >&2; exit 1\n'
        )
        fake.chmod(0o755)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("BANTZ_", "XDG_"))}
        self.env.update(HOME=str(self.root), PATH=f"{self.bin}:/usr/bin:/bin")
        self.units = self.root / ".config" / "systemd" / "user"

    def bantzd(self, *args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [BANTZD, *(["--home", str(home)] if home else []), *args]
        return subprocess.run(
            argv, capture_output=True, text=True, env=self.env, timeout=60, stdin=subprocess.DEVNULL
        )

    def checks(self, home: Path | None = None) -> tuple[int, dict[str, dict]]:
        res = self.bantzd("doctor", "--json", home=home)
        assert res.stderr == "", res.stderr
        data = json.loads(res.stdout)
        assert data["ok"] == (res.returncode == 0)
        return res.returncode, {c["name"]: c for c in data["checks"]}


@pytest.fixture
def user(tmp_path: Path) -> User:
    if not os.access(BANTZD, os.X_OK):
        pytest.skip(f"no bantzd console script beside {sys.executable}")
    return User(tmp_path)


def test_init_prints_the_crontab_line_and_doctor_checks_it(user: User) -> None:
    home = user.root / "nights"
    res = user.bantzd("init", home=home)
    assert res.returncode == 0, res.stderr
    line = f"0 23 * * * {BANTZD} --home {home} run --until 07:00"
    assert f"\n       {line}\n" in res.stdout, res.stdout  # the exact line, not ~/.local/bin
    assert f"{BANTZD} --home {home} doctor\n" in res.stdout
    cron = user.bantzd("doctor", "--cron", home=home)
    assert (cron.returncode, cron.stdout) == (0, line + "\n")

    # Nothing scheduled yet: the night would not start, and doctor says what to add.
    code, checks = user.checks(home)
    assert code == 1
    assert checks["schedule"]["status"] == "problem"
    assert "nothing starts the night" in checks["schedule"]["message"]
    assert line in checks["schedule"]["fix"]
    assert all(
        checks[n]["status"] == "ok" for n in ("config", "home", "spool", "disk", "supervisor")
    ), checks
    assert checks["llm"]["status"] == "skipped"  # init's file names the default server only

    # The line doctor printed, installed: all is well.
    user.crontab.write_text(f"MAILTO=''\n{cron.stdout}")
    code, checks = user.checks(home)
    assert code == 0, checks
    assert checks["schedule"] == {
        "name": "schedule",
        "status": "ok",
        "message": f"crontab line 2 runs {BANTZD} on this home",
        "fix": None,
    }
    human = user.bantzd("doctor", home=home)
    assert human.returncode == 0 and human.stdout.endswith("all ok: the night can run\n")


def test_the_default_home_gets_no_home_option(user: User) -> None:
    res = user.bantzd("init")
    assert res.returncode == 0, res.stderr
    assert (user.root / ".local" / "share" / "bantzd" / "config.toml").exists()
    cron = user.bantzd("doctor", "--cron")
    assert cron.stdout == f"0 23 * * * {BANTZD} run --until 07:00\n"


def test_a_crontab_line_naming_a_missing_bantzd_is_a_problem(user: User) -> None:
    assert user.bantzd("init").returncode == 0
    # The recipe that assumes ~/.local/bin, on a machine that installed into a venv.
    user.crontab.write_text("0 23 * * * $HOME/.local/bin/bantzd run --until 07:00\n")
    code, checks = user.checks()
    assert code == 1
    missing = user.root / ".local" / "bin" / "bantzd"
    assert checks["schedule"]["message"] == f"crontab line 1 runs {missing}, which does not exist"
    assert f"0 23 * * * {BANTZD} run --until 07:00" in checks["schedule"]["fix"]

    # Another bantzd that exists: the night runs, doctor says it is not this one.
    missing.parent.mkdir(parents=True)
    missing.write_text("#!/bin/sh\nexit 0\n")
    missing.chmod(0o644)
    code, checks = user.checks()
    assert code == 1 and "not an executable file" in checks["schedule"]["message"]
    missing.chmod(0o755)
    code, checks = user.checks()
    assert code == 0, checks
    assert checks["schedule"]["status"] == "warning"
    assert f"runs {missing}, not this bantzd ({BANTZD})" in checks["schedule"]["message"]


def test_a_bare_bantzd_that_crons_path_does_not_find(user: User) -> None:
    assert user.bantzd("init").returncode == 0
    user.crontab.write_text("0 23 * * * bantzd run --until 07:00\n")
    code, checks = user.checks()
    assert code == 1
    assert checks["schedule"]["message"] == (
        "crontab line 1 runs `bantzd`, which the PATH the job gets (/usr/bin:/bin) does not find"
    )
    # A PATH line in the crontab that has it: cron finds it.
    user.crontab.write_text(
        f"PATH={Path(BANTZD).parent}:/usr/bin:/bin\n0 23 * * * bantzd run --until 07:00\n"
    )
    code, checks = user.checks()
    assert code == 0 and checks["schedule"]["status"] == "ok", checks


def test_an_entry_for_another_home_does_not_count(user: User, tmp_path: Path) -> None:
    home = tmp_path / "mine"
    assert user.bantzd("init", home=home).returncode == 0
    user.crontab.write_text(f"0 23 * * * {BANTZD} --home /elsewhere run --until 07:00\n")
    code, checks = user.checks(home)
    assert code == 1
    assert "crontab line 1 is for /elsewhere" in checks["schedule"]["message"]


def test_systemd_units_are_checked(user: User) -> None:
    assert user.bantzd("init").returncode == 0
    user.units.mkdir(parents=True)
    service = user.units / "bantzd-night.service"
    service.write_text("[Service]\nExecStart=%h/.local/bin/bantzd run --until 07:00\n")
    (user.units / "bantzd-night.timer").write_text("[Timer]\nOnCalendar=*-*-* 23:00:00\n")
    code, checks = user.checks()
    assert code == 1
    assert checks["schedule"]["message"] == (
        f"{service} runs {user.root}/.local/bin/bantzd, which does not exist"
    )
    service.write_text(f"[Service]\nExecStart={BANTZD} run --until 07:00\n")
    code, checks = user.checks()
    assert code == 0 and checks["schedule"]["status"] == "warning", checks
    assert (
        "not enabled: systemctl --user enable --now bantzd-night.timer"
        in (checks["schedule"]["message"])
    )
    wants = user.units / "timers.target.wants"
    wants.mkdir()
    (wants / "bantzd-night.timer").symlink_to(user.units / "bantzd-night.timer")
    code, checks = user.checks()
    assert code == 0 and checks["schedule"]["status"] == "ok", checks


def test_doctor_finds_config_permission_and_spool_problems(user: User, tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert user.bantzd("init", home=home).returncode == 0
    user.crontab.write_text(user.bantzd("doctor", "--cron", home=home).stdout)
    (home / "config.toml").write_text("max_parallel = 2\n[throttle\n")
    (home / "spool").chmod(0o777)
    res = user.bantzd("doctor", home=home)
    assert res.returncode == 1
    lines = res.stdout.splitlines()
    assert lines[0] == (
        f"config     problem  {home}/config.toml line 2: not valid TOML: the table header "
        "[throttle is missing its closing ']' (write [NAME])"
    )
    assert lines[1].strip() == "2 | [throttle"
    spool = next(line for line in lines if line.startswith("spool"))
    assert "writable by group or others" in spool and f"chmod go-w {home}/spool" in spool
    home_line = next(line for line in lines if line.startswith("home"))
    assert "open to other users" not in home_line  # the home itself is private
    assert lines[-1] == "2 problem(s): the night will not go as planned until fixed"

    (home / "spool").chmod(0o700)
    home.chmod(0o755)
    (home / "config.toml").write_text(config_text())
    code, checks = user.checks(home)
    assert code == 1
    assert "open to other users" in checks["home"]["message"]
    home.chmod(0o700)
    assert user.checks(home)[0] == 0
    missing = user.checks(tmp_path / "nothing")[1]
    assert missing["home"]["status"] == "problem" and missing["home"]["fix"] == "bantzd init"


def test_doctor_asks_the_llm_server(user: User, tmp_path: Path) -> None:
    from tests.llm_server import FakeLLM

    home = tmp_path / "h"
    assert user.bantzd("init", home=home).returncode == 0
    user.crontab.write_text(user.bantzd("doctor", "--cron", home=home).stdout)
    server = FakeLLM(models=("local",))
    server.start()
    try:
        url = server.base_url
        (home / "config.toml").write_text(f'[llm]\nbase_url = "{url}"\nmodel = "local"\n')
        code, checks = user.checks(home)
        assert code == 0, checks
        assert checks["llm"] == {
            "name": "llm",
            "status": "ok",
            "message": f"{url} answers (model local)",
            "fix": None,
        }
        (home / "config.toml").write_text(f'[llm]\nbase_url = "{url}"\nmodel = "big"\n')
        code, checks = user.checks(home)
        assert code == 0 and checks["llm"]["status"] == "warning", checks
        assert "lists none of big (it has local)" in checks["llm"]["message"]
    finally:
        server.stop()
    code, checks = user.checks(home)
    assert code == 1 and checks["llm"]["status"] == "problem"
    assert checks["llm"]["message"].startswith(f"no answer from {url}/models (")


def test_doctor_sees_the_supervisor(user: User, tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert user.bantzd("init", home=home).returncode == 0
    (home / "config.toml").write_text(config_text())
    proc = subprocess.Popen(
        [BANTZD, "--home", str(home), "run"],
        env=user.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (home / "bantzd.pid").exists(), what="the supervisor's pid file")
        wait_for(lambda: "one runs" in user.checks(home)[1]["supervisor"]["message"])
        code, checks = user.checks(home)
        assert checks["supervisor"]["message"] == f"one runs on this home (pid {proc.pid})"
        # No crontab line, but a supervisor is up (say `bantzd start`): the night runs.
        assert checks["schedule"]["status"] == "ok" and code == 0, checks
    finally:
        proc.kill()
        proc.wait(10)
    checks = user.checks(home)[1]
    assert checks["supervisor"]["message"] == (
        f"none runs now; bantzd.pid (pid {proc.pid}) is left from one that ended, which is harmless"
    )


# --- every command checks config.toml ---------------------------------------------------------

BROKEN = 'max_parallel = 2\n[throttle]\nmax_load = "high"\n'


def test_commands_warn_about_a_broken_config_and_carry_on(user: User, tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert user.bantzd("init", home=home).returncode == 0
    (home / "config.toml").write_text(BROKEN)
    task = tmp_path / "t.yaml"
    task.write_text("name: t\nrun: echo hi\n")
    problem = (
        f"bantzd: {home}/config.toml line 3: throttle.max_load: expected a number > 0, got 'high'"
    )
    warning = (
        f"{problem}\nbantzd: the next 'bantzd run' will refuse to start until this is fixed "
        "(`bantzd doctor` checks it)\n"
    )
    for args in (
        ("list",),
        ("validate", str(task)),
        ("submit", str(task)),
        ("add", "--", "echo", "hi"),
        ("list", "--json"),
        ("report", "--stdout"),
    ):
        res = user.bantzd(*args, home=home)
        assert res.returncode == 0, (args, res.stderr)
        assert res.stderr.startswith(warning), (args, res.stderr)
    # Nothing is taken in while the config is broken (which tasks need approval is unknown);
    # the files wait in the spool, and the first command after the fix takes them in.
    assert json.loads(user.bantzd("list", "--json", home=home).stdout) == []  # clean JSON
    assert len(list((home / "spool").glob("*.yaml"))) == 2, "submit and add placed the files"
    res = user.bantzd("submit", str(task), home=home)
    assert "not taken in while config.toml is broken" in res.stdout + res.stderr
    assert res.returncode == 0, res.stderr
    # `status` says it among its warnings, once, on stdout and in --json.
    res = user.bantzd("status", home=home)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.count("throttle.max_load: expected a number > 0") == 1, res.stdout
    assert "warning:    " + problem.removeprefix("bantzd: ") in res.stdout, res.stdout
    res = user.bantzd("status", "--json", home=home)
    warnings = json.loads(res.stdout)["warnings"]
    assert warnings[0].startswith(problem.removeprefix("bantzd: ")), warnings

    # `run` refuses with the same words.
    run = user.bantzd("run", "--once", home=home)
    assert run.returncode == 1 and run.stderr == problem + "\n"
    # `init` on the broken config says so, and fails.
    init = user.bantzd("init", home=home)
    assert init.returncode == 1 and init.stderr.startswith(problem + "\n")
    assert "left unchanged" in init.stdout and "next steps" not in init.stdout

    # Fixed, the night takes in every file that waited.
    (home / "config.toml").write_text(config_text("max_parallel = 2"))
    assert user.bantzd("run", "--once", home=home).returncode == 0
    tasks = json.loads(user.bantzd("list", "--json", home=home).stdout)
    assert sorted(t["status"] for t in tasks) == ["done"] * 3, tasks


def test_in_task_commands_stay_quiet(user: User, tmp_path: Path) -> None:
    home = tmp_path / "h"
    assert user.bantzd("init", home=home).returncode == 0
    (home / "config.toml").write_text(BROKEN)
    task_dir = home / "tasks" / "1"
    task_dir.mkdir(parents=True)
    user.env.update(BANTZ_TASK_DIR=str(task_dir), BANTZ_TASK_ID="1", BANTZ_ATTEMPT="1")
    res = user.bantzd("progress", "50", "half", home=home)
    assert (res.returncode, res.stderr) == (0, "")
    assert json.loads((task_dir / "progress.json").read_text())["percent"] == 50
