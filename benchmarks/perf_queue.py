"""Issue 18 part 2: a big queue. For each size N, in a fresh home:

1. **intake**: N files `run: "true"` with `after: [bench-never-runs]` (a name no task has, so
   each stays queued with that reason, and the scheduler looks at it on every pass) are written
   into the spool and left to age past intake's settle time (untimed). Then `bantzd run` starts
   in the background; intake is the time from its start (interpreter start-up included) until
   no file is left in the spool and every task folder has its state.json. Every task must then
   be `queued`.
2. **idle with N queued**: 2 s later, the supervisor's own CPU (% of one core) and RSS over
   `window` s, while nothing can start.
3. **reads at N**: `bantzd status`, `bantzd list --json` and `bantzd show ID` (a task in the
   middle of the queue), each a subprocess, median wall time of 3, with the supervisor up.
4. **cost per start with N queued**: `runs` files `run: ": > STAMPS/i"` (the shell builtin,
   as cheap as `true`, leaving a file behind once it ran) are renamed into the spool of the
   running supervisor; the time from the first rename until the last stamp exists, divided
   by `runs`. All of them must then be `done`. A size 0 run gives the baseline of the curve.

The homes hold the default config but for `max_queued` (raised to N + runs + 100 when that
passes the default 10,000, so that the queue is never full) and `[throttle] max_load = 1000`
(the machine's load, which this benchmark itself raises, must not hold starts back: the
figure is the scheduler's cost, not the load throttle's).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from perf_common import (
    SETTLE,
    Figure,
    Window,
    cli_wall,
    drop,
    log_tail,
    make_home,
    mb,
    read_status,
    spool_pending,
    statuses,
    supervisor,
    task_folders,
    wait_for,
    watch,
)

INTAKE_TARGET = 5.0  # s, at 10,000
RSS_TARGET = 100  # MB
CPU_TARGET = 0.5  # % of one core
FLAT = 1.5  # cost per start at N over the empty queue's: at most this
READ_TARGETS = {"status": 0.3, "list --json": 1.0, "show ID": 0.1}
JUDGED_UP_TO = 10_000  # the targets are for 10,000 queued; larger sizes are shown only
BLOCKER = "bench-never-runs"


@dataclass
class SizeResult:
    n: int
    intake: float | None = None
    per_start_ms: float | None = None
    window: Window | None = None
    reads: dict[str, tuple[float, str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str = ""


def queue_config(n: int, runs: int) -> str:
    text = "max_parallel = 2\n"
    if n + runs + 100 > 10_000:
        text += f"max_queued = {n + runs + 100}\n"
    return text + "[throttle]\nmax_load = 1000\n"


def intake_done(home: Path, n: int) -> bool:
    if spool_pending(home / "spool"):
        return False
    ids = task_folders(home)
    return len(ids) >= n and all((home / "tasks" / str(i) / "state.json").exists() for i in ids)


def run_size(base: Path, n: int, runs: int, window: float) -> SizeResult:
    res = SizeResult(n)
    home = make_home(base, f"queue-{n}", queue_config(n, runs))
    spool = home / "spool"
    t = time.perf_counter()
    for i in range(n):
        drop(spool, f"q{i:06d}", f'name: q{i:06d}\nrun: "true"\nafter: [{BLOCKER}]\n')
    res.notes.append(f"writing {n} files took {time.perf_counter() - t:.1f} s (untimed)")
    time.sleep(SETTLE + 0.2)
    log = base / f"queue-{n}-supervisor.out"
    try:
        with supervisor(home, log, timeout=max(120, n / 50)) as sup:
            # Listing a spool of 10,000 files takes milliseconds of a core the supervisor
            # needs: look less often the bigger it is (0.02-0.2 s, well under the target).
            every = min(0.2, max(0.02, n / 50_000))
            wait_for(lambda: intake_done(home, n), max(600, n / 10), "intake", sup.proc, every)
            res.intake = time.perf_counter() - sup.started
            counts = statuses(home)
            rejected = sum(1 for p in (spool / "rejected").glob("*.yaml"))
            if counts != ({"queued": n} if n else {}) or rejected:
                res.error = f"after intake: states {counts}, {rejected} rejected"
                return res
            time.sleep(2)
            res.window = watch(sup.pid, window)
            ids = task_folders(home)
            reads = {"status": ["status"], "list --json": ["list", "--json"]}
            if ids:
                reads["show ID"] = ["show", str(ids[len(ids) // 2])]
            for label, args in reads.items():
                res.reads[label] = cli_wall(home, *args)
            res.per_start_ms = per_start(base, home, n, runs, sup.proc, set(ids))
    except (RuntimeError, TimeoutError, OSError) as e:
        res.error = f"{e}; supervisor said: {log_tail(log)}"
    return res


def per_start(base: Path, home: Path, n: int, runs: int, proc, before: set[int]) -> float:
    stamps = base / f"stamps-{n}"
    stamps.mkdir()
    texts = [(f"s{i:04d}", f'name: s{i:04d}\nrun: ": > {stamps / str(i)}"\n') for i in range(runs)]
    t = time.perf_counter()
    for name, text in texts:
        drop(home / "spool", name, text)
    wait_for(
        lambda: len(os.listdir(stamps)) >= runs,
        max(600, runs * 2),
        f"{runs} tasks to run",
        proc,
        every=0.005,
    )
    elapsed = time.perf_counter() - t
    new = [i for i in task_folders(home) if i not in before]

    def all_done() -> bool:
        return len(new) == runs and all(read_status(home, i) == "done" for i in new)

    wait_for(all_done, 60, f"the {runs} tasks to be done", proc, every=0.05)
    return 1000 * elapsed / runs


def figures(results: list[SizeResult], runs: int) -> list[Figure]:
    """The rows, grouped by figure so each reads as a curve over the sizes."""
    out: list[Figure] = []
    base = next((r.per_start_ms for r in results if r.n == 0), None)

    def judged(n: int) -> bool:
        return 0 < n <= JUDGED_UP_TO

    for r in results:
        if r.error:
            out.append(Figure(f"big queue, {r.n:,} queued", f"FAILED: {r.error}", "–", False))
    ok = [r for r in results if not r.error]
    for r in ok:
        if r.n and r.intake is not None:
            met = r.intake <= INTAKE_TARGET if judged(r.n) else None
            out.append(
                Figure(
                    f"intake of {r.n:,} spool files",
                    f"{r.intake:.2f} s",
                    f"≤ {INTAKE_TARGET:g} s at 10k",
                    met,
                    "start-up scan, interpreter start included",
                )
            )
    for r in ok:
        if r.per_start_ms is None:
            continue
        if r.n == 0 or base is None:
            met, target = None, "baseline"
        else:
            met, target = r.per_start_ms <= FLAT * base, f"≤ {FLAT:g}× the empty queue's"
        out.append(
            Figure(
                f"cost per start, {r.n:,} queued ({runs} no-op runs)",
                f"{r.per_start_ms:.1f} ms",
                target,
                met,
                f"{r.per_start_ms / base:.2f}× empty" if base and r.n else "",
            )
        )
    for r in ok:
        if r.window is None or not r.n:
            continue
        w = r.window
        out.append(
            Figure(
                f"supervisor RSS, {r.n:,} queued, nothing can start",
                f"{mb(w.rss):.1f} MB",
                f"≤ {RSS_TARGET} MB",
                mb(w.rss) <= RSS_TARGET if judged(r.n) else None,
            )
        )
        out.append(
            Figure(
                f"supervisor CPU, {r.n:,} queued, nothing can start",
                f"{w.cpu_pct:.2f} %",
                f"≤ {CPU_TARGET} %",
                w.cpu_pct <= CPU_TARGET if judged(r.n) else None,
                f"{w.seconds:.0f} s, {w.wakeups_per_s:.1f} wakeups/s",
            )
        )
    for label, target in READ_TARGETS.items():
        for r in ok:
            if label not in r.reads or not r.n:
                continue
            seconds, err = r.reads[label]
            out.append(
                Figure(
                    f"`bantzd {label}`, {r.n:,} queued",
                    f"FAILED: {err}" if err else f"{seconds:.3f} s",
                    f"≤ {target:g} s",
                    (not err and seconds <= target) if judged(r.n) else None,
                    "median of 3" if not err else "",
                )
            )
    return out


def run_queue(base: Path, sizes: list[int], runs: int, window: float) -> list[Figure]:
    """The sizes' rows; size 0 (the curve's baseline) is always measured first."""
    results = []
    for n in [0, *[s for s in sizes if s > 0]]:
        print(f"  big queue: {n:,} queued ...", flush=True)
        r = run_size(base, n, runs, window)
        for note in r.notes:
            print(f"    {note}")
        if r.error:
            print(f"    FAILED: {r.error}")
        else:
            print(
                f"    intake {r.intake:.2f} s, {r.per_start_ms:.1f} ms/start, "
                + ", ".join(f"{k} {v[0]:.3f} s" for k, v in r.reads.items())
            )
        results.append(r)
    return figures(results, runs)
