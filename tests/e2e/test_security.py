"""Other local users (issue 11 item 6): everything bantzd creates is private to its user,
an exposed home is reported with the fix, and no file another user can open decides
whether a supervisor runs.

Tests run as root; "another user" is a subprocess running as `nobody` (setpriv). The homes
live under a world-traversable folder, so that only bantzd's own modes stand between
`nobody` and the files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import config_text, wait_for

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None or not os.path.exists("/usr/bin/python3"),
    reason="needs root, setpriv and /usr/bin/python3 to act as another user",
)

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
SECRET = "s3cr3t-token-value"

# Run as nobody: open PATH (for reading, or to flock it) and say what happened.
PROBE = textwrap.dedent("""\
    import fcntl, os, sys
    path, how = sys.argv[1], sys.argv[2]
    try:
        fd = os.open(path, os.O_RDONLY)
        if how == "lock":
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        else:
            os.read(fd, 100)
    except PermissionError:
        print("denied")
    except OSError as e:
        print("error", e)
    else:
        print("allowed")
""")

# Run as nobody: hold a shared flock on PATH until killed.
HOLDER = textwrap.dedent("""\
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH)
    print("held", flush=True)
    time.sleep(600)
""")


@pytest.fixture
def base() -> Iterator[Path]:
    """A folder everyone may enter (pytest's own tmp folders are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="bantzd-sec-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def bantzd(
    home: Path, *args: str, umask: int = 0o022, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real CLI, started with `umask` (the usual 022 unless told)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    return subprocess.run(
        [sys.executable, "-m", "bantzd", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        preexec_fn=lambda: os.umask(umask),
    )


def as_nobody(path: Path, how: str = "read") -> str:
    res = subprocess.run(
        [*AS_NOBODY, "/usr/bin/python3", "-c", PROBE, str(path), how],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def hold_as_nobody(path: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [*AS_NOBODY, "/usr/bin/python3", "-c", HOLDER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def modes(root: Path) -> dict[str, int]:
    """Permission bits of everything under `root` (and root itself, as ".")."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            st = path.lstat()
            if not stat.S_ISLNK(st.st_mode):
                found[str(path.relative_to(root))] = stat.S_IMODE(st.st_mode)
    return found


def make_home(base: Path, tmp_path: Path) -> Path:
    """A home made and used by bantzd with umask 022: one task with a secret, done."""
    home = base / "home"
    job = tmp_path / "job.yaml"
    job.write_text(
        f"name: secretive\nenv:\n  API_TOKEN: {SECRET}\nuses: {{api: 1}}\n"
        "run: echo token=$API_TOKEN; echo progress >&2\n"
    )
    res = bantzd(home, "submit", str(job))
    assert res.returncode == 0, res.stderr
    fd = os.open(home / "config.toml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(config_text("max_parallel = 2", "[limits.api]", "concurrent = 1"))
    for args in (("run", "--once"), ("pause",), ("resume",), ("report",)):
        res = bantzd(home, *args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
    assert json.loads((home / "tasks/1/state.json").read_text())["status"] == "done"
    return home


def test_everything_bantzd_creates_is_private_whatever_the_umask(
    base: Path, tmp_path: Path
) -> None:
    home = make_home(base, tmp_path)
    found = modes(home)
    for name in (
        "tasks/1/task.yaml",
        "tasks/1/state.json",
        "tasks/1/output.log",
        "tasks/1/worker.lock",
        "journal.jsonl",
        "bantzd.log",
        "bantzd.lock",
        "next_id.json",
        "supervisor.json",
        "limits.json",
    ):
        assert name in found, sorted(found)
    assert any(name.startswith("reports/") for name in found), sorted(found)
    bad = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (home / name).is_dir() else 0o600)
    }
    assert bad == {}
    status = json.loads(bantzd(home, "status", "--json").stdout)
    assert status["warnings"] == []


def test_another_user_can_neither_read_nor_lock_anything(base: Path, tmp_path: Path) -> None:
    # The probe works: a 0644 file in a folder everyone may enter is readable by nobody.
    control = base / "open.txt"
    control.write_text("x")
    control.chmod(0o644)
    assert as_nobody(control) == "allowed"
    assert as_nobody(control, "lock") == "allowed"

    home = make_home(base, tmp_path)
    for name in ("tasks/1/task.yaml", "tasks/1/output.log", "journal.jsonl", "bantzd.log"):
        assert as_nobody(home / name) == "denied", name
    assert as_nobody(home / "bantzd.lock", "lock") == "denied"
    assert as_nobody(home / "tasks/1/worker.lock", "lock") == "denied"
    # Even with the home's own folder opened up, the files inside stay closed.
    home.chmod(0o755)
    (home / "tasks").chmod(0o755)
    (home / "tasks/1").chmod(0o755)
    assert as_nobody(home / "tasks/1/task.yaml") == "denied"
    assert as_nobody(home / "bantzd.lock", "lock") == "denied"
    assert as_nobody(home / "tasks/1/worker.lock", "lock") == "denied"


def open_up(home: Path) -> None:
    """What a home made before this fix looks like: folders 0755, files 0644."""
    for path in [home, *home.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_status_reports_a_home_open_to_others_with_the_fix(base: Path, tmp_path: Path) -> None:
    home = make_home(base, tmp_path)
    open_up(home)
    res = bantzd(home, "status", "--json")
    assert res.returncode == 0, res.stderr
    warnings = json.loads(res.stdout)["warnings"]
    fix = f"chmod -R go-rwx {home}"
    assert warnings and all(fix in w for w in warnings), warnings
    assert "open to other users" in warnings[0]
    assert "tasks/1/task.yaml" in warnings[1] or "bantzd.lock" in warnings[1], warnings
    text = bantzd(home, "status").stdout
    assert "warning:" in text and fix in text
    # The fix it names works.
    subprocess.run(["chmod", "-R", "go-rwx", str(home)], check=True)
    assert json.loads(bantzd(home, "status", "--json").stdout)["warnings"] == []


def test_a_lock_held_by_another_user_is_not_a_running_supervisor(
    base: Path, tmp_path: Path
) -> None:
    home = make_home(base, tmp_path)
    open_up(home)
    lock = home / "bantzd.lock"
    holder = hold_as_nobody(lock)  # while the old home still let everyone open the lock
    try:
        res = bantzd(home, "run", "--once")
        assert res.returncode == 1
        assert "already running" not in res.stderr, res.stderr
        assert f"pid {holder.pid}" in res.stderr and "(nobody)" in res.stderr, res.stderr
        assert f"chmod -R go-rwx {home}" in res.stderr and f"kill {holder.pid}" in res.stderr
        assert "Traceback" not in res.stderr
        status = json.loads(bantzd(home, "status", "--json").stdout)
        assert status["supervisor"]["running"] is False
        assert any(f"pid {holder.pid} (nobody)" in w for w in status["warnings"]), status
        # A control command does not wait for a supervisor that will never come.
        res = bantzd(home, "pause", timeout=30)
        assert res.returncode == 1 and f"pid {holder.pid}" in res.stderr, res.stderr
        # Opening the lock (to try it) made it 0600: nobody cannot open it a second time.
        assert stat.S_IMODE(lock.stat().st_mode) == 0o600
        assert as_nobody(lock, "lock") == "denied"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    bantzd(home, "resume")
    res = bantzd(home, "run", "--once")
    assert res.returncode == 0, res.stderr


def test_already_running_names_the_real_holder_not_a_stale_pid(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bantzd(home, "status").returncode == 0
    home.mkdir(mode=0o700, exist_ok=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""\
                import fcntl, json, os, sys, time
                fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.write(fd, json.dumps({"pid": 4000000, "role": "supervisor"}).encode())
                print("held", flush=True)
                time.sleep(600)
            """),
            str(home / "bantzd.lock"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        res = bantzd(home, "run", "--once")
        assert res.returncode == 1
        assert f"already running on this home (pid {holder.pid})" in res.stderr, res.stderr
        status = json.loads(bantzd(home, "status", "--json").stdout)
        assert status["supervisor"]["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait(10)
    wait_for(lambda: bantzd(home, "run", "--once").returncode == 0, timeout=30, what="a run")


def test_tasks_run_with_the_users_own_umask(base: Path, tmp_path: Path) -> None:
    home = base / "home"
    made = tmp_path / "made-by-task"
    job = tmp_path / "job.yaml"
    job.write_text(f"run: touch {made}; mkdir {made}.d\n")
    assert bantzd(home, "submit", str(job)).returncode == 0
    (home / "config.toml").write_text(config_text("max_parallel = 2"))
    res = bantzd(home, "run", "--once", umask=0o002)
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(made.stat().st_mode) == 0o664
    assert stat.S_IMODE(Path(f"{made}.d").stat().st_mode) == 0o775
