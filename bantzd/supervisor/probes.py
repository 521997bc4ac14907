"""What the machine looks like right now: load, free memory, GPUs; and a bounded history.

`read_machine()` is called every `probe_interval` by the supervisor and once per `bantzd
status`, so a reading must stay cheap: without GPUs it is one `getloadavg` and one read of
/proc/meminfo (about 40 µs of CPU; `benchmarks/probes.py` measures it).

GPUs come from NVML (the `pynvml` module of nvidia-ml-py, the optional extra `bantzd[gpu]`),
else from `nvidia-smi` on PATH; a machine with neither, or whose driver reports no device,
simply has no GPUs. Which of the three holds is decided once and cached (`GpuProbe`): a
machine without nvidia-ml-py and without nvidia-smi never pays for looking again, and one
whose nvidia-smi cannot reach a driver looks again only every `GpuProbe.recheck` seconds,
because running nvidia-smi costs tens of milliseconds.

GPU indices are NVML's, which are nvidia-smi's (PCI bus order); the supervisor exports
`CUDA_DEVICE_ORDER=PCI_BUS_ID` so CUDA numbers the devices the same way.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bantzd.errors import BantzError
from bantzd.units import format_size

log = logging.getLogger("bantzd")

MiB = 1024 * 1024
# What nvidia-smi is asked for; sizes come in MiB with `nounits`. `memory.free` rather than
# total - used: since driver 510 `used` leaves out the driver's reservation, and NVML's
# `free` (what the NVML path reports) does not include it either.
SMI_QUERY = "index,name,utilization.gpu,memory.free,memory.total"
SMI_TIMEOUT = 10.0

_CORES = os.cpu_count() or 1


def cores() -> int:
    """Logical CPUs of the machine: what `load_per_core` divides by and `cpus` add up to."""
    return _CORES


@dataclass(frozen=True)
class Reading:
    """One sample of the machine. `free_memory` is bytes available without swapping."""

    load_per_core: float
    free_memory: int
    # Each {"index", "name", "util", "free_memory", "total_memory"} (SPEC section 7); `util`
    # is a percent, or None where the GPU does not report it (MIG, some vGPUs).
    gpus: list[dict[str, Any]] = field(default_factory=list)
    # Physical memory; 0 when unknown. Not part of `status --json` (SPEC's `load` object).
    total_memory: int = 0

    def to_json(self) -> dict[str, Any]:
        """The `load` object of `status --json`."""
        return {
            "load_per_core": self.load_per_core,
            "free_memory": self.free_memory,
            "gpus": [dict(g) for g in self.gpus],
        }


def read_machine(gpu_probe: GpuProbe | None = None) -> Reading:
    """Sample the machine now: 1-minute load average per core, memory, GPUs.

    `gpu_probe` defaults to the process-wide one, so the NVML/nvidia-smi decision is made
    once per process.
    """
    load1 = _load1()
    free, total = _memory()
    return Reading(
        load_per_core=round(load1 / _CORES, 3),
        free_memory=free,
        gpus=(gpu_probe or default_gpu_probe()).read(),
        total_memory=total,
    )


def _load1() -> float:
    """The 1-minute load average: os.getloadavg where the OS has one, else psutil's
    emulation (Windows). psutil is imported only then: `bantzd status` reads the load,
    and importing psutil is a tenth of its run."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        import psutil

        return psutil.getloadavg()[0]


def _memory() -> tuple[int, int]:
    """(available, total) bytes. On Linux straight from /proc/meminfo: a third of the cost
    of psutil.virtual_memory(), which parses every field and more files."""
    try:
        fd = os.open("/proc/meminfo", os.O_RDONLY)
        try:
            data = os.read(fd, 16384)
        finally:
            os.close(fd)
        return _meminfo_field(data, b"MemAvailable:"), _meminfo_field(data, b"MemTotal:")
    except (OSError, ValueError):  # not Linux, or a kernel before 3.14 (no MemAvailable)
        import psutil

        mem = psutil.virtual_memory()
        return int(mem.available), int(mem.total)


def _meminfo_field(data: bytes, key: bytes) -> int:
    start = data.index(key) + len(key)
    return int(data[start : data.index(b"kB", start)]) * 1024


def throttle_reason(
    reading: Reading,
    max_load: float | None,
    min_free_memory: int | None,
    *,
    unseen_load: float = 0.0,
    just_started: int = 0,
) -> str | None:
    """Why new starts should wait on this reading, or None when nothing says so.

    Pure, so the supervisor and `status` agree on the wording (`cpu load 3.9 > 1.5`, as in
    SPEC section 4; the supervisor puts `throttled: ` in front) and tests need no real
    machine. A limit of None is not checked. `unseen_load` (per core) is the load of the
    `just_started` tasks that the 1-minute average does not show yet (resources.py).
    """
    if max_load is not None:
        load = reading.load_per_core + unseen_load
        if load > max_load:
            why = f"cpu load {_num(load)} > {max_load:g}"
            if just_started and unseen_load > 0:
                tasks = "task" if just_started == 1 else "tasks"
                why += f" (counting {just_started} {tasks} just started)"
            return why
    if min_free_memory is not None and reading.free_memory < min_free_memory:
        return f"free memory {format_size(reading.free_memory)} < {format_size(min_free_memory)}"
    return None


