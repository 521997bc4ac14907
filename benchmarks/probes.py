"""What one probe round costs (issue 4: "well under 1 ms of CPU without GPUs").

    python benchmarks/probes.py [--n 2000]

A probe round is `read_machine()`: the 1-minute load average, /proc/meminfo and the GPUs.
Measured with no GPU backend (nvidia-ml-py missing or without a driver, no nvidia-smi), with
a stand-in nvidia-smi on PATH (a shell script: a real nvidia-smi adds its own start-up, tens
of ms, which is why NVML is preferred), and with a stand-in NVML module (the calls the probe
makes, without a driver behind them). Also the other per-tick costs the supervisor adds:
`tree_rss` of a task, a load.jsonl append, and one Admission decision over 20 tasks.

CPU is this process's plus its children's (nvidia-smi runs as a child).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bantzd.config import config_from_mapping
from bantzd.queue.taskfile import Resources
from bantzd.supervisor import memwatch
from bantzd.supervisor.probes import SMI_QUERY, GpuProbe, LoadHistory, Reading, read_machine
from bantzd.supervisor.resources import Admission, Held
from bantzd.supervisor.scheduler import Candidate, decide

GiB = 1 << 30

SMI = """#!/bin/sh
case "$*" in "--query-gpu={query} --format=csv,noheader,nounits") ;; *) exit 2 ;; esac
cat <<'EOF'
{rows}EOF
"""


def cpu_seconds() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def measure(fn: Callable[[], Any], n: int) -> tuple[float, float, float]:
    """(mean CPU µs, p50 wall µs, p99 wall µs) per call."""
    fn()  # warm: imports, backend choice
    walls = []
    cpu0 = cpu_seconds()
    for _ in range(n):
        t = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t)
    cpu = (cpu_seconds() - cpu0) / n
    walls.sort()
    return cpu * 1e6, statistics.median(walls) * 1e6, walls[int(0.99 * (len(walls) - 1))] * 1e6


def fake_pynvml(count: int) -> types.ModuleType:
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    mem = types.SimpleNamespace(total=80 * GiB, free=70 * GiB, used=10 * GiB)
    util = types.SimpleNamespace(gpu=3, memory=1)
    m.NVMLError = NVMLError
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.nvmlInit = lambda: None
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: count
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    m.nvmlDeviceGetUtilizationRates = lambda h: util
    m.nvmlDeviceGetMemoryInfo = lambda h: mem
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    n = args.n
    rows: list[tuple[str, tuple[float, float, float]]] = []

    sys.modules["pynvml"] = None  # type: ignore[assignment]  # no nvidia-ml-py
    none = GpuProbe(which=lambda _name: None)
    rows.append(("read_machine, no GPU", measure(lambda: read_machine(none), n)))

    with tempfile.TemporaryDirectory() as tmp:
        for gpus in (1, 4):
            folder = Path(tmp) / f"smi{gpus}"
            folder.mkdir()
            script = folder / "nvidia-smi"
            lines = "".join(f"{i}, NVIDIA H100 80GB HBM3, 3, 71680, 81559\n" for i in range(gpus))
            script.write_text(SMI.format(query=SMI_QUERY, rows=lines))
            script.chmod(0o755)
            probe = GpuProbe(which=lambda _name, s=str(script): s)
            rows.append(
                (
                    f"read_machine, stand-in nvidia-smi, {gpus} GPU",
                    measure(lambda p=probe: read_machine(p), max(50, n // 20)),
                )
            )

        for gpus in (1, 8):
            sys.modules["pynvml"] = fake_pynvml(gpus)
            probe = GpuProbe()
            rows.append(
                (
                    f"read_machine, stand-in NVML, {gpus} GPU",
                    measure(lambda p=probe: read_machine(p), n),
                )
            )
        sys.modules.pop("pynvml")

        history = LoadHistory(Path(tmp) / "load.jsonl")
        sample = read_machine(none)
        rows.append(
            ("LoadHistory.append", measure(lambda: history.append(sample, None, time.time()), n))
        )

    pid = os.getpid()
    procs = len([p for p in os.listdir("/proc") if p.isdigit()]) if Path("/proc").exists() else 0
    rows.append(
        (f"tree_rss (1 task, {procs} processes)", measure(lambda: memwatch.tree_rss(pid), 200))
    )

    throttle = config_from_mapping({}).throttle
    reading = Reading(0.3, 32 * GiB, [], 64 * GiB)
    cands = [Candidate(i, f"t{i}", resources=Resources(cpus=1, memory=GiB)) for i in range(20)]
    running = [Held(100 + i, cpus=1, memory=GiB, rss=GiB // 2, started=0.0) for i in range(4)]

    def one_decision() -> None:
        adm = Admission(reading, throttle, running, cores=16, now=10.0)
        decide(cands, [], running=4, max_parallel=8, now=10.0, admit=adm)

    rows.append(("Admission + decide, 20 queued", measure(one_decision, n)))

    print(f"# {platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs")
    print(f"{'what':<48} {'CPU µs':>9} {'p50 µs':>9} {'p99 µs':>9}")
    for name, (cpu, p50, p99) in rows:
        print(f"{name:<48} {cpu:>9.1f} {p50:>9.1f} {p99:>9.1f}")


if __name__ == "__main__":
    main()
