"""The Slurm executor one tick at a time, against a fake Slurm command line.

`FakeSlurm` answers `sbatch`, `squeue --json` and `scancel` as Slurm 22.05 does (the JSON
shape is the one captured in tests/unit/data); the supervisor, the executor and the client
are the real ones. The real cluster is in tests/e2e/test_slurm.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from bantzd.config import load_config
from bantzd.supervisor.mixed import MixedExecutor
from bantzd.supervisor.slurm import SlurmExecutor
from bantzd.workers.slurmcli import SlurmRefused, SlurmUnreachable
from tests.tick.conftest import Harness
from tests.tick.fakes import FakeExecutor


class FakeSlurm:
    """Jobs in a dict; a test moves them (`set`), stops the controller (`down`)."""

    def __init__(self) -> None:
        self.jobs: dict[int, dict] = {}
        self.calls: list[list[str]] = []
        self.down = False
        self.refuse: str | None = None
        self.next_id = 100

    def __call__(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        timeout: float = 20,
    ) -> str:
        self.calls.append(list(argv))
        if self.down:
            raise SlurmUnreachable("Unable to contact slurm controller (connect failure)")
        if argv[0] == "sbatch":
            if self.refuse:
                raise SlurmRefused(self.refuse)
            opts = dict(a[2:].split("=", 1) for a in argv[1:] if "=" in a)
            self.next_id += 1
            self.jobs[self.next_id] = {
                "job_id": self.next_id,
                "name": opts["job-name"],
                "comment": opts["comment"],
                "job_state": "PENDING",
                "state_reason": "Priority",
                "nodes": "",
                "start_time": 0,
                "exit_code": 0,
                "argv": list(argv),
                "script": stdin,
            }
            return f"{self.next_id}\n"
        if argv[:3] == ["scontrol", "show", "job"]:
            job = self.jobs.get(int(argv[-1]))
            if job is None:
                raise SlurmRefused("slurm_load_jobs error: Invalid job id specified")
            return f"JobId={job['job_id']} JobName={job['name']} JobState={job['job_state']}\n"
        if argv[0] == "squeue":
            return json.dumps({"meta": {}, "errors": [], "jobs": list(self.jobs.values())})
        if argv[0] == "scancel":
            job = self.jobs[int(argv[-1])]
            # 22.05 retries a signal to a pending job for ~95 s, then refuses it.
            assert not (len(argv) > 2 and job["job_state"] == "PENDING"), "signal to a pending job"
            # A signal reaches a running job's processes; a plain cancel ends any job.
            if job["job_state"] == "PENDING" or (job["job_state"] == "RUNNING" and len(argv) == 2):
                job.update(job_state="CANCELLED")
            return ""
        raise AssertionError(f"unexpected command {argv}")

    def set(self, job_id: int, state: str, **fields: object) -> None:
        self.jobs[job_id].update(job_state=state, **fields)

    def of_task(self, task_id: int) -> list[dict]:
        return [j for j in self.jobs.values() if j["name"].startswith(f"bantzd-{task_id}-")]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Harness, FakeSlurm]]:
    h = Harness(
        tmp_path / "home",
        "max_parallel = 1",
        '[executor]\nkind = "slurm"\n[executor.slurm]\nmax_submitted = 2\npoll_interval = "5s"',
        fake=True,
    )
    slurm = FakeSlurm()
    config = load_config(h.home.config)
    h.executor = MixedExecutor(  # type: ignore[assignment]
        FakeExecutor(),
        SlurmExecutor(config.executor.slurm, 2.0, h.clock, run=slurm, background=False, env={}),
    )
    h.sup = h.new_supervisor()
    h.executor.setup(h.home.root)
    h.sup.recover()
    yield h, slurm
    h.close()


def _runs(h: Harness, slurm: FakeSlurm, job_id: int, task_id: int, node: str = "n1") -> None:
    """The job starts on its node, whose spawn takes worker.lock (`PID ATTEMPT STEP ...`)."""
    slurm.set(job_id, "RUNNING", nodes=node, start_time=int(h.clock.time()), state_reason="None")
    attempt = int(slurm.jobs[job_id]["name"].rsplit("-", 1)[1])
    (h.task_dir(task_id) / "worker.lock").write_text(f"4242 {attempt} -1 tok -\n")


def _poll(h: Harness) -> None:
    h.clock.advance(5)
    h.tick()


def _submit(h: Harness, n: int, extra: str = "") -> None:
    for i in range(n):
        h.submit(f"t{i}.yaml", f"name: t{i}\nrun: 'echo hi'\n{extra}")


def test_max_submitted_bounds_jobs_not_max_parallel(cluster) -> None:
    h, slurm = cluster
    _submit(h, 3)
    h.tick()
    assert [h.status(i) for i in (1, 2, 3)] == ["running", "running", "queued"]
    assert h.state(3)["reason"] == "waiting for a Slurm slot (2 of 2 submitted)"
    assert len([c for c in slurm.calls if c[0] == "sbatch"]) == 2
    _poll(h)
    assert h.state(1)["reason"] == "slurm: pending (Priority)"
    assert h.state(1)["slurm"] == {
        "job_id": 101,
        "state": "PENDING",
        "node": "",
        "reason": "Priority",
    }
    _runs(h, slurm, 101, 1)
    _poll(h)
    state = h.state(1)
    assert state["reason"] is None and state["slurm"]["node"] == "n1"
    assert state["attempt_log"][-1]["node"] == "n1"
    # The job ended: its exit record (written on the node) is the outcome.
    (h.task_dir(1) / "exit.json").write_text('{"rc": 0, "sig": 0, "attempt": 1, "step": -1}\n')
    slurm.set(101, "COMPLETED")
    _poll(h)
    assert h.status(1) == "done" and h.state(1)["slurm"]["state"] == "COMPLETED"
    h.tick()
    assert h.status(3) == "running"  # the freed Slurm slot


def test_one_squeue_per_poll_for_all_jobs(cluster) -> None:
    h, slurm = cluster
    _submit(h, 2)
    h.tick()
    before = len(slurm.calls)
    for _ in range(4):
        _poll(h)
        h.tick()  # between polls: no call
    squeues = [c for c in slurm.calls[before:] if c[0] == "squeue"]
    assert len(squeues) == 4 and len(slurm.calls) - before == 4


def test_no_env_value_on_the_command_line(cluster) -> None:
    h, slurm = cluster
    h.submit("s.yaml", "name: s\nrun: 'true'\nenv: {TOKEN: sekrit}\ntimeout: 90s\n"
             "resources: {cpus: 1.5, memory: 1GiB, gpus: 2}\n")  # fmt: skip
    h.tick()
    (job,) = slurm.jobs.values()
    assert "sekrit" not in " ".join(job["argv"]) + job["script"]
    assert "--cpus-per-task=2" in job["argv"] and "--mem=1024M" in job["argv"]
    assert "--gres=gpu:2" in job["argv"] and "--time=2" in job["argv"]  # 90s + 2s grace
    assert json.loads((h.task_dir(1) / "job.json").read_text())["env"]["TOKEN"] == "sekrit"
    assert (h.task_dir(1) / "job.json").stat().st_mode & 0o077 == 0


def test_an_unreachable_controller_loses_nothing(cluster) -> None:
    h, slurm = cluster
    _submit(h, 1)
    h.tick()
    slurm.down = True
    _poll(h)
    assert h.status(1) == "running"
    assert h.state(1)["reason"].startswith("slurm: unreachable (Unable to contact")
    h.submit("late.yaml", "name: late\nrun: 'true'\n")
    h.clock.advance(15)
    h.tick()
    h.tick()
    assert h.status(2) == "queued" and h.state(2)["reason"].startswith("slurm: unreachable")
    slurm.down = False
    h.clock.advance(15)
    h.tick()
    h.tick()
    assert h.status(1) == "running" and h.status(2) == "running"
    assert [len(slurm.of_task(i)) for i in (1, 2)] == [1, 1]


def test_a_refused_submit_fails_the_attempt_with_slurms_words(cluster) -> None:
    h, slurm = cluster
    slurm.refuse = "sbatch: error: Batch job submission failed: Invalid partition name specified"
    _submit(h, 1)
    h.tick()
    state = h.state(1)
    assert state["status"] == "failed"
    assert state["error"] == f"Slurm refused the job: {slurm.refuse}"


def test_cancel_of_a_pending_job_and_stop_of_a_running_one(cluster) -> None:
    h, slurm = cluster
    _submit(h, 2)
    h.tick()
    _runs(h, slurm, 101, 1)
    _poll(h)
    att2 = h.sup.attempts.get(2)
    h.sup.attempts.terminate(att2, "cancelled")
    # Pending (asked at once): nothing runs to get a signal, so it is cancelled.
    assert slurm.calls[-2:] == [["scontrol", "show", "job", "-o", "102"], ["scancel", "102"]]
    att1 = h.sup.attempts.get(1)
    h.sup.attempts.terminate(att1, "interrupted")
    assert slurm.calls[-1] == ["scancel", "--signal=TERM", "--full", "101"]
    _poll(h)
    assert h.status(2) == "cancelled"
    h.clock.advance(2)
    h.tick()  # the grace is over: cancel it
    assert slurm.calls[-1] == ["scancel", "101"]
    _poll(h)
    state = h.state(1)
    assert [e.get("reason") for e in state["history"]][-2:] == ["interrupted", None]
    assert state["interruptions"] == 1 and state["attempts"] == 2
    assert [j["name"] for j in slurm.of_task(1)] == ["bantzd-1-1", "bantzd-1-2"]


def test_an_interrupted_pending_job_gives_its_attempt_back(cluster) -> None:
    h, _ = cluster
    _submit(h, 1)
    h.tick()
    h.sup.request_stop()
    _poll(h)
    state = h.state(1)
    assert state["status"] == "queued" and state["attempts"] == 0
    assert state["reason"] == "not started: its Slurm job ended before it started"
    assert state["interruptions"] == 0


def test_a_restart_finds_its_jobs_and_never_submits_twice(cluster, tmp_path: Path) -> None:
    h, slurm = cluster
    _submit(h, 2)
    h.tick()
    _runs(h, slurm, 101, 1)
    # A restart (the old supervisor SIGKILLed): a new executor, the same Slurm.
    config = load_config(h.home.config)
    h.executor = MixedExecutor(  # type: ignore[assignment]
        FakeExecutor(),
        SlurmExecutor(config.executor.slurm, 2.0, h.clock, run=slurm, background=False, env={}),
    )
    (h.task_dir(2) / "slurm.job").unlink()  # as if it died before recording job 102's id
    h.sup = h.new_supervisor()
    h.executor.setup(h.home.root)
    h.sup.recover()
    h.tick()
    assert [len(slurm.of_task(i)) for i in (1, 2)] == [1, 1]
    assert sorted(a.pgid for a in h.sup.attempts) == [101, 102]
    (h.task_dir(2) / "exit.json").write_text('{"rc": 4, "sig": 0, "attempt": 1, "step": -1}\n')
    slurm.set(102, "FAILED", exit_code=4 << 8)
    _poll(h)
    assert h.status(2) == "failed" and h.state(2)["exit_code"] == 4


def test_a_task_may_say_where_it_runs(tmp_path: Path) -> None:
    h = Harness(tmp_path / "home", "max_parallel = 1", fake=True)  # [executor] kind = "local"
    slurm = FakeSlurm()
    config = load_config(h.home.config)
    local = FakeExecutor()
    h.executor = MixedExecutor(  # type: ignore[assignment]
        local,
        SlurmExecutor(config.executor.slurm, 2.0, h.clock, run=slurm, background=False, env={}),
    )
    h.sup = h.new_supervisor()
    h.sup.recover()
    try:
        h.submit("a.yaml", "name: a\nrun: 'true'\n")
        h.submit("b.yaml", "name: b\nrun: 'true'\nexecutor: slurm\n")
        h.submit("c.yaml", "name: c\nrun: 'true'\nexecutor: slurm\n")
        h.tick()
        # The local task takes the one local slot; the Slurm ones take none.
        assert [h.status(i) for i in (1, 2, 3)] == ["running", "running", "running"]
        assert [launch.task_id for launch in local.launches] == [1]
        assert sorted(j["name"] for j in slurm.jobs.values()) == ["bantzd-2-1", "bantzd-3-1"]
    finally:
        h.close()
