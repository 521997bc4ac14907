"""What running tasks through Slurm costs: submit -> running latency, and the polling cost.

    python benchmarks/slurm_latency.py [--tasks 10] [--pending 200] [--seconds 60]
                                       [--poll 5s] [--tmp DIR] [--keep]

Needs a cluster that answers (`contrib/slurm/single-node.sh start`, then SLURM_CONF).

Latency: a home with `[executor] kind = "slurm"`; TASKS tasks `run: date +%s.%N > FILE`
are renamed into the spool one at a time while `bantzd run` runs, each after the previous
one is done. Per task: drop -> the command runs on the node (FILE's time), sbatch returned
-> runs (slurm.job's mtime is written right after sbatch returns), and the command ran ->
bantzd recorded `done` (state.json's `finished`, whole seconds, so +-1 s).

Polling: PENDING tasks `sleep 1` whose jobs are submitted held (`sbatch_args =
["--hold"]`), so they all pend; once all are submitted the supervisor is watched for
SECONDS: squeue calls (a `squeue` shim first in PATH counts them), the supervisor's own
CPU seconds and its children's (the squeue processes), per minute. Then `bantzd stop`,
which cancels every job, is timed too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_for(home: Path, shim: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env["BANTZ_HOME"] = str(home)
    if shim is not None:
        env["PATH"] = f"{shim}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def make_home(root: Path, poll: str, extra: str = "") -> Path:
    home = root
    subprocess.run([sys.executable, "-m", "bantzd", "--home", str(home), "init"],
                   env=env_for(home), capture_output=True, check=True)  # fmt: skip
    (home / "config.toml").write_text(
        'nice = 0\nstop_grace = "5s"\nscan_interval = "0.5s"\n[throttle]\nmax_load = 1000\n'
        f'[executor]\nkind = "slurm"\n[executor.slurm]\npoll_interval = "{poll}"\n{extra}'
    )
    return home


def drop(home: Path, name: str, text: str) -> None:
    spool = home / "spool"
    tmp = spool / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, spool / name)


def state(home: Path, task_id: int) -> dict:
    try:
        return json.loads((home / "tasks" / str(task_id) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def wait(cond, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := cond()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)
    return value


def start_supervisor(home: Path, shim: Path | None = None) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-m", "bantzd", "--home", str(home), "run"],
                            env=env_for(home, shim), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)  # fmt: skip
    wait(lambda: (home / "bantzd.pid").exists(), 60, "the supervisor")
    return proc


def cpu(pid: int) -> tuple[float, float]:
    """(own, children's) CPU seconds of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


def latency(root: Path, tasks: int, poll: str) -> list[tuple[str, float, float, float]]:
    home = make_home(root / f"latency-{poll}", poll)
    proc = start_supervisor(home)
    to_run, sbatch_to_run, to_done = [], [], []
    try:
        for i in range(1, tasks + 1):
            stamp = home / f"ran-{i}"
            dropped = time.time()
            drop(home, f"t{i}.yaml", f"name: t{i}\nrun: date +%s.%N > {stamp}\n")
            wait(lambda i=i: state(home, i).get("status") == "done", 120, f"task {i}")
            ran = float(stamp.read_text())
            submitted = (home / "tasks" / str(i) / "slurm.job").stat().st_mtime
            finished = state(home, i)["finished"]
            from datetime import datetime

            done_at = datetime.fromisoformat(finished).timestamp()
            to_run.append(ran - dropped)
            sbatch_to_run.append(ran - submitted)
            to_done.append(done_at - ran)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
    rows = []
    for label, values in (
        ("drop -> runs on the node", to_run),
        ("sbatch returned -> runs", sbatch_to_run),
        ("ran -> bantzd says done (+-1 s)", to_done),
    ):
        rows.append((f"{label} (poll {poll})", pct(values, 0.5), pct(values, 0.9), max(values)))
    return rows


def polling(root: Path, pending: int, seconds: float, poll: str) -> dict[str, float]:
    shim = root / "shim"
    shim.mkdir()
    real = shutil.which("squeue")
    if real is None:
        raise SystemExit("squeue is not installed here")
    calls = root / "squeue-calls"
    (shim / "squeue").write_text(f'#!/bin/sh\necho x >> {calls}\nexec {real} "$@"\n')
    (shim / "squeue").chmod(0o755)
    home = make_home(
        root / "polling",
        poll,
        f'max_submitted = {pending + 10}\nsbatch_args = ["--hold"]\n',
    )
    for i in range(1, pending + 1):
        drop(home, f"p{i}.yaml", f"name: p{i}\nrun: sleep 1\n")
    began = time.monotonic()
    proc = start_supervisor(home, shim)
    try:
        wait(
            lambda: all((home / "tasks" / str(i) / "slurm.job").exists()
                        and state(home, i).get("pid") for i in range(1, pending + 1)),
            600, f"{pending} jobs submitted",
        )  # fmt: skip
        submitted_in = time.monotonic() - began
        time.sleep(2)  # the tick that submitted them is over
        n0 = len(calls.read_text().splitlines()) if calls.exists() else 0
        own0, kids0 = cpu(proc.pid)
        t0 = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - t0
        n1 = len(calls.read_text().splitlines())
        own1, kids1 = cpu(proc.pid)
        reasons = [state(home, i).get("reason") or "" for i in range(1, pending + 1)]
        held = sum(1 for r in reasons if r.startswith("slurm: pending"))
    finally:
        t_stop = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(600)
        stop_took = time.monotonic() - t_stop
    per_min = 60.0 / elapsed
    return {
        "pending jobs": float(pending),
        "tasks showing 'slurm: pending (...)'": float(held),
        "seconds to submit them all (incl. start-up)": submitted_in,
        "squeue calls per minute": (n1 - n0) * per_min,
        "supervisor CPU s per minute (own)": (own1 - own0) * per_min,
        "squeue CPU s per minute (children)": (kids1 - kids0) * per_min,
        "seconds for `bantzd stop` to cancel them all": stop_took,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=10)
    ap.add_argument("--pending", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--poll", default="5s", help="poll_interval (default 5s, the default)")
    ap.add_argument("--tmp", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    probe = subprocess.run(["sinfo", "-h", "-o", "%P %D %c %T"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"no Slurm cluster answers: {probe.stderr.strip()}", file=sys.stderr)
        return 1
    root = Path(tempfile.mkdtemp(prefix="bantzd-slurm-bench-", dir=args.tmp))
    root.chmod(0o755)
    try:
        print(f"cluster: {' / '.join(probe.stdout.split())}; bantzd {REPO}")
        rows = latency(root, args.tasks, "1s") + latency(root, args.tasks, args.poll)
        head = f"latency, {args.tasks} tasks one at a time (s)"
        print(f"\n{head:<48} {'p50':>7} {'p90':>7} {'max':>7}")
        for label, p50, p90, top in rows:
            print(f"{label:<48} {p50:7.2f} {p90:7.2f} {top:7.2f}")
        cost = polling(root, args.pending, args.seconds, args.poll)
        print(f"\npolling, {args.pending} held jobs, {args.seconds:g} s, poll_interval {args.poll}")
        for label, value in cost.items():
            print(f"{label:<48} {value:9.2f}")
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
