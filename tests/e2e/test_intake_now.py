"""Nothing happens unseen (issue 13, item 1): submit and add print the id at once, files
dropped by `cp` show in status and list, rejected files reach the morning report and
status, and `add` reads a shell line and misplaced options as a person means them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from pathlib import Path

from bantzd.supervisor.control import NO_SUPERVISOR
from tests.conftest import Bantz, wait_for


def run_once(bantz: Bantz) -> None:
    res = bantz("run", "--once", timeout=120)
    assert res.returncode == 0, res.stderr


def start_supervisor(bantz: Bantz) -> subprocess.Popen[str]:
    proc = bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
    return proc


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


def task_count(bantz: Bantz) -> int:
    return len([n for n in os.listdir(bantz.home / "tasks") if n.isdigit()])


# ids at once -------------------------------------------------------------------------------


def test_submit_and_add_print_the_id_without_a_supervisor(bantz: Bantz, tmp_path: Path) -> None:
    job = tmp_path / "train.yaml"
    job.write_text("name: train-model\nrun: echo trained\n")
    res = bantz("submit", str(job))
    assert (res.returncode, res.stdout) == (0, f"{job}: submitted as #1 train-model\n")
    assert bantz.status_of(1) == "queued" and bantz.state(1)["source"] == "train.yaml"
    res = bantz("add", "--", "echo", "hi")
    assert (res.returncode, res.stdout) == (0, "added #2 echo\n")
    # For scripts: only the ids, one a line.
    res = bantz("submit", "--print-id", str(job), str(job))
    assert (res.returncode, res.stdout) == (0, "3\n4\n")
    res = bantz("add", "--print-id", "--name", "x", "--", "true")
    assert (res.returncode, res.stdout) == (0, "5\n")
    assert os.listdir(bantz.home / "spool") == ["rejected"]  # all taken in
    # A queued task always has a reason (SPEC 4): taken in with no supervisor, it waits
    # for one, and `list` says so.
    assert bantz.state(2)["reason"] == NO_SUPERVISOR
    assert "waiting for a supervisor to run" in bantz("list").stdout
    run_once(bantz)
    assert [bantz.status_of(i) for i in range(1, 6)] == ["done"] * 5
    assert "hi" in bantz.output(2)


def test_submit_and_add_print_the_id_with_a_supervisor_running(
    bantz: Bantz, tmp_path: Path
) -> None:
    proc = start_supervisor(bantz)
    job = tmp_path / "job.yaml"
    job.write_text("run: echo from-submit\n")
    res = bantz("submit", str(job))
    assert (res.returncode, res.stdout) == (0, f"{job}: submitted as #1 job\n"), res.stderr
    res = bantz("add", "--print-id", "--", "echo", "from-add")
    assert (res.returncode, res.stdout) == (0, "2\n"), res.stderr
    wait_for(lambda: bantz.status_of(1) == bantz.status_of(2) == "done", what="both done")
    assert "from-add" in bantz.output(2)
    stop(proc)


def test_racing_submits_and_a_supervisors_scan_never_make_two_tasks_of_one_file(
    bantz: Bantz, tmp_path: Path
) -> None:
    # The supervisor's watcher sees each file the moment it is placed, so its scan often
    # takes a file in before the submit's request arrives: the answer must still be the
    # task that file became, and no file may become two tasks.
    proc = start_supervisor(bantz)
    files = []
    for i in range(16):
        folder = tmp_path / f"d{i}"
        folder.mkdir()
        (folder / "job.yaml").write_text(f"run: echo job-{i}\n")
        files.append(folder / "job.yaml")
    procs = [
        subprocess.Popen(
            bantz.argv("submit", "--print-id", str(f)),
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
    ids = [int(out) for out, _ in outs]
    assert sorted(ids) == list(range(1, 17)), outs
    wait_for(lambda: all(bantz.status_of(i) == "done" for i in ids), what="all done")
    assert task_count(bantz) == 16
    for f, task_id in zip(files, ids, strict=True):
        assert (bantz.task_dir(task_id) / "task.yaml").read_text() == f.read_text()
        assert f"job-{files.index(f)}" in bantz.output(task_id)
    accepted = [
        json.loads(line)
        for line in (bantz.home / "journal.jsonl").read_text().splitlines()
        if '"accepted"' in line
    ]
    assert sorted(e["id"] for e in accepted) == list(range(1, 17))  # one accept per file
    stop(proc)


def test_a_supervisor_that_does_not_answer_leaves_the_file_in_the_spool(
    bantz: Bantz, tmp_path: Path
) -> None:
    proc = start_supervisor(bantz)
    job = tmp_path / "job.yaml"
    job.write_text("run: echo later\n")
    proc.send_signal(signal.SIGSTOP)  # stuck
    try:
        res = bantz("submit", str(job), timeout=60)
    finally:
        proc.send_signal(signal.SIGCONT)
    assert res.returncode == 0, res.stderr
    assert "in the spool as job.yaml; the supervisor has not taken it in yet" in res.stdout
    wait_for(lambda: bantz.status_of(1) == "done", what="the task taken in and run")
    assert task_count(bantz) == 1
    stop(proc)


def test_a_submit_killed_while_taking_in_loses_nothing(bantz: Bantz, tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("run: echo survived\n")
    for point in ("intake.after_move", "control.after_apply"):
        env = {**bantz.env, "BANTZ_CRASH_AT": point}
        res = subprocess.run(
            bantz.argv("submit", str(job)), env=env, capture_output=True, text=True, timeout=60
        )
        assert res.returncode == -signal.SIGKILL, (point, res.stdout, res.stderr)
    run_once(bantz)
    assert task_count(bantz) == 2
    assert bantz.status_of(1) == bantz.status_of(2) == "done"
    assert "survived" in bantz.output(1) and "survived" in bantz.output(2)
    assert os.listdir(bantz.home / "spool") == ["rejected"]
    res = bantz("submit", str(job))  # ids go on after the crashes
    assert res.stdout == f"{job}: submitted as #3 job\n", res.stderr


# what waits in the spool, what was rejected -------------------------------------------------


def test_files_dropped_into_the_spool_show_in_status_and_list(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    bantz.drop("b.yaml", "run: 'true'\n")
    res = bantz("status")
    assert (
        "spool:      2 files waiting in the spool: a.yaml, b.yaml "
        "(taken in when a supervisor runs)" in res.stdout
    ), res.stdout
    spool = json.loads(bantz("status", "--json").stdout)["spool"]
    assert spool["waiting"] == ["a.yaml", "b.yaml"] and spool["rejected_since_report"] == 0
    rows = [line.split() for line in bantz("list").stdout.splitlines()[1:]]
    assert rows == [
        [
            "-",
            "a.yaml",
            "spool",
            "-",
            "waiting",
            "in",
            "the",
            "spool,",
            "not",
            "taken",
            "in",
            "yet",
        ],
        [
            "-",
            "b.yaml",
            "spool",
            "-",
            "waiting",
            "in",
            "the",
            "spool,",
            "not",
            "taken",
            "in",
            "yet",
        ],
    ]
    assert json.loads(bantz("list", "--json").stdout) == []  # not tasks (yet)
    assert bantz("list", "--status", "queued").stdout.count("spool") == 0
    run_once(bantz)
    assert "spool:      no files waiting" in bantz("status").stdout
    assert "spool" not in bantz("list").stdout.split("INFO", 1)[1]


def test_a_rejected_file_is_in_the_next_report_and_counted_by_status(
    bantz: Bantz, tmp_path: Path
) -> None:
    bantz.drop("typo.yaml", "run: echo fixed\nretires: 2\n")
    bantz.drop("good.yaml", "run: 'true'\n")
    run_once(bantz)
    rejected = bantz.home / "spool" / "rejected"
    # error.txt ends with the exact command that resubmits the file.
    error = (rejected / "typo.yaml.error.txt").read_text()
    command = f"bantzd --home {bantz.home} submit {rejected / 'typo.yaml'}"
    assert error.endswith(f"Fix it, then submit it again with:\n  {command}\n"), error
    status = bantz("status")
    assert (
        f"rejected:   1 file since the last report, in {rejected} "
        "(each NAME.error.txt says why and how to resubmit)" in status.stdout
    )
    assert json.loads(bantz("status", "--json").stdout)["spool"]["rejected_since_report"] == 1

    res = bantz("report")
    assert res.returncode == 0, res.stderr
    report = next((bantz.home / "reports").glob("*.md")).read_text()
    section = report.split("## Not accepted\n\n", 1)[1].split("\n\n## ", 1)[0]
    assert section.startswith("- `typo.yaml`: ") and "retires" in section.splitlines()[0]
    assert section.splitlines()[1] == f"  fix it, then `{command}`"
    assert report.index("## Needs you") < report.index("## Not accepted") < report.index("## Done")
    assert "rejected:" not in bantz("status").stdout  # counted since the last report

    # The command works once the file is fixed.
    fixed = (rejected / "typo.yaml").read_text().replace("retires", "retries")
    (rejected / "typo.yaml").write_text(fixed)
    argv = command.split()[1:]
    res = bantz(*argv[2:])
    assert res.returncode == 0 and "submitted as #2 typo" in res.stdout, res.stderr
    # The next report has no Not accepted section: nothing was rejected since.
    bantz("report", "--date", "2099-01-01", check=True)
    assert "Not accepted" not in (bantz.home / "reports" / "2099-01-01.md").read_text()


def test_a_file_rejected_while_taken_in_at_submit_says_how_to_resubmit(
    bantz: Bantz, tmp_path: Path
) -> None:
    # Valid for submit's own check, but the intake fails on it (an injected internal
    # error): it is rejected, like the scan rejects such a file, and submit says so.
    job = tmp_path / "job.yaml"
    job.write_text("run: 'true'\n")
    env = {**bantz.env, "BANTZ_FAULT_AT": "intake:job.yaml"}
    res = subprocess.run(
        bantz.argv("submit", str(job)), env=env, capture_output=True, text=True, timeout=60
    )
    rejected = bantz.home / "spool" / "rejected" / "job.yaml"
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith(f"{job}: not accepted\n  internal error: "), res.stderr
    assert res.stderr.endswith(f"  fix it, then: bantzd --home {bantz.home} submit {rejected}\n"), (
        res.stderr
    )
    assert rejected.read_text() == "run: 'true'\n" and task_count(bantz) == 0


# add: shell lines and misplaced options ----------------------------------------------------


def test_add_runs_a_single_argument_with_shell_syntax_through_sh(bantz: Bantz) -> None:
    res = bantz("add", "echo a && echo b; echo $((6 * 7)) | cat")
    assert (res.returncode, res.stdout) == (0, "added #1 echo\n"), res.stderr
    assert "run: echo a && echo b; echo $((6 * 7)) | cat\n" in (
        (bantz.task_dir(1) / "task.yaml").read_text()
    )
    res = bantz("add", "echo", "a && echo b")  # several arguments: argv, no shell
    assert res.returncode == 0
    run_once(bantz)
    assert re.search(r"^a\nb\n42$", bantz.output(1), re.M), bantz.output(1)
    assert "a && echo b" in bantz.output(2)


def test_an_option_after_the_command_gets_a_hint(bantz: Bantz) -> None:
    res = bantz("add", "echo", "--name", "build")
    assert res.returncode == 2
    assert "put options before the command, or use -- before it" in res.stderr
    assert "bantzd add --name build echo" in res.stderr
    assert "bantzd add -- echo --name build" in res.stderr
    assert os.listdir(bantz.home / "spool") == ["rejected"] and task_count(bantz) == 0
    # After `--` it is meant: the command gets it. Other options are the command's own.
    assert bantz("add", "--", "echo", "--name", "build").stdout == "added #1 echo\n"
    assert bantz("add", "--name", "n", "echo", "-n", "--x").stdout == "added #2 n\n"
    run_once(bantz)
    assert "--name build" in bantz.output(1)
    assert "--x" in bantz.output(2)
