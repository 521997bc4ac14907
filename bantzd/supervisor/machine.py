"""Watching the machine: when to probe, the load history, and throttling episodes.

The probe is injected (`read_machine` with the process's GPU probe by default; a function
returning fixed `Reading`s in the tick tests), so the start decisions can be tested at any
load without one. `MachineWatch` decides nothing about tasks: it keeps the last reading for
the admission of starts, appends each sample to load.jsonl for the morning report, and
says when a throttling episode begins or ends (the journal events the report sums).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bantzd.clock import Clock
from bantzd.supervisor.probes import LoadHistory, Reading, default_gpu_probe, read_machine

log = logging.getLogger("bantzd")


def machine_probe() -> Callable[[], Reading]:
    """The real probe: load average, memory, and GPUs through NVML or nvidia-smi."""
    gpu = default_gpu_probe()
    return lambda: read_machine(gpu)


class MachineWatch:
    """The latest reading, taken every `interval` seconds, and the throttle in force."""

    def __init__(
        self,
        history: LoadHistory,
        clock: Clock,
        interval: float,
        probe: Callable[[], Reading] | None = None,
    ) -> None:
        self.history = history
        self.clock = clock
        self.interval = interval
        self.probe_fn = probe or machine_probe()
        self.reading: Reading | None = None
        self.throttled: str | None = None
        self._last_probe = float("-inf")

    def due(self) -> bool:
        return self.clock.monotonic() - self._last_probe >= self.interval

    def due_in(self) -> float:
        """Seconds until the next probe is due (for the loop's sleep)."""
        return self.interval - (self.clock.monotonic() - self._last_probe)

    def probe(self) -> Reading:
        """Read the machine now, and record the sample for the report."""
        self.reading = self.probe_fn()
        self._last_probe = self.clock.monotonic()
        self.history.append(self.reading, self.throttled, self.clock.time())
        return self.reading

    def current(self) -> Reading:
        """The last reading (a fresh one if there is none yet)."""
        return self.reading or self.probe()

    def throttle_changes(self, throttled: str | None) -> list[tuple[str, str]]:
        """The journal events (name, reason) for a new throttle state: the end of the old
        episode and the start of the new one; none while it holds."""
        if throttled == self.throttled:
            return []
        events = []
        if self.throttled is not None:
            events.append(("throttle_end", self.throttled))
        if throttled is not None:
            events.append(("throttle_start", throttled))
            log.info("starts %s", throttled)
        self.throttled = throttled
        return events
