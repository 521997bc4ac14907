"""Issue 18 part 1: N no-op tasks through bantzd, task-spooler, nq and `xargs -P2` in the same
run, and an idle supervisor's drop -> start latency.

bantzd: N files `run: "true"` are dropped into the spool of a fresh home (untimed) and left to
age past intake's settle time, as files dropped during the day are by 23:00; then
`bantzd --home HOME run --once` is timed from start to exit (a subprocess, interpreter start-up
included) and every task must be `done`. Every state change bantzd makes is durable (fsync'd),
the others' are not. The others run the same `/bin/sh -c true`:
  xargs  `seq N | xargs -P2 -n1 sh -c true` (the floor: fork/exec and nothing else)
  tsp    task-spooler with a private TS_SOCKET/TMPDIR and `tsp -S 2`; timed from the first
         `tsp sh -c true` to the end of the last job: submitting the N jobs is part of it
         (task-spooler cannot hold a queue without running it; `-S 0` is refused)
  nq     a private NQDIR; nq runs one job at a time (each job waits for all earlier ones), so
         it is measured serial, and also as two queues fed alternately (the nearest thing to
         two slots); timed from the first `nq` to `nq -w` on all ids returning

Latency: `bantzd run` (no --once) in the background; DROPS times: note time.time(), rename a
task `run: "date +%s.%N > FILE"` into the spool, wait for it to finish, and take latency =
FILE's timestamp - the noted time (the worker's /bin/sh and `date` start-up included, ~1 ms).
One untimed drop first warms the supervisor up.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from perf_common import (
    REPO,
    SETTLE,
    bantzd_cmd,
    bantzd_env,
    drop,
    make_home,
    statuses,
    supervisor,
    task_folders,
    throttled,
    wait_for,
)


class Row:
    def __init__(self, tool: str, tasks: int, seconds: float | None, note: str = "") -> None:
        self.tool, self.tasks, self.seconds, self.note = tool, tasks, seconds, note


def run_bantzd_empty(base: Path, config: str) -> float:
    """The fixed cost: interpreter start-up, imports, opening the home, with nothing to do."""
    home = make_home(base, "bantzd-empty", config)
    t = time.perf_counter()
    subprocess.run(
        bantzd_cmd(home, "run", "--once"), cwd=REPO, env=bantzd_env(), capture_output=True
    )
    return time.perf_counter() - t


def run_bantzd(
    base: Path, n: int, label: str, config: str, *, fresh: bool = False, timeout: float = 900
) -> Row:
    """fresh: start the moment the last file is renamed in. Otherwise wait until the files are
    older than bantzd's settle time first, as files dropped during the day are at 23:00."""
    home = make_home(base, f"bantzd-{len(list(base.iterdir()))}", config)
    spool = home / "spool"
    t = time.perf_counter()
    for i in range(n):
        drop(spool, f"t{i:05d}", 'run: "true"\n')
    dropped = time.perf_counter() - t
    if not fresh:
        time.sleep(SETTLE + 0.2)
    t = time.perf_counter()
    try:
        proc = subprocess.run(
            bantzd_cmd(home, "run", "--once"),
            cwd=REPO,
            env=bantzd_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        done = statuses(home).get("done", 0)
        held_back = throttled(home)
        return Row(
            label,
            n,
            None,
            f"FAILED: not done after {timeout:.0f} s ({done}/{n} done, "
            f"starts throttled {held_back}× (load))",
        )
    seconds = time.perf_counter() - t
    counts = statuses(home)
    done = counts.get("done", 0)
    if fresh:
        note = f"{done}/{n} done; files < {SETTLE:g} s old wait to settle"
    else:
        note = f"{done}/{n} done; drops took {dropped:.2f} s + {SETTLE + 0.2:g} s wait (untimed)"
    held_back = throttled(home)
    if held_back:
        note += f"; starts throttled {held_back}× (load)"
    if proc.returncode != 0 or done != n:
        note += f"; FAILED: exit {proc.returncode}, states {counts}"
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        note += "".join(f"\n      {line}" for line in tail)
        return Row(label, n, None, note)
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
    """Whether the newest task folder named `name` is done or failed (the latency run's
    tasks are the newest, so it looks from the end)."""
    for task_id in reversed(task_folders(home)):
        try:
            state = json.loads((home / "tasks" / str(task_id) / "state.json").read_text())
        except (OSError, ValueError):
            continue
        if state.get("name") == name:
            return state.get("status") in ("done", "failed")
    return False


def run_latency(
    base: Path, drops: int, config: str, extra_env: dict[str, str] | None = None, tag: str = ""
) -> tuple[list[float], str]:
    """Latencies in seconds, and what happened (a FAILED: note when it did not work).
    `extra_env`: added to the supervisor's environment; `tag`: names this run's files."""
    home = make_home(base, f"bantzd-latency{tag}", config)
    spool = home / "spool"
    stamps = base / f"stamps{tag}"
    stamps.mkdir()
    lat: list[float] = []
    try:
        log = base / f"latency{tag}-supervisor.out"
        with supervisor(home, log, extra_env=extra_env) as sup:
            for i in range(-1, drops):  # -1: the untimed warm-up drop
                name = f"lat{i + 1:03d}"
                stamp = stamps / name
                tmp = spool / f".{name}.tmp"
                tmp.write_text(f'name: {name}\nrun: "date +%s.%N > {stamp}"\n')
                t0 = time.time()
                os.rename(tmp, spool / f"{name}.yaml")
                wait_for(
                    lambda s=stamp: read_stamp(s) is not None, 120, f"{name} to start", sup.proc
                )
                started = read_stamp(stamp)
                assert started is not None
                if i >= 0:
                    lat.append(started - t0)
                wait_for(lambda n=name: task_done(home, n), 120, f"{name} to finish", sup.proc)
                time.sleep(0.05)  # let the supervisor settle back to idle
    except (RuntimeError, TimeoutError, OSError) as e:
        return lat, f"FAILED: {e}"
    held_back = throttled(home)
    return lat, f"starts throttled {held_back}× (load)" if held_back else ""
