"""The pure half of the Slurm client and executor: argv, names, parsing real outputs, the
scheduling of Slurm tasks, the config table and the task-file field."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from bantzd.config import config_from_mapping
from bantzd.errors import ConfigError
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.reports.nodes import job_text, nodes_text
from bantzd.supervisor.mixed import task_changes
from bantzd.supervisor.scheduler import Candidate, RemoteRoom, decide
from bantzd.supervisor.slurm import outcome_from_slurm, own_env
from bantzd.workers import slurmcli
from bantzd.workers.slurmcli import JobSpec, SlurmRefused, SlurmUnreachable

DATA = Path(__file__).parent / "data"


def test_sbatch_argv_maps_resources_and_keeps_the_clusters_args_last() -> None:
    spec = JobSpec(
        name="bantzd-7-2",
        comment="bantzd:-1:/h",
        output="/h/tasks/7/output.log",
        cwd="/work",
        script="#!/bin/sh\n",
        cpus=1.5,
        memory=(1 << 30) + 1,
        gpus=2,
        time_limit=61,
        partition="night",
        extra=("--qos=low",),
    )
    argv = slurmcli.sbatch_argv(spec)
    assert argv[:2] == ["sbatch", "--parsable"]
    for want in (
        "--job-name=bantzd-7-2",
        "--comment=bantzd:-1:/h",
        "--output=/h/tasks/7/output.log",
        "--open-mode=append",
        "--chdir=/work",
        "--no-requeue",
        "--partition=night",
        "--cpus-per-task=2",
        "--mem=1025M",
        "--gres=gpu:2",
        "--time=2",
    ):
        assert want in argv
    assert argv[-1] == "--qos=low"
    bare = slurmcli.sbatch_argv(JobSpec("n", "c", "o", "/", "s"))
    assert not any(
        a.startswith(("--partition", "--cpus", "--mem", "--gres", "--time")) for a in bare
    )


@pytest.mark.parametrize(("seconds", "minutes"), [(1, 1), (60, 1), (60.5, 2), (3600 + 30, 61)])
def test_time_is_rounded_up_to_whole_minutes(seconds: float, minutes: int) -> None:
    assert slurmcli.time_minutes(seconds) == minutes


def test_names_and_comments_round_trip() -> None:
    assert slurmcli.parse_job_name(slurmcli.job_name(12, 3)) == (12, 3)
    assert slurmcli.parse_job_name("bantzd-x-1") is None
    assert slurmcli.parse_comment(slurmcli.job_comment(2, "/a:b")) == (2, "/a:b")
    assert slurmcli.parse_comment("(null)") is None


def test_parse_sbatch() -> None:
    assert slurmcli.parse_sbatch("123\n") == 123
    assert slurmcli.parse_sbatch("124;cluster\n") == 124
    with pytest.raises(slurmcli.SlurmError):
        slurmcli.parse_sbatch("Submitted batch job\n")


def test_parse_captured_squeue_json_of_slurm_22_05() -> None:
    jobs = {
        j.job_id: j for j in slurmcli.parse_squeue_json((DATA / "squeue-22.05.json").read_text())
    }
    running, failed, pending = jobs[61], jobs[62], jobs[63]
    assert (running.name, running.state, running.node, running.active) == (
        "bantzd-1-1",
        "RUNNING",
        "vm",
        True,
    )
    assert running.start_time and running.task == (1, 1) and running.home == "/home/u/.bantzd"
    assert (failed.state, failed.active, failed.exit_status) == ("FAILED", False, 3 << 8)
    assert outcome_from_slurm(failed).exit_code == 3
    assert pending.pending and pending.reason == "PartitionConfig" and pending.step_index == 1
    assert pending.start_time is None
    ours = slurmcli.ours(jobs.values(), "/home/u/.bantzd")
    assert sorted(j.job_id for j in ours) == [61, 62, 63]  # not `other`, not /home/v's


def test_an_unreachable_controller_is_no_empty_job_list() -> None:
    # 22.05 exits 0 with `errors` and no jobs when slurmctld is down.
    with pytest.raises(SlurmUnreachable, match="slurm_load_jobs: Failed while looking for jobs"):
        slurmcli.parse_squeue_json((DATA / "squeue-22.05-unreachable.json").read_text())


@pytest.mark.parametrize(
    ("stderr", "kind", "message"),
    [
        (
            "sbatch: error: Batch job submission failed: Requested node configuration is not "
            "available\n",
            SlurmRefused,
            "sbatch: error: Batch job submission failed: Requested node configuration is not "
            "available",
        ),
        (
            "sbatch: unrecognized option '--no-such'\nTry \"sbatch --help\" for more information\n",
            SlurmRefused,
            "sbatch: unrecognized option '--no-such'",
        ),
        (
            "sbatch: error: invalid partition specified: nosuch\n"
            "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
            SlurmRefused,
            "sbatch: error: Batch job submission failed: Invalid partition name specified",
        ),
        (
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)\n",
            SlurmUnreachable,
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller "
            "(connect failure)",
        ),
    ],
)
def test_classify_uses_slurms_own_words(stderr: str, kind: type, message: str) -> None:
    error = slurmcli.classify(1, stderr, "sbatch")
    assert type(error) is kind and str(error) == message


def test_scancel_argv() -> None:
    assert slurmcli.scancel_argv(5) == ["scancel", "5"]
    assert slurmcli.scancel_argv(5, "TERM") == ["scancel", "--signal=TERM", "--full", "5"]
    # Pause/resume go to the job's entry process, which stops/continues the attempt's group.
    assert slurmcli.scancel_argv(5, "STOP") == ["scancel", "--batch", "--signal=USR1", "5"]
    assert slurmcli.scancel_argv(5, "CONT") == ["scancel", "--batch", "--signal=USR2", "5"]


def test_outcome_from_slurm_without_an_exit_record() -> None:
    def job(state: str, **kw: object) -> slurmcli.Job:
        return slurmcli.Job(1, "bantzd-1-1", state, "vm", "", "", **kw)  # type: ignore[arg-type]

    assert outcome_from_slurm(job("COMPLETED", exit_status=0)).ok
    assert outcome_from_slurm(job("FAILED", exit_status=9)).signal == 9
    assert outcome_from_slurm(job("TIMEOUT")).signal == signal.SIGTERM
    assert not outcome_from_slurm(job("NODE_FAIL")).known
    assert not outcome_from_slurm(job("CANCELLED")).known  # never ran
    assert outcome_from_slurm(job("CANCELLED", start_time=1.0)).signal == signal.SIGKILL


def test_own_env_is_what_the_task_adds() -> None:
    base = {"PATH": "/bin", "HOME": "/h"}
    env = {"PATH": "/bin", "HOME": "/h", "TOKEN": "x", "BANTZ_TASK_ID": "3"}
    assert own_env(env, base) == {"TOKEN": "x", "BANTZ_TASK_ID": "3"}


def test_task_changes_reason_node_and_start() -> None:
    state = TaskState(
        1,
        "t",
        attempts=1,
        attempt_log=[{"attempt": 1, "start": "2026-01-01T00:00:00+00:00", "end": None}],
    )
    watched = {
        "slurm": {"job_id": 9, "state": "RUNNING", "node": "n1", "reason": ""},
        "reason": None,
        "node": "n1",
        "started": "2026-01-01T00:05:00+00:00",
    }
    changes = task_changes(state, watched)
    entry = changes["attempt_log"][-1]
    assert entry["node"] == "n1" and entry["start"] == "2026-01-01T00:05:00+00:00"
    assert entry["submitted"] == "2026-01-01T00:00:00+00:00"
    assert "reason" not in changes  # None already
    for key, value in changes.items():
        setattr(state, key, value)
    assert task_changes(state, watched) == {}  # nothing new: no write
    assert nodes_text(state) == "n1" and job_text(state.slurm) == "job 9 on n1 (RUNNING)"


def _cands(n: int, remote: bool) -> list[Candidate]:
    return [Candidate(id=i, name=f"t{i}", remote=remote) for i in range(1, n + 1)]


def test_slurm_tasks_take_no_local_slot_and_are_bounded_by_max_submitted() -> None:
    cands = [*_cands(3, remote=True), Candidate(id=9, name="local")]
    decision = decide(cands, [], running=1, max_parallel=1, now=0, remote=RemoteRoom(2, 2))
    assert decision.start == [1, 2]
    assert decision.waiting[3] == "waiting for a Slurm slot (2 of 2 submitted)"
    assert decision.waiting[9].startswith("waiting for a free slot")
    assert decision.transient_waits()


def test_slurm_unreachable_makes_slurm_tasks_wait_with_that_reason() -> None:
    room = RemoteRoom(5, 5, "slurm: unreachable (connect failure)")
    decision = decide(_cands(1, True), [], running=0, max_parallel=2, now=0, remote=room)
    assert decision.start == [] and decision.waiting[1] == "slurm: unreachable (connect failure)"
    assert decision.transient_waits()  # `run --once` waits for Slurm to come back


def test_the_executor_config_table() -> None:
    cfg = config_from_mapping(
        {"executor": {"kind": "slurm", "slurm": {"sbatch_args": ["--qos=x"]}}}
    )
    assert cfg.executor.kind == "slurm" and cfg.executor.slurm.sbatch_args == ("--qos=x",)
    assert cfg.executor.slurm.max_submitted == 50 and cfg.executor.slurm.poll_interval == 5
    with pytest.raises(ConfigError) as e:
        config_from_mapping(
            {"executor": {"kind": "pbs", "slurm": {"max_submitted": 0, "poll_intervall": "1s"}}}
        )
    text = str(e.value)
    assert "executor.kind: expected local or slurm, got 'pbs'" in text
    assert "executor.slurm.max_submitted: expected a whole number >= 1" in text
    assert "executor.slurm.poll_intervall: unknown setting (did you mean 'poll_interval'?)" in text


def test_the_task_file_executor_field() -> None:
    assert parse_task("run: x\nexecutor: slurm\n", default_name="a").executor == "slurm"
    assert parse_task("run: x\n", default_name="a").executor is None
    with pytest.raises(TaskFileError, match="executor: expected local or slurm, got 'k8s'"):
        parse_task("run: x\nexecutor: k8s\n", default_name="a")
