"""The Slurm command line, as bantzd uses it: `sbatch --parsable`, `squeue --json`, `scancel`.

No slurmrestd, no pyslurm, no slurmdbd: the commands every Slurm cluster has. The pure half
(building the `sbatch` argv, the job name and comment, parsing what the commands print) is
unit-tested against outputs captured from Slurm 22.05; `run` is the one place a command is
executed, with a timeout, the environment given, and nothing secret on its command line
(a task's `env:` travels in a private file in its folder, never as `--export=K=V`).

A job of this home is recognised by its name, `bantzd-<id>-<attempt>`, and its comment,
`bantzd:<step index>:<home folder>`: two homes of one user never mistake each other's jobs.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bantzd.errors import BantzError

JOB_PREFIX = "bantzd-"
COMMENT_PREFIX = "bantzd:"
# States in which a job holds or waits for a node; every other state is an end.
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)
PENDING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"})
# What Slurm prints when the controller does not answer (not the job's fault).
_UNREACHABLE = (
    "unable to contact slurm controller",
    "socket timed out",
    "connection refused",
    "zero bytes were transmitted",
    "slurm_load_jobs error: unexpected message",
    "communication connection failure",
    "unable to establish controller",
    "temporarily unable to accept job",
)
COMMAND_TIMEOUT = 20.0


class SlurmError(BantzError):
    """A Slurm command failed; the message is Slurm's own (its last stderr line)."""


class SlurmRefused(SlurmError):
    """Slurm answered and refused (bad partition, too many GPUs, a bad sbatch argument)."""


class SlurmUnreachable(SlurmError):
    """The controller did not answer: nothing is decided, try again later."""


@dataclass(frozen=True)
class JobSpec:
    """One attempt as a batch job: what `sbatch_argv` needs."""

    name: str
    comment: str
    output: str
    cwd: str
    script: str  # the batch script's text (fed on stdin)
    cpus: float | None = None
    memory: int | None = None  # bytes
    gpus: int = 0
    time_limit: float | None = None  # seconds; rounded up to whole minutes
    partition: str = ""
    extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class Job:
    """One job as `squeue --json` shows it."""

    job_id: int
    name: str
    state: str
    node: str
    reason: str
    comment: str
    start_time: float | None = None
    exit_status: int | None = None  # the raw wait status Slurm keeps (`exit_code`)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def task(self) -> tuple[int, int] | None:
        """(task id, attempt) from a `bantzd-<id>-<attempt>` name, else None."""
        return parse_job_name(self.name)

    @property
    def step_index(self) -> int:
        parsed = parse_comment(self.comment)
        return parsed[0] if parsed else -1

    @property
    def home(self) -> str | None:
        parsed = parse_comment(self.comment)
        return parsed[1] if parsed else None


def job_name(task_id: int, attempt: int) -> str:
    return f"{JOB_PREFIX}{task_id}-{attempt}"


def parse_job_name(name: str) -> tuple[int, int] | None:
    m = re.fullmatch(r"bantzd-(\d+)-(\d+)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def job_comment(step_index: int, home: str) -> str:
    return f"{COMMENT_PREFIX}{step_index}:{home}"


def parse_comment(comment: str) -> tuple[int, str] | None:
    if not comment.startswith(COMMENT_PREFIX):
        return None
    step, sep, home = comment[len(COMMENT_PREFIX) :].partition(":")
    try:
        return (int(step), home) if sep else None
    except ValueError:
        return None


def time_minutes(seconds: float) -> int:
    """Slurm's `--time` in whole minutes, rounded up (at least 1)."""
    return max(1, math.ceil(seconds / 60.0 - 1e-9))


def sbatch_argv(spec: JobSpec) -> list[str]:
    """`sbatch --parsable ...` for one attempt; the script comes on stdin.

    `--no-requeue`: bantzd decides retries (and a Slurm requeue waits `cred_expire`).
    `--open-mode=append`: output.log keeps every attempt, its marker first.
    The cluster's `sbatch_args` come last, so they can override what bantzd chose.
    """
    argv = [
        "sbatch",
        "--parsable",
        f"--job-name={spec.name}",
        f"--comment={spec.comment}",
        f"--output={spec.output}",
        "--open-mode=append",
        f"--chdir={spec.cwd}",
        "--no-requeue",
    ]
    if spec.partition:
        argv.append(f"--partition={spec.partition}")
    if spec.cpus:
        argv.append(f"--cpus-per-task={max(1, math.ceil(spec.cpus))}")
    if spec.memory:
        argv.append(f"--mem={max(1, math.ceil(spec.memory / (1 << 20)))}M")
    if spec.gpus:
        argv.append(f"--gres=gpu:{spec.gpus}")
    if spec.time_limit is not None:
        argv.append(f"--time={time_minutes(spec.time_limit)}")
    argv.extend(spec.extra)
    return argv


def parse_sbatch(stdout: str) -> int:
    """The job id from `sbatch --parsable` (`123` or `123;cluster`)."""
    text = stdout.strip().splitlines()[-1] if stdout.strip() else ""
    head = text.split(";", 1)[0].strip()
    if not head.isdigit():
        raise SlurmError(f"sbatch printed no job id: {stdout.strip()[:200]!r}")
    return int(head)


def parse_squeue_json(text: str) -> list[Job]:
    """The jobs in `squeue --json` output (22.05: `{"meta", "errors", "jobs": [...]}`)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise SlurmError(f"squeue --json printed no JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise SlurmError("squeue --json printed no job list")
    errors = data.get("errors")
    if errors:
        # 22.05 exits 0 with an empty list when the controller does not answer: that is no
        # news about the jobs, and never "they are all gone".
        first = errors[0] if isinstance(errors[0], dict) else {}
        words = first.get("description") or first.get("error") or "squeue reported an error"
        source = first.get("source")
        raise SlurmUnreachable(f"{source}: {words}" if source else str(words))
    return [job for raw in data["jobs"] if (job := _job(raw)) is not None]


def _job(raw: Any) -> Job | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("job_id"), int):
        return None
    state = raw.get("job_state")
    if isinstance(state, list):  # newer Slurm: a list of flags, the base state first
        state = state[0] if state else ""
    start = raw.get("start_time")
    if isinstance(start, dict):  # newer Slurm: {"set": true, "number": ...}
        start = start.get("number") if start.get("set") else None
    exit_code = raw.get("exit_code")
    if isinstance(exit_code, dict):  # newer Slurm: {"status": ..., "return_code": ...}
        rc = exit_code.get("return_code")
        exit_code = rc.get("number") << 8 if isinstance(rc, dict) and rc.get("set") else None
    return Job(
        job_id=raw["job_id"],
        name=str(raw.get("name") or ""),
        state=str(state or ""),
        node=str(raw.get("nodes") or ""),
        reason=str(raw.get("state_reason") or ""),
        comment=str(raw.get("comment") or ""),
        start_time=float(start) if isinstance(start, int | float) and start > 0 else None,
        exit_status=exit_code if isinstance(exit_code, int) else None,
    )


def ours(jobs: Iterable[Job], home: str) -> list[Job]:
    """The jobs of this home: a bantzd job name and this home in the comment."""
    return [j for j in jobs if j.task is not None and j.home == home]


# Pause and resume: Slurm's own SIGSTOP stops only the batch shell (and marks the job
# STOPPED), not the attempt's process group; so the job's entry process gets one of these
# (`--batch`: it alone) and stops or continues the attempt's group itself (slurmjob.py).
PAUSE_SIGNAL, RESUME_SIGNAL = "USR1", "USR2"


def scancel_argv(job_id: int, signal_name: str | None = None) -> list[str]:
    """`scancel JOB` (end it), `scancel --signal=SIG --full JOB` (every process of it), or
    for STOP/CONT the pause/resume signal to the job's entry process alone."""
    if signal_name is None:
        return ["scancel", str(job_id)]
    if signal_name in ("STOP", "CONT"):
        forward = PAUSE_SIGNAL if signal_name == "STOP" else RESUME_SIGNAL
        return ["scancel", "--batch", f"--signal={forward}", str(job_id)]
    return ["scancel", f"--signal={signal_name}", "--full", str(job_id)]


def classify(returncode: int, stderr: str, what: str) -> SlurmError:
    """The error of a failed command: unreachable (try later) or refused (Slurm's words)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "unrecognized" in line]
    message = (errors or lines or [f"{what} exited with {returncode}"])[-1 if errors else 0]
    lowered = stderr.lower()
    if any(words in lowered for words in _UNREACHABLE):
        return SlurmUnreachable(message)
    return SlurmRefused(message)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = COMMAND_TIMEOUT,
) -> str:
    """Run one Slurm command; its stdout, or `SlurmError` (unreachable or refused)."""
    try:
        res = subprocess.run(
            list(argv),
            input=stdin if stdin is not None else "",
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            errors="replace",
        )
    except subprocess.TimeoutExpired:
        raise SlurmUnreachable(f"{argv[0]} did not answer within {timeout:g}s") from None
    except FileNotFoundError:
        raise SlurmUnreachable(f"{argv[0]} is not installed here") from None
    except OSError as e:
        raise SlurmUnreachable(f"{argv[0]} could not run: {e.strerror or e}") from None
    if res.returncode != 0:
        raise classify(res.returncode, res.stderr, argv[0])
    return res.stdout


def job_state(
    job_id: int, env: Mapping[str, str] | None = None, *, runner: Any = None
) -> str | None:
    """One job's state now (`scontrol show job -o`), None when Slurm no longer knows it.

    Asked before a signal to a job the last poll saw pending: `scancel --signal` on a
    pending job retries for about 95 s before it gives up ("transitional state")."""
    try:
        out = (runner or run)(["scontrol", "show", "job", "-o", str(job_id)], env=env, timeout=10)
    except SlurmRefused:
        return None  # "Invalid job id specified"
    m = re.search(r"(?:^|\s)JobState=(\S+)", out)
    return m.group(1) if m else None


def squeue(env: Mapping[str, str] | None = None) -> list[Job]:
    """Every job Slurm knows now (22.05's `--json` ignores filters: `ours` picks ours)."""
    return parse_squeue_json(run(["squeue", "--json"], env=env))


def command_env() -> dict[str, str]:
    """The environment Slurm commands run with: ours, less a surrounding job's variables
    (a supervisor started inside a Slurm job must not submit into that job's allocation)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
