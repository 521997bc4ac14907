"""Reading task folders: state.json as the readers (`list`, `show`, `status`, recovery) see it.

Apart from queue/store.py (which re-exports these) so a command that only reads one task
(`show ID`) does not import the store's writer machinery (threads, the journal, crash
points). Safe at any time: every state.json is replaced atomically.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from bantzd.paths import Home
from bantzd.queue.atomic import read_json
from bantzd.queue.task import TaskState


def read_state(path: Path) -> TaskState | None:
    """state.json of a task folder, or None when the folder is not a complete task."""
    try:
        data = read_json(path / "state.json")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not (path / "task.yaml").exists():
        return None
    try:
        return TaskState.from_json(data)
    except (TypeError, ValueError):
        return None


def task_ids(home: Home) -> list[int]:
    """Ids of the task folders present, ascending."""
    try:
        names = os.listdir(home.tasks)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())


def scan_states(home: Home) -> Iterator[TaskState]:
    """Every complete task, by id."""
    for task_id in task_ids(home):
        state = read_state(home.task_dir(task_id))
        if state is not None:
            yield state
