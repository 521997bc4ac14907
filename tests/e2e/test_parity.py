"""pueue / task-spooler parity through the real CLI: wait, rerun, restart's hint, priority,
parallel, list columns, [hooks] on_finish and edit (issue 13, item 3).

Real supervisors (`bantzd run` in the background, or `run --once`), real tasks, real files.
Tasks that must stay running wait for a flag file the test creates; every wait polls.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bantzd.paths import Home
from bantzd.supervisor.lock import supervisor_info
from tests.conftest import Bantz, config_text, wait_for

pytestmark = pytest.mark.slow


def gate(flag: Path, ledger: Path, word: str) -> str:
    """A task file that writes `word` to the ledger as it starts, then waits for `flag`."""
    return f"run: echo {word} >> {ledger}; while [ ! -e {flag} ]; do sleep 0.05; done\n"


def supervise(bantz: Bantz, tmp_path: Path) -> subprocess.Popen[str]:
    proc = bantz.start("run", stderr=tmp_path / "run.err")
    wait_for(lambda: supervisor_info(Home(bantz.home)), what="the supervisor to hold the home")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def ok(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


# wait --------------------------------------------------------------------------------------


def test_wait_exit_status_says_how_the_tasks_ended(bantz: Bantz, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    bantz.drop("a.yaml", gate(flag, tmp_path / "ledger", "a"))
    bantz.drop("b.yaml", "run: exit 2\n")
    proc = supervise(bantz, tmp_path)
    wait_for(lambda: bantz.status_of(1) == "running", what="task 1 to run")
    waiter = subprocess.Popen(
        bantz.argv("wait", "1", "2"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=bantz.env,
    )  # fmt: skip
    wait_for(lambda: bantz.status_of(2) == "failed", what="task 2 to fail")
    assert waiter.poll() is None  # task 1 still runs
    flag.touch()
    out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 1, out + err  # one of them failed
    assert "#1 a: done" in out and "#2 b: failed: exit 2" in out
    assert bantz("wait", "1").returncode == 0  # done already: at once, 0
    # No TASK: every task not ended now; none left.
    res = bantz("wait")
    assert res.returncode == 0 and "nothing to wait for" in res.stdout
    res = bantz("wait", "1", "99")
    assert res.returncode == 3 and "no task with id 99" in res.stderr
    stop(proc)


def test_wait_names_tasks_waiting_for_a_person_and_times_out(bantz: Bantz) -> None:
    bantz.drop("held.yaml", "run: 'true'\napproval: true\n")
    ok(bantz("run", "--once"))
    assert bantz.status_of(1) == "held"
    res = bantz("wait", "--timeout", "0.5s")
    assert res.returncode == 124, res.stdout + res.stderr
    assert "#1 held waits for approval: bantzd approve 1" in res.stderr
    # No supervisor runs: said once, and wait goes on until --timeout.
    assert res.stderr.count("no supervisor is running") == 1
    assert "timed out; still not ended: 1" in res.stderr
    assert bantz("wait", "--timeout", "soon").returncode == 2


# rerun and restart -------------------------------------------------------------------------


def test_rerun_runs_a_done_task_again_from_the_start(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop(
        "twice.yaml",
        textwrap.dedent(f"""\
        run: |
          word=fresh; [ -e "$BANTZ_CHECKPOINT" ] && word=resumed
          echo $word >> {ledger}
          echo '{{"at": "end"}}' > "$BANTZ_CHECKPOINT"
    """),
    )
    ok(bantz("run", "--once"))
    assert bantz.status_of(1) == "done"
    assert (bantz.task_dir(1) / "checkpoint.json").exists()
    # A supervisor that started after the task ended has no spec of it yet: rerun gives it.
    proc = supervise(bantz, tmp_path)
    out = ok(bantz("rerun", "twice"))
    assert "queued to run again as attempt 2" in out
    wait_for(lambda: bantz.state(1).get("attempts") == 2 and bantz.status_of(1) == "done",
             what="the rerun to finish")  # fmt: skip
    stop(proc)
    assert ledger.read_text().split() == ["fresh", "fresh"]  # the checkpoint was cleared
    state = bantz.state(1)
    assert [e["attempt"] for e in state["attempt_log"]] == [1, 2]
    statuses = [h["status"] for h in state["history"]]
    assert statuses == ["queued", "running", "done", "queued", "running", "done"]
    assert "=== bantzd: attempt 1" in bantz.output(1) and "=== bantzd: attempt 2" in bantz.output(1)
    # Only a finished task runs again.
    bantz.drop("held.yaml", "run: 'true'\napproval: true\n")
    ok(bantz("run", "--once"))
    res = bantz("rerun", "2")
    assert res.returncode == 1 and "only a finished task" in res.stderr
    assert bantz("rerun", "42").returncode == 3


def test_restart_with_a_task_points_to_rerun(bantz: Bantz) -> None:
    res = bantz("restart", "42")
    assert res.returncode == 2
    assert "restarts the supervisor daemon" in res.stderr and "bantzd rerun 42" in res.stderr
    assert "bantzd rerun ID" in ok(bantz("restart", "--help"))


# priority and parallel ---------------------------------------------------------------------


def test_priority_changes_the_start_order_of_a_running_supervisor(
    bantz: Bantz, tmp_path: Path
) -> None:
    (bantz.home / "config.toml").write_text(config_text("max_parallel = 1"))
    flag, ledger = tmp_path / "go", tmp_path / "ledger"
    bantz.drop("0-first.yaml", gate(flag, ledger, "first"))
    proc = supervise(bantz, tmp_path)
    wait_for(lambda: bantz.status_of(1) == "running", what="the first task to run")
    bantz.drop("1-a.yaml", f"name: a\nrun: echo a >> {ledger}\n")
    wait_for(lambda: bantz.status_of(2) == "queued", what="a to be queued")
    bantz.drop("2-b.yaml", f"name: b\nrun: echo b >> {ledger}\n")
    wait_for(lambda: bantz.status_of(3) == "queued", what="b to be queued")
    out = ok(bantz("priority", "b", "high"))
    assert "priority high (10) (was normal (0))" in out
    assert bantz.state(3)["priority"] == 10
    flag.touch()
    wait_for(lambda: bantz.status_of(2) == "done" and bantz.status_of(3) == "done",
             what="a and b to run")  # fmt: skip
    stop(proc)
    assert ledger.read_text().split() == ["first", "b", "a"]
    res = bantz("priority", "1", "urgent")
    assert res.returncode == 2 and "expected high, normal, low or a whole number" in res.stderr
    res = bantz("priority", "1", "5")
    assert res.returncode == 1 and "it has ended" in res.stderr


def test_parallel_changes_the_running_supervisor_and_survives_a_restart(
    bantz: Bantz, tmp_path: Path
) -> None:
    (bantz.home / "config.toml").write_text(config_text("max_parallel = 1"))
    flag, ledger = tmp_path / "go", tmp_path / "ledger"
    for word in ("x", "y", "z"):
        bantz.drop(f"{word}.yaml", gate(flag, ledger, word))
    assert ok(bantz("parallel")) == "max_parallel 1 (config.toml)\n"
    proc = supervise(bantz, tmp_path)
    wait_for(lambda: bantz.status_of(1) == "running", what="one task to run")
    assert [bantz.status_of(i) for i in (2, 3)] == ["queued", "queued"]
    out = ok(bantz("parallel", "2"))
    assert out == "max_parallel 2 (set by bantzd parallel; config.toml says 1)\n"
    wait_for(lambda: bantz.status_of(2) == "running", what="a second task to start")
    assert bantz.status_of(3) == "queued"
    assert "parallel:   2 (set by bantzd parallel; config.toml says 1)" in ok(bantz("status"))
    status = json.loads(ok(bantz("status", "--json")))
    assert status["max_parallel"] == {"value": 2, "config": 1, "override": 2}
    stop(proc)  # the two running ones go back to the queue
    # A new supervisor starts with the override: two at once again.
    proc = supervise(bantz, tmp_path)
    wait_for(lambda: [bantz.status_of(i) for i in (1, 2, 3)].count("running") == 2,
             what="two tasks to run after the restart")  # fmt: skip
    stop(proc)
    # Offline: --reset goes back to config.toml.
    assert "back to config.toml's value (1)" in ok(bantz("parallel", "--reset"))
    assert ok(bantz("parallel")) == "max_parallel 1 (config.toml)\n"
    assert not (bantz.home / "parallel.json").exists()
    assert bantz("parallel", "0").returncode == 2
    assert bantz("parallel", "2", "--reset").returncode == 2


# list --columns ----------------------------------------------------------------------------


def test_list_columns(bantz: Bantz, tmp_path: Path) -> None:
    bantz.drop("one.yaml", f"run: [printf, '%s', a b]\ncwd: {tmp_path}\n")
    bantz.drop("two.yaml", "run: |\n  echo first\n  echo second\n")
    ok(bantz("run", "--once"))
    out = ok(bantz("list", "--columns", "id,command,cwd,start,end,took,info"))
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "COMMAND", "CWD", "START", "END", "TOOK", "INFO"]
    assert "printf %s 'a b'" in lines[1] and str(tmp_path) in lines[1]
    assert "echo first ..." in lines[2] and "~" in lines[2]
    # START, END, then TOOK: the same `took` as the info column (a busy machine may make
    # printf take a second).
    m = re.search(r"\d\d:\d\d:\d\d\s+\d\d:\d\d:\d\d\s+(\d+s)\s+took (\d+s)", lines[1])
    assert m and m.group(1) == m.group(2), lines[1]
    # The default is what list always printed.
    assert ok(bantz("list")).splitlines()[0].split() == ["ID", "NAME", "STATUS", "ATTEMPTS", "INFO"]
    res = bantz("list", "--columns", "id,nmae")
    assert res.returncode == 2
    assert "unknown column 'nmae'" in res.stderr and "id, name, status" in res.stderr
    assert bantz("list", "--columns", "id", "--json").returncode == 2


# [hooks] on_finish -------------------------------------------------------------------------


def test_on_finish_hook_gets_the_task_in_its_environment(bantz: Bantz, tmp_path: Path) -> None:
    out = tmp_path / "hooks"
    out.mkdir()
    hook = (
        f"env | grep ^BANTZ_TASK_ | sort > {out}/$BANTZ_TASK_ID.env; "
        f"{sys.executable} -m bantzd show $BANTZ_TASK_ID | head -1 >> {out}/$BANTZ_TASK_ID.env; "
        '[ "$BANTZ_TASK_STATUS" = done ]'
    )
    (bantz.home / "config.toml").write_text(
        config_text("max_parallel = 2") + f"[hooks]\non_finish = {json.dumps(hook)}\n"
    )
    bantz.drop("good.yaml", "run: 'true'\n")
    bantz.drop("bad.yaml", "run: exit 7\n")
    ok(bantz("run", "--once"))
    env = {
        i: dict(line.split("=", 1) for line in (out / f"{i}.env").read_text().splitlines()[:-1])
        for i in (1, 2)
    }
    by_name = {e["BANTZ_TASK_NAME"]: e for e in env.values()}
    assert by_name["good"]["BANTZ_TASK_STATUS"] == "done"
    assert by_name["good"]["BANTZ_TASK_EXIT_CODE"] == "0"
    assert by_name["bad"]["BANTZ_TASK_STATUS"] == "failed"
    assert by_name["bad"]["BANTZ_TASK_EXIT_CODE"] == "7"
    assert by_name["bad"]["BANTZ_TASK_SIGNAL"] == ""
    assert by_name["bad"]["BANTZ_TASK_TOOK"].isdigit()
    task_id = by_name["bad"]["BANTZ_TASK_ID"]
    assert by_name["bad"]["BANTZ_TASK_DIR"] == str(bantz.task_dir(int(task_id)))
    # The hook saw the end already written: state.json said failed.
    assert (out / f"{task_id}.env").read_text().splitlines()[-1].endswith("failed")
    log = (bantz.home / "bantzd.log").read_text()
    assert f"task {task_id}: the on_finish hook exited with status 1" in log


def test_a_hanging_hook_is_killed_after_its_timeout(bantz: Bantz, tmp_path: Path) -> None:
    pidfile = tmp_path / "hook.pid"
    hook = f"sleep 300 & echo $! > {pidfile}; wait"
    (bantz.home / "config.toml").write_text(
        config_text("max_parallel = 2") + f'[hooks]\non_finish = "{hook}"\ntimeout = "1s"\n'
    )
    bantz.drop("t.yaml", "run: 'true'\n")
    ok(bantz("run", "--once", timeout=30))
    assert (
        "the on_finish hook ran longer than 1s and was killed"
        in (bantz.home / "bantzd.log").read_text()
    )
    pid = int(pidfile.read_text())

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    wait_for(gone, what="the hook's child to be killed with its group")


def test_hooks_table_is_checked(bantz: Bantz) -> None:
    (bantz.home / "config.toml").write_text(config_text() + '[hooks]\non_finsh = "x"\n')
    res = bantz("run", "--once")
    assert res.returncode != 0
    assert "hooks.on_finsh: unknown setting (did you mean 'on_finish'?)" in res.stderr


# edit --------------------------------------------------------------------------------------


def editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nset -e\n" + body)
    script.chmod(0o755)
    return str(script)


def test_edit_replaces_a_queued_task_file_when_valid(bantz: Bantz, tmp_path: Path) -> None:
    bantz.drop("job.yaml", "run: echo one\nnot_before: '23:59'\n")
    ok(bantz("run", "--once"))
    assert bantz.status_of(1) == "queued"
    bantz.env["EDITOR"] = editor(tmp_path, 'sed -i "s/echo one/echo two/" "$1"\n')
    bantz.env.pop("VISUAL", None)
    out = ok(bantz("edit", "1"))
    assert "task 1 (job): task.yaml replaced" in out
    assert (bantz.task_dir(1) / "task.yaml").read_text().startswith("run: echo two")
    # An edit that makes it invalid: problems shown, original kept, the copy kept.
    bantz.env["EDITOR"] = editor(tmp_path, 'sed -i "s/^run:/rnu:/" "$1"\n')
    res = bantz("edit", "1")
    assert res.returncode == 1
    assert "rnu: unknown key (did you mean 'run'?)" in res.stderr
    copy = re.search(r"your edited copy is (\S+)", res.stderr).group(1)
    assert Path(copy).read_text().startswith("rnu: echo two")
    assert oct(os.stat(copy).st_mode & 0o777) == "0o600"
    Path(copy).unlink()
    assert (bantz.task_dir(1) / "task.yaml").read_text().startswith("run: echo two")
    # A finished task cannot be edited.
    bantz.drop("done.yaml", "run: 'true'\n")
    ok(bantz("run", "--once"))
    res = bantz("edit", "2")
    assert res.returncode == 1 and "only a queued or held task" in res.stderr


def test_edit_is_refused_when_the_task_started_meanwhile(bantz: Bantz, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    bantz.drop("job.yaml", gate(flag, tmp_path / "ledger", "job"))
    ok(bantz("pause"))
    proc = supervise(bantz, tmp_path)
    wait_for(lambda: bantz.state(1).get("reason", "").startswith("paused"), what="a paused queue")
    state = bantz.task_dir(1) / "state.json"
    # The editor lets the queue go and waits until the task runs: the race, for real.
    bantz.env["EDITOR"] = editor(
        tmp_path,
        f'sed -i "s/job/other/" "$1"\n'
        f"{sys.executable} -m bantzd --home {bantz.home} resume\n"
        f'while ! grep -q \'"status":"running"\' {state}; do sleep 0.05; done\n',
    )
    original = (bantz.task_dir(1) / "task.yaml").read_text()
    res = bantz("edit", "1")
    assert res.returncode == 1
    assert "task 1 is running now; only a queued or held task can be edited" in res.stderr
    assert "your edited copy is" in res.stderr
    assert (bantz.task_dir(1) / "task.yaml").read_text() == original
    flag.touch()
    wait_for(lambda: bantz.status_of(1) == "done", what="the task to finish")
    stop(proc)


def test_retry_reaches_a_supervisor_that_started_after_the_failure(
    bantz: Bantz, tmp_path: Path
) -> None:
    # The supervisor loads no spec for a task that had ended before it started; retry
    # gives it one, or the task would stay queued until the next start.
    marker = tmp_path / "second"
    bantz.drop("flaky.yaml", f"run: if [ -e {marker} ]; then exit 0; fi; touch {marker}; exit 1\n")
    ok(bantz("run", "--once"))
    assert bantz.status_of(1) == "failed"
    proc = supervise(bantz, tmp_path)
    ok(bantz("retry", "1"))
    wait_for(lambda: bantz.status_of(1) == "done", what="the retried task to run")
    stop(proc)
