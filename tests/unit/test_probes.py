"""Machine probes: GPUs through a stand-in nvidia-smi and a fake NVML, the load history,
the process-tree memory of a task, and the throttle line of `status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest

from bantzd.paths import Home
from bantzd.supervisor import memwatch
from bantzd.supervisor.probes import (
    SMI_QUERY,
    GpuProbe,
    LoadHistory,
    Reading,
    parse_smi,
    read_machine,
)

GiB = 1 << 30
MiB = 1 << 20

# --- a stand-in nvidia-smi ------------------------------------------------------------------

# What a real nvidia-smi prints for `--query-gpu=SMI_QUERY --format=csv,noheader,nounits`
# (index, name, utilization.gpu %, memory.free MiB, memory.total MiB), and its failures.
SMI_OUTPUTS = {
    "one": ("0, NVIDIA A100-SXM4-80GB, 0, 81037, 81920\n", 0),
    "four": (
        "0, NVIDIA GeForce RTX 4090, 98, 20112, 24564\n"  # busy
        "1, NVIDIA GeForce RTX 4090, 0, 24080, 24564\n"  # idle
        "2, NVIDIA GeForce RTX 4090, 3, 112, 24564\n"  # memory full
        "3, NVIDIA GeForce RTX 4090, 0, 24080, 24564\n",  # idle
        0,
    ),
    "mig": ("0, NVIDIA A100-SXM4-40GB, [N/A], 39500, 40960\n", 0),
    "none": ("No devices were found\n", 6),
    "nodriver": (
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
        "Make sure that the latest NVIDIA driver is installed and running.\n\n",
        9,
    ),
}

SMI_SCRIPT = """\
#!/bin/sh
here=$(dirname "$0")
echo call >> "$here/calls"
case "$*" in
  "--query-gpu={query} --format=csv,noheader,nounits") ;;
  *) echo "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help."
     exit 2 ;;
esac
mode=$(cat "$here/mode")
cat "$here/out.$mode"
exit $(cat "$here/rc.$mode")
"""


class FakeSmi:
    """`nvidia-smi` on PATH that answers like a real one in the chosen `mode`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        for mode, (out, rc) in SMI_OUTPUTS.items():
            (folder / f"out.{mode}").write_text(out)
            (folder / f"rc.{mode}").write_text(str(rc))
        script = folder / "nvidia-smi"
        script.write_text(SMI_SCRIPT.format(query=SMI_QUERY))
        script.chmod(0o755)
        self.mode = "one"

    @property
    def mode(self) -> str:
        return (self.folder / "mode").read_text()

    @mode.setter
    def mode(self, value: str) -> None:
        (self.folder / "mode").write_text(value)

    @property
    def calls(self) -> int:
        try:
            return len((self.folder / "calls").read_text().splitlines())
        except FileNotFoundError:
            return 0


@pytest.fixture
def no_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    """`import pynvml` fails, as on a machine without nvidia-ml-py."""
    monkeypatch.setitem(sys.modules, "pynvml", None)


