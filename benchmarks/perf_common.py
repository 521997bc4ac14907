"""What throughput.py and its parts (perf_queue.py, perf_idle.py) share: starting bantzd on a
fresh home, dropping files, reading a process's CPU, memory and wakeups from /proc, and the
rows of the final table.

The benchmarks are scripts run from the repo root (`python benchmarks/throughput.py`), so the
folder they are in is first on sys.path and these modules are imported by their bare names.
Every process is started with the repo's package first on PYTHONPATH, so what is measured is
the code beside this folder, whatever state it is in.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# bantzd's intake.SETTLE: a spool file found by a scan (not seen renamed in by the watcher, as
# files dropped before the supervisor starts) is taken once it has been quiet this long.
SETTLE = 1.0
TICK = os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------------- the table


@dataclass
class Figure:
    """One line of the final table. met: True/False against the target, None: no target
    (shown for the curve or for information only)."""

    figure: str
    measured: str
    target: str
    met: bool | None
    note: str = ""


def met_text(met: bool | None) -> str:
    return "–" if met is None else ("yes" if met else "NO")


def print_figures(figures: list[Figure]) -> None:
    print("| figure | measured | target | met |")
    print("| --- | ---: | ---: | :---: |")
    for f in figures:
        measured = f.measured + (f" ({f.note})" if f.note else "")
        print(f"| {f.figure} | {measured} | {f.target} | {met_text(f.met)} |")


# ----------------------------------------------------------------------------- bantzd


def bantzd_env(code: Path = REPO) -> dict[str, str]:
    """The environment bantzd runs in: the repo's package first, no BANTZ_HOME, and bytecode
    caching on, as an installed bantzd has it (pip compiles the .pyc files): with
    PYTHONDONTWRITEBYTECODE set, every command after an edit would compile its modules
    again, a few hundred ms that no user pays."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(code), env.get("PYTHONPATH")) if p)
    env.pop("BANTZ_HOME", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def bantzd_cmd(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bantzd", "--home", str(home), *args]


def make_home(base: Path, name: str, config: str) -> Path:
    """A home as `bantzd init` leaves it: private (0700). An open one makes every command
    walk it to name what others can read (paths.exposure_warnings), a cost that a home
    made by bantzd never has."""
    home = base / name
    home.mkdir(mode=0o700)
    (home / "spool").mkdir(mode=0o700)
    (home / "config.toml").write_text(config)
    os.chmod(home / "config.toml", 0o600)
    return home


def drop(spool: Path, name: str, text: str) -> None:
    """Write-then-rename: a dotfile temp name is ignored by bantzd until the rename."""
    tmp = spool / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, spool / f"{name}.yaml")


def spool_pending(spool: Path) -> int:
    """Spool files bantzd has not taken in yet (not dotfiles, not in rejected/)."""
    try:
        with os.scandir(spool) as it:
            return sum(1 for e in it if e.name.endswith(".yaml") and not e.name.startswith("."))
    except FileNotFoundError:
        return 0


def task_folders(home: Path) -> list[int]:
    try:
        return sorted(int(n) for n in os.listdir(home / "tasks") if n.isdigit())
    except FileNotFoundError:
        return []


def read_status(home: Path, task_id: int) -> str | None:
    try:
        return json.loads((home / "tasks" / str(task_id) / "state.json").read_text())["status"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def statuses(home: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for task_id in task_folders(home):
        status = read_status(home, task_id) or "unreadable"
        counts[status] = counts.get(status, 0) + 1
    return counts


def wait_for(
    pred: Callable[[], bool],
    timeout: float,
    what: str,
    proc: subprocess.Popen | None = None,
    every: float = 0.0005,
) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"bantzd exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


@dataclass
class Running:
    """A supervisor started by `supervisor()`: its process, and when it was started
    (time.perf_counter() just before the fork)."""

    proc: subprocess.Popen
    started: float

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextlib.contextmanager
def supervisor(
    home: Path, log: Path, timeout: float = 60, extra_env: dict[str, str] | None = None
) -> Iterator[Running]:
    """`bantzd run` (no --once) in the background, with `extra_env` added to its
    environment; yields once bantzd.pid exists; SIGTERM and a wait (SIGKILL past 120 s)
    on the way out."""
    out = log.open("w")
    started = time.perf_counter()
    proc = subprocess.Popen(
        bantzd_cmd(home, "run"),
        cwd=REPO,
        env={**bantzd_env(), **(extra_env or {})},
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for((home / "bantzd.pid").exists, timeout, "bantzd.pid", proc, every=0.005)
        yield Running(proc, started)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()


def throttled(home: Path) -> int:
    """How many times the supervisor logged `starts throttled` (the load throttle held starts
    back: on a busy machine that, not bantzd's own cost, can be most of a run's time)."""
    try:
        return (home / "bantzd.log").read_text(errors="replace").count("starts throttled")
    except OSError:
        return 0


def log_tail(log: Path, lines: int = 5) -> str:
    with contextlib.suppress(OSError):
        return " / ".join(log.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


def cli_wall(home: Path, *args: str, repeat: int = 3, timeout: float = 600) -> tuple[float, str]:
    """Median wall time of `bantzd --home HOME ARGS` (a subprocess, interpreter start-up
    included), and '' or what went wrong."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        proc = subprocess.run(
            bantzd_cmd(home, *args),
            cwd=REPO,
            env=bantzd_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        times.append(time.perf_counter() - t)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            return statistics.median(times), f"exit {proc.returncode}: {' '.join(tail)}"
    return statistics.median(times), ""


# ----------------------------------------------------------------------------- /proc


@dataclass
class ProcSample:
    """A process's own CPU time (all its threads, not its children), memory and context
    switches at one moment. A voluntary switch is a thread going to sleep: over a quiet
    window their count is the number of times the process woke up and slept again."""

    at: float
    cpu: float
    rss: int
    voluntary: int
    involuntary: int
    threads: dict[str, int]  # thread name (comm) + tid -> voluntary switches


def sample(pid: int) -> ProcSample:
    at = time.monotonic()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    vol = invol = 0
    threads: dict[str, int] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            comm = (task / "comm").read_text().strip()
            v = i = 0
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    v = int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    i = int(line.split()[1])
            vol += v
            invol += i
            threads["main" if task.name == str(pid) else f"{comm}/{task.name}"] = v
    return ProcSample(at, cpu, rss, vol, invol, threads)


@dataclass
class Window:
    """What a process did over a window: CPU % of one core, RSS (the highest of the samples)
    and wakeups per second, in all and for the busiest threads."""

    seconds: float
    cpu_pct: float
    rss: int
    wakeups_per_s: float
    involuntary_per_s: float
    busiest: list[tuple[str, float]]


def watch(pid: int, seconds: float, every: float = 1.0) -> Window:
    """Sample the process every `every` s for `seconds` (the benchmark sleeps in between, so
    its own reading costs the process nothing)."""
    first = last = sample(pid)
    rss = first.rss
    end = first.at + seconds
    while (now := time.monotonic()) < end:
        time.sleep(min(every, end - now))
        last = sample(pid)
        rss = max(rss, last.rss)
    wall = last.at - first.at
    per_thread = {name: (v - first.threads.get(name, 0)) / wall for name, v in last.threads.items()}
    busiest = sorted(per_thread.items(), key=lambda kv: -kv[1])[:4]
    return Window(
        seconds=wall,
        cpu_pct=100 * (last.cpu - first.cpu) / wall,
        rss=rss,
        wakeups_per_s=(last.voluntary - first.voluntary) / wall,
        involuntary_per_s=(last.involuntary - first.involuntary) / wall,
        busiest=busiest,
    )


def mb(n: int) -> float:
    """Megabytes (10^6 bytes), the unit the targets are given in."""
    return n / 1e6


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]
