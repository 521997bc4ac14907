"""Named crash points, for tests that kill the supervisor at exactly one place.

`BANTZ_CRASH_AT=NAME` (or `NAME:N` for the N-th time it is reached) makes the supervisor
SIGKILL itself there, like a power cut between two writes. The variable is read once at
import; unset, each point costs one comparison. Tests crash at every point in `POINTS`
in turn and check that a restart loses nothing (tests/test_crash_points.py).
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
)

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