@pytest.fixture
def smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynvml: None) -> FakeSmi:
    fake = FakeSmi(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake.folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return fake


class Ticker:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_one_idle_gpu_from_nvidia_smi(smi: FakeSmi) -> None:
    probe = GpuProbe()
    assert probe.read() == [
        {
            "index": 0,
            "name": "NVIDIA A100-SXM4-80GB",
            "util": 0,
            "free_memory": 81037 * MiB,
            "total_memory": 81920 * MiB,
        }
    ]
    assert probe.backend == "nvidia-smi"


def test_four_gpus_busy_idle_and_full(smi: FakeSmi) -> None:
    smi.mode = "four"
    gpus = GpuProbe().read()
    assert [g["index"] for g in gpus] == [0, 1, 2, 3]
    assert [g["util"] for g in gpus] == [98, 0, 3, 0]
    assert gpus[2]["free_memory"] == 112 * MiB
    assert {g["name"] for g in gpus} == {"NVIDIA GeForce RTX 4090"}


def test_mig_gpu_without_utilisation(smi: FakeSmi) -> None:
    smi.mode = "mig"
    [gpu] = GpuProbe().read()
    assert gpu["util"] is None and gpu["free_memory"] == 39500 * MiB


@pytest.mark.parametrize("mode", ["none", "nodriver"])
def test_no_device_or_no_driver_means_no_gpus_and_is_rechecked_rarely(
    smi: FakeSmi, mode: str
) -> None:
    smi.mode = mode
    clock = Ticker()
    probe = GpuProbe(monotonic=clock, recheck=300)
    assert probe.read() == []
    assert probe.backend is None and "nvidia-smi" in (probe.why_none or "")
    for _ in range(100):
        assert probe.read() == []
    assert smi.calls == 1  # the failure is cached
    smi.mode = "one"  # the driver came up
    clock.t += 301
    assert len(probe.read()) == 1
    assert probe.read() and smi.calls == 3  # one to decide (handed out), one per read after


def test_a_gpu_that_stops_answering_is_dropped_then_retried(smi: FakeSmi) -> None:
    clock = Ticker()
    probe = GpuProbe(monotonic=clock, retry=30)
    assert len(probe.read()) == 1
    smi.mode = "nodriver"
    assert probe.read() == []  # nothing is given out on a GPU we cannot see
    smi.mode = "one"
    assert probe.read() == []  # not before `retry`
    clock.t += 31
    assert len(probe.read()) == 1


def test_no_nvml_and_no_nvidia_smi_is_decided_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_pynvml: None
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    looked: list[str] = []

    def which(name: str) -> None:
        looked.append(name)
        return None

    probe = GpuProbe(which=which, recheck=0)
    for _ in range(50):
        assert probe.read() == []
    assert looked == ["nvidia-smi"]
    assert probe.why_none == "neither nvidia-ml-py nor nvidia-smi is installed"


def test_parse_smi_keeps_names_with_commas_and_skips_noise() -> None:
    text = "0, Tesla K80, rev 2, 0, 11000, 11441\nGarbage line\n1, X, 5, [N/A], 100\n"
    assert parse_smi(text) == [
        {
            "index": 0,
            "name": "Tesla K80, rev 2",
            "util": 0,
            "free_memory": 11000 * MiB,
            "total_memory": 11441 * MiB,
        }
    ]


# --- a fake NVML ----------------------------------------------------------------------------


def fake_pynvml(gpus: list[dict[str, Any]], *, init_error: str | None = None) -> Any:
    """A stand-in for nvidia-ml-py's `pynvml` module with the calls the probe makes."""
    m = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):
        pass

    class NVMLError_LibraryNotFound(NVMLError):
        pass

    class NVMLError_GpuIsLost(NVMLError):
        pass

    m.NVMLError = NVMLError
    m.NVMLError_NotSupported = NVMLError_NotSupported
    m.NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    m.NVMLError_GpuIsLost = NVMLError_GpuIsLost
    m.calls = {"init": 0, "count": 0, "name": 0, "util": 0, "mem": 0}
    m.lost = False

    def nvmlInit() -> None:
        m.calls["init"] += 1
        if init_error:
            raise NVMLError_LibraryNotFound(init_error)

    def nvmlDeviceGetCount() -> int:
        m.calls["count"] += 1
        return len(gpus)

    def nvmlDeviceGetHandleByIndex(i: int) -> int:
        return i

    def nvmlDeviceGetName(h: int) -> bytes:
        m.calls["name"] += 1
        return gpus[h]["name"].encode()  # older nvidia-ml-py returns bytes

    def nvmlDeviceGetUtilizationRates(h: int) -> Any:
        m.calls["util"] += 1
        if gpus[h]["util"] is None:
            raise NVMLError_NotSupported("Not Supported")
        return types.SimpleNamespace(gpu=gpus[h]["util"], memory=0)

    def nvmlDeviceGetMemoryInfo(h: int) -> Any:
        m.calls["mem"] += 1
        if m.lost:
            raise NVMLError_GpuIsLost("GPU is lost")
        g = gpus[h]
        return types.SimpleNamespace(total=g["total"], free=g["free"], used=g["total"] - g["free"])

    def nvmlShutdown() -> None:
        pass

    for fn in (
        nvmlInit,
        nvmlDeviceGetCount,
        nvmlDeviceGetHandleByIndex,
        nvmlDeviceGetName,
        nvmlDeviceGetUtilizationRates,
        nvmlDeviceGetMemoryInfo,
        nvmlShutdown,
    ):
        setattr(m, fn.__name__, fn)
    return m


H100 = {"name": "NVIDIA H100 80GB HBM3", "util": 7, "free": 70 * GiB, "total": 80 * GiB}


