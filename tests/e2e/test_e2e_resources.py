"""Resource-aware starts through the real supervisor: throttling, GPUs (a stand-in
nvidia-smi on PATH), rate limits shared with workers, and the memory limit."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import Bantz, wait_for
from tests.unit.test_probes import FakeSmi

pytestmark = pytest.mark.slow

BASE = 'nice = 0\nstop_grace = "2s"\nscan_interval = "0.5s"\nprobe_interval = "0.2s"\n'


def config(bantz: Bantz, text: str) -> None:
    (bantz.home / "config.toml").write_text(BASE + textwrap.dedent(text))


def test_memory_throttle_holds_starts_until_it_clears(bantz: Bantz) -> None:
    config(bantz, 'max_parallel = 2\n[throttle]\nmax_load = 1000\nmin_free_memory = "100000GiB"\n')
    bantz.drop("job.yaml", "run: echo ran\n")
    proc = bantz.start("run")
    wait_for(
        lambda: (bantz.state(1).get("reason") or "").startswith("throttled: free memory"),
        what="the throttle reason",
    )
    assert bantz.status_of(1) == "queued"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    events = [json.loads(line) for line in (bantz.home / "journal.jsonl").read_text().splitlines()]
    assert any(e.get("event") == "throttle_start" for e in events)
    config(bantz, "max_parallel = 2\n[throttle]\nmax_load = 1000\n")
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    assert (bantz.home / "load.jsonl").stat().st_size > 0


def test_gpus_are_never_shared_and_cpu_tasks_pass_waiting_gpu_tasks(
    bantz: Bantz, tmp_path: Path
) -> None:
    smi = FakeSmi(tmp_path / "bin")
    smi.mode = "four"  # 0 busy, 1 idle, 2 memory full, 3 idle
    bantz.env["PATH"] = f"{smi.folder}{os.pathsep}{bantz.env['PATH']}"
    bantz.env["PYTHONPATH"] = ""  # no nvidia-ml-py here: the nvidia-smi path is used
    # No load throttle here: on a 2-core box two fresh starts already count as full load.
    config(bantz, "max_parallel = 4\n[throttle]\nmax_load = 1000\n")
    ledger = tmp_path / "ledger"
    for i in range(3):
        bantz.drop(
            f"gpu{i}.yaml",
            textwrap.dedent(f"""\
            name: gpu{i}
            resources: {{gpus: 1, gpu_memory: 8GiB}}
            run: echo "begin $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER" >> {ledger}; sleep 1;
                 echo "end $CUDA_VISIBLE_DEVICES" >> {ledger}
        """),
        )
    bantz.drop("cpu.yaml", f"name: cpu\nrun: echo cpu >> {ledger}\n")
    proc = bantz.start("run")
    waiting = wait_for(
        lambda: [
            i
            for i in (1, 2, 3)
            if (bantz.state(i).get("reason") or "").startswith("gpu: no GPU with")
        ],
        what="a GPU task waiting for a GPU",
    )
    wait_for(
        lambda: all(bantz.status_of(i) == "done" for i in range(1, 5)),
        timeout=30,
        what="every task done",
    )
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    lines = ledger.read_text().splitlines()
    # The CPU task ran while a GPU task waited for a GPU.
    assert lines.index("cpu") < lines.index(
        f"begin {bantz.state(waiting[0])['gpus'][0]} PCI_BUS_ID", 2
    )
    holding: set[str] = set()
    for line in lines:
        kind, *rest = line.split()
        if kind == "begin":
            gpu, order = rest
            assert gpu in {"1", "3"} and order == "PCI_BUS_ID"
            assert gpu not in holding, f"GPU {gpu} given to two tasks:\n{ledger.read_text()}"
            holding.add(gpu)
        elif kind == "end":
            holding.discard(rest[0])


def test_gpu_task_on_a_machine_without_gpus_does_not_block_once(bantz: Bantz) -> None:
    bantz.env["PATH"] = "/usr/bin:/bin"
    config(bantz, "max_parallel = 2\n[throttle]\nmax_load = 1000\n")
    bantz.drop("gpu.yaml", "resources: {gpus: 1}\nrun: 'true'\n")
    bantz.drop("cpu.yaml", "run: 'true'\n")
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    gpu = bantz.state(1)
    assert gpu["status"] == "queued" and gpu["reason"].startswith("gpu: no GPU on this machine")
    assert bantz.status_of(2) == "done"


def test_concurrent_limit_holds_across_tasks_and_backoff_delays_others(
    bantz: Bantz, tmp_path: Path
) -> None:
    config(
        bantz,
        "max_parallel = 4\n[throttle]\nmax_load = 1000\n"
        "[limits.api]\nconcurrent = 1\nper_minute = 100\n",
    )
    ledger = tmp_path / "ledger"
    for i in range(3):
        bantz.drop(
            f"api{i}.yaml",
            textwrap.dedent(f"""\
            name: api{i}
            uses: {{api: 1}}
            run: echo begin >> {ledger}; sleep 0.3; echo end >> {ledger}
        """),
        )
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    assert ledger.read_text().split() == ["begin", "end"] * 3  # never two at once

    # A worker that got HTTP 429 backs the limit off for everyone.
    py = sys.executable
    bantz.drop("hit429.yaml", f"name: hit429\nrun: {py} -m bantzd backoff api 3s\n")
    bantz.drop("later.yaml", "name: later\nafter: [hit429]\nuses: {api: 1}\nrun: 'true'\n")
    proc = bantz.start("run")
    wait_for(
        lambda: (bantz.state(5).get("reason") or "").startswith("rate limit api: next at"),
        what="the back-off reason",
    )
    wait_for(lambda: bantz.status_of(5) == "done", timeout=30, what="the task after back-off")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_a_task_past_its_memory_limit_is_stopped(bantz: Bantz) -> None:
    config(bantz, "max_parallel = 1\n[throttle]\nmax_load = 1000\n")
    hog = (
        "import time; x = bytearray(300 * 1024 * 1024); "
        "x[::4096] = b'x' * len(x[::4096]); time.sleep(60)"
    )
    bantz.drop("hog.yaml", f'resources: {{memory: 100MiB}}\nrun: [{sys.executable}, -c, "{hog}"]\n')
    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "failed" and state["error"] == "memory limit"


def test_the_supervisor_notifies_failures_questions_and_the_report(bantz: Bantz) -> None:
    pytest.importorskip("apprise")
    from tests.unit.test_notify import Receiver

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        bantz.env.pop(var, None)
    receiver = Receiver()
    try:
        config(
            bantz,
            f'max_parallel = 2\n[throttle]\nmax_load = 1000\n[notify]\nurls = ["{receiver.url}"]\n',
        )
        bantz.drop("broken.yaml", "name: broken\nrun: exit 4\n")
        py = sys.executable
        bantz.drop("asks.yaml", f"name: asks\nrun: {py} -m bantzd ask go 'Go on?' --choice yes\n")
        until = (datetime.now().astimezone() + timedelta(seconds=3)).isoformat(timespec="seconds")
        res = bantz("run", "--until", until, timeout=60)
        assert res.returncode == 0, res.stderr
        wait_for(lambda: len(receiver.bodies) >= 3, timeout=20, what="three notifications")
    finally:
        receiver.close()
    text = json.dumps(receiver.bodies)
    assert "broken" in text and "bantzd logs 1" in text
    assert "Go on?" in text and "bantzd answer 2 yes" in text
    assert "reports/" in text
