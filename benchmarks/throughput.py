"""Every figure of issue 18 next to its target, peers measured in the same run.

    python benchmarks/throughput.py [--quick] [--tasks 1000] [--drops 50] [--repeat R]
                                    [--rows default,free,nice0,fresh] [--timeout 900]
                                    [--sizes 1000,10000] [--with-50k] [--runs 200]
                                    [--window 30] [--idle 60]
                                    [--sections peers,latency,queue,idle,llm]
                                    [--only bantzd,xargs,tsp,nq] [--tmp DIR] [--keep]

Sections (each in its own module beside this one):
  peers    N no-op tasks: bantzd (default config, nice 10; the same without the load
           throttle; nice = 0 without it) against task-spooler, nq and xargs -P2 (perf_peers.py)
  latency  drop -> start of an idle supervisor, default config (perf_peers.py)
  queue    a big queue at each of --sizes: intake, cost per start (the curve, with an empty
           queue as its baseline), RSS and CPU while nothing can start, status / list --json /
           show wall times (perf_queue.py)
  idle     a supervisor with nothing queued: CPU, RSS, wakeups (perf_idle.py)
  llm      the rows of benchmarks/llm.py's `llm_rows()`, when it has one

It ends with one markdown table: figure | measured | target | met. Exit 1 when a run failed
(not when a target is missed). `--quick` is a smoke run (small sizes, short windows, < 2 min).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perf_common import REPO, Figure, pct, print_figures
from perf_idle import run_idle
from perf_peers import (
    Row,
    best_of,
    run_bantzd,
    run_bantzd_empty,
    run_latency,
    run_nq,
    run_tsp,
    run_xargs,
)
from perf_queue import run_queue

TOOLS = ("bantzd", "xargs", "tsp", "nq")
SECTIONS = ("peers", "latency", "queue", "idle", "llm")
DEFAULT_CONFIG = "# the defaults: max_parallel = 2, nice = 10, [throttle] max_load = 1.5\n"
# The default but for the load throttle: on a shared machine the load others make holds starts
# back (see the rows' notes), which is not what a start costs.
UNTHROTTLED_CONFIG = "[throttle]\nmax_load = 1000\n"
NICE0_CONFIG = "nice = 0\n" + UNTHROTTLED_CONFIG  # against the row above: what nice costs
LATENCY_TARGET = 5.0  # ms, p50
XARGS_TARGET = 2.0  # × xargs -P2, at most
BANTZD_DEFAULT = "bantzd run --once (default config, nice 10)"
BANTZD_NICE0 = "bantzd run --once, nice = 0, no load throttle"
BANTZD_FREE = "bantzd run --once, default config but no load throttle"
BANTZD_FRESH = "bantzd run --once, just dropped (default config)"


# ----------------------------------------------------------------------------- machine


def filesystem_of(path: Path) -> str:
    """The type and mount point of the filesystem holding path, from /proc/self/mounts."""
    best = ("?", "")
    real = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) < 3:
                continue
            mnt = parts[1].replace("\\040", " ")
            inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
            if inside and len(mnt) >= len(best[1]):
                best = (parts[2], mnt)
    return f"{best[0]} (mounted at {best[1] or '?'})"


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ----------------------------------------------------------------------------- peers


BANTZD_ROWS = {  # --rows name: label, config, fresh
    "default": (BANTZD_DEFAULT, DEFAULT_CONFIG, False),
    "free": (BANTZD_FREE, UNTHROTTLED_CONFIG, False),
    "nice0": (BANTZD_NICE0, NICE0_CONFIG, False),
    "fresh": (BANTZD_FRESH, DEFAULT_CONFIG, True),
}


def run_peers(
    base: Path, n: int, repeat: int, only: list[str], bantzd_rows: list[str], timeout: float
) -> list[Row]:
    rounds: list[list[Row]] = []
    for k in range(repeat):
        d = base / f"round{k + 1}"
        d.mkdir()
        this: list[Row] = []
        if "xargs" in only:
            this.append(run_xargs(n))
        if "bantzd" in only:
            for name in bantzd_rows:
                label, config, fresh = BANTZD_ROWS[name]
                print(f"  {label}: {n} tasks ...", flush=True)
                this.append(run_bantzd(d, n, label, config, fresh=fresh, timeout=timeout))
        if "tsp" in only:
            this.append(run_tsp(d, n))
        if "nq" in only:
            this.append(run_nq(d, n, 1))
            this.append(run_nq(d, n, 2))
        rounds.append(this)
    return best_of(rounds)


def print_peer_table(rows: list[Row], empty: float | None) -> None:
    xargs_s = next((r.seconds for r in rows if r.tool.startswith("xargs")), None)
    print("| tool | tasks | seconds | tasks/s | × xargs -P2 | note |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for r in rows:
        if r.seconds is None:
            print(f"| {r.tool} | {r.tasks} | – | – | – | {r.note.splitlines()[0]} |")
            for extra in r.note.splitlines()[1:]:
                print(extra)
            continue
        ratio = f"{r.seconds / xargs_s:.2f}" if xargs_s else "–"
        rate = r.tasks / r.seconds if r.seconds > 0 else float("inf")
        print(f"| {r.tool} | {r.tasks} | {r.seconds:.2f} | {rate:.0f} | {ratio} | {r.note} |")
    print()
    if empty is not None:
        print(f"an empty `bantzd run --once` (start-up, imports, exit) takes {empty:.2f} s")
        print()


def peer_figures(rows: list[Row], n: int) -> list[Figure]:
    """Ratios of the bantzd rows against each peer: < 1.0 against tsp and nq, ≤ 2 × xargs."""
    by = {r.tool: r for r in rows}
    out: list[Figure] = []
    peers = [r for r in rows if r.tool.startswith(("task-spooler", "nq")) and r.seconds]
    xargs = next((r for r in rows if r.tool.startswith("xargs") and r.seconds), None)
    shorts = {
        BANTZD_DEFAULT: "bantzd",
        BANTZD_FREE: "bantzd, no load throttle",
        BANTZD_NICE0: "bantzd nice 0",
    }
    for label, short in shorts.items():
        bz = by.get(label)
        if bz is None:
            continue
        if bz.seconds is None:
            failed = bz.note.splitlines()[0] if bz.note else "FAILED"
            out.append(Figure(f"{n:,} no-op tasks, {short}", failed, "–", False))
            continue
        held = next((p for p in bz.note.split("; ") if p.startswith("starts throttled")), "")
        out.append(Figure(f"{n:,} no-op tasks, {short}", f"{bz.seconds:.2f} s", "–", None, held))
        for p in peers:
            assert p.seconds
            out.append(
                Figure(
                    f"{short} / {p.tool}",
                    f"{bz.seconds / p.seconds:.2f}",
                    "< 1.0",
                    bz.seconds < p.seconds,
                    f"{p.tool} {p.seconds:.2f} s",
                )
            )
        if xargs and xargs.seconds:
            out.append(
                Figure(
                    f"{short} / xargs -P2",
                    f"{bz.seconds / xargs.seconds:.2f}",
                    f"≤ {XARGS_TARGET:g}",
                    bz.seconds <= XARGS_TARGET * xargs.seconds,
                    f"xargs {xargs.seconds:.2f} s",
                )
            )
    return out


def latency_figures(lat: list[float], note: str, cgroups: bool = True) -> list[Figure]:
    label = "drop → start p50, idle supervisor (default config, nice 10, no load throttle)"
    if not cgroups:
        label = "drop → start p50, the same with BANTZ_NO_CGROUP=1 (no cgroup move)"
    if not lat:
        return [Figure(label, note or "FAILED", f"≤ {LATENCY_TARGET:g} ms", False)]
    ms = [x * 1000 for x in lat]
    p50 = pct(ms, 50)
    detail = f"{len(ms)} drops; p90 {pct(ms, 90):.1f}, max {max(ms):.1f} ms"
    if note:
        detail += f"; {note}"
    if not cgroups:  # shown to measure the cgroup's share; the target is the row above's
        return [Figure(label, f"{p50:.1f} ms", "–", None, detail)]
    return [
        Figure(label, f"{p50:.1f} ms", f"≤ {LATENCY_TARGET:g} ms", p50 <= LATENCY_TARGET, detail)
    ]


# ----------------------------------------------------------------------------- llm


def llm_figures(quick: bool) -> list[Figure]:
    """benchmarks/llm_fill.py's concurrency rows: the stand-in server with 8 slots and 0.5 s
    a request; `per_minute` over 3 minutes (1 with --quick)."""
    label = "LLM tasks (benchmarks/llm_fill.py)"
    try:
        from llm_fill import llm_rows
    except ImportError as e:
        return [Figure(label, "not available", "–", None, f"{type(e).__name__}: {e}")]
    try:
        rows = llm_rows(minutes=1.0 if quick else 3.0, rounds=3 if quick else 6)
    except Exception as e:  # its failure must not lose the rest of the table
        return [Figure(label, f"FAILED: {type(e).__name__}: {e}", "–", False)]
    out = []
    for r in rows:
        value = f"{r.value:.0f}" if r.unit == "count" else f"{r.value:.1f}"
        out.append(Figure(r.figure, f"{value} {r.unit}", r.target, r.met))
    return out


# ----------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short windows (< 2 min)")
    ap.add_argument("--tasks", type=int, help="no-op tasks per peer run (1000; quick 200)")
    ap.add_argument("--drops", type=int, help="drops for the latency run (50; quick 20)")
    ap.add_argument("--repeat", type=int, default=1, help="peer rounds; the fastest is shown")
    ap.add_argument(
        "--rows",
        default="default,free,nice0",
        help="peers: bantzd rows, comma list of " + ",".join(BANTZD_ROWS),
    )
    ap.add_argument(
        "--timeout", type=float, default=900, help="peers: seconds one `run --once` may take"
    )
    ap.add_argument("--sizes", help="queue sizes, comma list (1000,10000; quick 200,1000)")
    ap.add_argument("--with-50k", action="store_true", help="add 50000 to the queue sizes")
    ap.add_argument("--runs", type=int, help="no-op runs timed per queue size (200; quick 50)")
    ap.add_argument("--window", type=float, help="seconds watched with N queued (30; quick 5)")
    ap.add_argument("--idle", type=float, help="seconds watched idle (60; quick 10)")
    ap.add_argument("--sections", default=",".join(SECTIONS), help="comma list of sections")
    ap.add_argument("--only", default=",".join(TOOLS), help="peers: comma list of tools")
    ap.add_argument("--tmp", type=Path, default=None, help="where the temp dirs go")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    args = ap.parse_args()
    q = args.quick

    def pick(value, full, quick):
        return value if value is not None else (quick if q else full)

    args.tasks = pick(args.tasks, 1000, 200)
    args.drops = pick(args.drops, 50, 20)
    args.runs = pick(args.runs, 200, 50)
    args.window = pick(args.window, 30.0, 5.0)
    args.idle = pick(args.idle, 60.0, 10.0)
    try:
        sizes = [int(s) for s in pick(args.sizes, "1000,10000", "200,1000").split(",") if s]
    except ValueError:
        ap.error("--sizes: a comma list of whole numbers")
    if args.with_50k and 50_000 not in sizes:
        sizes.append(50_000)
    args.sizes = sizes
    args.only = [t.strip() for t in args.only.split(",") if t.strip()]
    args.sections = [t.strip() for t in args.sections.split(",") if t.strip()]
    args.rows = [t.strip() for t in args.rows.split(",") if t.strip()]
    for name, got, known in (
        ("--only", args.only, TOOLS),
        ("--sections", args.sections, SECTIONS),
        ("--rows", args.rows, tuple(BANTZD_ROWS)),
    ):
        unknown = [t for t in got if t not in known]
        if unknown:
            ap.error(f"{name}: unknown {', '.join(unknown)} (choose from {', '.join(known)})")
    if args.tasks < 1 or args.repeat < 1 or args.runs < 1 or min(sizes, default=0) < 0:
        ap.error("--tasks, --repeat and --runs must be at least 1, --sizes not negative")
    return args


def main() -> int:
    args = parse_args()
    base = Path(tempfile.mkdtemp(prefix="bantzd-bench-", dir=args.tmp))
    began = time.monotonic()
    print("# bantzd performance (issue 18)")
    print()
    print(f"- command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs")
    print(f"- python: {platform.python_version()} ({sys.executable})")
    print(f"- temp dir: {base} on {filesystem_of(base)}")
    print(f"- bantzd: {REPO} @ {git_rev()}")
    print(f"- load average at start: {load()}")
    print()
    sys.stdout.flush()

    figures: list[Figure] = []
    failed = False
    try:
        if "peers" in args.sections:
            print(f"## {args.tasks:,} no-op tasks, max_parallel = 2", flush=True)
            rows = run_peers(base, args.tasks, args.repeat, args.only, args.rows, args.timeout)
            empty = run_bantzd_empty(base, DEFAULT_CONFIG) if "bantzd" in args.only else None
            print()
            print_peer_table(rows, empty)
            figures += peer_figures(rows, args.tasks)
            failed |= any(r.seconds is None and not r.note.startswith("skipped") for r in rows)
        if "latency" in args.sections and args.drops > 0:
            print(f"## drop → start, {args.drops} drops", flush=True)
            # Without the load throttle: a throttled drop waits for the next probe (5 s), the
            # other work's load and not what a start costs (the peer rows show the throttle).
            lat, note = run_latency(base, args.drops, UNTHROTTLED_CONFIG)
            failed |= note.startswith("FAILED")
            figures += latency_figures(lat, note)
            # The same without the attempts' cgroups: what moving the wrapper into its
            # cgroup costs (on an idle box, the kernel's RCU grace period of the move).
            no_cg = {"BANTZ_NO_CGROUP": "1"}
            lat, note = run_latency(base, args.drops, UNTHROTTLED_CONFIG, no_cg, "-nocgroup")
            failed |= note.startswith("FAILED")
            figures += latency_figures(lat, note, cgroups=False)
        if "queue" in args.sections:
            print(f"## big queue: sizes {', '.join(f'{s:,}' for s in args.sizes)}", flush=True)
            rows_q = run_queue(base, args.sizes, args.runs, args.window)
            failed |= any(f.measured.startswith("FAILED") for f in rows_q)
            figures += rows_q
        if "idle" in args.sections:
            print(f"## idle supervisor, {args.idle:g} s", flush=True)
            rows_i = run_idle(base, args.idle, DEFAULT_CONFIG)
            failed |= any(f.measured.startswith("FAILED") for f in rows_i)
            figures += rows_i
        if "llm" in args.sections:
            print("## LLM", flush=True)
            figures += llm_figures(args.quick)
    finally:
        if args.keep:
            print(f"(kept {base})\n")
        else:
            shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"## every figure ({time.monotonic() - began:.0f} s; load average now {load()})")
    print()
    print_figures(figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
