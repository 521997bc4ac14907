"""What one forecast of the dashboard's Tonight page costs (web/planpage.py).

    python benchmarks/plan_page.py [--tasks 200] [--repeat 3] [--tmp DIR] [--keep]

Two homes: the demo's (the bundled examples, as `bantzd demo` drops them, taken in by
`bantzd submit` so they are queued in tasks/), and one of `--tasks` queued tasks (a mix of
estimates, priorities and `after:` chains; some too long for the night). For each, the
forecast alone (`PlanCache.get`, what a page load makes at most once a minute) is timed
`--repeat` times, then `GET /tonight` through the app twice: the first makes the forecast,
the second takes the kept one. Needs the `web` extra.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bantzd.cli.setup import copy_examples  # noqa: E402
from bantzd.paths import Home  # noqa: E402

CONFIG = "max_parallel = 2\nnice = 0\n[throttle]\nmax_load = 1000\n"
TOKEN = "bench-token-0123456789"


def bantzd(home: Path, *args: str) -> None:
    cmd = [sys.executable, "-m", "bantzd", "--home", str(home), *args]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def demo_home(root: Path) -> Home:
    home = Home(root)
    home.ensure()
    home.config.write_text(CONFIG)
    copy_examples(home)
    files = sorted(str(p) for p in home.spool.glob("*.yaml"))
    staged = root.parent / "demo-files"
    staged.mkdir()
    moved = [str(shutil.move(f, staged)) for f in files]
    bantzd(root, "submit", *moved)
    return home


def many_home(root: Path, count: int) -> Home:
    home = Home(root)
    home.ensure()
    home.config.write_text(CONFIG)
    staged = root.parent / "many-files"
    staged.mkdir()
    for i in range(count):
        estimate = ("5m", "20m", "1h", "3h", "2d")[i % 5]
        after = f"after: [job-{i - 1}]\n" if i % 7 == 6 else ""
        (staged / f"{i:04d}.yaml").write_text(
            f"name: job-{i}\nrun: 'true'\nestimate: {estimate}\npriority: {i % 3}\n{after}"
        )
    files = sorted(str(p) for p in staged.glob("*.yaml"))
    for start in range(0, len(files), 50):
        bantzd(root, "submit", *files[start : start + 50])
    return home


def measure(label: str, home: Home, repeat: int) -> None:
    from starlette.testclient import TestClient

    from bantzd.web.app import create_app
    from bantzd.web.planpage import PlanCache, plan_cache, resolve
    from bantzd.web.snapshot import HomeView

    until = resolve("07:00")
    took = []
    for _ in range(repeat):
        cache = PlanCache(home)
        started = time.perf_counter()
        planned = cache.get(until)
        took.append(time.perf_counter() - started)
    runs, waiting = len(planned.forecast.runs), len(planned.forecast.waiting)
    view = HomeView(home)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(home, TOKEN, view=view)) as client:
        started = time.perf_counter()
        assert client.get("/tonight", headers=headers).status_code == 200
        first = time.perf_counter() - started
        started = time.perf_counter()
        assert client.get("/tonight", headers=headers).status_code == 200
        second = time.perf_counter() - started
    assert plan_cache(view).runs == 1
    print(
        f"{label:<22} {runs:>4} runs {waiting:>4} waiting   forecast "
        f"median {statistics.median(took):.3f}s (min {min(took):.3f}, max {max(took):.3f})   "
        f"page: first {first:.3f}s, kept {second:.3f}s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tmp", type=Path)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bantzd-plan-bench-", dir=args.tmp))
    try:
        measure("demo's tasks", demo_home(tmp / "demo" / "home"), args.repeat)
        measure(
            f"{args.tasks} queued tasks", many_home(tmp / "many" / "home", args.tasks), args.repeat
        )
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
