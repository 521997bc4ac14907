"""`unique:` (SPEC 10): a task file that must not be queued twice.

`unique: true` keys a file by its content: a hash of what the YAML says, without comments
and without `name` (so the same file saved under two names, or with a comment changed, is
the same task); `unique: KEY` gives the key itself. A schedule's instances use the key
`NAME@TIME`.

A key is taken while a task holding it is unfinished (queued, held, waiting_human or
running); once that task has ended, the same key is accepted again. `UniqueKeys` answers
"which unfinished task holds this key?" from the live task states, so a status change is
seen without telling it: it only has to learn of each task once (`add`).

The key is part of the task, not a separate index: it is stored in state.json
(`unique_key`), and it can always be computed again from tasks/<id>/task.yaml. So the rename
that accepts a task (Store.create) takes its key in the same step, and a crash can never
leave a key without its task or a task without its key (recovery rebuilds a lost state.json,
key included, from task.yaml).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable
from datetime import date, datetime, time
from typing import Any

from bantzd.queue.states import FINISHED
from bantzd.queue.task import TaskState

HINT = "true, or a key like notes-summary"
MAX_KEY_CHARS = 200
CONTENT_PREFIX = "sha256:"


def parse_key(text: str) -> str:
    """A `unique:` key as given: one line of text, at most MAX_KEY_CHARS characters."""
    key = text.strip()
    if not key:
        raise ValueError(f"expected {HINT}, got an empty text")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise ValueError("a key must be one line, without control characters")
    if len(key) > MAX_KEY_CHARS:
        raise ValueError(f"a key is at most {MAX_KEY_CHARS} characters, got {len(key)}")
    return key


def task_key(data: bytes, unique: bool | str | None) -> str | None:
    """The key of a task file whose `unique:` says `unique` (TaskSpec.unique); None when
    the file is not unique."""
    if unique is None or unique is False:
        return None
    if unique is True:
        return content_key(data)
    return unique


def content_key(data: bytes) -> str:
    """`sha256:...` of the file's data without comments and `name`: the YAML is loaded
    (safe loader) and written again as canonical JSON, so formatting, key order, quoting
    and comments do not change the key."""
    import yaml

    from bantzd.queue.yamlnodes import decode

    try:
        value = yaml.safe_load(decode(data))
    except (yaml.YAMLError, ValueError, RecursionError):
        value = None  # parse_task has accepted the file, so this is not expected
    if isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != "name"}
        text = json.dumps(_canonical(value), sort_keys=True, ensure_ascii=False)
        raw = text.encode("utf-8", "surrogatepass")
    else:
        raw = bytes(data)
    return CONTENT_PREFIX + hashlib.sha256(raw).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, dict):
        return {_scalar_text(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_canonical(v) for v in value), key=repr)
    if isinstance(value, datetime | date | time):
        return {"$time": value.isoformat()}
    if isinstance(value, bytes):
        return {"$bytes": value.hex()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    return value


def _scalar_text(key: Any) -> str:
    # YAML keys may be numbers or booleans; JSON's are text. Keep them apart from texts.
    return key if isinstance(key, str) else f"${type(key).__name__}:{key!r}"


def duplicate_problem(holder: TaskState) -> str:
    """The rejection's words: `duplicate of task 14 (running)`."""
    return f"duplicate of task {holder.id} ({holder.status})"


class UniqueKeys:
    """The unique keys of the tasks it was told of, each with the tasks holding it.

    `holder(key)` looks at the tasks' statuses as they are now, so it needs to learn of a
    task once (`add`), not of each of its status changes. Finished tasks stay known: a
    `retry` or `rerun` queues one again, and then it holds its key again.
    """

    def __init__(self, states: Iterable[TaskState] = ()) -> None:
        self._by_key: dict[str, dict[int, TaskState]] = {}
        for state in states:
            self.add(state)

    def add(self, state: TaskState) -> None:
        """Learn of `state` (a task taken in or loaded); a task without a key is skipped."""
        if state.unique_key:
            self._by_key.setdefault(state.unique_key, {})[state.id] = state

    def forget(self, task_id: int, key: str | None) -> None:
        """A task that no longer has `key` (edited, or its folder removed)."""
        holders = self._by_key.get(key or "")
        if holders is not None:
            holders.pop(task_id, None)
            if not holders:
                del self._by_key[key or ""]

    def holder(self, key: str | None, *, besides: int | None = None) -> TaskState | None:
        """The oldest unfinished task holding `key` (other than task `besides`), or None."""
        if not key:
            return None
        holders = self._by_key.get(key)
        if not holders:
            return None
        live = [
            s
            for s in holders.values()
            if s.status not in FINISHED and s.unique_key == key and s.id != besides
        ]
        return min(live, key=lambda s: s.id) if live else None