def _num(x: float) -> str:
    # Two decimals so 1.52 never reads as "1.5 > 1.5"; trailing zeros dropped (3.90 -> 3.9).
    return f"{x:.2f}".rstrip("0").rstrip(".")


# --- GPUs -----------------------------------------------------------------------------------


class GpuProbeError(BantzError):
    """A GPU backend that worked stopped answering (GPU lost, driver unloaded, hung)."""


class _Nvml:
    """GPUs through NVML: init once, device handles and names once, two calls per GPU a read."""

    name = "nvml"

    def __init__(self, nvml: ModuleType) -> None:
        self.nvml = nvml
        nvml.nvmlInit()
        self.devices: list[tuple[int, Any, str]] = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            name = nvml.nvmlDeviceGetName(handle)
            if isinstance(name, bytes):  # nvidia-ml-py < 11.5 returns bytes
                name = name.decode(errors="replace")
            self.devices.append((i, handle, str(name)))

    def read(self) -> list[dict[str, Any]]:
        nvml = self.nvml
        gpus = []
        try:
            for index, handle, name in self.devices:
                mem = nvml.nvmlDeviceGetMemoryInfo(handle)
                try:
                    util: int | None = int(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
                except nvml.NVMLError_NotSupported:
                    util = None  # MIG mode: the GPU as a whole has no utilisation counter
                gpus.append(_gpu(index, name, util, int(mem.free), int(mem.total)))
        except nvml.NVMLError as e:
            raise GpuProbeError(f"NVML: {e}") from e
        return gpus

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


class _Smi:
    """GPUs through `nvidia-smi --query-gpu`: one process (~20-50 ms) per read."""

    name = "nvidia-smi"

    def __init__(self, path: str, run: Callable[..., subprocess.CompletedProcess[str]]) -> None:
        self.path = path
        self.run = run
        # The read that showed this backend works, handed out as the next read.
        self.first: list[dict[str, Any]] | None = None

    def read(self) -> list[dict[str, Any]]:
        if self.first is not None:
            gpus, self.first = self.first, None
            return gpus
        argv = [self.path, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits"]
        try:
            proc = self.run(
                argv,
                capture_output=True,
                text=True,
                timeout=SMI_TIMEOUT,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as e:
            raise GpuProbeError(f"nvidia-smi: {e}") from e
        if proc.returncode != 0:
            # 6 "No devices were found", 9 "NVIDIA-SMI has failed because it couldn't
            # communicate with the NVIDIA driver", and their kin.
            text = (proc.stdout or proc.stderr or "").strip().splitlines()
            first = text[0] if text else f"exit status {proc.returncode}"
            raise GpuProbeError(f"nvidia-smi: {first} (exit {proc.returncode})")
        return parse_smi(proc.stdout)

    def close(self) -> None:
        pass


def parse_smi(text: str) -> list[dict[str, Any]]:
    """GPUs from `nvidia-smi --query-gpu=SMI_QUERY --format=csv,noheader,nounits` output.

    A field may read `[N/A]` or `[Not Supported]` (utilisation under MIG): that becomes None
    for `util`, and a GPU whose memory is not reported is left out (it cannot be judged).
    """
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 5 or not parts[0].isdigit():
            continue
        # The name could hold a comma; the numbers are the last three fields.
        index, name = int(parts[0]), ", ".join(parts[1:-3])
        util, free, total = (_smi_number(p) for p in parts[-3:])
        if free is None or total is None:
            continue
        percent = None if util is None else int(util)
        gpus.append(_gpu(index, name, percent, int(free * MiB), int(total * MiB)))
    return gpus


def _smi_number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _gpu(index: int, name: str, util: int | None, free: int, total: int) -> dict[str, Any]:
    return {"index": index, "name": name, "util": util, "free_memory": free, "total_memory": total}


class GpuProbe:
    """Reads the GPUs through whichever backend works here, deciding that once.

    The first read tries NVML, then nvidia-smi. When neither is installed the answer is
    cached for good (a read then costs nothing). When one is installed but finds no device
    or no driver, it is tried again every `recheck` seconds. A backend that worked and then
    fails is dropped and the choice is made again on the next read after `retry` seconds;
    in between the machine reads as having no GPUs, so nothing is given a lost GPU.
    """

    def __init__(
        self,
        *,
        recheck: float = 300.0,
        retry: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
        which: Callable[[str], str | None] = shutil.which,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self.recheck = recheck
        self.retry = retry
        self._monotonic = monotonic
        self._which = which
        self._run = run
        self._backend: _Nvml | _Smi | None = None
        self._next_try = float("-inf")
        self._never = False  # neither nvidia-ml-py nor nvidia-smi is installed
        self.why_none: str | None = None  # the last reason there is no backend, for logs

    @property
    def backend(self) -> str | None:
        """ "nvml", "nvidia-smi", or None while no backend works."""
        return self._backend.name if self._backend else None

    def read(self) -> list[dict[str, Any]]:
        """The GPUs now; [] on a machine without any (or while its driver does not answer)."""
        if self._backend is None:
            if self._never or self._monotonic() < self._next_try:
                return []
            self._backend = self._open()
            if self._backend is None:
                self._next_try = self._monotonic() + self.recheck
                return []
        try:
            return self._backend.read()
        except GpuProbeError as e:
            log.warning("GPU probe: %s; no GPUs are given out until it answers again", e)
            self.close()
            self.why_none = str(e)
            self._next_try = self._monotonic() + self.retry
            return []

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    def _open(self) -> _Nvml | _Smi | None:
        nvml = _import_pynvml()
        installed = nvml is not None
        if nvml is not None:
            try:
                return _Nvml(nvml)
            except nvml.NVMLError as e:  # LibraryNotFound, DriverNotLoaded, ...
                self.why_none = f"NVML: {e}"
        path = self._which("nvidia-smi")
        if path is not None:
            installed = True
            smi = _Smi(path, self._run)
            try:
                smi.first = smi.read()
                return smi
            except GpuProbeError as e:
                self.why_none = str(e)
        if not installed:
            self._never = True
            self.why_none = "neither nvidia-ml-py nor nvidia-smi is installed"
        log.debug("no GPUs: %s", self.why_none)
        return None


def _import_pynvml() -> ModuleType | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


_DEFAULT_PROBE: GpuProbe | None = None


def default_gpu_probe() -> GpuProbe:
    """The process-wide GpuProbe (its backend choice is cached for the process)."""
    global _DEFAULT_PROBE
    if _DEFAULT_PROBE is None:
        _DEFAULT_PROBE = GpuProbe()
    return _DEFAULT_PROBE


# --- history --------------------------------------------------------------------------------


class LoadHistory:
    """home/load.jsonl: one line per sample, for the morning report's Machine section.

    Each line is `{"t", "load_per_core", "free_memory", "gpus": [{"index", "util",
    "free_memory"}], "throttled"}`. Appends are plain writes, not fsynced: a lost last line
    costs the report five seconds of graph, which is not worth a disk flush every sample.
    The file stays bounded: past `2 * keep` lines it is rewritten (atomically) with the
    newest `keep`. 20,000 lines is 28 hours at the default 5 s interval, about 3 MB.
    Only the supervisor appends (it holds the home lock); anyone may read. The file is 0600,
    and a line torn by a crash is skipped by readers and not glued to the next sample.
    """

    def __init__(self, path: str | os.PathLike[str], keep: int = 20_000) -> None:
        self.path = Path(path)
        self.keep = keep
        self._lines: int | None = None  # counted on the first append

    def append(self, reading: Reading, throttled: str | None, now: float) -> None:
        """Add one sample taken at `now` (wall time) with the throttle reason then in force."""
        sample = {
            "t": round(now, 3),
            "load_per_core": reading.load_per_core,
            "free_memory": reading.free_memory,
            "gpus": [
                {"index": g["index"], "util": g.get("util"), "free_memory": g["free_memory"]}
                for g in reading.gpus
            ],
            "throttled": throttled,
        }
        line = (json.dumps(sample, separators=(",", ":")) + "\n").encode()
        if self._lines is None:
            self._lines = self._count()
        from bantzd.paths import FILE_MODE
        from bantzd.queue.journal import ends_torn

        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            if ends_torn(fd):
                line = b"\n" + line  # a crash cut the last line: start this one afresh
            os.write(fd, line)
        finally:
            os.close(fd)
        self._lines += 1
        if self._lines > 2 * self.keep:
            self._compact()

    def read(self, since: float | None = None, until: float | None = None) -> list[dict[str, Any]]:
        """Samples with `since <= t <= until`, oldest first; torn or foreign lines skipped."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return []
        return [
            s
            for s in _samples(data.splitlines())
            if (since is None or s["t"] >= since) and (until is None or s["t"] <= until)
        ]

    def last(self) -> dict[str, Any] | None:
        """The newest sample, reading only the end of the file."""
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - 4096))
                tail = f.read().splitlines()
        except FileNotFoundError:
            return None
        found = list(_samples(tail[-3:]))
        return found[-1] if found else None

    def _count(self) -> int:
        try:
            with open(self.path, "rb") as f:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
        except FileNotFoundError:
            return 0

    def _compact(self) -> None:
        from bantzd.queue.atomic import write_bytes_atomic

        lines = self.path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines[-self.keep :] if line.endswith(b"\n")]
        write_bytes_atomic(self.path, b"".join(kept))
        self._lines = len(kept)


def _samples(lines: Iterable[bytes]) -> Iterable[dict[str, Any]]:
    for line in lines:
        try:
            sample = json.loads(line)
        except ValueError:
            continue  # a line torn by a crash mid-write
        # Other fields are checked where they are used (reports/machine.py, view.py).
        if isinstance(sample, dict) and _finite(sample.get("t")):
            yield sample


def _finite(value: object) -> bool:
    """A real number (not a bool, NaN or infinity): what a sample's fields must be."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )
