"""What a Slurm job of bantzd runs on its node: the same attempt wrapper as a local attempt.

    python -m bantzd.workers.slurmjob TASK_DIR

The batch script the supervisor submits is one line calling this. It reads `job.json`,
which the supervisor wrote (0600) into the task folder before `sbatch` (the task's `env:`
and BANTZ_* variables travel there, never on a command line that `ps` or `squeue` shows),
removes it, and starts the attempt with `spawn.spawn`, exactly as a local attempt starts:
worker.lock held by the attempt's processes, the marker line in output.log, the exit
record written by the wrapper. So checkpoints, progress, questions and every in-task
command work on the node unchanged; the home folder must be on storage the nodes share.

This process outlives the wrapper on purpose: it ignores the polite stop signals (a
handler, not SIG_IGN, so the task starts with default dispositions), waits for the
wrapper, ends what the attempt left behind (`spawn.reap`), and makes the exit record
durable, writing it itself when the wrapper could not. No supervisor reaps a job, so the
record is the attempt's outcome. Its own exit status is the task's, for `squeue` readers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from bantzd.paths import TaskPaths
from bantzd.queue.atomic import fsync_dir, read_json, write_bytes_atomic
from bantzd.workers import spawn

JOB_FILE = "job.json"


def job_file(paths: TaskPaths) -> Path:
    return paths.dir / JOB_FILE


def _ignore(signum: int, frame: object) -> None:
    """Outlive the attempt: the stop signal is for the task, which got it too."""


_group: list[int] = []  # the attempt's process group, once it started


def _forward(signum: int, frame: object) -> None:
    """`bantzd pause` / `resume` (slurmcli.PAUSE_SIGNAL, RESUME_SIGNAL): SIGSTOP or SIGCONT
    to the attempt's whole group."""
    if _group:
        try:
            os.killpg(_group[0], signal.SIGSTOP if signum == signal.SIGUSR1 else signal.SIGCONT)
        except OSError:
            pass


def _record(paths: TaskPaths, attempt: int, step_index: int, outcome: spawn.Outcome) -> None:
    """A durable exit record for this attempt (the wrapper's, or one from `outcome`)."""
    data = read_json(paths.exit_record)
    if isinstance(data, dict) and data.get("attempt") == attempt:
        try:
            fd = os.open(paths.exit_record, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            fsync_dir(paths.dir)
        except OSError:
            pass
        return
    if outcome.signal is not None:
        rc, sig = 128 + outcome.signal, outcome.signal
    else:
        rc, sig = (outcome.exit_code if outcome.exit_code is not None else 1), 0
    record = {"rc": rc, "sig": sig, "attempt": attempt, "step": step_index}
    write_bytes_atomic(paths.exit_record, (json.dumps(record) + "\n").encode())


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m bantzd.workers.slurmjob TASK_DIR", file=sys.stderr)
        return 2
    paths = TaskPaths(Path(argv[0]))
    try:
        job = json.loads(job_file(paths).read_bytes())
    except (OSError, ValueError) as e:
        print(f"bantzd: cannot read {job_file(paths)}: {e}", flush=True)
        return 1
    try:
        job_file(paths).unlink()  # it holds the task's env: gone once read
    except OSError:
        pass
    attempt, step_index = int(job["attempt"]), int(job.get("step_index", -1))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _ignore)
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, _forward)
    env = {**os.environ, **job["env"]}
    env["BANTZ_NODE"] = socket.gethostname()
    try:
        popen = spawn.spawn(
            paths,
            list(job["argv"]),
            attempt=attempt,
            cwd=job["cwd"],
            env=env,
            nice=int(job.get("nice", 0)),
            marker=job["marker"],
            step_index=step_index,
            umask=job.get("umask"),
        )
    except (spawn.SpawnError, OSError) as e:
        why = f"could not start on {socket.gethostname()}: {e}"
        print(job["marker"] + f"bantzd: {why}", flush=True)
        write_bytes_atomic(paths.reason, (why + "\n").encode())
        _record(paths, attempt, step_index, spawn.Outcome(exit_code=127))
        return 127
    _group.append(popen.pid)
    att = spawn.Attempt(
        task_id=int(job.get("task_id", 0)),
        attempt=attempt,
        pgid=popen.pid,
        paths=paths,
        started_mono=time.monotonic(),
        popen=popen,
        step_index=step_index,
    )
    while True:
        try:
            os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    outcome = spawn.reap(att)
    _record(paths, attempt, step_index, outcome)
    if outcome.signal is not None:
        return 128 + outcome.signal
    return outcome.exit_code if outcome.exit_code is not None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
