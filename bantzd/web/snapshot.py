"""What the dashboard shows, read from the home with the CLI's own code, at most once a second.

Nothing here parses a bantzd file itself: task states come from `queue.store.scan_states`,
the status object from `cli.view.collect_status` (the one `bantzd status --json` prints),
the load history from `supervisor.probes.LoadHistory`, the secrets to mask from
`reports.secrets` (the report's redaction). Every page and every event stream takes the
same `Snapshot`, rebuilt only when it is older than a second, so any number of open pages
reads the files once a second, and none when nobody looks (nothing runs between requests).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bantzd.paths import Home, TaskPaths
from bantzd.queue.store import scan_states
from bantzd.queue.task import TaskState
from bantzd.reports.secrets import Masker, environment_secrets, read_task_file, secret_values
from bantzd.supervisor.probes import LoadHistory, Reading, read_machine

# How old a snapshot may be before a request reads the files again.
FRESH = 1.0
# The load chart covers this much of the past, and its samples are re-read at most this often
# (the supervisor appends one every few seconds; the file can be megabytes).
CHART_SPAN = 12 * 3600.0
CHART_REFRESH = 10.0


@dataclass(frozen=True)
class Snapshot:
    """One reading of the home: task states, the status object, the secrets to mask."""

    at: float  # wall time it was taken
    states: list[TaskState]
    status: dict[str, Any]
    mask: Masker
    total_memory: int = 0
    by_id: dict[int, TaskState] = field(default_factory=dict)

    def task(self, task_id: int) -> TaskState | None:
        return self.by_id.get(task_id)


class SecretCache:
    """The secret env values of every task's task.yaml, each file parsed once per change."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ
        self._seen: dict[int, tuple[tuple[int, int], list[str]]] = {}

    def masker(self, home: Home, states: list[TaskState]) -> Masker:
        values = list(environment_secrets(self._environ))
        live = set()
        for state in states:
            live.add(state.id)
            paths = TaskPaths(home.task_dir(state.id))
            try:
                st = paths.task_yaml.stat()
            except OSError:
                continue
            key = (st.st_mtime_ns, st.st_size)
            cached = self._seen.get(state.id)
            if cached is None or cached[0] != key:
                doc = read_task_file(paths, only_with=b"env")
                cached = (key, secret_values(doc.get("env")))
                self._seen[state.id] = cached
            values += cached[1]
        for gone in set(self._seen) - live:
            del self._seen[gone]
        return Masker(values)


class HomeView:
    """The home as the dashboard reads it; thread-safe (pages render in worker threads)."""

    def __init__(
        self,
        home: Home,
        *,
        probe: Callable[[], Reading] = read_machine,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        fresh: float = FRESH,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.home = home
        self._probe = probe
        self._monotonic = monotonic
        self._wall = wall
        self._fresh = fresh
        self._secrets = SecretCache(environ)
        self._lock = threading.Lock()
        self._snap: Snapshot | None = None
        self._snap_taken = 0.0
        self._chart: list[dict[str, Any]] = []
        self._chart_taken: float | None = None
        self._chart_stat: tuple[int, int] | None = None
        self._schedules: list[dict[str, Any]] = []
        self._schedules_taken: float | None = None
        self.reads = 0  # how many times the home was read (for tests and the benchmark)

    def snapshot(self) -> Snapshot:
        """The current snapshot, read anew when the last one is older than `fresh`."""
        with self._lock:
            now = self._monotonic()
            if self._snap is None or now - self._snap_taken >= self._fresh:
                self._snap = self._read()
                self._snap_taken = now
            return self._snap

    def _read(self) -> Snapshot:
        from bantzd.cli.view import collect_status

        self.reads += 1
        reading = self._probe()
        states = list(scan_states(self.home))
        status = collect_status(self.home, reading, states=states)
        return Snapshot(
            at=self._wall(),
            states=states,
            status=status,
            mask=self._secrets.masker(self.home, states),
            total_memory=reading.total_memory,
            by_id={s.id: s for s in states},
        )

    def schedules(self) -> list[dict[str, Any]]:
        """Every schedule as `bantzd schedules --json` shows it (the CLI's own reader),
        read anew when the last reading is older than `fresh`."""
        from bantzd.cli.schedules import schedule_objects

        with self._lock:
            now = self._monotonic()
            if self._schedules_taken is None or now - self._schedules_taken >= self._fresh:
                self._schedules = schedule_objects(self.home)
                self._schedules_taken = now
            return self._schedules

    def forget_schedules(self) -> None:
        """Read the schedules anew at the next look (after a button changed one)."""
        with self._lock:
            self._schedules_taken = None

    def samples(self) -> list[dict[str, Any]]:
        """The load history of the chart's span; re-read when the file changed, at most
        every CHART_REFRESH seconds."""
        with self._lock:
            now = self._monotonic()
            if self._chart_taken is not None and now - self._chart_taken < CHART_REFRESH:
                return self._chart
            self._chart_taken = now
            try:
                st = self.home.load_history.stat()
                stat_key: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
            except OSError:
                stat_key = None
            if stat_key != self._chart_stat or stat_key is None:
                self._chart_stat = stat_key
                since = self._wall() - CHART_SPAN
                self._chart = LoadHistory(self.home.load_history).read(since=since)
            return self._chart


def mask_json(value: Any, mask: Callable[[str], str]) -> Any:
    """`value` with every string in it (keys too) passed through `mask`."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {mask(k) if isinstance(k, str) else k: mask_json(v, mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_json(v, mask) for v in value]
    return value
