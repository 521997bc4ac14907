"""The one-node cluster the Slurm tests use is a real Slurm: it runs jobs, gives two GPU
jobs different (fake) GPUs, refuses what no node can run, and records exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.slurmcluster import Cluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180), pytest.mark.xdist_group("slurm")]


def _job_state(slurm: Cluster, job: str) -> dict[str, str]:
    out = slurm.run("scontrol", "show", "job", "-o", job).stdout
    return dict(f.split("=", 1) for f in out.split() if "=" in f)


def _finished(slurm: Cluster, job: str) -> bool:
    return _job_state(slurm, job).get("JobState") in {"COMPLETED", "FAILED", "CANCELLED"}


def test_two_gpu_jobs_get_different_gpus_and_exit_codes_are_kept(
    slurm: Cluster, tmp_path: Path
) -> None:
    jobs = []
    for i, code in enumerate((0, 3)):
        res = slurm.run(
            "sbatch",
            "--parsable",
            "--gres=gpu:1",
            f"--output={tmp_path}/out-{i}.log",
            f"--chdir={tmp_path}",
            "--wrap",
            # Each job waits (up to 60 s) until both run: together they hold both GPUs.
            f"touch {tmp_path}/running-{i}; echo GPU=$CUDA_VISIBLE_DEVICES; "
            f"for _ in $(seq 600); do [ -e {tmp_path}/running-{1 - i} ] && break; sleep 0.1; "
            f"done; exit {code}",
        )
        assert res.returncode == 0, res.stderr
        jobs.append(res.stdout.strip().split(";")[0])
    for job in jobs:
        wait_for(lambda job=job: _finished(slurm, job), timeout=120, what=f"job {job}")
    assert all((tmp_path / f"running-{i}").exists() for i in range(2))
    gpus = {(tmp_path / f"out-{i}.log").read_text().strip() for i in range(2)}
    assert gpus == {"GPU=0", "GPU=1"}
    assert [_job_state(slurm, j)["ExitCode"] for j in jobs] == ["0:0", "3:0"]


def test_a_job_no_node_can_run_is_refused_at_submit(slurm: Cluster) -> None:
    res = slurm.run("sbatch", "--parsable", "--gres=gpu:8", "--wrap", "true")
    assert res.returncode != 0
    assert "Requested node configuration is not available" in res.stderr, res.stderr
    res = slurm.run("sbatch", "--parsable", "--partition=nosuch", "--wrap", "true")
    assert res.returncode != 0 and "invalid partition" in res.stderr.lower(), res.stderr
