"""Issue 11, input defects, through the real CLI: a poison value in one task file, a spool file
name that is not UTF-8, parallel `submit`s of one name, an unnamed task of each worker kind,
and `submit` into a home it cannot write. Each test failed before its fix."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.paths import Home
from tests.conftest import Bantz, config_text, tmpfs

BIG = "9" * 400
POISON = {  # key: (task file, what the message says about the value)
    "timeout": (f"run: echo x\ntimeout: {BIG}\n", "too long: at most 366d"),
    "retry_delay": (f"run: echo x\nretries: 1\nretry_delay: {BIG}\n", "too long: at most 366d"),
    "resources.cpus": (f"run: echo x\nresources: {{cpus: {BIG}}}\n", "at most 100000"),
    "resources.memory": (f"run: echo x\nresources: {{memory: {BIG}GiB}}\n", "at most 1PiB"),
    "resources.gpus": (f"run: echo x\nresources: {{gpus: {BIG}}}\n", "at most 1000,"),
    "priority": (f"run: echo x\npriority: {BIG}\n", "from -1000000 to 1000000"),
    "retries": (f"run: echo x\nretries: {BIG}\n", "at most 1000,"),
    "max_retry_delay": (f"run: echo x\nmax_retry_delay: {BIG}s\n", "too long: at most 366d"),
    "not_before": (
        "run: echo x\nnot_before: 9999-12-31T23:59:59-12:00\n",
        "the year must be from 1970 to 9998",
    ),
    "uses.api": (f"run: echo x\nuses: {{api: {BIG}}}\n", "at most 1000000,"),
    "after": (f"run: echo x\nafter: [1, {BIG}]\n", "task ids go up to 1000000000000"),
    "llm.temperature": (f"llm: {{prompt: hi, temperature: {BIG}}}\n", "a number from 0 to 2"),
}


def journal(home: Path) -> list[dict]:
    path = home / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def states(home: Path) -> list[dict]:
    found = []
    for path in sorted((home / "tasks").glob("*/state.json"), key=lambda p: int(p.parent.name)):
        found.append(json.loads(path.read_text()))
    return found


# 1. poison values --------------------------------------------------------------------------


def test_a_400_digit_timeout_is_rejected_and_the_next_file_runs(bantz: Bantz) -> None:
    bantz.drop("a-poison.yaml", f"run: echo never\ntimeout: {BIG}\n")
    bantz.drop("b-good.yaml", "run: echo good\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    rejected = bantz.home / "spool" / "rejected"
    assert (rejected / "a-poison.yaml").read_text().startswith("run: echo never")
    error = (rejected / "a-poison.yaml.error.txt").read_text()
    assert "timeout: too long: at most 366d" in error
    assert [(s["name"], s["status"]) for s in states(bantz.home)] == [("b-good", "done")]
    assert "good" in bantz.output(1)
    assert not list((bantz.home / "spool").glob("*.yaml"))


@pytest.mark.parametrize("key", sorted(POISON))
def test_validate_and_submit_name_the_poisoned_key_without_a_traceback(
    bantz: Bantz, tmp_path: Path, key: str
) -> None:
    text, says = POISON[key]
    path = tmp_path / "poison.yaml"
    path.write_text(text)
    res = bantz("validate", str(path))
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr
    assert f"{path}: invalid" in res.stdout
    assert f" {key}: " in res.stdout and says in res.stdout, res.stdout
    res = bantz("submit", str(path))
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert "not submitted" in res.stderr and f" {key}: " in res.stderr and says in res.stderr
    assert not list((bantz.home / "spool").glob("*.yaml"))


def test_a_year_long_retry_delay_is_refused_not_left_to_overflow_the_supervisor(
    bantz: Bantz,
) -> None:
    # Before: accepted, and its first failure raised "year 275817 is out of range" in the
    # supervisor, which then could not start again on that home.
    bantz.drop("a-far.yaml", "run: exit 3\nretries: 1\nretry_delay: 100000000d\n")
    bantz.drop("b-good.yaml", "run: echo good\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    error = (bantz.home / "spool" / "rejected" / "a-far.yaml.error.txt").read_text()
    assert "retry_delay: too long: at most 366d, got '100000000d'" in error
    assert [s["status"] for s in states(bantz.home)] == ["done"]
    assert bantz("run", "--once", timeout=60).returncode == 0  # the home still starts


def test_the_doubling_of_retry_delay_stops_at_max_retry_delay(bantz: Bantz) -> None:
    # retry_delay 0.2s doubled: 0.2, 0.4, 0.8, 1.6 s. Capped at 0.3s, the last wait is 0.3s.
    bantz.drop("flaky.yaml", "run: exit 1\nretries: 4\nretry_delay: 0.2s\nmax_retry_delay: 0.3s\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode in (0, 1), res.stderr
    events = [e for e in journal(bantz.home) if e.get("event") == "transition"]
    waits = []
    for before, after in itertools.pairwise(events):
        if before["status"] == "queued" and str(before.get("reason")).startswith("retry at"):
            assert after["status"] == "running"
            waits.append(after["t"] - before["t"])
    assert len(waits) == 4, events
    assert waits[0] >= 0.15  # the first wait is retry_delay
    assert all(w >= 0.25 for w in waits[1:])  # the cap is a wait too, not skipped
    assert waits[-1] < 1.5, waits  # uncapped it would be 1.6s at least
    assert states(bantz.home)[0]["failures"] == 5


# 3. a spool file name that is not UTF-8 ----------------------------------------------------


def test_a_spool_name_that_is_not_utf8_runs_under_a_safe_name(bantz: Bantz) -> None:
    spool = os.fsencode(bantz.home / "spool")
    fd = os.open(spool + b"/\xff\xfe.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"run: echo from-a-bad-name\n")
    os.close(fd)
    # The safe name is taken already: the file must get the next one, replacing nothing.
    fd = os.open(spool + b"/%FF%FE.yaml", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"run: echo the-real-one\n")
    os.close(fd)
    # The bad name is the older file, so the intake (oldest first) renames it while the safe
    # name is still taken: with equal mtimes the real one could go first, free its name, and
    # the renamed file would rightly get it (nothing replaced, but not this test's case).
    now = time.time()
    os.utime(spool + b"/\xff\xfe.yaml", (now - 10, now - 10))
    os.utime(spool + b"/%FF%FE.yaml", (now - 5, now - 5))
    bantz.drop("later.yaml", "run: echo later\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    got = {s["source"]: (s["status"], s["name"]) for s in states(bantz.home)}
    assert got == {
        "%FF%FE.yaml": ("done", "%FF%FE"),
        "%FF%FE-2.yaml": ("done", "%FF%FE-2"),
        "later.yaml": ("done", "later"),
    }
    outputs = {s["source"]: bantz.output(s["id"]) for s in states(bantz.home)}
    assert "the-real-one" in outputs["%FF%FE.yaml"]
    assert "from-a-bad-name" in outputs["%FF%FE-2.yaml"]
    assert os.listdir(spool) == [b"rejected"]
    assert "its name is not UTF-8; renamed to %FF%FE-2.yaml" in res.stderr


# 4. parallel submits of one name -----------------------------------------------------------


def test_twenty_parallel_submits_of_one_name_keep_every_file(bantz: Bantz, tmp_path: Path) -> None:
    files = []
    for i in range(20):
        folder = tmp_path / f"dir{i}"
        folder.mkdir()
        (folder / "job.yaml").write_text(f"run: echo job-{i}\n")
        files.append(folder / "job.yaml")
    procs = [
        subprocess.Popen(
            bantz.argv("submit", str(f)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=bantz.env,
            stdin=subprocess.DEVNULL,
        )
        for f in files
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    spool = bantz.home / "spool"
    assert not [n for n in os.listdir(spool) if n != "rejected"]  # all taken in, no temp left
    # Each submit took its own file in and named the task it really became.
    said = [int(out.split("submitted as #")[1].split()[0]) for out, _ in outs]
    assert sorted(said) == list(range(1, 21)), outs
    for f, task_id in zip(files, said, strict=True):
        assert (bantz.task_dir(task_id) / "task.yaml").read_text() == f.read_text()

    res = bantz("run", "--once", timeout=120)
    assert res.returncode == 0, res.stderr
    done = states(bantz.home)
    assert len(done) == 20 and all(s["status"] == "done" for s in done)
    # The last line before the attempt's end marker is what the task echoed.
    echoed = sorted(bantz.output(s["id"]).strip().splitlines()[-2] for s in done)
    assert echoed == sorted(f"job-{i}" for i in range(20))


# 8. no `name:` key, every worker kind ------------------------------------------------------


def test_unnamed_tasks_of_every_worker_kind_run(bantz: Bantz, tmp_path: Path) -> None:
    pytest.importorskip("openai")
    from tests.llm_server import FakeLLM

    server = FakeLLM(models=("local",))
    server.start()
    try:
        (bantz.home / "config.toml").write_text(
            config_text(
                "max_parallel = 2",
                "[llm]",
                f'base_url = "{server.base_url}"',
                'model = "local"',
                'timeout = "10s"',
            )
        )
        (tmp_path / "unnamedmod.py").write_text(
            "def go(ctx, args):\n    return {'summary': 'py ' + str(args['n'])}\n"
        )
        (tmp_path / "doc.md").write_text("A short note about the plan.\n")
        bantz.drop("notes-run.yaml", "run: echo ran\n")
        bantz.drop(
            "notes-steps.yaml",
            "steps:\n  - {name: one, run: echo step-one}\n  - {run: echo step-two}\n",
        )
        bantz.drop("notes-python.yaml", f"python: unnamedmod:go\ncwd: {tmp_path}\nargs: {{n: 7}}\n")
        bantz.drop("notes.yaml", f"cwd: {tmp_path}\nllm:\n  prompt: Summarise.\n  inputs: doc.md\n")
        res = bantz("run", "--once", timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        got = {s["name"]: (s["kind"], s["status"]) for s in states(bantz.home)}
        assert got == {
            "notes-run": ("run", "done"),
            "notes-steps": ("steps", "done"),
            "notes-python": ("python", "done"),
            "notes": ("llm", "done"),
        }, [(s["name"], s.get("reason"), bantz.output(s["id"])) for s in states(bantz.home)]
        by_name = {s["name"]: s["id"] for s in states(bantz.home)}
        assert "step-two" in bantz.output(by_name["notes-steps"])
        result = json.loads((bantz.task_dir(by_name["notes-python"]) / "result.json").read_text())
        assert result == {"summary": "py 7"}
        assert (bantz.task_dir(by_name["notes"]) / "result.md").read_text().startswith("[local]")
    finally:
        server.stop()


# 11. submit into a home it cannot write ----------------------------------------------------


def _submit_failure(res: subprocess.CompletedProcess[str], name: str) -> str:
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"{name}: not submitted: cannot write to ")
    return lines[0]


@pytest.fixture
def mount_point(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "1m") as mnt:
        yield mnt


def test_submit_on_a_full_disk_says_so_in_one_line(mount_point: Path, tmp_path: Path) -> None:
    home = mount_point / "home"
    Home(home).ensure()
    with open(mount_point / "filler", "wb") as f:  # fill the tmpfs to the last byte
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    task = tmp_path / "job.yaml"
    task.write_text("run: echo " + "x" * 8000 + "\n")  # more than the last free block
    line = _submit_failure(Bantz(home)("submit", str(task)), str(task))
    assert "No space left on device" in line and "free some space" in line
    assert [n for n in os.listdir(home / "spool") if n != "rejected"] == []


def test_submit_into_a_read_only_home_says_so_in_one_line(
    mount_point: Path, tmp_path: Path
) -> None:
    home = mount_point / "home"
    Home(home).ensure()
    subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True)
    task = tmp_path / "job.yaml"
    task.write_text("run: echo hi\n")
    line = _submit_failure(Bantz(home)("submit", str(task)), str(task))
    assert "Read-only file system" in line and "a home of your own" in line


# Tests run as root, for whom permissions do not apply: the CLI runs in a process that drops
# to user nobody first. /root (the interpreter) is closed to nobody, so the modules the
# command needs are imported before the switch; the command itself is the real `main`.
_AS_NOBODY = textwrap.dedent(
    """
    import os, sys, pwd
    import bantzd.cli, bantzd.cli.tasks, bantzd.supervisor.intake, bantzd.queue.taskfile
    import ctypes, secrets, errno, shutil, yaml, click
    nobody = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(nobody.pw_gid)
    os.setuid(nobody.pw_uid)
    bantzd.cli.main(sys.argv[1:], prog_name="bantzd")
    """
)


def test_submit_into_another_users_home_says_so_in_one_line() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to user nobody")
    base = Path(tempfile.mkdtemp(prefix="bantz-other-", dir="/tmp"))
    try:
        os.chmod(base, 0o755)
        home = base / "home"  # root's home, as another user's would be to nobody
        Home(home).ensure()
        for folder in (home, home / "spool"):  # readable by others: only writing is refused
            os.chmod(folder, 0o755)
        task = base / "job.yaml"
        task.write_text("run: echo hi\n")
        os.chmod(task, 0o644)
        res = subprocess.run(
            [sys.executable, "-c", _AS_NOBODY, "--home", str(home), "submit", str(task)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        line = _submit_failure(res, str(task))
        assert "Permission denied" in line and "a home of your own" in line
        assert [n for n in os.listdir(home / "spool") if n != "rejected"] == []
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


# the pieces under these tests ----------------------------------------------------------------


def test_safe_name_escapes_only_the_bytes_that_are_not_utf8() -> None:
    from bantzd.supervisor.intake import safe_name

    assert safe_name(os.fsdecode(b"\xff\xfe.yaml")) == "%FF%FE.yaml"
    assert safe_name(os.fsdecode(b"caf\xc3\xa9-\xed\xa0\x80.yml")) == "café-%ED%A0%80.yml"
    assert safe_name("plain.yaml") == "plain.yaml"


@pytest.mark.parametrize("way", ["renameat2", "link", "check-and-rename"])
def test_move_exclusive_never_replaces_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    import errno

    from bantzd.supervisor import intake

    if way != "renameat2":
        monkeypatch.setattr(intake, "_renameat2", lambda: None)  # an old libc
    elif intake._renameat2() is None:
        pytest.skip("no renameat2 in this libc")
    if way == "check-and-rename":

        def no_links(*args: object, **kwargs: object) -> None:
            raise OSError(errno.EPERM, "Operation not permitted")

        monkeypatch.setattr(intake.os, "link", no_links)  # a filesystem without hard links
    src, taken, free = tmp_path / "src", tmp_path / "taken", tmp_path / "free"
    src.write_text("new")
    taken.write_text("old")
    with pytest.raises(FileExistsError):
        intake.move_exclusive(src, taken)
    assert taken.read_text() == "old" and src.read_text() == "new"
    intake.move_exclusive(src, free)
    assert free.read_text() == "new" and not src.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free", "taken"]
