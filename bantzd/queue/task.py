"""The persistent record of one task: what state.json holds (SPEC section 4)."""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from bantzd.clock import epoch
from bantzd.queue.states import FINISHED, Status


@dataclass
class TaskState:
    """Mutable state of one task. Only the store changes `status` (through the table)."""

    id: int
    name: str
    status: Status = Status.QUEUED
    reason: str | None = None
    attempts: int = 0
    # Failed attempts since the task was last (re)queued by a person; `retries` bounds it.
    failures: int = 0
    interruptions: int = 0
    created: str | None = None
    started: str | None = None
    finished: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None
    progress: dict[str, Any] | None = None
    question: dict[str, Any] | None = None
    answer: str | None = None
    answers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    priority: int = 0
    kind: str = "run"
    source: str | None = None
    # `unique:` (SPEC 10): the key this task holds while unfinished (queue/unique.py).
    unique_key: str | None = None
    paused: bool = False
    retry_at: float | None = None
    # `not_before` / `deadline` of task.yaml, resolved to instants when the task was accepted
    # (`01:00` means the next 01:00 after that), so a restart does not move them.
    not_before_at: float | None = None
    deadline_at: float | None = None
    steps_done: list[str] = field(default_factory=list)
    step: str | None = None  # the step running now, for `steps:` tasks
    gpus: list[int] = field(default_factory=list)  # GPU indices the running attempt holds
    # The Slurm job of the latest attempt: {job_id, state, node, reason} (SPEC section 13).
    slurm: dict[str, Any] | None = None
    tokens: dict[str, int] = field(default_factory=dict)
    agent: dict[str, Any] | None = None  # `agent:` tasks: steps, tool calls (agent.json)
    requests: list[str] = field(default_factory=list)  # last control requests applied
    # A schedule's instance (SPEC 9): the schedule's name and the firing's own time (ISO).
    schedule: str | None = None
    firing: str | None = None
    attempt_log: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def finished_state(self) -> bool:
        return self.status in FINISHED

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy (shallow: the lists and dicts in it are replaced, not mutated)."""
        data = dict(self.__dict__)
        data["status"] = str(self.status)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TaskState:
        """The state `data` describes; ValueError naming the field when a value has the
        wrong type (a damaged or hand-edited state.json, which recovery then rebuilds)."""
        kwargs = {k: v for k, v in data.items() if k in _FIELD_TYPES}
        for key, value in kwargs.items():
            allowed = _FIELD_TYPES[key]
            if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
                names = " or ".join(sorted({t.__name__ for t in allowed}))
                raise ValueError(
                    f"state.json: {key!r} should be {names}, not {type(value).__name__}"
                )
        kwargs["status"] = Status(kwargs.get("status", "queued"))
        return cls(**kwargs)


def took(state: TaskState) -> float | None:
    """Seconds the task ran, all its attempts added up (waits between them not counted).

    The one meaning of `took` for `list`, `show` and the report, so the three never
    disagree: a task that ran 5 minutes, failed, and ran 5 more took 10 minutes, however
    long it waited for its retry. Without an attempt log (a state from before there was
    one) it is finished minus started; None when the task never ran or has no end yet.
    """
    spans = [
        (epoch(e.get("start")), epoch(e.get("end")))
        for e in state.attempt_log
        if isinstance(e, dict)
    ]
    if spans and all(s is not None and e is not None for s, e in spans):
        return sum(max(0.0, e - s) for s, e in spans)  # type: ignore[operator]
    start, end = epoch(state.started), epoch(state.finished)
    if start is None or end is None:
        return None
    return max(0.0, end - start)


def attempt_started(state: TaskState) -> str | None:
    """When the task's latest attempt started (ISO), where `started` is its first start.

    `started` stays the first start of the task for good (a retry or a resume does not
    move it), so what a running attempt is timed from comes from the attempt log: the
    entry of attempt `state.attempts`, else (a state from before there was a log) `started`.
    """
    for entry in reversed(state.attempt_log):
        if isinstance(entry, dict) and entry.get("attempt") == state.attempts:
            start = entry.get("start")
            return start if isinstance(start, str) else state.started
    return state.started


def _runtime_types(hint: Any) -> tuple[type, ...]:
    """The types a JSON value may have for a field annotated `hint`."""
    if hint is Any:
        return (object,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return tuple(t for arg in typing.get_args(hint) for t in _runtime_types(arg))
    if typing.get_origin(hint) is not None:
        return (typing.get_origin(hint),)
    if hint is float:
        return (int, float)
    if hint is Status:
        return (str,)
    return (hint,)


# get_type_hints evaluates every annotation: once, not once per field (it is on the import
# path of every command).
_HINTS = typing.get_type_hints(TaskState)
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    f.name: _runtime_types(_HINTS[f.name]) for f in fields(TaskState)
}
