"""Processes that leave the attempt's process group (`setsid`, double forks) are ended.

Every test runs twice: with a cgroup per attempt (skipped where cgroup v2 cannot be used
here) and with BANTZ_NO_CGROUP=1 (subreaper + the BANTZ_ATTEMPT_TOKEN environment marker).
Real CLI, real processes; the escaped process writes its pid to a file in the task folder.
"""

from __future__ import annotations

import signal
import sys
import tempfile
from pathlib import Path

import pytest

from bantzd.workers import escape
from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow


def _cgroups_usable() -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        base, _kill = escape.find_cgroup_base(Path(tmp))
        if base is None:
            return False
        escape.remove_cgroup(base)
        return True


CGROUPS = _cgroups_usable()


@pytest.fixture(params=["cgroup", "fallback"])
def mode(request: pytest.FixtureRequest, bantz: Bantz) -> str:
    if request.param == "cgroup":
        if not CGROUPS:
            pytest.skip("cgroup v2 cannot be used here (not root, no delegated cgroup)")
        bantz.env.pop(escape.NO_CGROUP_ENV, None)
    else:
        bantz.env[escape.NO_CGROUP_ENV] = "1"
    return request.param


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie has ended: it holds no fd, no lock, no memory)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return False
    return data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


# Starts a process in a session of its own (so no killpg of the attempt reaches it) that
# keeps the attempt's fds, worker.lock's included, and waits until its pid is on disk.
ESCAPE = """\
setsid sh -c 'echo $$ > "$BANTZ_TASK_DIR/escaped.$BANTZ_ATTEMPT"; exec sleep 300' &
while [ ! -s "$BANTZ_TASK_DIR/escaped.$BANTZ_ATTEMPT" ]; do sleep 0.02; done
"""


def task(script: str, **fields: str) -> str:
    """A task file whose `run:` is the shell script `script` (a YAML block)."""
    head = "".join(f"{k}: {v}\n" for k, v in fields.items())
    return head + "run: |\n" + "".join(f"  {line}\n" for line in script.splitlines())


def escaped_pids(bantz: Bantz, task_id: int) -> list[int]:
    pids = [read_pid(p) for p in sorted(bantz.task_dir(task_id).glob("escaped.*"))]
    return [p for p in pids if p is not None]


def lock_fields(bantz: Bantz, task_id: int) -> list[str]:
    return (bantz.task_dir(task_id) / "worker.lock").read_text().split()


def check_mode(bantz: Bantz, task_id: int, mode: str) -> None:
    """The attempt really ran the way the test says (a cgroup, or none)."""
    fields = lock_fields(bantz, task_id)
    assert len(fields) == 5, fields
    assert len(fields[3]) == 16  # the token
    if mode == "cgroup":
        assert fields[4] != "-" and "/bantzd/" in fields[4]
    else:
        assert fields[4] == "-"


def test_escaped_process_ends_with_the_attempt_and_the_retry_starts(
    bantz: Bantz, mode: str
) -> None:
    # Attempt 1 escapes and fails; attempt 2 must be able to take worker.lock, escapes
    # again and succeeds.
    script = ESCAPE + "[ $BANTZ_ATTEMPT -ge 2 ] || exit 1"
    bantz.drop("escape.yaml", task(script, retries="1", retry_delay="0s"))
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert state["attempts"] == 2
    check_mode(bantz, 1, mode)
    pids = escaped_pids(bantz, 1)
    assert len(pids) == 2
    wait_for(lambda: not any(alive(p) for p in pids), timeout=5, what="escaped sleeps gone")


def test_escaped_process_ends_when_the_task_is_cancelled(bantz: Bantz, mode: str) -> None:
    bantz.drop("cancel.yaml", task(ESCAPE + "sleep 300"))
    sup = bantz.start("run")
    wait_for(lambda: escaped_pids(bantz, 1), what="the escaped pid")
    pid = escaped_pids(bantz, 1)[0]
    assert alive(pid)
    check_mode(bantz, 1, mode)
    res = bantz("cancel", "1")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for(lambda: bantz.status_of(1) == "cancelled", what="cancelled")
    wait_for(lambda: not alive(pid), timeout=5, what="escaped sleep gone")
    assert sup.poll() is None


