"""What bantzd's `llm:` worker adds to each request, and how full it keeps a server.

    python benchmarks/llm.py [--docs 200] [--slots 8] [--service 0.5] [--per-minute 120]
                             [--minutes 3] [--only concurrency,overhead]

**Concurrency** (benchmarks/llm_fill.py, `llm_rows`): throughput at `concurrency:` = slots
as % of the stand-in server's ideal (target >= 90 %), and under a shared `per_minute` the %
of the limit used over `--minutes` (target >= 95 %) with the 429s bantzd caused (target 0).

**Overhead** (`--docs`):

Runs against tests/llm_server.py (answers at once), so what is measured is the client side.
The gap between consecutive requests, as the server sees them, is compared for:

- a bare loop with the openai client (read a file, one request), the floor;
- a bantzd `llm:` task over the same files, with no `uses:`;
- the same with `uses: {llm: 1}` (a locked read-modify-write of limits.json per request).

Prints a table in milliseconds (p50 and p90 of the gaps) and the whole run's wall time; then
what it costs to make one more answer durable after n answers, as a checkpoint holding them
all against the append-only answer log the worker keeps.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.llm_fill import llm_rows, print_llm_rows  # noqa: E402
from tests.llm_server import FakeLLM  # noqa: E402


def gaps(server: FakeLLM, since: int) -> list[float]:
    times = [r.at for r in server.seen()[since:] if r.doc is not None]
    return [(b - a) * 1000 for a, b in itertools.pairwise(times)]


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def direct(server: FakeLLM, files: list[Path]) -> float:
    import openai

    client = openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0)
    start = time.perf_counter()
    for f in files:
        text = f.read_text()
        client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": f"Summarise.\n\nDocument: {f.name}\n\n{text}"}],
        )
    return time.perf_counter() - start


def with_bantzd(server: FakeLLM, folder: Path, uses: bool) -> float:
    home = Path(tempfile.mkdtemp(prefix="bantzd-bench-llm-"))
    (home / "config.toml").write_text(
        'nice = 0\nscan_interval = "0.5s"\n[throttle]\nmax_load = 1000\n'
        f'[llm]\nbase_url = "{server.base_url}"\nmodel = "local"\n'
        "[limits.llm]\nconcurrent = 1\nper_minute = 100000\n"
    )
    spool = home / "spool"
    spool.mkdir(mode=0o700)
    task = f"name: bench\ncwd: {folder}\nllm:\n  prompt: Summarise.\n  inputs: '*.md'\n"
    if uses:
        task += "uses: {llm: 1}\n"
    (spool / "bench.yaml").write_text(task)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bantzd", "--home", str(home), "run", "--once"],
        check=True,
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def persistence(counts: tuple[int, ...], answer_chars: int = 800) -> list[tuple[int, float, float]]:
    """ms to make the n-th answer durable: a checkpoint holding every answer so far (what a
    plain ctx.save per document costs) against one append to the answer log."""
    from bantzd.worker import Context
    from bantzd.workers.llmanswers import AnswerLog

    rows = []
    for n in counts:
        folder = Path(tempfile.mkdtemp(prefix="bantzd-bench-persist-"))
        ctx = Context(folder, task_id=1)
        answers = {f"notes/doc{i:05d}.md": "x" * answer_chars for i in range(n)}
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            ctx.save({"stage": "map", "partials": answers})
            samples.append((time.perf_counter() - start) * 1000)
        whole = statistics.median(samples)
        log = AnswerLog(folder / "answers.jsonl")
        samples = []
        for i in range(5):
            start = time.perf_counter()
            log.append({"k": "part", "doc": f"notes/doc{i:05d}.md", "text": "x" * answer_chars})
            samples.append((time.perf_counter() - start) * 1000)
        rows.append((n, whole, statistics.median(samples)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=200, help="documents for the overhead part")
    parser.add_argument("--slots", type=int, default=8, help="the server's parallel slots")
    parser.add_argument("--service", type=float, default=0.5, help="seconds per request")
    parser.add_argument("--per-minute", type=int, default=120, help="the shared limit")
    parser.add_argument("--minutes", type=float, default=3.0, help="the per_minute run")
    parser.add_argument("--only", default="concurrency,overhead", help="parts to run")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    if "concurrency" in parts:
        print(f"concurrency: tests/llm_server.py, {args.slots} slots, {args.service:g} s each\n")
        print_llm_rows(llm_rows(args.slots, args.service, args.per_minute, args.minutes))
        print()
    if "overhead" in parts:
        overhead(args.docs)


def overhead(count: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bantzd-bench-docs-"))
    files = []
    for i in range(count):
        f = folder / f"doc{i:04d}.md"
        f.write_text(f"Note {i}: " + "words of a weekly note " * 40)
        files.append(f)
    server = FakeLLM(models=("local",))
    server.start()
    rows = []
    try:
        for label, run in (
            ("openai client loop (floor)", lambda: direct(server, files)),
            ("bantzd llm:, no uses", lambda: with_bantzd(server, folder, uses=False)),
            ("bantzd llm:, uses {llm: 1}", lambda: with_bantzd(server, folder, uses=True)),
        ):
            since = len(server.seen())
            wall = run()
            g = gaps(server, since)
            rows.append((label, statistics.median(g), pct(g, 0.9), wall))
    finally:
        server.stop()
    print(f"{count} documents, one request each, server answering at once\n")
    print(f"| {'run':<28} | gap p50 ms | gap p90 ms | wall s |")
    print(f"| {'-' * 28} | ---------: | ---------: | -----: |")
    for label, p50, p90, wall in rows:
        print(f"| {label:<28} | {p50:10.2f} | {p90:10.2f} | {wall:6.2f} |")
    print("\nmaking one more 800-character answer durable, after n answers (median of 5, ms)\n")
    print("| n answers | checkpoint with every answer | append to the answer log |")
    print("| --------: | ---------------------------: | -----------------------: |")
    for n, whole, append in persistence((100, 1000, 5000)):
        print(f"| {n:9} | {whole:28.2f} | {append:24.2f} |")


if __name__ == "__main__":
    main()
