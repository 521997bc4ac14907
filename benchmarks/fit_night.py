"""Fitting the night (SPEC 11): two nights of a mixed workload with and without the rules.

    python benchmarks/fit_night.py [--parallel 2] [--grace 30] [--seed 1]

The real `Supervisor` runs on a fake clock (as `bantzd plan` does) with an executor that
models the work: each task has a true run time (its name's base time, ±10% per night, the
same for both policies), a task that can resume (`checkpoints: true`) keeps its work when
SIGTERM stops it and takes SAVE seconds to save, one that cannot loses the whole attempt.

First a night without `--until` runs every name once, so estimates.json knows them (as a
first night would). Then, twice, the nightly batch is submitted at 23:00 and the night runs
to 07:00 (what is left waits for the next night), once with `fit_night = true` (the
default: a task that cannot resume and would not finish does not start; resumable tasks get
SIGTERM `stop_grace` before `--until`) and once with `fit_night = false` (every task may
start; SIGTERM at `--until`). Printed per policy, over both nights:

  finished       attempts that ended done
  thrown away    hours of attempts killed at the end that could not resume
  idle slots     hours of free slots between 23:00 and 07:00 (max_parallel slots)
  last hour      share of the slot time in 06:00-07:00 spent running, then the share
                 spent on work that counted (finished or saved)
  past --until   the longest a task still ran after 07:00 (the machine is not free)
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bantzd.clock import FakeClock
from bantzd.config import load_config
from bantzd.paths import Home, TaskPaths
from bantzd.supervisor.executor import Found, Launch
from bantzd.supervisor.loop import Supervisor
from bantzd.supervisor.probes import Reading
from bantzd.workers.spawn import Attempt, Outcome

HOUR = 3600.0
SAVE = 10.0  # seconds a resumable task takes to save its checkpoint after SIGTERM
NIGHT_START = datetime(2026, 11, 23, 23, 0, tzinfo=UTC).timestamp()
NIGHT = 8 * HOUR
# name, hours, resumable, priority: more work than a night of two slots holds (21.5 h).
WORKLOAD = [
    ("nightly-backup", 1.5, False, 9),
    ("train-model", 5.0, True, 8),
    ("etl-warehouse", 4.0, False, 7),
    ("render-frames", 3.0, True, 6),
    ("reindex-search", 2.5, False, 5),
    ("full-export", 3.5, False, 4),
    ("eval-suite", 1.0, False, 3),
    ("scrape-prices", 0.75, False, 2),
    ("thumbnails", 0.25, False, 1),
]


@dataclass
class Span:
    task_id: int
    start: float
    end: float
    counted: bool  # finished, or saved for the next night; False: thrown away
    finished: bool = False  # the attempt's work ended done


@dataclass
class WorkModel:
    """The executor's truth: how long each task's work takes and how much is done."""

    clock: FakeClock
    night: int = 0
    seed: int = 1
    names: dict[int, str] = field(default_factory=dict)
    resumable: dict[int, bool] = field(default_factory=dict)
    done_work: dict[int, float] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)
    _work: dict[int, float] = field(default_factory=dict)

    def work(self, task_id: int) -> float:
        """The task's whole work: its name's base time, ±10% by the night it first ran."""
        if task_id not in self._work:
            name = self.names[task_id]
            base = next(h for n, h, _, _ in WORKLOAD if n == name) * HOUR
            rng = random.Random(f"{self.seed}:{name}:{self.night}")
            self._work[task_id] = base * rng.uniform(0.9, 1.1)
        return self._work[task_id]


class WorkExecutor:
    """Attempts that end when their (remaining) work is done, or soon after SIGTERM."""

    def __init__(self, model: WorkModel, lookup) -> None:  # type: ignore[no-untyped-def]
        self.m = model
        self.lookup = lookup  # task id -> (name, resumable)
        self.started: dict[int, float] = {}
        self.ends: dict[int, tuple[float, Outcome]] = {}
        self._pid = 1 << 22

    def setup(self, home_root: Path) -> None:
        pass

    def start(self, launch: Launch, started_mono: float) -> Attempt:
        m, now = self.m, self.m.clock.time()
        m.names[launch.task_id], m.resumable[launch.task_id] = self.lookup(launch.task_id)
        left = m.work(launch.task_id) - m.done_work.get(launch.task_id, 0.0)
        self.started[launch.task_id] = now
        self.ends[launch.task_id] = (now + max(1.0, left), Outcome(exit_code=0))
        self._pid += 1
        return Attempt(
            task_id=launch.task_id,
            attempt=launch.attempt,
            pgid=self._pid,
            paths=launch.paths,
            started_mono=started_mono,
        )

    def exited(self, att: Attempt) -> bool:
        return self.m.clock.time() >= self.ends[att.task_id][0]

    def reap(self, att: Attempt) -> Outcome:
        end, outcome = self.ends.pop(att.task_id)
        start = self.started.pop(att.task_id)
        if outcome.ok:
            self.m.spans.append(Span(att.task_id, start, end, True, finished=True))
        return outcome

    def signal(self, att: Attempt, sig: int) -> bool:
        m, now, task = self.m, self.m.clock.time(), att.task_id
        if task not in self.ends or sig not in (signal.SIGTERM, signal.SIGKILL):
            return True
        if self.ends[task][1].signal is not None:  # already stopping
            return True
        start = self.started[task]
        if m.resumable[task] and sig == signal.SIGTERM:
            m.done_work[task] = m.done_work.get(task, 0.0) + (now - start)
            m.spans.append(Span(task, start, now, True))
            m.spans.append(Span(task, now, now + SAVE, True))  # saving: busy, not lost
            self.ends[task] = (now + SAVE, Outcome(signal=sig))
        else:
            m.spans.append(Span(task, start, now, False))
            self.ends[task] = (now + 1.0, Outcome(signal=sig))
        return True

    def find(self, paths: TaskPaths) -> Found | None:
        return None

    def kill_found(self, found: Found) -> None:
        pass

    def memory(self, atts: list[Attempt]) -> dict[int, int]:
        return {}

    def memory_over(self, att: Attempt, limit: int) -> int | None:
        return None

    def housekeeping(self) -> None:
        pass

    def next_end(self) -> float | None:
        return min((e for e, _ in self.ends.values()), default=None)


def idle_probe() -> Reading:
    return Reading(0.0, 64 * 2**30, [], 64 * 2**30)


def submit_batch(home: Home, night: int, now: float) -> None:
    """The night's task files, dropped into the spool a minute before `now` (settled)."""
    for name, _hours, resumable, priority in WORKLOAD:
        lines = [f"name: {name}", "run: ./work.sh", f"priority: {priority}"]
        if resumable:
            lines.append("checkpoints: true")
        path = home.spool / f"{name}-{night}.yaml"
        path.write_text("\n".join(lines) + "\n")
        os.utime(path, (now - 60, now - 60))