def test_nvml_is_initialised_once_and_read_cheaply(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([H100, dict(H100, util=None)])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = GpuProbe()
    for _ in range(10):
        gpus = probe.read()
    assert probe.backend == "nvml"
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "util": 7,
            "free_memory": 70 * GiB,
            "total_memory": 80 * GiB,
        },
        {
            "index": 1,
            "name": "NVIDIA H100 80GB HBM3",
            "util": None,
            "free_memory": 70 * GiB,
            "total_memory": 80 * GiB,
        },
    ]
    assert nvml.calls["init"] == 1 and nvml.calls["count"] == 1 and nvml.calls["name"] == 2
    assert nvml.calls["mem"] == 20


def test_nvml_without_its_library_falls_back_to_nvidia_smi(
    smi: FakeSmi, monkeypatch: pytest.MonkeyPatch
) -> None:
    nvml = fake_pynvml([], init_error="NVML Shared Library Not Found")
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    probe = GpuProbe()
    assert len(probe.read()) == 1
    assert probe.backend == "nvidia-smi"
    probe.read()
    assert nvml.calls["init"] == 1  # the fallback decision is kept


def test_a_lost_gpu_under_nvml_reads_as_no_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    nvml = fake_pynvml([H100])
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("PATH", "/nonexistent")
    clock = Ticker()
    probe = GpuProbe(monotonic=clock, retry=30)
    assert len(probe.read()) == 1
    nvml.lost = True
    assert probe.read() == [] and probe.backend is None
    nvml.lost = False
    clock.t += 31
    assert len(probe.read()) == 1 and nvml.calls["init"] == 2


def test_read_machine_with_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([H100]))
    reading = read_machine(GpuProbe())
    assert reading.load_per_core >= 0 and reading.free_memory > 0
    assert reading.total_memory >= reading.free_memory
    assert [g["index"] for g in reading.gpus] == [0]
    assert set(reading.to_json()) == {"load_per_core", "free_memory", "gpus"}
    assert set(reading.to_json()["gpus"][0]) == {
        "index",
        "name",
        "util",
        "free_memory",
        "total_memory",
    }


def test_probe_round_without_gpus_costs_well_under_a_millisecond(no_pynvml: None) -> None:
    probe = GpuProbe(which=lambda _name: None)
    read_machine(probe)
    n = 300
    start = time.process_time()
    for _ in range(n):
        read_machine(probe)
    per_round = (time.process_time() - start) / n
    assert per_round < 0.001, f"{per_round * 1e6:.0f} µs of CPU per probe round"


# --- load history ---------------------------------------------------------------------------


def reading(load: float = 0.5, gpus: list[dict[str, Any]] | None = None) -> Reading:
    return Reading(load, 8 * GiB, gpus or [], 16 * GiB)


def test_history_appends_and_reads_a_time_range(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "load.jsonl")
    gpu = {"index": 0, "name": "X", "util": 40, "free_memory": GiB, "total_memory": 2 * GiB}
    for i in range(10):
        history.append(
            reading(i / 10, [gpu]), "throttled: cpu load 3.9 > 1.5" if i else None, 100 + i
        )
    samples = history.read(103, 105)
    assert [s["t"] for s in samples] == [103, 104, 105]
    assert samples[0] == {
        "t": 103,
        "load_per_core": 0.3,
        "free_memory": 8 * GiB,
        "gpus": [{"index": 0, "util": 40, "free_memory": GiB}],
        "throttled": "throttled: cpu load 3.9 > 1.5",
    }
    assert len(history.read()) == 10
    assert history.last()["t"] == 109  # type: ignore[index]


def test_history_stays_bounded_and_keeps_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "load.jsonl"
    history = LoadHistory(path, keep=50)
    for i in range(1000):
        history.append(reading(), None, float(i))
        assert len(path.read_bytes().splitlines()) <= 100
    times = [s["t"] for s in history.read()]
    assert times == sorted(times) and times[-1] == 999 and len(times) >= 50
    # A new LoadHistory on the same file (a restart) counts what is there.
    again = LoadHistory(path, keep=50)
    for i in range(1000, 1200):
        again.append(reading(), None, float(i))
    assert len(path.read_bytes().splitlines()) <= 100


def test_history_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "load.jsonl"
    history = LoadHistory(path)
    history.append(reading(), None, 1.0)
    with open(path, "ab") as f:
        f.write(b'{"t": 2, "load_per')
    assert [s["t"] for s in history.read()] == [1.0]
    assert history.last()["t"] == 1.0  # type: ignore[index]
    assert LoadHistory(tmp_path / "missing.jsonl").read() == []


# --- status: the supervisor's own throttle reason -------------------------------------------


def test_status_shows_the_supervisors_throttle_reason(tmp_path: Path) -> None:
    from bantzd.cli.view import _throttled, status_lines

    home = Home(tmp_path / "home")
    home.ensure()
    idle = reading(0.1)
    history = LoadHistory(home.root / "load.jsonl")
    why = "throttled: cpu load 1.62 > 1.5 (counting 13 tasks just started)"
    history.append(idle, why, time.time())
    assert _throttled(home, idle, running=True) == why.removeprefix("throttled: ")
    # No supervisor (or a stale sample): the rule applied to this reading.
    assert _throttled(home, idle, running=False) is None
    assert _throttled(home, reading(3.9), running=False) == "cpu load 3.9 > 1.5"

    gpus = [
        {
            "index": 0,
            "name": "NVIDIA H100",
            "util": 3,
            "free_memory": 70 * GiB,
            "total_memory": 80 * GiB,
        },
        {
            "index": 1,
            "name": "NVIDIA A100",
            "util": None,
            "free_memory": GiB,
            "total_memory": 40 * GiB,
        },
    ]
    report = {
        "supervisor": {"running": False, "pid": None, "since": None},
        "paused": False,
        "counts": {},
        "running": [],
        "waiting_human": [],
        "load": Reading(0.2, 8 * GiB, gpus).to_json(),
        "throttled": "cpu load 3.9 > 1.5",
    }
    text = click.unstyle("\n".join(status_lines(report, time.time())))
    assert "gpu 0:      NVIDIA H100, 3% busy, 70 GiB of 80 GiB free" in text
    assert "gpu 1:      NVIDIA A100, utilisation unknown, 1 GiB of 40 GiB free" in text
    assert "throttled:  cpu load 3.9 > 1.5" in text


# --- memory of a process tree ---------------------------------------------------------------

HOG = textwrap.dedent(
    """
    import os, subprocess, sys, time
    block = bytearray(os.urandom(1 << 20) * {mib})
    if {child}:
        # A child in a session of its own: still the task's, by descent.
        subprocess.Popen([sys.executable, "-c", {hog!r}], start_new_session=True)
    print("ready", flush=True)
    time.sleep(60)
    """
)


@pytest.fixture
def hog_tree() -> Iterator[subprocess.Popen[str]]:
    child = HOG.format(mib=40, child=False, hog="")
    code = HOG.format(mib=60, child=True, hog=child)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield proc
    pids = memwatch.tree_pids(proc.pid)
    for pid in pids:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    proc.wait(10)


def test_tree_rss_counts_the_group_and_its_descendants(hog_tree: subprocess.Popen[str]) -> None:
    root = hog_tree.pid
    # The child prints its own "ready" (on the same pipe) once its block is made: before
    # that its copy of the block counts twice, and the readings below would not agree.
    assert hog_tree.stdout is not None and hog_tree.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 20
    while len(memwatch.tree_pids(root)) < 2 or memwatch.tree_rss(root) < 100 * MiB:
        assert time.monotonic() < deadline, "the child did not show up"
        time.sleep(0.05)
    rss = memwatch.tree_rss(root)
    assert 100 * MiB <= rss < 400 * MiB
    assert memwatch.tree_rss_many([root, os.getpid()])[root] == pytest.approx(rss, rel=0.2)
    pss = memwatch.tree_pss(root)
    assert 90 * MiB <= pss <= rss * 1.05
    assert memwatch.over_limit(root, 1 << 40) is None
    over = memwatch.over_limit(root, 50 * MiB)
    assert over is not None and over > 50 * MiB


def test_tree_rss_of_a_gone_process_is_zero() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"], start_new_session=True)
    proc.wait(10)
    assert memwatch.tree_rss(proc.pid) == 0
    assert memwatch.over_limit(proc.pid, 1) is None


def test_tree_rss_is_cheap() -> None:
    memwatch.tree_rss(os.getpid())
    start = time.process_time()
    for _ in range(20):
        memwatch.tree_rss(os.getpid())
    per_call = (time.process_time() - start) / 20
    n = len([p for p in os.listdir("/proc") if p.isdigit()]) if Path("/proc").exists() else 1
    assert per_call < 0.02 + n * 50e-6, f"{per_call * 1e3:.1f} ms for {n} processes"


def test_history_file_lines_are_json(tmp_path: Path) -> None:
    history = LoadHistory(tmp_path / "load.jsonl")
    history.append(reading(), None, 5.0)
    line = (tmp_path / "load.jsonl").read_text().splitlines()[0]
    assert json.loads(line)["throttled"] is None
