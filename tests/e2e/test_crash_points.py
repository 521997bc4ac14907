"""Kill the supervisor at every named write point, restart it, check nothing was lost.

Invariants after the restart: every dropped spool file became exactly one task; every
task is in exactly one final state; tasks that finished before the crash stay finished;
no task ran twice at the same time (the ledger's begin/end pairs never interleave).
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from bantzd.crash import CLUSTER_POINTS, DUPLICATE_POINTS, FIRING_POINTS, POINTS
from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow

N_TASKS = 4


def ledger_ok(text: str) -> set[str]:
    """Check begin/end lines never interleave per task; return the tasks that ended."""
    open_: set[str] = set()
    ended: set[str] = set()
    for line in text.splitlines():
        kind, name = line.split()
        if kind == "begin":
            assert name not in open_, f"{name} ran twice at the same time:\n{text}"
            open_.add(name)
        else:
            open_.discard(name)
            ended.add(name)
    return ended


# The points of a schedule's firing have their own scenario (test_schedule_crash.py), and
# so do those only a duplicate `unique:` file reaches (test_unique.py).
# CLUSTER_POINTS are reached by tests/e2e/test_slurm.py (a Slurm cluster's tasks).
ELSEWHERE = (*FIRING_POINTS, *DUPLICATE_POINTS, *CLUSTER_POINTS)
TASK_POINTS = tuple(p for p in POINTS if p not in ELSEWHERE)


@pytest.mark.parametrize("point", TASK_POINTS)
def test_crash_at_point_then_restart(bantz: Bantz, point: str, tmp_path) -> None:
    ledger = tmp_path / "ledger"
    bantz.env["BANTZ_CRASH_AT"] = point
    proc = bantz.start("run")
    del bantz.env["BANTZ_CRASH_AT"]  # only the supervisor crashes, not the CLI commands
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
    for i in range(N_TASKS):
        bantz.drop(
            f"t{i}.yaml",
            textwrap.dedent(f"""\
            name: t{i}
            run: echo begin t{i} >> {ledger}; sleep 0.2; echo end t{i} >> {ledger}
        """),
        )
    bantz.drop("blocked.yaml", "name: blocked\nafter: [nothing-yet]\nrun: 'true'\n")
    if point == "control.after_apply":
        wait_for(
            lambda: any(bantz.state(i).get("name") == "blocked" for i in range(1, 7)),
            what="intake of the blocked task",
        )
        res = bantz("cancel", "blocked", timeout=30)
        assert res.returncode == 0, res.stderr
    assert proc.wait(30) == -9, f"did not crash at {point}: {proc.stderr.read()}"
    before = {i: bantz.status_of(i) for i in range(1, 10)}

    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    tasks = sorted(p for p in (bantz.home / "tasks").iterdir())
    assert all((p / "task.yaml").exists() for p in tasks), "a half-made task folder remains"
    states = [json.loads((p / "state.json").read_text()) for p in tasks]
    names = sorted(s["name"] for s in states)
    assert names == sorted([f"t{i}" for i in range(N_TASKS)] + ["blocked"]), names
    assert not list((bantz.home / "spool").glob("*.yaml")), "a spool file was left behind"
    for s in states:
        if s["name"] == "blocked":
            expected = "cancelled" if point == "control.after_apply" else "queued"
            assert s["status"] == expected
        else:
            assert s["status"] == "done", s
    for task_id, status in before.items():
        if status in ("done", "failed", "cancelled"):
            assert bantz.status_of(task_id) == status
    ended = ledger_ok(ledger.read_text())
    assert ended == {f"t{i}" for i in range(N_TASKS)}


def test_crash_points_are_all_reached_by_the_test() -> None:
    # Every point the code names must be exercised: above (TASK_POINTS), or by
    # test_schedule_crash.py, whose parametrize list must hold every FIRING_POINTS entry.
    from tests.e2e import test_schedule_crash

    test = test_schedule_crash.test_crash_while_firing_then_restart
    params = [m for m in test.pytestmark if m.name == "parametrize"]
    reached = {args[0] if isinstance(args, tuple) else args for m in params for args in m.args[1]}
    assert set(FIRING_POINTS) <= reached
    out = subprocess.run(
        ["grep", "-rhoE", r'crash_point\("[a-z_.]+"\)', "bantzd"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    used = {line.split('"')[1] for line in out.splitlines()}
    assert used == set(POINTS)
