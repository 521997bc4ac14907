"""Accepted schedules on disk: `schedules/<name>/` (SPEC 9).

Each folder holds `schedule.yaml` (the submitted file, verbatim) and `state.json` (when it
fires next, what it made, what it skipped), both replaced atomically. While one fires, a
third file, `firing.yaml`, holds the task file of that firing for the moment between its
writing and its move into `tasks/<id>/task.yaml` (the same commit point as a spool file's).

Only the lock holder writes here (the supervisor, or a CLI command applying a control
request while none runs); `schedules`, `status` and the report read at any time.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from bantzd.paths import DIR_MODE, Home
from bantzd.queue.atomic import fsync_dir, read_json, write_bytes_atomic, write_json_atomic

STATE = "state.json"
SCHEDULE = "schedule.yaml"
FIRING = "firing.yaml"
# How many skipped firings and made instances state.json remembers.
KEEP = 50


@dataclass
class ScheduleState:
    """What state.json of a schedule holds. Times are ISO with the offset of the
    schedule's zone; `next_fire` includes the jitter, `next_slot` is the firing's own time
    (what its task is named after)."""

    name: str
    next_fire: str | None = None
    next_slot: str | None = None
    last_fired: str | None = None  # the own time of the last firing made
    last_task: int | None = None
    paused: bool = False
    skipped: list[dict[str, Any]] = field(default_factory=list)  # {firing, at, because}
    missed: list[dict[str, Any]] = field(default_factory=list)  # {firing, at, because}
    instances: list[int] = field(default_factory=list)  # ids made, oldest first
    source: str | None = None  # sha256 of schedule.yaml: a replaced file is noticed
    accepted: str | None = None
    requests: list[str] = field(default_factory=list)  # control requests applied

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ScheduleState:
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in data.items() if k in known})
        if not isinstance(state.name, str):
            raise ValueError("state.json: name is not text")
        return state

    def remember(self, key: str, entry: Any) -> None:
        """Append to one of the bounded lists (`skipped`, `missed`, `instances`)."""
        items = getattr(self, key)
        items.append(entry)
        del items[: max(0, len(items) - KEEP)]


def schedule_dir(home: Home, name: str) -> Path:
    return home.schedules / name


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def schedule_names(home: Home) -> list[str]:
    """Names of the schedules with a schedule.yaml, sorted."""
    try:
        entries = list(os.scandir(home.schedules))
    except FileNotFoundError:
        return []
    names = []
    for entry in entries:
        if entry.is_dir(follow_symlinks=False) and (Path(entry.path) / SCHEDULE).exists():
            names.append(entry.name)
    return sorted(names)


def read_schedule_yaml(home: Home, name: str) -> bytes | None:
    try:
        return (schedule_dir(home, name) / SCHEDULE).read_bytes()
    except OSError:
        return None


def read_schedule_state(home: Home, name: str) -> ScheduleState | None:
    """state.json of a schedule; None when missing or unreadable (the loader rebuilds it)."""
    try:
        data = read_json(schedule_dir(home, name) / STATE)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return ScheduleState.from_json(data)
    except (TypeError, ValueError):
        return None


def write_schedule_state(home: Home, state: ScheduleState) -> None:
    write_json_atomic(schedule_dir(home, state.name) / STATE, state.to_json())


def install(home: Home, name: str, spool_file: Path) -> Path:
    """Move an accepted spool file to `schedules/<name>/schedule.yaml`, replacing the
    schedule of that name; durable when this returns. The caller writes state.json."""
    home.schedules.mkdir(mode=DIR_MODE, exist_ok=True)
    folder = schedule_dir(home, name)
    created = not folder.exists()
    folder.mkdir(mode=DIR_MODE, exist_ok=True)
    if created:
        fsync_dir(home.schedules)
    target = folder / SCHEDULE
    os.rename(spool_file, target)
    fsync_dir(folder)
    fsync_dir(spool_file.parent)
    return target


def write_firing(home: Home, name: str, data: bytes) -> Path:
    """The task file of the firing being made, written durably beside schedule.yaml."""
    path = schedule_dir(home, name) / FIRING
    write_bytes_atomic(path, data)
    return path


def leftover_firing(home: Home, name: str) -> Path | None:
    path = schedule_dir(home, name) / FIRING
    return path if path.exists() else None


def remove(home: Home, name: str) -> None:
    """Remove a schedule's folder (its instances are tasks and stay)."""
    folder = schedule_dir(home, name)
    shutil.rmtree(folder)
    fsync_dir(home.schedules)
