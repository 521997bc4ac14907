"""Throughput and drop -> start latency of bantzd, next to xargs -P2, task-spooler and nq.

    python benchmarks/throughput.py [--tasks 1000] [--drops 50] [--only bantzd,xargs,tsp,nq]
                                    [--repeat R] [--tmp DIR] [--keep]

Throughput: N no-op tasks (`run: "true"`) are dropped into the spool of a fresh home whose
config.toml says `max_parallel = 2`, `nice = 0`; then `bantzd --home HOME run --once` is timed
from start to exit (wall clock, a subprocess, interpreter start-up included) and every task is
checked to be `done`. Every state change bantzd makes is durable (fsync'd), the others' are not.

The others run the same command, `/bin/sh -c true` (what bantzd runs for `run: "true"`):
  xargs  `seq N | xargs -P2 -n1 sh -c true` (the floor: fork/exec and nothing else)
  tsp    task-spooler with a private TS_SOCKET/TMPDIR and `tsp -S 2`; timed from the first
         `tsp sh -c true` to the end of the last job: submitting the N jobs is part of it
         (task-spooler cannot hold a queue without running it; `-S 0` is refused)
  nq     a private NQDIR; nq runs one job at a time (each job waits for all earlier ones), so
         it is measured serial, and also as two queues fed alternately (the nearest thing to
         two slots); timed from the first `nq` to `nq -w` on all ids returning

Latency: `bantzd --home HOME run` (no --once) in the background; once it is up (bantzd.pid),
DROPS times: note time.time(), rename a task `run: "date +%s.%N > FILE"` into the spool, wait
for it to finish, and take latency = FILE's timestamp - the noted time. That includes the
worker's /bin/sh start-up and `date`'s exec (~1 ms): nothing is subtracted. One untimed drop
first warms the supervisor up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TOOLS = ("bantzd", "xargs", "tsp", "nq")
# bantzd's intake.SETTLE: a spool file found by a scan (not seen renamed in by the watcher, as
# files dropped before the supervisor starts) is taken once it has been quiet this long.
SETTLE = 1.0
CONFIG = """\
max_parallel = 2
nice = 0
"""


# ----------------------------------------------------------------------------- helpers


def bantzd_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.pop("BANTZ_HOME", None)
    return env


def bantzd_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bantzd", "--home", str(home), *args]


def make_home(base: Path, name: str) -> Path:
    home = base / name
    (home / "spool").mkdir(parents=True)
    (home / "config.toml").write_text(CONFIG)
    return home


def drop(spool: Path, name: str, text: str) -> None:
    """Write-then-rename: a dotfile temp name is ignored by bantzd until the rename."""
    tmp = spool / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, spool / f"{name}.yaml")


def statuses(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in (home / "tasks").glob("*/state.json"):
        try:
            status = json.loads(f.read_text())["status"]
        except (OSError, ValueError, KeyError):
            status = "unreadable"
        counts[status] = counts.get(status, 0) + 1
    return counts


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


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


class Row:
    def __init__(self, tool: str, tasks: int, seconds: float | None, note: str = "") -> None:
        self.tool, self.tasks, self.seconds, self.note = tool, tasks, seconds, note


# ----------------------------------------------------------------------------- throughput


def run_bantzd_empty(base: Path) -> float:
    """The fixed cost: interpreter start-up, imports, opening the home, with nothing to do."""
    home = make_home(base, "bantzd-empty")
    t = time.perf_counter()
    subprocess.run(
        bantzd_cmd(home, "run", "--once"), cwd=REPO, env=bantzd_env(), capture_output=True
    )
    return time.perf_counter() - t


def run_bantzd(base: Path, n: int, *, fresh: bool) -> Row:
    """fresh: start the moment the last file is renamed in. Otherwise wait until the files are
    older than bantzd's settle time first, as files dropped during the day are at 23:00."""
    label = "bantzd run --once, just dropped" if fresh else "bantzd run --once"
    home = make_home(base, "bantzd-fresh" if fresh else "bantzd-throughput")
    spool = home / "spool"
    t = time.perf_counter()
    for i in range(n):
        drop(spool, f"t{i:05d}", 'run: "true"\n')
    dropped = time.perf_counter() - t
    if not fresh:
        time.sleep(SETTLE + 0.2)
    t = time.perf_counter()
    proc = subprocess.run(
        bantzd_cmd(home, "run", "--once"),
        cwd=REPO,
        env=bantzd_env(),
        capture_output=True,
        text=True,
        timeout=max(600, n),
    )
    seconds = time.perf_counter() - t
    counts = statuses(home)
    done = counts.get("done", 0)
    summary = (proc.stdout.strip().splitlines() or [""])[-1]
    if fresh:
        note = f"{done}/{n} done; files < {SETTLE:g} s old wait to settle"
    else:
        note = f"{done}/{n} done; drops took {dropped:.2f} s + {SETTLE + 0.2:g} s wait (untimed)"
    if proc.returncode != 0 or done != n:
        note += f"; FAILED: exit {proc.returncode}, states {counts}"
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        note += "".join(f"\n      {line}" for line in tail)
        return Row(label, n, None, note)
    if summary and not fresh:
        note += f"; it said: {summary}"
    return Row(label, n, seconds, note)


