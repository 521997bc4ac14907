"""Issue 18 part 4: what an idle supervisor costs, and whether it polls.

A fresh home with the default config and nothing queued; `bantzd run` in the background. Once
it is up and has had `settle` s to finish starting, its own CPU time (all threads, from
/proc/PID/stat) and RSS (VmRSS, the highest of one sample a second) over `seconds`, and its
wakeups: the voluntary context switches of all its threads (/proc/PID/task/*/status), each of
which is a thread going back to sleep, so a thread on a 0.1 s poll shows 10 a second. When
strace is installed, a second, shorter window under `strace -c -f -p` counts the syscalls
(strace slows the process it traces, so the CPU figure is not taken under it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from perf_common import Figure, Window, make_home, mb, supervisor, watch

CPU_TARGET = 0.2  # % of one core
RSS_TARGET = 40  # MiB
WAKEUP_TARGET = 1.0  # per second, all threads: no poll shorter than a second


def strace_counts(pid: int, seconds: float, out: Path) -> str:
    """The top syscalls per second under `strace -c -f -p PID` for `seconds`, or why not."""
    exe = shutil.which("strace")
    if exe is None:
        return "strace not installed"
    proc = subprocess.Popen(
        [exe, "-c", "-f", "-q", "-o", str(out), "-p", str(pid)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(seconds)
    proc.send_signal(2)  # SIGINT: strace detaches and writes its summary
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        return "strace did not stop"
    rows = []
    with contextlib.suppress(OSError):
        for line in out.read_text().splitlines():
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                with contextlib.suppress(ValueError):
                    rows.append((int(parts[3]), parts[-1]))
    if not rows:
        return f"strace gave nothing ({err.strip().splitlines()[-1:] or 'no output'})"
    rows.sort(reverse=True)
    total = sum(c for c, _ in rows)
    top = ", ".join(f"{name} {c / seconds:.1f}/s" for c, name in rows[:4])
    return f"strace {seconds:.0f} s: {total / seconds:.1f} syscalls/s ({top})"


def run_idle(base: Path, seconds: float, config: str, settle: float = 3.0) -> list[Figure]:
    home = make_home(base, "bantzd-idle", config)
    log = base / "idle-supervisor.out"
    try:
        with supervisor(home, log) as sup:
            time.sleep(settle)
            w: Window = watch(sup.pid, seconds)
            traced = strace_counts(sup.pid, min(10.0, seconds), base / "idle-strace.txt")
    except (RuntimeError, TimeoutError, OSError) as e:
        failed = f"FAILED: {e}"
        return [Figure("idle supervisor: CPU % of a core", failed, f"≤ {CPU_TARGET} %", False)]
    busiest = ", ".join(f"{name} {rate:.2f}/s" for name, rate in w.busiest if rate > 0)
    window = f"{w.seconds:.0f} s"
    return [
        Figure(
            "idle supervisor: CPU % of a core",
            f"{w.cpu_pct:.2f} %",
            f"≤ {CPU_TARGET} %",
            w.cpu_pct <= CPU_TARGET,
            window,
        ),
        Figure(
            "idle supervisor: RSS",
            f"{mb(w.rss):.1f} MB",
            f"≤ {RSS_TARGET} MB",
            mb(w.rss) <= RSS_TARGET,
        ),
        Figure(
            "idle supervisor: wakeups (voluntary switches, all threads)",
            f"{w.wakeups_per_s:.2f}/s",
            f"≤ {WAKEUP_TARGET:g}/s (no short poll)",
            w.wakeups_per_s <= WAKEUP_TARGET,
            f"busiest: {busiest or 'none'}; {traced}",
        ),
    ]
