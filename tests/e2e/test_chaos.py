"""Chaos: SIGKILL the supervisor at random moments while 100 steps: tasks run.

At the end every task is done, every step ran at least once, no two attempts of one task
overlapped (each step writes begin/end lines to a shared ledger), nothing was lost.

The suite runs a size that takes well under a minute; a larger night runs from the command
line: `BANTZ_CHAOS_TASKS=1000 BANTZ_CHAOS_KILLS=100 python -m pytest tests/e2e/test_chaos.py`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Bantz, config_text, wait_for

pytestmark = pytest.mark.slow

TASKS = int(os.environ.get("BANTZ_CHAOS_TASKS", "100"))
KILLS = int(os.environ.get("BANTZ_CHAOS_KILLS", "20"))


def check_ledger(text: str) -> dict[str, set[str]]:
    """Per task, the steps that ended; fails if two attempts of a task overlapped."""
    running: dict[str, str] = {}
    ended: dict[str, set[str]] = {}
    for line in text.splitlines():
        kind, task, step, attempt = line.split()
        if kind == "begin":
            other = running.get(task)
            assert other is None, f"task {task}: step {step} began while {other} ran"
            running[task] = f"{step}#{attempt}"
        else:
            assert running.get(task) == f"{step}#{attempt}", f"unmatched end: {line}"
            del running[task]
            ended.setdefault(task, set()).add(step)
    return ended


def test_random_supervisor_kills_lose_nothing(bantz: Bantz, tmp_path: Path) -> None:
    rng = random.Random(int(os.environ.get("BANTZ_CHAOS_SEED", "7")))
    (bantz.home / "config.toml").write_text(config_text("max_parallel = 4"))
    ledger = tmp_path / "ledger"
    step = (
        'echo "begin $BANTZ_TASK_ID $BANTZ_STEP $BANTZ_ATTEMPT" >> {l}; sleep 0.0{d}; '
        'echo "end $BANTZ_TASK_ID $BANTZ_STEP $BANTZ_ATTEMPT" >> {l}'
    )
    for i in range(TASKS):
        bantz.drop(
            f"job{i:04d}.yaml",
            textwrap.dedent(f"""\
            name: job{i}
            steps:
              - name: one
                run: '{step.format(l=ledger, d=rng.randint(1, 9))}'
              - name: two
                run: '{step.format(l=ledger, d=rng.randint(1, 9))}'
        """),
        )
    for _ in range(KILLS):
        proc = bantz.start("run")
        size = ledger.stat().st_size if ledger.exists() else 0
        wanted = size + rng.randint(1, 400)

        def grown(proc=proc, wanted=wanted) -> bool:
            if proc.poll() is not None:
                return True
            return ledger.exists() and ledger.stat().st_size >= wanted

        wait_for(
            grown,
            timeout=30,
            interval=0.005,
            what="the ledger to grow",
        )
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    res = bantz("run", "--once", timeout=120)
    assert res.returncode == 0, res.stderr

    task_dirs = sorted((bantz.home / "tasks").iterdir(), key=lambda p: int(p.name))
    states = [json.loads((p / "state.json").read_text()) for p in task_dirs]
    assert len(states) == TASKS, "a spool file became no task or two tasks"
    assert sorted(s["name"] for s in states) == sorted(f"job{i}" for i in range(TASKS))
    assert all(s["status"] == "done" for s in states), [
        (s["id"], s["status"], s["reason"]) for s in states if s["status"] != "done"
    ]
    ended = check_ledger(ledger.read_text())
    assert all(ended.get(str(s["id"])) == {"one", "two"} for s in states)
    assert not list((bantz.home / "spool").glob("*.yaml"))