def test_escaped_process_ends_when_the_task_times_out(bantz: Bantz, mode: str) -> None:
    bantz.drop("slow.yaml", task(ESCAPE + "sleep 300", timeout="1s"))
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "failed" and "timeout" in state["error"], state
    check_mode(bantz, 1, mode)
    pid = escaped_pids(bantz, 1)[0]
    wait_for(lambda: not alive(pid), timeout=5, what="escaped sleep gone")


def test_escape_is_ended_by_a_restarted_supervisor(bantz: Bantz, mode: str) -> None:
    """SIGKILL the supervisor while the attempt runs; restart; let the attempt end.

    The new supervisor is nobody's parent: it adopts the attempt from worker.lock (which
    names its marker and cgroup), sees the wrapper's exit record although the escaped
    process still holds worker.lock, and ends the escaped process.
    """
    flag = bantz.task_dir(1) / "go"
    wait_go = 'while [ ! -e "$BANTZ_TASK_DIR/go" ]; do sleep 0.05; done'
    bantz.drop("adopt.yaml", task(ESCAPE + wait_go))
    first = bantz.start("run")
    wait_for(lambda: escaped_pids(bantz, 1), what="the escaped pid")
    pid = escaped_pids(bantz, 1)[0]
    check_mode(bantz, 1, mode)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    second = bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the second supervisor")
    flag.write_text("")
    wait_for(lambda: bantz.status_of(1) == "done", what="done after adoption")
    wait_for(lambda: not alive(pid), timeout=5, what="escaped sleep gone")
    assert second.poll() is None


def test_a_child_that_cleared_its_environment_is_still_found(bantz: Bantz, mode: str) -> None:
    """`env -i` drops the marker; the child is still found through its parent (marker) or
    the cgroup. Only a process that clears its environment *and* starts its own session
    with no marked ancestor left escapes the fallback (documented)."""
    script = """\
f="$BANTZ_TASK_DIR/escaped.1"
setsid sh -c 'env -i /bin/sh -c "echo \\$\\$ > $1; exec sleep 300"; sleep 300' sh "$f" &
while [ ! -s "$BANTZ_TASK_DIR/escaped.1" ]; do sleep 0.02; done
"""
    bantz.drop("envi.yaml", task(script))
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done", bantz.output(1)
    pid = escaped_pids(bantz, 1)[0]
    environ = b""
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        pass
    assert escape.TOKEN_ENV.encode() not in environ
    wait_for(lambda: not alive(pid), timeout=5, what="env -i sleep gone")


def test_orphans_are_reaped_not_left_as_zombies(bantz: Bantz, mode: str) -> None:
    """The supervisor is a subreaper: an escaped process that ends by itself while the
    supervisor runs becomes its zombie child, and is reaped; the wrapper's status is not
    stolen (the task's own exit code is recorded)."""
    script = """\
(setsid sh -c 'echo $$ > "$BANTZ_TASK_DIR/escaped.1"; sleep 0.3' &)
while [ ! -s "$BANTZ_TASK_DIR/escaped.1" ]; do sleep 0.02; done
sleep 1
exit 7
"""
    bantz.drop("zombie.yaml", task(script))
    sup = bantz.start("run")
    wait_for(lambda: escaped_pids(bantz, 1), what="the escaped pid")
    pid = escaped_pids(bantz, 1)[0]
    wait_for(lambda: bantz.status_of(1) == "failed", what="failed")
    assert bantz.state(1)["exit_code"] == 7
    # Reaped by the supervisor, not left as its zombie child.
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=5, what="zombie reaped")
    assert sup.poll() is None


def test_memory_of_an_escaped_process_counts_in_its_cgroup(bantz: Bantz) -> None:
    """With a cgroup, a process that left the session and whose parent died still counts
    toward `resources: {memory: ...}` (without one it is the supervisor's child, and not
    counted: documented)."""
    if not CGROUPS:
        pytest.skip("cgroup v2 cannot be used here")
    bantz.env.pop(escape.NO_CGROUP_ENV, None)
    (bantz.home / "config.toml").write_text(
        'stop_grace = "2s"\nnice = 0\nscan_interval = "0.5s"\nprobe_interval = "0.2s"\n'
        "max_parallel = 1\n[throttle]\nmax_load = 1000\n"
    )
    hog = "import time; x = bytearray(300 << 20); x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
    script = f'(setsid {sys.executable} -c "{hog}" &)\nsleep 60\n'
    bantz.drop("hog.yaml", task(script, resources="{memory: 100MiB}"))
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "failed" and state["error"] == "memory limit", state