def run_night(home: Home, model: WorkModel, start: float, until: float | None) -> None:
    """One supervisor run from `start` to `until` (None: until nothing is left)."""
    clock = model.clock
    clock.advance(start - clock.time())
    holder: dict[str, Supervisor] = {}

    def lookup(task_id: int) -> tuple[str, bool]:
        sup = holder["sup"]
        state, spec = sup.table.states[task_id], sup.table.specs[task_id]
        return state.name, sup.table.fit(state, spec)[1]

    executor = WorkExecutor(model, lookup)
    config = load_config(home.config)
    sup = Supervisor(home, config, clock, until=until, executor=executor, probe=idle_probe)
    holder["sup"] = sup
    sup.once = until is None
    try:
        sup.recover()
        for _ in range(200_000):
            sup.tick()
            sup.flush()
            if sup.should_exit():
                break
            events = [e for e in (until, sup.wind_down_at, executor.next_end()) if e is not None]
            if sup.starter.last.wake_at is not None:
                events.append(sup.starter.last.wake_at)
            now = clock.time()
            ahead = [e - now for e in events if e > now]
            clock.advance(max(1.0, min(ahead, default=1.0)) if not sup.stopping else 1.0)
    finally:
        sup.close()


def overlap(span: Span, lo: float, hi: float) -> float:
    return max(0.0, min(span.end, hi) - max(span.start, lo))


