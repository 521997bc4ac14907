"""Naming tasks on the command line: by id, or by name when the name is unique (SPEC 7)."""

from __future__ import annotations

from bantzd.errors import NoSuchTask
from bantzd.paths import Home
from bantzd.queue.stateread import read_state
from bantzd.queue.task import TaskState


def resolve(home: Home, ref: str | int) -> TaskState:
    """The task `ref` names, or `NoSuchTask` (exit 3) saying why."""
    text = str(ref).strip()
    if text.isdigit():
        state = read_state(home.task_dir(int(text)))
        if state is None:
            raise NoSuchTask(f"no task with id {text}")
        return state
    # The index finds the name without parsing every state.json; the task found is read
    # from its own folder, so what is returned is never older than the file.
    from bantzd.queue.stateindex import state_rows

    matches = [r.id for r in state_rows(home, texts=False) if r.name == text]
    if not matches:
        raise NoSuchTask(f"no task named {text!r}")
    if len(matches) > 1:
        ids = ", ".join(str(i) for i in matches)
        raise NoSuchTask(f"{len(matches)} tasks are named {text!r} (ids {ids}); use an id")
    state = read_state(home.task_dir(matches[0]))
    if state is None:  # removed (cleaned) just now
        raise NoSuchTask(f"no task named {text!r}")
    return state
