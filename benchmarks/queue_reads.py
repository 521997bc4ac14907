"""The CLI's reads of a big queue: `status`, `list --json` and `show ID` with 1k-50k tasks queued.

    python benchmarks/queue_reads.py [--sizes 1000,10000] [--50k] [--repeat 3]
                                     [--baseline REF] [--tmp DIR] [--keep]

Targets (issue 18, part 2), with 10,000 queued tasks: `bantzd status` <= 0.3 s,
`list --json` <= 1 s, `show ID` <= 0.1 s, wall clock of the whole command (a subprocess:
interpreter start-up and imports included).

Each home is built honestly, through the real intake: N task files (`run: "true"` with
`not_before: 2099-01-01T00:00`, so no task can start) are written into the spool of a fresh
home (config.toml: `max_parallel = 2`, `nice = 0`, and `max_queued = N` above 10,000),
and `bantzd --home HOME run --once` takes them all in and exits, leaving N tasks `queued`
with the reason `not before ...`.
How long that intake took is printed too. Homes above 10,000 are filled in rounds of
10,000 files, one `run --once` each: one round of 50,000 files makes the intake's batch
commit fail today ("Too many open files") and leaves the tasks without a state.json.

Then each command runs `--repeat` times and the median is shown, twice:
  cold   state-index.json removed before each run: every state.json is read (and the index
         written for the next reader)
  warm   the index is there and up to date: one stat per task
`show ID` reads the task's own folder only, so it has no index; it is shown in both rows.

The commands run with bytecode caching on (PYTHONDONTWRITEBYTECODE removed from their
environment, one untimed run first), as an installed bantzd runs: compiling bantzd's sources
on every start would be measured otherwise. `--baseline REF` times the same commands on the
same homes with the bantzd of git ref REF (e.g. `main`), exported into the temp folder.

`read_rows(home)` returns the figures of one home for another benchmark to print.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from perf_common import REPO, bantzd_env

CONFIG = "max_parallel = 2\nnice = 0\n"
TASK = 'name: t{i}\nrun: "true"\nnot_before: "2099-01-01T00:00"\n'
# Files dropped per `run --once`: 50,000 at once make the intake's batch commit fail with
# "Too many open files" (more files open at once than `ulimit -n` allows) and leave the
# tasks without state.json.
ROUND = 10_000
INDEX = "state-index.json"  # bantzd.queue.stateindex.INDEX_NAME
# Seconds, with 10,000 queued (the targets).
TARGETS = {"status": 0.3, "list --json": 1.0, "show ID": 0.1}


def bantzd(home: Path, *args: str, code: Path = REPO, out: int | None = None) -> float:
    """Run `bantzd --home HOME ARGS` and return its wall-clock seconds; exit 0 or raise."""
    cmd = [sys.executable, "-m", "bantzd", "--home", str(home), *args]
    t = time.perf_counter()
    proc = subprocess.run(
        cmd,
        cwd=code,
        env=bantzd_env(code),
        stdout=subprocess.DEVNULL if out is None else out,
        stderr=subprocess.PIPE,
    )
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}\n{proc.stderr.decode()}")
    return seconds


def build_home(base: Path, n: int, code: Path = REPO) -> tuple[Path, float]:
    """A home with `n` queued tasks, made by the real intake; (home, intake seconds)."""
    home = base / f"home-{n}"
    spool = home / "spool"
    spool.mkdir(parents=True)
    os.chmod(base, 0o700)
    # Past max_queued (default 10,000) files wait in the spool (SPEC 10): raised for 50k.
    (home / "config.toml").write_text(CONFIG + (f"max_queued = {n}\n" if n > 10_000 else ""))
    seconds = 0.0
    for first in range(1, n + 1, ROUND):
        for i in range(first, min(n, first + ROUND - 1) + 1):
            (spool / f"t{i}.yaml").write_text(TASK.format(i=i))
        for path in [home, *home.rglob("*")]:
            os.chmod(path, 0o700 if path.is_dir() else 0o600)
        seconds += bantzd(home, "run", "--once", code=code)
    queued = count_queued(home)
    if queued != n:
        raise RuntimeError(
            f"{home}: {queued} tasks queued after the intake, not {n}: {statuses(home)}; "
            f"spool: {len(os.listdir(spool))} entries"
        )
    return home, seconds


def count_queued(home: Path) -> int:
    n = 0
    for folder in (home / "tasks").iterdir():
        try:
            n += json.loads((folder / "state.json").read_bytes()).get("status") == "queued"
        except (OSError, ValueError):
            pass
    return n


def statuses(home: Path) -> dict[str, int]:
    """Status -> count, for the message when a home is not what it should be."""
    counts: dict[str, int] = {}
    for folder in (home / "tasks").iterdir():
        try:
            status = json.loads((folder / "state.json").read_bytes()).get("status")
        except (OSError, ValueError) as e:
            status = type(e).__name__
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts


def _median_of(home: Path, args: tuple[str, ...], repeat: int, *, cold: bool, code: Path) -> float:
    times = []
    for _ in range(repeat):
        if cold:
            (home / INDEX).unlink(missing_ok=True)
        times.append(bantzd(home, *args, code=code))
    return statistics.median(times)


def read_rows(home: Path, *, repeat: int = 3, code: Path = REPO) -> list[dict[str, object]]:
    """The read commands on `home`, cold and warm index: one dict per (command, index) with
    `command`, `index` ("cold"/"warm"), `seconds` (median of `repeat`), `target` (seconds
    at 10,000 queued, or None) and `queued`."""
    ids = sorted(int(p.name) for p in (home / "tasks").iterdir() if p.name.isdigit())
    middle = str(ids[len(ids) // 2])
    commands = {
        "status": ("status",),
        "list --json": ("list", "--json"),
        "show ID": ("show", middle),
    }
    for args in commands.values():  # compile bantzd's .pyc files, untimed
        bantzd(home, *args, code=code)
    rows: list[dict[str, object]] = []
    for index in ("cold", "warm"):
        if index == "warm":  # the cold runs left no index (or one without texts): make it
            bantzd(home, "list", "--json", code=code)
        for name, args in commands.items():
            seconds = _median_of(home, args, repeat, cold=index == "cold", code=code)
            rows.append(
                {
                    "command": name,
                    "index": index,
                    "seconds": seconds,
                    "target": TARGETS.get(name),
                    "queued": len(ids),
                }
            )
    return rows


def floor(repeat: int) -> float:
    """What any Python command using click costs here: `python -c "import click"`."""
    times = []
    for _ in range(max(3, repeat)):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import click"], env=bantzd_env(), check=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def export_ref(ref: str, base: Path) -> Path:
    """The bantzd of git ref `ref`, as files in `base` (the working tree is not touched)."""
    dest = base / f"code-{ref.replace('/', '_')}"
    dest.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref, "bantzd"], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def load_text() -> str:
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "?"
    return f"{one:.2f} (1 min), {five:.2f} (5 min)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000", help="queue sizes, comma-separated")
    ap.add_argument("--50k", dest="big", action="store_true", help="also 50,000 queued")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline", metavar="REF", help="also time the bantzd of this git ref")
    ap.add_argument("--tmp", default=None, help="where the homes go (default: the system tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the homes")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.big and 50_000 not in sizes:
        sizes.append(50_000)

    base = Path(tempfile.mkdtemp(prefix="bantzd-reads-", dir=args.tmp))
    python = platform.python_version()
    print(f"machine: {os.cpu_count()} cores, Python {python}, load {load_text()}")
    print(f"homes in {base}")
    try:
        baseline = export_ref(args.baseline, base) if args.baseline else None
        print()
        head = "| queued | command | index | seconds | target at 10k | met |"
        if baseline is not None:
            head += f" {args.baseline} |"
        print(head)
        print("|" + " --- |" * (head.count("|") - 1))
        intakes = []
        for n in sizes:
            home, intake = build_home(base, n)
            intakes.append((n, intake))
            before = {}
            if baseline is not None:
                before = {
                    (r["command"], r["index"]): r["seconds"]
                    for r in read_rows(home, repeat=args.repeat, code=baseline)
                }
            for row in read_rows(home, repeat=args.repeat):
                target = row["target"]
                met = ""
                if n == 10_000 and target is not None:
                    met = "yes" if row["seconds"] <= target else "NO"  # type: ignore[operator]
                line = (
                    f"| {n:,} | {row['command']} | {row['index']} | {row['seconds']:.3f} | "
                    f"{target} | {met} |"
                )
                if baseline is not None:
                    line += f" {before[(row['command'], row['index'])]:.3f} |"
                print(line, flush=True)
            if not args.keep:
                shutil.rmtree(home)
        print()
        print(f"floor: `python -c 'import click'` takes {floor(args.repeat):.3f} s here")
        for n, intake in intakes:
            print(f"intake of {n:,} task files by `bantzd run --once`: {intake:.1f} s")
        print(f"load at the end: {load_text()}")
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
