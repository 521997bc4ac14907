"""What the machine looks like right now: load, free memory, GPUs.

`bantzd status` and the throttle read this on every call, so a reading must stay cheap (a
few /proc reads, no subprocess). GPUs are an empty list until the NVML/nvidia-smi probe
lands; consumers already handle the list so nothing else changes when it does.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from bantzd.units import format_size


@dataclass(frozen=True)
class Reading:
    """One sample of the machine. `free_memory` is bytes available without swapping."""

    load_per_core: float
    free_memory: int
    # Each {"index", "name", "util", "free_memory", "total_memory"} (SPEC section 7).
    gpus: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `load` object of `status --json`."""
        return asdict(self)


def read_machine() -> Reading:
    """Sample the machine now: 1-minute load average per core and available memory."""
    cores = os.cpu_count() or 1
    # psutil.getloadavg is os.getloadavg where the OS has one and an emulation elsewhere.
    load1 = psutil.getloadavg()[0]
    return Reading(
        load_per_core=round(load1 / cores, 3),
        free_memory=int(psutil.virtual_memory().available),
        gpus=[],
    )


def throttle_reason(
    reading: Reading, max_load: float | None, min_free_memory: int | None
) -> str | None:
    """Why new starts should wait on this reading, or None when nothing says so.

    Pure, so the supervisor and `status` agree on the wording (`cpu load 3.9 > 1.5`, as in
    SPEC section 4) and tests need no real machine. A limit of None is not checked.
    """
    if max_load is not None and reading.load_per_core > max_load:
        return f"cpu load {_num(reading.load_per_core)} > {max_load:g}"
    if min_free_memory is not None and reading.free_memory < min_free_memory:
        return f"free memory {format_size(reading.free_memory)} < {format_size(min_free_memory)}"
    return None


def _num(x: float) -> str:
    # Two decimals so 1.52 never reads as "1.5 > 1.5"; trailing zeros dropped (3.90 -> 3.9).
    return f"{x:.2f}".rstrip("0").rstrip(".")
