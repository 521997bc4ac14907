"""Tasks run as Slurm jobs on the real one-node cluster (contrib/slurm/single-node.sh).

Each test has its own home (its jobs carry that home in their comment, so tests never see
each other's) and ends every job it made. The cluster has 2 CPUs, so a third 1-CPU job
pends with reason Resources; `cpus: 64` pends for good (PartitionConfig).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.workers import slurmcli
from tests.conftest import Bantz, config_text, run_demo, wait_for
from tests.slurmcluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.xdist_group("slurm")]


@pytest.fixture
def sbantz(bantz: Bantz, slurm: Cluster) -> Iterator[Bantz]:
    """A home whose tasks run on the cluster, polled every 0.3 s."""
    (bantz.home / "config.toml").write_text(
        config_text(
            "max_parallel = 1",  # Slurm tasks take no local slot: more than 1 run at once
            '[executor]\nkind = "slurm"\n[executor.slurm]\npoll_interval = "0.3s"',
        )
    )
    bantz.env.update(slurm.env)
    yield bantz
    bantz.stop_all()
    for job in our_jobs(slurm, bantz.home):
        if job["job_state"] in slurmcli.ACTIVE_STATES:
            slurm.run("scancel", str(job["job_id"]))


def our_jobs(slurm: Cluster, home: Path) -> list[dict]:
    out = slurm.run("squeue", "--json").stdout
    root = str(home.resolve())
    return [j for j in json.loads(out)["jobs"] if j["comment"].endswith(":" + root)]


def jobs_of(slurm: Cluster, home: Path, task_id: int) -> list[dict]:
    return [j for j in our_jobs(slurm, home) if j["name"].startswith(f"bantzd-{task_id}-")]


def submit(b: Bantz, name: str, text: str) -> int:
    path = b.home.parent / f"{name}.yaml"
    path.write_text(textwrap.dedent(text))
    res = b("submit", str(path), check=True)
    return int(res.stdout.split("#")[1].split()[0])


def wait_status(b: Bantz, task_id: int, status: str, timeout: float = 90) -> dict:
    wait_for(lambda: b.status_of(task_id) == status, timeout=timeout, what=f"{task_id} {status}")
    return b.state(task_id)


def test_done_and_failed_with_exit_code_env_and_node(sbantz: Bantz, slurm: Cluster) -> None:
    ok = submit(
        sbantz,
        "ok",
        """\
        name: ok
        run: echo "secret=$SECRET id=$BANTZ_TASK_ID node=$BANTZ_NODE"
        env: {SECRET: hunter2}
        resources: {cpus: 1, memory: 100MiB}
        """,
    )
    bad = submit(sbantz, "bad", "name: bad\nrun: echo about to fail; exit 3\n")
    sbantz.start("run")
    done = wait_status(sbantz, ok, "done")
    failed = wait_status(sbantz, bad, "failed")
    assert failed["exit_code"] == 3 and failed["error"] == "exit 3"
    assert done["slurm"]["node"] == "vm" and done["slurm"]["state"] == "COMPLETED"
    assert sbantz("list", "--columns", "id,node", check=True).stdout.split()[-1] == "vm"
    out = sbantz.output(ok)
    assert "=== bantzd: attempt 1 " in out
    assert f"secret=hunter2 id={ok} node=" in out
    # The task's env travelled in the task folder, never through Slurm.
    job = jobs_of(slurm, sbantz.home, ok)[0]
    shown = slurm.run("scontrol", "show", "job", "-o", str(job["job_id"])).stdout
    assert "hunter2" not in shown and "hunter2" not in json.dumps(job)
    assert "--cpus-per-task" not in shown and "NumCPUs=1" in shown and "mem=100M" in shown
    assert not (sbantz.task_dir(ok) / "job.json").exists()
    show = sbantz("show", str(ok), check=True).stdout
    assert "node:" in show and "vm" in show and f"job {job['job_id']} on vm" in show


def test_two_gpu_tasks_get_different_gpus(sbantz: Bantz) -> None:
    met = sbantz.home.parent / "met"
    met.mkdir()
    # Each holds its GPU until both run: two jobs that did not overlap could both get GPU 0.
    run = (
        f"echo GPU=$CUDA_VISIBLE_DEVICES; touch {met}/$BANTZ_TASK_ID; "
        f'while [ "$(ls {met} | wc -l)" -lt 2 ]; do sleep 0.1; done'
    )
    ids = [
        submit(sbantz, f"g{i}", f"name: g{i}\nrun: '{run}'\nresources: {{gpus: 1}}\n")
        for i in range(2)
    ]
    sbantz.start("run")
    for i in ids:
        wait_status(sbantz, i, "done")
    seen = {line for i in ids for line in sbantz.output(i).splitlines() if line.startswith("GPU=")}
    assert seen == {"GPU=0", "GPU=1"}, seen


def test_timeout_is_bantzds_and_the_job_is_cancelled(sbantz: Bantz, slurm: Cluster) -> None:
    slow = submit(sbantz, "slow", "name: slow\nrun: sleep 120\ntimeout: 2s\n")
    sbantz.start("run")
    state = wait_status(sbantz, slow, "failed", timeout=60)
    assert state["error"] == "timeout after 2s"
    assert all(j["job_state"] != "RUNNING" for j in jobs_of(slurm, sbantz.home, slow))
    sbatch_time = jobs_of(slurm, sbantz.home, slow)[0]["time_limit"]
    assert sbatch_time == 1  # timeout + stop_grace (2s + 2s), rounded up to minutes


def test_cancel_a_pending_and_a_running_job(sbantz: Bantz, slurm: Cluster) -> None:
    running = submit(sbantz, "r", "name: r\nrun: sleep 120\n")
    pending = submit(sbantz, "p", "name: p\nrun: sleep 120\nresources: {cpus: 64}\n")
    sbantz.start("run")
    wait_for(
        lambda: (sbantz.state(pending).get("reason") or "").startswith("slurm: pending ("),
        timeout=60,
        what="the pending job's reason",
    )
    wait_for(lambda: (sbantz.state(running).get("slurm") or {}).get("state") == "RUNNING")
    listed = sbantz("list", check=True).stdout
    assert "slurm: pending (PartitionConfig)" in listed
    status = sbantz("status", check=True).stdout
    assert "on vm" in status
    for task_id in (pending, running):
        sbantz("cancel", str(task_id), check=True)
    for task_id in (pending, running):
        wait_status(sbantz, task_id, "cancelled", timeout=15)
        wait_for(
            lambda t=task_id: all(
                j["job_state"] == "CANCELLED" for j in jobs_of(slurm, sbantz.home, t)
            ),
            timeout=30,
            what=f"task {task_id}'s job cancelled",
        )


CHECKPOINTED = """\
name: counter
run: |
  i=$(cat "$BANTZ_CHECKPOINT" 2>/dev/null | tr -dc 0-9)
  i=${i:-0}
  echo "resumed from $i"
  trap 'echo "{\\"i\\": $i}" > "$BANTZ_CHECKPOINT"; echo "checkpointed at $i"; exit 143' TERM
  while [ "$i" -lt 300 ]; do i=$((i + 1)); sleep 0.1 & wait; done
  echo finished at $i
