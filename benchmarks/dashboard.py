"""What the dashboard costs: the CPU of `bantzd serve` and of the supervisor, with no page
open and with pages open (their live event streams), over a minute each.

    python benchmarks/dashboard.py [--seconds 60] [--tmp DIR] [--keep]

In a fresh home (max_parallel 2, nice 0, no load throttle) a real supervisor (`bantzd run`)
runs one task that reports progress every second for the whole benchmark, one that asked a
question and one held for approval: a night with something to show that changes. Then
`bantzd serve --port 0` starts, and for each phase the CPU time (user + system, the process
itself, not its children) of both processes is read from /proc before and after:

  no page open      nobody looks: the server should be idle
  night page open   one browser's stream of /events/night (what the night page holds open)
  three pages open  the night, the task list and the running task's page, each its own stream

The streams are read by plain HTTP clients in threads, as a browser's EventSource would; the
count of events each phase received is printed beside the CPU. Needs the `web` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
CONFIG = 'max_parallel = 2\nnice = 0\nscan_interval = "1s"\n[throttle]\nmax_load = 1000\n'
TICKER = textwrap.dedent("""\
    name: ticker
    run:
      - {python}
      - -c
      - |
        import time
        from bantzd.worker import context
        ctx = context()
        for i in range({steps}):
            ctx.progress(i / {steps}, f"step {{i}}")
            print(f"step {{i}}", flush=True)
            time.sleep(1)
""")
ASK = textwrap.dedent("""\
    name: asks
    env: {{PYTHON: {python}}}
    run: '"$PYTHON" -m bantzd ask go "Go on?" --choice yes --choice no'
""")
HELD = "name: held\napproval: true\nrun: echo approved\n"


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bantzd", "--home", str(home), *args]


def drop(home: Path, name: str, text: str) -> None:
    tmp = home / "spool" / f".{name}.tmp"
    tmp.write_text(text)
    os.rename(tmp, home / "spool" / name)


def state(home: Path, task_id: int) -> dict:
    try:
        return json.loads((home / "tasks" / str(task_id) / "state.json").read_text())
    except (OSError, ValueError):
        return {}


def wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"benchmark: timed out waiting for {what}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class Stream(threading.Thread):
    """Reads one event stream until told to stop, counting its events."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url, self.token = url, token
        self.events = 0
        self.stop = threading.Event()

    def run(self) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.stream("GET", self.url, headers=headers, timeout=None) as res:
            for line in res.iter_lines():
                if line.startswith("event: "):
                    self.events += 1
                if self.stop.is_set():
                    return


def measure(label: str, seconds: float, pids: dict[str, int], streams: list[Stream]) -> dict:
    for s in streams:
        s.start()
    time.sleep(2)  # the first burst (every fragment once) is not the steady state
    before = {k: cpu_seconds(p) for k, p in pids.items()}
    events_before = sum(s.events for s in streams)
    start = time.monotonic()
    time.sleep(seconds)
    took = time.monotonic() - start
    after = {k: cpu_seconds(p) for k, p in pids.items()}
    events = sum(s.events for s in streams) - events_before
    for s in streams:
        s.stop.set()
    row = {"phase": label, "seconds": took, "events": events}
    for k in pids:
        row[k] = after[k] - before[k]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each phase")
    parser.add_argument("--tmp", default=None, help="where the temporary home goes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home")
    args = parser.parse_args()
    try:
        import importlib

        importlib.import_module("httpx")
        importlib.import_module("bantzd.web.app")
    except ImportError as e:
        raise SystemExit(f"benchmark: needs the web extra and httpx ({e})") from e

    folder = Path(tempfile.mkdtemp(prefix="bantzd-dash-bench-", dir=args.tmp))
    home = folder / "home"
    procs: list[subprocess.Popen] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    env["PYTHONPATH"] = str(REPO)
    try:
        subprocess.run(cli(home, "init"), check=True, capture_output=True, env=env)
        (home / "config.toml").write_text(CONFIG)
        python = json.dumps(sys.executable)
        steps = int(args.seconds * 3 + 60)
        drop(home, "1.yaml", TICKER.format(python=python, steps=steps))
        drop(home, "2.yaml", ASK.format(python=python))
        drop(home, "3.yaml", HELD)
        sup = subprocess.Popen(
            cli(home, "run"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        procs.append(sup)
        wait(lambda: state(home, 1).get("status") == "running", 60, "the ticker to run")
        wait(lambda: state(home, 2).get("status") == "waiting_human", 60, "the question")
        serve = subprocess.Popen(
            cli(home, "serve", "--port", "0"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(serve)
        line = serve.stdout.readline().strip() if serve.stdout else ""
        if not line.startswith("http://"):
            raise SystemExit(f"benchmark: bantzd serve printed {line!r}")
        base, _, token = line.partition("/?token=")
        pids = {"server": serve.pid, "supervisor": sup.pid}

        def streams(*paths: str) -> list[Stream]:
            return [Stream(base + p, token) for p in paths]

        rows = [
            measure("no page open", args.seconds, pids, []),
            measure("night page open", args.seconds, pids, streams("/events/night")),
            measure(
                "three pages open",
                args.seconds,
                pids,
                streams("/events/night", "/events/tasks", "/events/task?id=1"),
            ),
        ]
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)

    print(f"bantzd dashboard idle cost, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    print(f"{'phase':<18} {'s':>5} {'server CPU':>12} {'supervisor CPU':>16} {'events':>7}")
    for r in rows:
        print(
            f"{r['phase']:<18} {r['seconds']:>5.0f} "
            f"{r['server']:>6.2f}s {100 * r['server'] / r['seconds']:>4.1f}% "
            f"{r['supervisor']:>8.2f}s {100 * r['supervisor'] / r['seconds']:>5.1f}% "
            f"{r['events']:>7}"
        )
    if args.keep:
        print(f"home kept: {home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
