"""The attempt's exit record (exit.json): exit code vs signal, durability, and start errors.

Through the real CLI; the record's own decoding is also checked as a pure function.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from bantzd.workers.spawn import _from_shell_status
from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow


def run_once(bantz: Bantz) -> None:
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr


def test_exit_143_from_the_script_is_an_exit_code(bantz: Bantz) -> None:
    bantz.drop("exit143.yaml", "run: exit 143\n")
    bantz.drop("exit130.yaml", "run: exit 130\n")
    run_once(bantz)
    for task_id, code in ((1, 143), (2, 130)):
        state = bantz.state(task_id)
        assert state["status"] == "failed"
        assert state["exit_code"] == code and state["signal"] is None, state
        assert state["error"] == f"exit {code}"
        record = json.loads((bantz.task_dir(task_id) / "exit.json").read_text())
        assert record["rc"] == code and record["sig"] == 0


def test_a_real_signal_death_is_recorded_as_a_signal(bantz: Bantz) -> None:
    bantz.drop("segv.yaml", "run: kill -SEGV $$\n")
    # Stopped by SIGTERM sent to its group (the timeout): a signal, also when the task
    # traps it and exits 143 itself, as well-behaved tasks do.
    bantz.drop("term.yaml", "timeout: 1s\nrun: sleep 300\n")
    bantz.drop(
        "trapped.yaml",
        "timeout: 1s\nrun: trap 'exit 143' TERM; while :; do sleep 0.05; done\n",
    )
    run_once(bantz)
    segv = bantz.state(1)
    assert segv["signal"] == signal.SIGSEGV and segv["exit_code"] is None, segv
    assert segv["error"] == "killed by SIGSEGV"
    for task_id in (2, 3):
        state = bantz.state(task_id)
        assert state["status"] == "failed" and state["error"].startswith("timeout"), state
        assert state["signal"] == signal.SIGTERM and state["exit_code"] is None, state


def test_the_record_decides_after_a_supervisor_restart(bantz: Bantz) -> None:
    """The supervisor that started the attempts is SIGKILLed; the attempts end while a
    second one adopted them (not their parent): only exit.json tells their outcome."""
    wait_go = 'while [ ! -e "$BANTZ_TASK_DIR/go" ]; do sleep 0.05; done; '
    bantz.drop("a-exit.yaml", f"run: |\n  {wait_go}exit 143\n")
    bantz.drop("b-segv.yaml", f"run: |\n  {wait_go}kill -SEGV $$\n")
    first = bantz.start("run")
    wait_for(lambda: bantz.status_of(1) == bantz.status_of(2) == "running", what="running")
    wait_for(
        lambda: all((bantz.task_dir(i) / "worker.lock").exists() for i in (1, 2)),
        what="worker.lock",
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the second supervisor")
    for i in (1, 2):
        (bantz.task_dir(i) / "go").write_text("")
    wait_for(lambda: bantz.status_of(1) == bantz.status_of(2) == "failed", what="failed")
    assert bantz.state(1)["exit_code"] == 143 and bantz.state(1)["signal"] is None
    assert bantz.state(2)["signal"] == signal.SIGSEGV


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def _strace(bantz: Bantz, trace: Path, *args: str) -> list[str]:
    return [
        "strace",
        "-f",
        "-qq",
        "-y",
        "-o",
        str(trace),
        "-e",
        "trace=execve,openat,rename,renameat,renameat2,fsync,fdatasync",
        *bantz.argv(*args),
    ]


def _first(lines: list[str], pattern: str, start: int = 0) -> int:
    for n in range(start, len(lines)):
        if re.search(pattern, lines[n]):
            return n
    raise AssertionError(f"no {pattern!r} in the trace:\n" + "\n".join(lines[-40:]))


def test_an_orphaned_wrapper_makes_its_record_durable(bantz: Bantz) -> None:
    """With its supervisor gone, the record is the only word on the attempt: written to a
    temp name, renamed, then fsynced with its folder before the wrapper exits."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (CI installs it with .ci/install-strace)")
    go = bantz.home.parent / "go"
    bantz.drop("rec.yaml", f"run: while [ ! -e {go} ]; do sleep 0.05; done; exit 5\n")
    trace = bantz.home.parent / "trace.txt"
    tracer = subprocess.Popen(
        _strace(bantz, trace, "run"),
        env=bantz.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: bantz.status_of(1) == "running", timeout=30, what="the task to run")
        supervisor = int(bantz.home.joinpath("bantzd.pid").read_text())
        os.kill(supervisor, signal.SIGKILL)  # strace -f goes on following the wrapper
        # strace may report the thread-group leader's own death only later, and until then
        # it is a zombie, which `kill -0` still finds: the wrapper must take it for gone.
        wait_for(lambda: "+++ killed by SIGKILL" in trace.read_text(), timeout=10, what="death")
        go.touch()
        tracer.wait(30)
    finally:
        tracer.kill()
        tracer.wait(10)
    tdir = str(bantz.task_dir(1).resolve())
    rec = re.escape(f"{tdir}/exit.json")
    lines = trace.read_text().splitlines()
    renamed = _first(lines, rf'rename\w*\(.*"{rec}\.tmp".*"{rec}"')
    # After the rename, one process (the wrapper's `sync`) fsyncs the record, then its folder.
    synced_file = _first(lines, rf"f(data)?sync\(\d+<{rec}>\)", renamed)
    syncer = lines[synced_file].split()[0]
    _first(lines, rf"^{syncer}\s.*f(data)?sync\(\d+<{re.escape(tdir)}>\)", synced_file)
    assert not (bantz.task_dir(1) / "exit.json.tmp").exists()
    record = json.loads((bantz.task_dir(1) / "exit.json").read_text())
    assert record == {"rc": 5, "sig": 0, "attempt": 1, "step": -1}
    run_once(bantz)  # the next supervisor takes the outcome from the record
    assert bantz.status_of(1) == "failed" and bantz.state(1)["exit_code"] == 5


