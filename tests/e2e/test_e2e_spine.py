"""End-to-end: the real CLI, real supervisor processes, real signals, real files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import Bantz, config_text, wait_for

pytestmark = pytest.mark.slow


def run_once(bantz: Bantz, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    res = bantz("run", "--once", timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res


def test_valid_tasks_run_and_are_recorded(bantz: Bantz) -> None:
    bantz.drop("hello.yaml", "run: echo hello $BANTZ_TASK_ID attempt $BANTZ_ATTEMPT\n")
    bantz.drop("argv.yaml", "run: [printf, '%s|', a b, c]\n")
    bantz.drop("fails.yaml", "run: exit 3\n")
    run_once(bantz)
    states = {bantz.state(i)["name"]: bantz.state(i) for i in (1, 2, 3)}
    assert states["hello"]["status"] == "done"
    assert states["argv"]["status"] == "done"
    assert states["fails"]["status"] == "failed"
    assert states["fails"]["exit_code"] == 3
    outputs = {bantz.state(i)["name"]: bantz.output(i) for i in (1, 2, 3)}
    assert "=== bantzd: attempt 1" in outputs["hello"]
    assert "attempt 1\n" in outputs["hello"] and "hello " in outputs["hello"]
    assert "a b|c|" in outputs["argv"]
    # The spool file moved, verbatim, into the task folder.
    assert (bantz.task_dir(1) / "task.yaml").read_text().startswith("run: echo hello")
    assert not list((bantz.home / "spool").glob("*.yaml"))
    events = [json.loads(line) for line in (bantz.home / "journal.jsonl").read_text().splitlines()]
    moves = [(e["id"], e["status"]) for e in events if e.get("event") == "transition"]
    assert (3, "running") in moves and (3, "failed") in moves


def test_invalid_files_are_rejected_and_others_still_run(bantz: Bantz) -> None:
    spool = bantz.home / "spool"
    bantz.drop("badyaml.yaml", "run: [unclosed\nname: x\n")
    bantz.drop("list.yaml", "- run: true\n")
    bantz.drop("typo.yaml", "run: true\nretires: 2\n")
    bantz.drop("empty.yaml", "")
    (spool / "latin1.yaml").write_bytes(b"run: echo caf\xe9\n")
    with open(spool / "huge.yaml", "wb") as f:
        f.write(b"# " + b"x" * (50 * 1024 * 1024) + b"\nrun: true\n")
    bantz.drop("good.yaml", "run: 'true'\n")
    run_once(bantz)
    rejected = bantz.home / "spool" / "rejected"
    for name in ("badyaml", "list", "typo", "empty", "latin1", "huge"):
        assert (rejected / f"{name}.yaml").exists(), name
        assert (rejected / f"{name}.yaml.error.txt").exists(), name
    assert "line 2, column 5" in (rejected / "badyaml.yaml.error.txt").read_text()
    assert "retries" in (rejected / "typo.yaml.error.txt").read_text()
    assert (rejected / "latin1.yaml").read_bytes() == b"run: echo caf\xe9\n"
    assert bantz.state(1)["name"] == "good" and bantz.status_of(1) == "done"


def test_ignored_names_wait_until_renamed(bantz: Bantz) -> None:
    spool = bantz.home / "spool"
    for name in (".hidden.yaml", "partial.yaml.part", "x.yaml.tmp", "backup.yaml~"):
        (spool / name).write_text("run: 'true'\n")
    run_once(bantz)
    assert not (bantz.home / "tasks" / "1").exists()
    os.rename(spool / "partial.yaml.part", spool / "partial.yaml")
    run_once(bantz)
    assert bantz.status_of(1) == "done"


def test_bad_commands_fail_the_task_not_the_supervisor(bantz: Bantz, tmp_path: Path) -> None:
    bantz.drop("nocmd.yaml", "run: [no-such-command-xyz, arg]\n")
    bantz.drop("nocwd.yaml", f"run: 'true'\ncwd: {tmp_path}/missing\n")
    bantz.drop("shellnf.yaml", "run: no-such-command-xyz\n")
    bantz.drop("ok.yaml", "run: 'true'\n")
    run_once(bantz)
    by_name = {bantz.state(i)["name"]: bantz.state(i) for i in range(1, 5)}
    assert by_name["nocmd"]["status"] == "failed"
    assert "command not found: no-such-command-xyz" in by_name["nocmd"]["error"]
    assert "cwd does not exist" in by_name["nocwd"]["error"]
    assert by_name["shellnf"]["exit_code"] == 127
    assert "command not found" in by_name["shellnf"]["error"]
    assert by_name["ok"]["status"] == "done"


def test_timeout_kills_a_task_that_ignores_sigterm(bantz: Bantz) -> None:
    bantz.drop(
        "stubborn.yaml",
        textwrap.dedent("""\
        run: trap '' TERM; echo started; while true; do sleep 0.1; done
        timeout: 1s
    """),
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "failed"
    assert state["error"] == "timeout after 1s"
    assert state["signal"] == signal.SIGKILL


def test_grandchildren_are_killed_when_the_main_process_ends(bantz: Bantz, tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    bantz.drop("forker.yaml", f"run: sleep 300 & echo $! > {pidfile}; exit 0\n")
    run_once(bantz)
    assert bantz.status_of(1) == "done"
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A zombie waiting for init to reap it is dead too.
        try:
            return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
        except OSError:
            return True

    wait_for(gone, timeout=10, what="the grandchild to be killed")


def test_large_output_is_logged_without_trouble(bantz: Bantz) -> None:
    bantz.drop("loud.yaml", "run: head -c 104857600 /dev/zero | tr '\\0' 'x'; echo; echo end\n")
    bantz.drop("after.yaml", "run: echo fine\n")
    run_once(bantz, timeout=120)
    assert bantz.status_of(1) == "done"
    assert (bantz.task_dir(1) / "output.log").stat().st_size > 100 * 1024 * 1024
    assert bantz.status_of(2) == "done"


def test_no_supervisor_fd_leaks_into_a_task(bantz: Bantz) -> None:
    bantz.drop("fds.yaml", "run: ls -l /proc/self/fd/\n")
    run_once(bantz)
    out = bantz.output(1)
    targets = [line.split("->", 1)[1].strip() for line in out.splitlines() if "->" in line]
    # stdin is /dev/null, stdout/stderr the log, one fd holds the worker lock; ls's own
    # directory fd shows up as /proc/<pid>/fd.
    allowed = ("/dev/null", "output.log", "worker.lock", "/fd")
    leaked = [t for t in targets if not t.endswith(allowed)]
    assert not leaked, out


def test_retries_with_backoff_then_success(bantz: Bantz, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    bantz.drop(
        "flaky.yaml",
        textwrap.dedent(f"""\
        run: if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi
        retries: 2
        retry_delay: 1s
    """),
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done"
    assert state["attempts"] == 2
    assert "=== bantzd: attempt 2" in bantz.output(1)


def test_retries_exhausted_fail(bantz: Bantz) -> None:
    bantz.drop("bad.yaml", "run: exit 2\nretries: 1\nretry_delay: 0.2s\n")
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "failed" and state["attempts"] == 2


def test_a_worker_says_why_it_failed_in_reason_txt(bantz: Bantz) -> None:
    # Attempt 1 explains itself; attempt 2 does not, and must not inherit the old reason.
    bantz.drop(
        "upload.yaml",
        "run: |\n"
        '  if [ -e "$BANTZ_TASK_DIR/once" ]; then exit 3; fi\n'
        '  touch "$BANTZ_TASK_DIR/once"\n'
        '  printf "bucket quota reached\\n  (12 GiB of 12)\\n" > "$BANTZ_TASK_DIR/reason.txt"\n'
        "  exit 1\n",
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["error"] == "exit 1: bucket quota reached (12 GiB of 12)"
    assert bantz("retry", "1").returncode == 0
    run_once(bantz)
    assert bantz.state(1)["error"] == "exit 3"


def test_dependencies_order_and_failure(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop("a.yaml", f"name: second\nafter: [first]\nrun: echo second >> {ledger}\n")
    bantz.drop("b.yaml", f"name: first\nrun: sleep 0.3; echo first >> {ledger}\n")
    bantz.drop("c.yaml", "name: broken\nrun: exit 1\n")
    bantz.drop("d.yaml", "name: needs-broken\nafter: broken\nrun: 'true'\n")
    bantz.drop("e.yaml", "name: orphan\nafter: [nobody]\nrun: 'true'\n")
    run_once(bantz)
    assert ledger.read_text().split() == ["first", "second"]
    by_name = {bantz.state(i)["name"]: bantz.state(i) for i in range(1, 6)}
    assert by_name["needs-broken"]["status"] == "failed"
    assert by_name["needs-broken"]["reason"] == "dependency failed: broken"
    assert by_name["orphan"]["status"] == "queued"
    assert by_name["orphan"]["reason"] == "after: nobody (no such task yet)"


def test_priority_then_id_order(bantz: Bantz, tmp_path: Path) -> None:
    (bantz.home / "config.toml").write_text(config_text("max_parallel = 1"))
    ledger = tmp_path / "ledger"
    for name, prio in (
        ("low", "low"),
        ("n1", "normal"),
        ("high", "high"),
        ("n2", "normal"),
        ("seven", "7"),
    ):
        bantz.drop(
            f"{name}.yaml", f"name: {name}\npriority: {prio}\nrun: echo {name} >> {ledger}\n"
        )
    run_once(bantz)
    assert ledger.read_text().split() == ["high", "seven", "n1", "n2", "low"]


def test_steps_run_in_order(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop(
        "steps.yaml",
        textwrap.dedent(f"""\
        steps:
          - {{name: fetch, run: echo fetch >> {ledger}}}
          - {{name: build, run: echo build $BANTZ_STEP >> {ledger}}}
          - {{name: ship, run: [sh, -c, "echo ship >> {ledger}"]}}
    """),
    )
    run_once(bantz)
    assert ledger.read_text().splitlines() == ["fetch", "build build", "ship"]
    assert bantz.state(1)["steps_done"] == ["fetch", "build", "ship"]
    assert bantz.output(1).count("=== bantzd: attempt 1 · ") == 3  # one marker per step
    assert bantz.output(1).count("=== bantzd: attempt 1 ended: exit code 0") == 1


def test_second_supervisor_refuses_to_start(bantz: Bantz) -> None:
    proc = bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the pid file")
    second = bantz("run", "--once", timeout=30)
    assert second.returncode == 1
    assert f"already running on this home (pid {proc.pid})" in second.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.mark.parametrize(
    ("sig", "code"),
    # Ctrl-C exits 130 as shells expect; SIGTERM 0, which cron recipes rely on.
    [(signal.SIGTERM, 0), (signal.SIGINT, 130)],
    ids=["sigterm", "ctrl-c"],
)
def test_a_stop_signal_stops_cleanly_and_requeues_running_tasks(
    bantz: Bantz, sig: int, code: int
) -> None:
    proc = bantz.start("run")
    bantz.drop("long.yaml", "run: sleep 300\n")
    wait_for(lambda: bantz.status_of(1) == "running", what="the task to start")
    proc.send_signal(sig)
    assert proc.wait(20) == code
    state = bantz.state(1)
    assert state["status"] == "queued" and state["reason"] == "interrupted"
    assert state["interruptions"] == 1
    assert not (bantz.home / "bantzd.pid").exists()


def test_cancel_with_and_without_supervisor(bantz: Bantz) -> None:
    bantz.drop("later.yaml", "run: 'true'\nafter: [never]\n")
    run_once(bantz)
    res = bantz("cancel", "1")
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "cancelled"
    assert bantz("cancel", "1").returncode == 1
    assert bantz("cancel", "99").returncode == 3

    proc = bantz.start("run")
    bantz.drop("long.yaml", "run: sleep 300\n")
    wait_for(lambda: bantz.status_of(2) == "running", what="the task to start")
    res = bantz("cancel", "long")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: bantz.status_of(2) == "cancelled", timeout=10, what="cancellation")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_retry_and_pause_commands(bantz: Bantz) -> None:
    bantz.drop("once.yaml", "run: exit 1\n")
    run_once(bantz)
    assert bantz.status_of(1) == "failed"
    assert bantz("retry", "once").returncode == 0
    assert bantz.status_of(1) == "queued"
    assert bantz("pause").returncode == 0
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "queued" and state["reason"].startswith("paused")
    assert bantz("resume").returncode == 0
    run_once(bantz)
    assert bantz.status_of(1) == "failed" and bantz.state(1)["attempts"] == 2


def test_world_writable_spool_is_refused(bantz: Bantz) -> None:
    os.chmod(bantz.home / "spool", 0o777)
    res = bantz("run", "--once")
    assert res.returncode == 1
    assert "chmod go-w" in res.stderr


def test_symlinks_and_foreign_files_are_rejected(bantz: Bantz, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.yaml"
    target.write_text("run: 'true'\n")
    os.symlink(target, bantz.home / "spool" / "link.yaml")
    foreign = bantz.home / "spool" / "foreign.yaml"
    foreign.write_text("run: 'true'\n")
    if os.geteuid() == 0:
        os.chown(foreign, 65534, 65534)
    run_once(bantz)
    rejected = bantz.home / "spool" / "rejected"
    assert "symbolic link" in (rejected / "link.yaml.error.txt").read_text()
    if os.geteuid() == 0:
        assert "owned by uid 65534" in (rejected / "foreign.yaml.error.txt").read_text()
    assert not (bantz.home / "tasks" / "1").exists()


def test_ids_are_never_reused_after_clean(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    bantz.drop("b.yaml", "run: 'true'\n")
    run_once(bantz)
    assert bantz("clean", "--older-than", "0s").returncode == 0
    assert not (bantz.home / "tasks" / "2").exists()
    bantz.drop("c.yaml", "run: 'true'\n")
    run_once(bantz)
    assert bantz.state(3)["name"] == "c"


def test_submit_validate_and_add(bantz: Bantz, tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("run: echo submitted\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: true\ntimeout: soon\n")
    res = bantz("validate", str(good), str(bad))
    assert res.returncode == 1 and "timeout" in res.stdout
    assert bantz("validate", str(good)).returncode == 0
    res = bantz("submit", str(good), str(bad))
    assert res.returncode == 1
    # Taken in at once, with its id: no supervisor has to run first.
    assert res.stdout == f"{good}: submitted as #1 good\n"
    assert bantz.state(1)["source"] == "good.yaml" and bantz.status_of(1) == "queued"
    assert not (bantz.home / "spool" / "bad.yaml").exists() and not bantz.task_dir(2).exists()
    res = bantz("add", "--name", "greet", "--priority", "high", "--", "echo", "hi there")
    assert res.returncode == 0, res.stderr
    assert res.stdout == "added #2 greet\n"
    run_once(bantz)
    by_name = {bantz.state(i)["name"]: i for i in (1, 2)}
    assert "hi there" in bantz.output(by_name["greet"])
    assert bantz.state(by_name["greet"])["priority"] == 10


def test_a_long_queue_keeps_priorities_and_dependencies(bantz: Bantz, tmp_path: Path) -> None:
    # More queued tasks than FULL_PASS_QUEUE: ticks stop looking once the slots are full,
    # and a full look every second still fails the dependents of a failed task.
    spool = bantz.home / "spool"
    spool.mkdir(parents=True, exist_ok=True, mode=0o700)
    ledger = tmp_path / "ledger"
    for i in range(260):
        (spool / f".t{i:03d}.yaml.tmp").write_text(f"name: t{i:03d}\nrun: echo {i} >> {ledger}\n")
    (spool / ".urgent.yaml.tmp").write_text(
        f"name: urgent\npriority: 10\nrun: echo urgent >> {ledger}\n"
    )
    (spool / ".broken.yaml.tmp").write_text("name: broken\npriority: -5\nrun: exit 1\n")
    (spool / ".after.yaml.tmp").write_text("name: after-broken\nafter: [broken]\nrun: 'true'\n")
    settled = time.time() - 60  # one mtime for all: settled together, taken in by one scan
    for tmp in spool.glob(".*.tmp"):
        os.utime(tmp, (settled, settled))
        os.rename(tmp, spool / tmp.name[1:].removesuffix(".tmp"))
    res = run_once(bantz, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = ledger.read_text().split()
    # urgent starts in the first pair (max_parallel = 2); which of the two writes its line
    # first is the processes' race, not the scheduler's choice.
    assert len(lines) == 261 and "urgent" in lines[:2], lines[:5]
    states = {s["name"]: s for s in (bantz.state(i) for i in range(1, 264))}
    assert states["broken"]["status"] == "failed"
    assert states["after-broken"]["status"] == "failed"
    assert states["after-broken"]["reason"] == "dependency failed: broken"
    assert sum(s["status"] == "done" for s in states.values()) == 261


def test_tasks_and_what_they_start_run_at_the_configured_niceness(
    bantz: Bantz, tmp_path: Path
) -> None:
    import sys

    if os.getpriority(os.PRIO_PROCESS, 0) > 7:
        pytest.skip("this test runs at a niceness above 7 and cannot lower it")
    cfg = bantz.home / "config.toml"
    cfg.write_text(cfg.read_text().replace("nice = 0", "nice = 7"))
    out = tmp_path / "nice"
    probe = f"{sys.executable} -c 'import os; print(os.getpriority(os.PRIO_PROCESS, 0))'"
    bantz.drop("n.yaml", f'run: {probe} > {out}; sh -c "{probe}" >> {out}\n')
    run_once(bantz)
    assert bantz.status_of(1) == "done", bantz.output(1)
    assert out.read_text().split() == ["7", "7"]
