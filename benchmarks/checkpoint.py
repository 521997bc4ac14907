"""How long a durable checkpoint save takes (issue: checkpoint save p50 <= 2 ms for 10 KB).

    python benchmarks/checkpoint.py [--size 10240] [--n 500] [--dir DIR]

Each save is what `ctx.save(state)` does: JSON-encode, write a temp file in the task
folder, fsync it, rename it over checkpoint.json, fsync the folder. Prints p50/p90/p99/max
in milliseconds, for the task API and for the `bantzd checkpoint save` shell command.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bantzd.worker import Context


def state_of_size(size: int) -> dict[str, object]:
    """A realistic-looking checkpoint of about `size` bytes of JSON, as bantzd writes it."""
    history: list[dict[str, float]] = []
    state: dict[str, object] = {"epoch": 3, "history": history}
    while len(json.dumps(state, separators=(",", ":"))) < size:
        history.append({"step": len(history), "loss": 1.0 / (len(history) + 1)})
    return state


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10_240)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--shell-n", type=int, default=20)
    ap.add_argument("--dir", default=None, help="folder on the disk to measure (default: tmp)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        task_dir = Path(tmp) / "tasks" / "1"
        task_dir.mkdir(parents=True)
        ctx = Context(task_dir, task_id=1, attempt=1)
        state = state_of_size(args.size)
        ctx.save(state)
        actual = (task_dir / "checkpoint.json").stat().st_size
        times = []
        for _ in range(args.n):
            t0 = time.perf_counter()
            ctx.save(state)
            times.append((time.perf_counter() - t0) * 1000)

        env = dict(os.environ, BANTZ_TASK_DIR=str(task_dir), BANTZ_TASK_ID="1")
        payload = '{"step": 3}'
        shell = []
        for _ in range(args.shell_n):
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "bantzd", "checkpoint", "save", payload], env=env, check=True
            )
            shell.append((time.perf_counter() - t0) * 1000)
        fs = subprocess.run(["df", "-T", tmp], capture_output=True, text=True).stdout
        fs_type = fs.splitlines()[-1].split()[1] if fs else "?"

    print(
        f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, filesystem {fs_type}"
    )
    print()
    print("| what | size | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print(
        f"| ctx.save (2 fsyncs) | {actual} B | {args.n} | {statistics.median(times):.3f} | "
        f"{pct(times, 0.9):.3f} | {pct(times, 0.99):.3f} | {max(times):.3f} |"
    )
    print(
        f"| `bantzd checkpoint save` (process start included) | {len(payload)} B | "
        f"{args.shell_n} | {statistics.median(shell):.1f} | {pct(shell, 0.9):.1f} | "
        f"{pct(shell, 0.99):.1f} | {max(shell):.1f} |"
    )


if __name__ == "__main__":
    main()