"""


def test_until_checkpoints_and_the_next_night_resumes(sbantz: Bantz, slurm: Cluster) -> None:
    task = submit(sbantz, "counter", CHECKPOINTED)
    # 20 s: a loaded CI box may take 10 s before the node runs the job (it is then given back
    # as never started, rightly, but that is not this test's case); the work takes 30 s.
    until = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() + 20))
    night = sbantz.start("run", "--until", until)
    assert night.wait(60) == 0
    state = sbantz.state(task)
    assert state["status"] == "queued" and state["reason"] == "interrupted", state
    assert "checkpointed at" in sbantz.output(task)
    # Not left running or pending (an ended job's record may already be gone from squeue,
    # e.g. after earlier tests restarted slurmctld: then there is nothing left to stop).
    states = [j["job_state"] for j in jobs_of(slurm, sbantz.home, task)]
    assert all(s in ("CANCELLED", "FAILED", "COMPLETED") for s in states), states
    sbantz.start("run")
    done = wait_status(sbantz, task, "done", timeout=60)
    out = sbantz.output(task)
    resumed = [line for line in out.splitlines() if line.startswith("resumed from")]
    assert resumed[0] == "resumed from 0" and resumed[1] != "resumed from 0", out
    assert "finished at 300" in out and done["attempts"] == 2


def test_supervisor_sigkill_with_jobs_pending_and_running(sbantz: Bantz, slurm: Cluster) -> None:
    ids = [submit(sbantz, f"k{i}", f"name: k{i}\nrun: sleep 4; echo k{i} ok\n") for i in range(3)]
    first = sbantz.start("run")
    wait_for(
        lambda: all((sbantz.state(i).get("slurm") or {}).get("job_id") for i in ids),
        timeout=60,
        what="three jobs submitted",
    )
    wait_for(
        lambda: any((sbantz.state(i).get("reason") or "").startswith("slurm: pending") for i in ids)
    )
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    sbantz.start("run")
    for i in ids:
        state = wait_status(sbantz, i, "done")
        assert state["attempts"] == 1
        assert [j["name"] for j in jobs_of(slurm, sbantz.home, i)] == [f"bantzd-{i}-1"]
        assert sbantz.output(i).splitlines().count(f"k{i - ids[0]} ok") == 1


def test_crash_between_sbatch_and_the_job_record(sbantz: Bantz, slurm: Cluster) -> None:
    task = submit(sbantz, "c", "name: c\nrun: sleep 2; echo once\n")
    sbantz.env["BANTZ_CRASH_AT"] = "slurm.after_sbatch"
    crashed = sbantz.start("run")
    del sbantz.env["BANTZ_CRASH_AT"]
    assert crashed.wait(60) == -9
    assert len(jobs_of(slurm, sbantz.home, task)) == 1  # submitted; no id in the folder
    sbantz.start("run")
    state = wait_status(sbantz, task, "done")
    assert state["attempts"] == 1
    assert len(jobs_of(slurm, sbantz.home, task)) == 1
    assert sbantz.output(task).splitlines().count("once") == 1


def test_slurmctld_down_then_back(sbantz: Bantz, slurm: Cluster) -> None:
    before = submit(sbantz, "b", "name: b\nrun: sleep 15; echo b ok\n")
    sbantz.start("run")
    wait_for(lambda: (sbantz.state(before).get("slurm") or {}).get("state") == "RUNNING")
    slurm.script("stop-ctld")
    try:
        wait_for(
            lambda: (sbantz.state(before).get("reason") or "").startswith("slurm: unreachable"),
            timeout=40,
            what="the unreachable reason",
        )
        # The supervisor may be waiting on Slurm right now: the spool takes the file.
        sbantz.drop("d.yaml", "name: d\nrun: echo d ok\n")
        during = before + 1
        wait_for(
            lambda: (sbantz.state(during).get("reason") or "").startswith("slurm: unreachable"),
            timeout=40,
            what="a queued task waiting for Slurm",
        )
        assert sbantz.status_of(during) == "queued"
    finally:
        slurm.script("start-ctld")
    assert wait_status(sbantz, before, "done")["attempts"] == 1
    assert wait_status(sbantz, during, "done")["attempts"] == 1
    assert "b ok" in sbantz.output(before)


@pytest.mark.parametrize(
    ("resources", "config", "words"),
    [
        ("resources: {gpus: 8}\n", "", "Requested node configuration is not available"),
        ("", 'partition = "nosuch"', "Invalid partition name specified"),
        ("", 'sbatch_args = ["--no-such-option"]', "unrecognized option"),
    ],
)
def test_a_refused_submit_fails_with_slurms_message(
    sbantz: Bantz, resources: str, config: str, words: str
) -> None:
    if config:
        cfg = sbantz.home / "config.toml"
        cfg.write_text(
            cfg.read_text().replace('poll_interval = "0.3s"', f'{config}\npoll_interval = "0.3s"')
        )
    task = submit(sbantz, "refused", f"name: refused\nrun: 'true'\n{resources}")
    res = sbantz("run", "--once", timeout=90)
    assert res.returncode == 0, res.stderr
    state = sbantz.state(task)
    assert state["status"] == "failed" and words in state["error"], state
    assert state["error"].startswith("Slurm refused the job: ")


def test_the_job_script_runs_the_attempt_wrapper_on_the_node(tmp_path: Path) -> None:
    """`python -m bantzd.workers.slurmjob` alone, as the node runs it: worker.lock, marker,
    exit record, and job.json gone once read."""
    task_dir = tmp_path / "tasks" / "7"
    task_dir.mkdir(parents=True)
    job = {
        "task_id": 7, "attempt": 2, "step_index": -1, "argv": ["/bin/sh", "-c", "echo $X; exit 5"],
        "cwd": str(tmp_path), "env": {"X": "from-job"}, "nice": 0, "umask": 0o022,
        "marker": "\n=== bantzd: attempt 2 · now · test ===\n",
    }  # fmt: skip
    (task_dir / "job.json").write_text(json.dumps(job))
    with open(task_dir / "output.log", "a") as out:
        rc = subprocess.run(
            [sys.executable, "-m", "bantzd.workers.slurmjob", str(task_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
            timeout=30,
        ).returncode
    assert rc == 5
    assert json.loads((task_dir / "exit.json").read_text())["rc"] == 5
    assert (task_dir / "output.log").read_text().endswith("attempt 2 · now · test ===\nfrom-job\n")
    assert (task_dir / "worker.lock").read_text().split()[1] == "2"
    assert not (task_dir / "job.json").exists()


def test_demo_runs_the_examples_through_slurm(
    slurm: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    out = run_demo(tmp_path, tmp_path / "user", "--executor", "slurm")
    assert "as Slurm jobs: Slurm answers" in out
    assert "| `prepare-data` | " in out and " · vm | 1 | 729 clean rows ready |" in out
    demo_home = next(tmp_path.glob("bantzd-demo-*"))
    states = [json.loads(p.read_text()) for p in demo_home.glob("tasks/*/state.json")]
    assert len(states) >= 6 and all(s["slurm"]["node"] == "vm" for s in states)
    assert [s["name"] for s in states if s["status"] != "done"] == ["broken-config"]


def test_pause_and_resume_a_running_job(sbantz: Bantz) -> None:
    ticks = sbantz.home.parent / "ticks"
    task = submit(
        sbantz, "tick", f"name: tick\nrun: while true; do echo x >> {ticks}; sleep 0.1; done\n"
    )
    sbantz.start("run")
    wait_for(lambda: ticks.exists() and len(ticks.read_text()) > 4, timeout=60, what="ticks")
    sbantz("pause", str(task), check=True)
    wait_for(lambda: sbantz.state(task).get("paused"), what="paused")
    time.sleep(0.5)  # the signal reaches the node's processes
    before = len(ticks.read_text())
    time.sleep(1.0)  # a stopped task writes nothing: the file must not grow meanwhile
    assert len(ticks.read_text()) == before
    sbantz("resume", str(task), check=True)
    wait_for(lambda: len(ticks.read_text()) > before, timeout=20, what="ticks again")
    sbantz("cancel", str(task), check=True)
    wait_status(sbantz, task, "cancelled", timeout=30)


def test_cancel_with_no_supervisor_running_cancels_the_job(sbantz: Bantz, slurm: Cluster) -> None:
    task = submit(sbantz, "orphan", "name: orphan\nrun: sleep 120\n")
    sup = sbantz.start("run")
    wait_for(lambda: (sbantz.state(task).get("slurm") or {}).get("state") == "RUNNING")
    sup.send_signal(signal.SIGKILL)
    sup.wait(10)
    res = sbantz("cancel", str(task), timeout=60)  # applied by the CLI itself: scancel
    assert res.returncode == 0, res.stderr
    assert sbantz.status_of(task) == "cancelled"
    wait_for(
        lambda: jobs_of(slurm, sbantz.home, task)[0]["job_state"] == "CANCELLED",
        timeout=30,
        what="the job cancelled",
    )
