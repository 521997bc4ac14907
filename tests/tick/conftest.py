"""Tier 2: one supervisor tick at a time, on a tmp_path home, with a fake clock.

The `Harness` builds a real `Supervisor` without calling `run()` (no home lock, no signal
handlers, no spool watcher), calls `recover()` and `tick()` directly, and reads the files the
store wrote. With `fake=True` the executor and the machine probe are fakes (tests/tick/fakes.py):
no process starts, and the test says how each attempt ends; otherwise attempts are real
processes (`true`, `false`).
"""

from __future__ import annotations

import io
import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bantzd.clock import FakeClock
from bantzd.config import load_config
from bantzd.paths import Home
from bantzd.supervisor.loop import Supervisor
from bantzd.workers.spawn import kill_group
from tests.conftest import config_text
from tests.tick.fakes import FakeExecutor, FixedProbe


class Harness:
    """A supervisor on its own home, stepped by hand; the clock only moves when told to."""

    def __init__(
        self,
        root: Path,
        *config_lines: str,
        fake: bool = False,
        now: float | None = None,
        until: float | None = None,
    ) -> None:
        self.home = Home(root)
        self.home.ensure()
        self.home.config.write_text(config_text(*config_lines))
        # Wall time starts at the real time unless told (spool files are dated by it).
        self.clock = FakeClock(now=time.time() if now is None else now, mono=1000.0)
        self.executor = FakeExecutor() if fake else None
        self.probe = FixedProbe() if fake else None
        # What a foreground `bantzd run` would print: the narrator's two streams.
        self.out = io.StringIO()
        self.alerts = io.StringIO()
        self.sup = self.new_supervisor(until=until)

    def new_supervisor(self, *, until: float | None = None) -> Supervisor:
        """A supervisor on this home, clock and fakes (a restart, when one existed)."""
        return Supervisor(
            self.home,
            load_config(self.home.config),
            self.clock,
            until=until,
            executor=self.executor,
            probe=self.probe,
            narrate=self.out,
            alerts=self.alerts,
        )

    def lines(self) -> list[str]:
        """The narrator's lines so far, and forget them (the next call gives the new ones)."""
        text = self.out.getvalue()
        self.out.seek(0)
        self.out.truncate()
        return text.splitlines()

    def count_state_writes(self) -> Counter[int]:
        """From now on, count per task id the state.json writes the store makes (one per
        task per flush however many changes the tick staged, as on disk)."""
        writes: Counter[int] = Counter()
        store = self.sup.store
        take = store._take

        def counting_take():  # type: ignore[no-untyped-def]
            writes.update(store._dirty.keys())
            return take()

        store._take = counting_take  # type: ignore[method-assign]
        return writes

    def submit(self, name: str, text: str) -> Path:
        """Drop a task file into the spool, already settled (written a minute ago)."""
        path = self.home.spool / name
        path.write_text(text)
        old = self.clock.time() - 60
        os.utime(path, (old, old))
        return path

    def task_dir(self, task_id: int) -> Path:
        return self.home.task_dir(task_id)

    def journal(self) -> list[dict[str, Any]]:
        try:
            text = self.home.journal.read_text()
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def tick(self) -> None:
        """One tick, then wait for its writes: the test reads the files next."""
        self.sup.tick()
        self.sup.flush()

    def tick_until(self, cond: Callable[[], object], what: str, timeout: float = 20.0) -> object:
        """Tick (the clock standing still) until `cond()` holds: real attempts take real
        time to exit, so this polls, with a deadline."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.02)

    def state(self, task_id: int) -> dict[str, Any] | None:
        """The task's state.json as on disk, or None before it exists."""
        path = self.home.task_dir(task_id) / "state.json"
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None

    def status(self, task_id: int) -> str | None:
        data = self.state(task_id)
        return data["status"] if data else None

    def close(self) -> None:
        """Kill what still runs (a failed test must not leave processes behind)."""
        for att in self.sup.attempts:
            if att.popen is not None:
                kill_group(att.pgid, signal.SIGKILL)
                att.popen.wait(timeout=5)
        self.sup.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "home", "max_parallel = 2")
    yield h
    h.close()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Harness]:
    """A harness whose executor and probe are fakes: no process starts."""
    h = Harness(tmp_path / "home", "max_parallel = 2", fake=True)
    yield h
    h.close()