def test_a_watched_wrapper_leaves_the_outcome_to_its_supervisor(bantz: Bantz) -> None:
    """While the supervisor runs, it reaps the wrapper and records the outcome durably
    itself: the wrapper writes its record plainly, with no mv or sync process."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed (CI installs it with .ci/install-strace)")
    bantz.drop("rec.yaml", "run: exit 5\n")
    trace = bantz.home.parent / "trace.txt"
    res = subprocess.run(
        _strace(bantz, trace, "run", "--once"),
        env=bantz.env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "failed" and bantz.state(1)["exit_code"] == 5
    text = trace.read_text()
    assert not re.search(r'execve\("[^"]*/(mv|sync)"', text), "the wrapper ran mv or sync"
    record = json.loads((bantz.task_dir(1) / "exit.json").read_text())
    assert record == {"rc": 5, "sig": 0, "attempt": 1, "step": -1}


def test_cwd_naming_a_file_says_so(bantz: Bantz, tmp_path: Path) -> None:
    afile = tmp_path / "notafolder.txt"
    afile.write_text("x")
    bantz.drop("cwdfile.yaml", f"cwd: {afile}\nrun: 'true'\n")
    bantz.drop("cwdmissing.yaml", f"cwd: {tmp_path / 'missing'}\nrun: 'true'\n")
    run_once(bantz)
    assert bantz.state(1)["status"] == "failed"
    assert bantz.state(1)["error"] == f"cwd is not a folder: {afile}"
    assert f"cwd is not a folder: {afile}" in bantz.output(1)
    assert bantz.state(2)["error"] == f"cwd does not exist: {tmp_path / 'missing'}"


@pytest.mark.parametrize(
    ("rc", "sig", "exit_code", "signum"),
    [
        (0, 0, 0, None),
        (3, 0, 3, None),
        (143, 0, 143, None),  # `exit 143`: no SIGTERM reached the group
        (143, 15, None, 15),  # SIGTERM reached the group
        (130, 2, None, 2),
        (139, 0, None, 11),  # a segfault is never a deliberate exit code
        (137, 0, None, 9),  # the OOM killer
        (143, None, None, 15),  # a record from before `sig` existed: as before
        (255, 0, 255, None),
        (200, 0, 200, None),
    ],
)
def test_decoding_the_wrappers_status(
    rc: int, sig: int | None, exit_code: int | None, signum: int | None
) -> None:
    out = _from_shell_status(rc, sig)
    assert (out.exit_code, out.signal) == (exit_code, signum)
