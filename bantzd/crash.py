"""Named crash points, for tests that kill the supervisor at exactly one place.

`BANTZ_CRASH_AT=NAME` (or `NAME:N` for the N-th time it is reached) makes the supervisor
SIGKILL itself there, like a power cut between two writes. The variable is read once at
import; unset, each point costs one comparison. Tests crash at every point in `POINTS`
in turn and check that a restart loses nothing (tests/e2e/test_crash_points.py).

It sits at the bottom of the package, importing nothing of bantzd, because the points are in
every layer (queue/store.py as much as the supervisor) and a lower layer never imports an upper.
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "intake.after_mkdir",  # task folder created, spool file not yet moved
    "intake.after_move",  # spool file moved into the folder, state not yet durable
    "start.after_spawn",  # process spawned, "running" not yet durable
    "exit.after_reap",  # attempt reaped, outcome not yet written
    "control.after_apply",  # request applied, reply not yet written
    "fire.after_write",  # a schedule firing's task file written, not yet a task
    "fire.after_create",  # the firing's task folder made, nothing of it durable yet
    "fire.after_task",  # the firing's task durable, the schedule's state not yet written
    "intake.after_key_check",  # the unique key is free, the task not yet made
    "intake.duplicate_found",  # a duplicate found, its rejection not yet written
    "slurm.after_sbatch",  # a Slurm job submitted, its id not yet in the task folder
)
# The points of a schedule's firing, reached by tests/e2e/test_schedule_crash.py.
FIRING_POINTS = tuple(p for p in POINTS if p.startswith("fire."))
# Points only a duplicate `unique:` file reaches: tests/e2e/test_unique.py crashes there
# (test_crash_points.py's tasks are not unique).
DUPLICATE_POINTS = ("intake.duplicate_found",)
# Reached only with a Slurm cluster: tests/e2e/test_slurm.py crashes there.
CLUSTER_POINTS = ("slurm.after_sbatch",)

_spec = os.environ.get("BANTZ_CRASH_AT", "")
_name, _, _count = _spec.partition(":")
_remaining = int(_count) if _count.isdigit() else 1


def crash_point(name: str) -> None:
    """Die here (SIGKILL, no cleanup) when the tests asked for this point."""
    global _remaining
    if name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), signal.SIGKILL)


# Injected faults, for tests that check one task's trouble cannot take the loop down.
#
# `BANTZ_FAULT_AT=STEP:KEY` makes `fault_point(STEP, KEY)` raise RuntimeError, where KEY is
# the task id (or, for "intake", the spool file's name): the supervisor must fail (or leave)
# that one task and go on with the others (tests/e2e/test_loop_faults.py). Read once at import;
# unset, each point costs one comparison.
FAULT_STEPS = (
    "recover",  # recovery of one task at start-up
    "reap",  # an ended attempt, reaped, before its outcome is decided
    "finish",  # deciding what an ended attempt means (after its process is gone)
    "limits",  # the timeout / stop-grace check of one running attempt
    "intake",  # one spool file (KEY = its name)
    "progress",  # copying one running task's progress.json / tokens.json
    "candidate",  # the scheduler's view of one queued task, built for a start decision
    "start",  # one task being started (its resources taken, not yet spawned)
    "report",  # one task's section of the morning report
)

_fault_step, _, _fault_key = os.environ.get("BANTZ_FAULT_AT", "").partition(":")


class InjectedFault(RuntimeError):
    """The exception `fault_point` raises (a RuntimeError, like any unexpected bug)."""


def fault_point(step: str, key: int | str) -> None:
    """Raise InjectedFault here when BANTZ_FAULT_AT names this step and this task."""
    if step != _fault_step:
        return
    if str(key) == _fault_key:
        raise InjectedFault(f"fault injected at {step}:{key}")
