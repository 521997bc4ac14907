"""Naming tasks on the command line: by id, or by name when the name is unique (SPEC 7)."""

from __future__ import annotations

from bantzd.errors import NoSuchTask
from bantzd.paths import Home
from bantzd.queue.store import read_state, scan_states
from bantzd.queue.task import TaskState


def resolve(home: Home, ref: str | int) -> TaskState:
    """The task `ref` names, or `NoSuchTask` (exit 3) saying why."""
    text = str(ref).strip()
    if text.isdigit():
        state = read_state(home.task_dir(int(text)))
        if state is None:
            raise NoSuchTask(f"no task with id {text}")
        return state
    matches = [s for s in scan_states(home) if s.name == text]
    if not matches:
        raise NoSuchTask(f"no task named {text!r}")
    if len(matches) > 1:
        ids = ", ".join(str(s.id) for s in matches)
        raise NoSuchTask(f"{len(matches)} tasks are named {text!r} (ids {ids}); use an id")
    return matches[0]