def run_xargs(n: int) -> Row:
    t = time.perf_counter()
    proc = subprocess.run(
        f"seq {n} | xargs -P2 -n1 sh -c true",
        shell=True,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        return Row("xargs -P2", n, None, f"FAILED: exit {proc.returncode} {proc.stderr.strip()}")
    return Row("xargs -P2", n, seconds, "`seq N \\| xargs -P2 -n1 sh -c true`")


def run_tsp(base: Path, n: int) -> Row:
    exe = shutil.which("tsp") or shutil.which("ts")
    if exe is None:
        return Row("task-spooler", n, None, "skipped: not installed (apt-get install task-spooler)")
    name = Path(exe).name
    work = base / "tsp"
    work.mkdir()
    env = dict(os.environ, TMPDIR=str(work), TS_SOCKET=str(work / "socket"))
    env.pop("TS_MAXFINISHED", None)
    env["TS_MAXFINISHED"] = str(n + 10)

    def tsp(*args: str) -> str:
        return subprocess.run(
            [exe, *args], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        tsp("-S", "2")  # starts the private server
        t = time.perf_counter()
        ids = [tsp("sh", "-c", "true") for _ in range(n)]
        # Jobs start in order, two at a time: once the last has started, everything before
        # the one next to it has finished; so these two finishing means all have.
        for job in ids[-2:]:
            subprocess.run([exe, "-w", job], env=env, capture_output=True, check=False)
        seconds = time.perf_counter() - t
        listing = tsp("-l").splitlines()[1:]
        finished = sum(1 for line in listing if " finished " in f" {line} ")
    except (OSError, subprocess.CalledProcessError) as e:
        return Row(f"task-spooler ({name})", n, None, f"FAILED: {e}")
    finally:
        subprocess.run([exe, "-K"], env=env, capture_output=True, check=False)
    note = f"`{name} -S 2`, submitting included; {finished}/{n} finished"
    if finished != n:
        return Row(f"task-spooler ({name}) -S 2", n, None, "FAILED: " + note)
    return Row(f"task-spooler ({name}) -S 2", n, seconds, note)


def run_nq(base: Path, n: int, queues: int) -> Row:
    exe = shutil.which("nq")
    label = "nq (serial)" if queues == 1 else f"nq ×{queues} queues"
    if exe is None:
        return Row(label, n, None, "skipped: not installed (apt-get install nq)")
    dirs = [base / f"nq{queues}-{q}" for q in range(queues)]
    for d in dirs:
        d.mkdir()
    ids: list[tuple[Path, str]] = []
    t = time.perf_counter()
    try:
        for i in range(n):
            d = dirs[i % queues]
            job = subprocess.run(
                [exe, "sh", "-c", "true"],
                env=dict(os.environ, NQDIR=str(d)),
                cwd=d,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            ids.append((d, job))
        for d in dirs:
            mine = [job for q, job in ids if q == d]
            subprocess.run(
                [exe, "-w", *mine],
                env=dict(os.environ, NQDIR=str(d)),
                cwd=d,
                capture_output=True,
                check=True,
            )
    except (OSError, subprocess.CalledProcessError) as e:
        return Row(label, n, None, f"FAILED: {e}")
    seconds = time.perf_counter() - t
    if queues == 1:
        note = "nq runs one at a time; submitting included"
    else:
        note = f"{queues} NQDIRs fed alternately, each serial; submitting included"
    return Row(label, n, seconds, note)


def best_of(rounds: list[list[Row]]) -> list[Row]:
    """Per tool, the fastest round; a failed round wins (so it is seen); all times noted."""
    if len(rounds) == 1:
        return rounds[0]
    out = []
    for same in zip(*rounds, strict=True):
        failed = [r for r in same if r.seconds is None]
        if failed:
            out.append(failed[0])
            continue
        best = min(same, key=lambda r: r.seconds or 0.0)
        times = ", ".join(f"{r.seconds:.2f}" for r in same)
        best.note = f"best of {len(same)} ({times} s); {best.note}"
        out.append(best)
    return out


# ----------------------------------------------------------------------------- latency


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"bantzd exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.0005)


def read_stamp(path: Path) -> float | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    if not text.endswith("\n"):
        return None
    try:
        return float(text)
    except ValueError:
        return None


def task_done(home: Path, name: str) -> bool:
    for f in (home / "tasks").glob("*/state.json"):
        try:
            state = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if state.get("name") == name:
            return state.get("status") in ("done", "failed")
    return False


def run_latency(base: Path, drops: int) -> tuple[list[float], str]:
    home = make_home(base, "bantzd-latency")
    spool = home / "spool"
    stamps = base / "stamps"
    stamps.mkdir()
    log = (base / "latency-supervisor.out").open("w")
    proc = subprocess.Popen(
        bantzd_cmd(home, "run"),
        cwd=REPO,
        env=bantzd_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    lat: list[float] = []
    try:
        wait_for((home / "bantzd.pid").exists, 30, "bantzd.pid", proc)
        for i in range(-1, drops):  # -1: the untimed warm-up drop
            name = f"lat{i + 1:03d}"
            stamp = stamps / name
            text = f'name: {name}\nrun: "date +%s.%N > {stamp}"\n'
            tmp = spool / f".{name}.tmp"
            tmp.write_text(text)
            t0 = time.time()
            os.rename(tmp, spool / f"{name}.yaml")
            wait_for(lambda s=stamp: read_stamp(s) is not None, 30, f"{name} to start", proc)
            started = read_stamp(stamp)
            assert started is not None
            if i >= 0:
                lat.append(started - t0)
            wait_for(lambda n=name: task_done(home, n), 30, f"{name} to finish", proc)
            time.sleep(0.05)  # let the supervisor settle back to idle
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    return lat, f"exit {proc.returncode} after SIGTERM"


# ----------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=1000, help="tasks per throughput run")
    ap.add_argument("--drops", type=int, default=50, help="drops for the latency run (0: skip)")
    ap.add_argument("--only", default=",".join(TOOLS), help="comma list of " + ",".join(TOOLS))
    ap.add_argument("--tmp", type=Path, default=None, help="where the temp dirs go")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs")
    ap.add_argument(
        "--repeat", type=int, default=1, help="throughput rounds; the table shows the fastest"
    )
    args = ap.parse_args()
    only = [t.strip() for t in args.only.split(",") if t.strip()]
    unknown = [t for t in only if t not in TOOLS]
    if unknown:
        ap.error(f"--only: unknown {', '.join(unknown)} (choose from {', '.join(TOOLS)})")
    if args.tasks < 1:
        ap.error("--tasks must be at least 1")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    base = Path(tempfile.mkdtemp(prefix="bantzd-bench-", dir=args.tmp))
    n = args.tasks
    print("# bantzd throughput")
    print()
    print(f"- machine: {platform.platform()}, {os.cpu_count()} CPUs (nproc {nproc()})")
    print(f"- python: {platform.python_version()} ({sys.executable})")
    print(f"- temp dir: {base} on {filesystem_of(base)}")
    print(f"- bantzd: {REPO} @ {git_rev()}; config: max_parallel = 2, nice = 0")
    print(f"- load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    sys.stdout.flush()

    rounds: list[list[Row]] = []
    empty: float | None = None
    rows: list[Row] = []
    lat: list[float] = []
    lat_note = ""
    try:
        for k in range(args.repeat):
            d = base / f"round{k + 1}"
            d.mkdir()
            this: list[Row] = []
            if "xargs" in only:
                this.append(run_xargs(n))
            if "bantzd" in only:
                this.append(run_bantzd(d, n, fresh=False))
                this.append(run_bantzd(d, n, fresh=True))
            if "tsp" in only:
                this.append(run_tsp(d, n))
            if "nq" in only:
                this.append(run_nq(d, n, 1))
                this.append(run_nq(d, n, 2))
            rounds.append(this)
        rows = best_of(rounds)
        if "bantzd" in only:
            empty = run_bantzd_empty(base)
        if "bantzd" in only and args.drops > 0:
            try:
                lat, lat_note = run_latency(base, args.drops)
            except (RuntimeError, TimeoutError, OSError) as e:
                lat_note = f"FAILED: {e}"
    finally:
        if args.keep:
            print(f"(kept {base})\n")
        else:
            shutil.rmtree(base, ignore_errors=True)

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

    if "bantzd" in only and args.drops > 0:
        if lat:
            ms = [x * 1000 for x in lat]
            print(
                f"drop → worker start, idle supervisor, {len(ms)} drops: "
                f"p50 {pct(ms, 50):.1f} ms, p90 {pct(ms, 90):.1f} ms, "
                f"max {max(ms):.1f} ms, min {min(ms):.1f} ms "
                f"(includes /bin/sh + date start-up; supervisor {lat_note})"
            )
        else:
            print(f"drop → worker start: {lat_note}")
        print()

    if empty is not None:
        print(f"an empty `bantzd run --once` (start-up, imports, exit) takes {empty:.2f} s")
        print()

    # The targets, checked.
    for bz in rows:
        if not bz.tool.startswith("bantzd") or bz.seconds is None:
            continue
        checks = []
        if xargs_s:
            checks.append(f"≤ 2× xargs: {'yes' if bz.seconds <= 2 * xargs_s else 'NO'}")
        for r in rows:
            if (r.tool.startswith("task-spooler") or r.tool == "nq (serial)") and r.seconds:
                checks.append(f"faster than {r.tool}: {'yes' if bz.seconds < r.seconds else 'NO'}")
        if lat and "just dropped" not in bz.tool:
            p50 = pct([x * 1000 for x in lat], 50)
            checks.append(f"drop → start p50 ≤ 10 ms: {'yes' if p50 <= 10 else 'NO'}")
        print(f"targets, {bz.tool}: " + "; ".join(checks))
    failed = any(r.seconds is None and not r.note.startswith("skipped") for r in rows)
    return 1 if failed or lat_note.startswith("FAILED") else 0


def nproc() -> str:
    try:
        return subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip() or "?"
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
