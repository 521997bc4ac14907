"""Per-attempt cost of starting and reaping a worker: the real `spawn` and `reap`, real task
folders, `run: "true"`.

    python benchmarks/spawn.py [--n 300] [--modes cgroup,nocgroup] [--nice 0,10] [--tmp DIR]

For each containment (a cgroup per attempt where this machine allows one, and
BANTZ_NO_CGROUP=1: subreaper + environment marker) and each niceness, N attempts run one
after the other, each in its own task folder of a fresh home: `spawn()` (what the
supervisor's main thread pays to start it), then a wait until the wrapper has exited (not
counted: the task's own run time), then `reap()` (what the main thread pays to end it: the
kill of its group, the cgroup or marker sweep, the wait status). Printed per attempt, in
ms: p50 and p90 of spawn, of reap, of their sum, and of the wall time from the start of
spawn() to the end of reap() (which includes the wrapper's and the command's own run); then
the CPU time per attempt of this process and of its children (wrappers, nice(1), the
command), which other load on a shared machine does not inflate as it does wall times.

Run it before and after a change to the spawn path, on the same machine, one after the
other; it uses whatever `bantzd` is first on sys.path (this checkout when run from it).
`strace -f -c -o FILE python benchmarks/spawn.py --n 100 --modes cgroup --nice 10` counts
the syscalls of the same work (the wrapper's and the command's included).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bantzd.paths import TaskPaths
from bantzd.workers import escape, spawn


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_ms() -> tuple[float, float]:
    """CPU time (user + system, ms) of this process and of its reaped children: a figure
    that other load on the machine does not inflate, unlike wall times."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (me.ru_utime + me.ru_stime) * 1e3, (kids.ru_utime + kids.ru_stime) * 1e3


def run_mode(root: Path, n: int, cgroup: bool, nice: int) -> dict[str, list[float]]:
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    (home / "tasks").mkdir()
    if cgroup:
        os.environ.pop(escape.NO_CGROUP_ENV, None)
    else:
        os.environ[escape.NO_CGROUP_ENV] = "1"
    got = escape.setup(home)
    if cgroup and got.cgroup_base is None:
        raise SystemExit("no usable cgroup v2 here: run with --modes nocgroup")
    env = dict(os.environ)
    argv = spawn.command_argv("true")
    times: dict[str, list[float]] = {"spawn": [], "reap": [], "both": [], "wall": []}
    cpu0 = cpu_ms()
    for i in range(n + 5):  # 5 untimed first: caches, the first mkdir of the base
        paths = TaskPaths(home / "tasks" / f"{i + 1:06d}")
        paths.dir.mkdir()
        t0 = time.perf_counter()
        popen = spawn.spawn(
            paths, argv, attempt=1, cwd=str(home), env=env, nice=nice, marker="=== m ===\n"
        )
        t1 = time.perf_counter()
        att = spawn.Attempt(
            task_id=i + 1,
            attempt=1,
            pgid=popen.pid,
            paths=paths,
            started_mono=time.monotonic(),
            popen=popen,
        )
        # Wait (untimed) the way the supervisor notices an end: without reaping.
        os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
        t2 = time.perf_counter()
        outcome = spawn.reap(att)
        t3 = time.perf_counter()
        if not outcome.ok:
            raise SystemExit(f"attempt {i + 1}: {outcome.describe()}")
        if i >= 5:
            times["spawn"].append((t1 - t0) * 1e3)
            times["reap"].append((t3 - t2) * 1e3)
            times["both"].append((t1 - t0 + t3 - t2) * 1e3)
            times["wall"].append((t3 - t0) * 1e3)
    self_ms, child_ms = (b - a for a, b in zip(cpu0, cpu_ms(), strict=True))
    # Includes the 5 untimed attempts' share: negligible next to N, and the same both ways.
    times["cpu_self"] = [self_ms / (n + 5)]
    times["cpu_children"] = [child_ms / (n + 5)]
    escape.setup(home)  # as a restarted supervisor would: sweeps what is left
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="attempts per mode")
    ap.add_argument("--modes", default="cgroup,nocgroup")
    ap.add_argument("--nice", default="0,10", help="nicenesses to run at, comma-separated")
    ap.add_argument("--tmp", default=None, help="where the homes go (default: the system tmp)")
    args = ap.parse_args()
    print(f"bantzd from {Path(spawn.__file__).resolve().parents[2]}; n={args.n} per row")
    head = f"{'containment':<11} {'nice':>4}"
    for col in ("spawn", "reap", "spawn+reap", "wall"):
        head += f" | {col + ' p50':>14} {'p90':>6}"
    head += " | cpu: super  children"
    print(head)
    with tempfile.TemporaryDirectory(prefix="bantzd-spawn-", dir=args.tmp) as tmp:
        for mode in args.modes.split(","):
            for nice in (int(x) for x in args.nice.split(",")):
                times = run_mode(Path(tmp), args.n, mode == "cgroup", nice)
                row = f"{mode:<11} {nice:>4}"
                for key in ("spawn", "reap", "both", "wall"):
                    row += f" | {pct(times[key], 0.5):>14.2f} {pct(times[key], 0.9):>6.2f}"
                row += f" | {times['cpu_self'][0]:>10.2f} {times['cpu_children'][0]:>9.2f}"
                print(row, flush=True)
    print(
        "ms per attempt; spawn and reap: the supervisor's main thread (wall); cpu: user+sys"
        " of this process (super) and of the wrappers and commands (children), per attempt"
    )


if __name__ == "__main__":
    main()