def measure(fit_night: bool, args: argparse.Namespace, history: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bantzd-bench-") as tmp:
        home = Home(Path(tmp) / "home")
        home.ensure()
        home.config.write_text(
            f"max_parallel = {args.parallel}\nstop_grace = '{args.grace}s'\nnice = 0\n"
            f"fit_night = {'true' if fit_night else 'false'}\n"
            "[throttle]\nmax_load = 1000\nmin_free_memory = '1MiB'\n"
        )
        home.estimates.write_bytes(history.read_bytes())
        model = WorkModel(FakeClock(now=NIGHT_START, mono=1000.0), seed=args.seed)
        stats = {"finished": 0.0, "thrown": 0.0, "idle": 0.0, "last": 0.0, "useful": 0.0}
        stats["past"] = 0.0
        for night in (1, 2):
            model.night = night
            start = NIGHT_START + (night - 1) * 86400
            until = start + NIGHT
            submit_batch(home, night, start)
            first = len(model.spans)
            run_night(home, model, start, until)
            spans = model.spans[first:]
            stats["finished"] += sum(1 for s in spans if s.finished)
            stats["thrown"] += sum(s.end - s.start for s in spans if not s.counted) / HOUR
            busy = sum(overlap(s, start, until) for s in spans)
            stats["idle"] += (args.parallel * NIGHT - busy) / HOUR
            last = sum(overlap(s, until - HOUR, until) for s in spans)
            useful = sum(overlap(s, until - HOUR, until) for s in spans if s.counted)
            stats["last"] += last / (args.parallel * HOUR) / 2
            stats["useful"] += useful / (args.parallel * HOUR) / 2
            stats["past"] = max([stats["past"], *[s.end - until for s in spans]])
        return stats


def first_night(args: argparse.Namespace, into: Path) -> Path:
    """Every name once, with no end: estimates.json learns them."""
    home = Home(into)
    home.ensure()
    home.config.write_text(
        f"max_parallel = {args.parallel}\nnice = 0\n[throttle]\nmax_load = 1000\n"
        "min_free_memory = '1MiB'\n"
    )
    model = WorkModel(FakeClock(now=NIGHT_START - 86400, mono=1000.0), seed=args.seed)
    submit_batch(home, 0, NIGHT_START - 86400)
    run_night(home, model, NIGHT_START - 86400, None)
    return home.estimates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--grace", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bantzd-bench-history-") as tmp:
        history = first_night(args, Path(tmp) / "home")
        rows = [(name, measure(on, args, history)) for name, on in (("on", True), ("off", False))]
    print(
        f"two nights 23:00-07:00, max_parallel {args.parallel}, stop_grace {args.grace}s, "
        f"{len(WORKLOAD)} tasks a night ({sum(w[1] for w in WORKLOAD):g} h of work)"
    )
    head = ("fit_night", "finished", "thrown away", "idle slots", "last hour", "past --until")
    print("  ".join(f"{h:>12}" for h in head))
    for name, s in rows:
        cells = (
            name,
            f"{s['finished']:.0f}",
            f"{s['thrown']:.2f} h",
            f"{s['idle']:.2f} h",
            f"{s['last']:.0%} / {s['useful']:.0%}",
            f"{max(0.0, s['past']):.0f} s",
        )
        print("  ".join(f"{c:>12}" for c in cells))


if __name__ == "__main__":
    main()
