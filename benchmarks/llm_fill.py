"""How full `llm:` tasks keep a server: the concurrency part of benchmarks/llm.py.

`llm_rows()` is the measurement, importable by another benchmark script (with
`print_llm_rows` to print it). Against tests/llm_server.py given `slots` parallel slots and a
fixed `service` time per request (so its ideal is slots / service requests a second):

- the map phase's throughput at `concurrency:` = slots, as % of that ideal (target >= 90 %),
  and at concurrency 1 for comparison: the map requests' service time over the slots,
  against the time from the first request's arrival to the last answer;
- two tasks sharing `[limits.llm] per_minute`, the server enforcing the same limit (sliding
  60 s window by arrival, 429 past it), for `minutes` from the first request: % of what the
  limit allows in that time (per_minute in each started minute) the server accepted (target
  >= 95 %), and the 429s, all caused by bantzd (target 0: nothing else uses the server).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.llm_server import FakeLLM  # noqa: E402

THROUGHPUT_TARGET = 90.0  # % of the server's ideal at concurrency = slots
PER_MINUTE_TARGET = 95.0  # % of per_minute used


@dataclass(frozen=True)
class LlmRow:
    """One figure, next to its target (`met` None: a comparison row with no target)."""

    figure: str
    value: float
    unit: str
    target: str
    met: bool | None


def _home(server: FakeLLM, limits: str = "") -> Path:
    home = Path(tempfile.mkdtemp(prefix="bantzd-bench-llm-"))
    (home / "config.toml").write_text(
        'nice = 0\nmax_parallel = 4\nscan_interval = "0.5s"\n[throttle]\nmax_load = 1000\n'
        f'[llm]\nbase_url = "{server.base_url}"\nmodel = "local"\ntimeout = "60s"\n' + limits
    )
    (home / "spool").mkdir(mode=0o700)
    return home


def _notes(count: int, tag: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=f"bantzd-bench-{tag}-"))
    for i in range(count):
        (folder / f"{tag}{i:05d}.md").write_text(f"Note {i}: " + "words of a weekly note " * 20)
    return folder


def _drop(home: Path, name: str, folder: Path, concurrency: int, uses: str = "") -> None:
    (home / "spool" / f"{name}.yaml").write_text(
        f"name: {name}\ncwd: {folder}\n{uses}llm:\n  prompt: Summarise.\n  inputs: '*.md'\n"
        f"  concurrency: {concurrency}\n"
    )


def _bantzd(home: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    return subprocess.Popen(
        [sys.executable, "-m", "bantzd", "--home", str(home), *args],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )


def throughput(server: FakeLLM, concurrency: int, docs: int) -> float:
    """% of the server's ideal the map phase of one `llm:` task over `docs` files got."""
    assert server.slots
    since = len(server.seen())
    home = _home(server)
    _drop(home, "fill", _notes(docs, f"c{concurrency}-"), concurrency)
    if _bantzd(home, "run", "--once").wait() != 0:
        raise SystemExit("bantzd run --once failed (throughput)")
    maps = [r for r in server.seen()[since:] if r.doc is not None and r.status == 200]
    if len(maps) != docs or any(r.answered_at is None for r in maps):
        raise SystemExit(f"expected {docs} answered map requests, the server saw {len(maps)}")
    span = max(r.answered_at or 0.0 for r in maps) - min(r.at for r in maps)
    return 100.0 * (len(maps) * server.delay / server.slots) / span


def per_minute_use(
    server: FakeLLM, per_minute: int, minutes: float, concurrency: int
) -> tuple[float, int]:
    """(% of `per_minute` the server accepted over `minutes`, 429s it answered): two tasks
    with `concurrency` share `[limits.llm] per_minute`, the server enforcing the same."""
    since = len(server.seen())
    server.per_minute, server.rate_limited, server.accepted = per_minute, 0, deque()
    home = _home(server, f"[limits.llm]\nper_minute = {per_minute}\n")
    docs = int(per_minute * minutes) + 4 * concurrency  # more than the window lets through
    for name in ("share-a", "share-b"):
        _drop(home, name, _notes(docs, name), concurrency, uses="uses: {llm: 1}\n")
    proc = _bantzd(home, "run")
    try:
        server.wait_for(lambda s: len(s.requests) > since, timeout=60)
        first = server.seen()[since].at
        end = first + minutes * 60.0
        while time.time() < end + 1.0:
            if proc.poll() is not None:
                raise SystemExit("bantzd run ended before the window did")
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(60)
        server.per_minute = None
    seen = server.seen()[since:]
    accepted = [r for r in seen if r.status != 429 and first <= r.at < end]
    limited = sum(1 for r in seen if r.status == 429)
    # A sliding window lets `per_minute` go at once, then as each ages out: from the first
    # request, that is per_minute in each started minute.
    return 100.0 * len(accepted) / (per_minute * math.ceil(minutes)), limited


def llm_rows(
    slots: int = 8,
    service: float = 0.5,
    per_minute: int = 120,
    minutes: float = 3.0,
    rounds: int = 6,
) -> list[LlmRow]:
    """The concurrency figures (`rounds` x `slots` documents for the throughput run)."""
    server = FakeLLM(models=("local",), delay=service)
    server.slots = slots
    server.start()
    try:
        full = throughput(server, slots, slots * rounds)
        one = throughput(server, 1, slots * 2)
        used, limited = per_minute_use(server, per_minute, minutes, slots)
    finally:
        server.stop()
    where = f"{slots} slots, {service:g} s a request"
    return [
        LlmRow(
            f"map throughput, concurrency {slots} ({where})",
            full,
            "% of ideal",
            f">= {THROUGHPUT_TARGET:g} %",
            full >= THROUGHPUT_TARGET,
        ),
        LlmRow(f"map throughput, concurrency 1 ({where})", one, "% of ideal", "-", None),
        LlmRow(
            f"per_minute {per_minute} shared by 2 tasks (concurrency {slots}), "
            f"used over {minutes:g} min",
            used,
            "% of limit",
            f">= {PER_MINUTE_TARGET:g} %",
            used >= PER_MINUTE_TARGET,
        ),
        LlmRow("HTTP 429s caused by bantzd in that run", limited, "count", "0", limited == 0),
    ]


def print_llm_rows(rows: list[LlmRow]) -> None:
    width = max(len(r.figure) for r in rows)
    print(f"| {'figure':<{width}} | measured | unit       | target  | met |")
    print(f"| {'-' * width} | -------: | ---------- | ------- | --- |")
    for r in rows:
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        value = f"{r.value:8.0f}" if r.unit == "count" else f"{r.value:8.1f}"
        print(f"| {r.figure:<{width}} | {value} | {r.unit:<10} | {r.target:<7} | {met:<3} |")
