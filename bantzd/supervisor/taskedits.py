"""The pueue / task-spooler style controls: rerun, priority, edit, parallel.

Each function is one control action, applied by the lock holder through `ControlHandler`
(supervisor/control.py): it checks the task, changes it through the store and returns the
reply's message, or raises `BantzError` with the message of a refusal. What the live
supervisor must learn besides the state (a new spec, a new order, a new max_parallel) goes
through `Live`, whose callbacks the supervisor sets; offline (no supervisor) they do nothing,
because the next supervisor reads everything from the files at its start.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bantzd.errors import BantzError
from bantzd.paths import Home, TaskPaths
from bantzd.queue.atomic import write_bytes_atomic
from bantzd.queue.states import FINISHED, Status
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import LIMITS, PRIORITY_WORDS, TaskFileError, TaskSpec, parse_task
from bantzd.supervisor import overrides

if TYPE_CHECKING:
    from bantzd.supervisor.control import QueueView

log = logging.getLogger("bantzd")

# A queued or held task can be edited and reprioritised; a question's task too (priority
# only: it goes back to the queue with its answer).
EDITABLE = frozenset({Status.QUEUED, Status.HELD})
REPRIORITISABLE = frozenset({Status.QUEUED, Status.HELD, Status.WAITING_HUMAN})


@dataclass
class Live:
    """What a running supervisor is told after an action, besides the state it shares.

    `spec` gives it the task's (new) spec: an edit, or a finished task queued again (a
    task finished before the supervisor started has no spec in its table). `reorder` says
    a priority changed (its cached start order is stale). `parallel` sets max_parallel;
    None means config.toml's value again."""

    spec: Callable[[int, TaskSpec], None] | None = None
    reorder: Callable[[], None] | None = None
    parallel: Callable[[int | None], None] | None = None


def parse_priority(text: str) -> int:
    """`high`, `normal`, `low` or a whole number, exactly as task files take them."""
    word = str(text).strip().lower()
    bound = LIMITS["priority"]
    if word in PRIORITY_WORDS:
        return PRIORITY_WORDS[word]
    try:
        value = int(word)
    except ValueError:
        raise ValueError(f"expected high, normal, low or a whole number, got {text!r}") from None
    if not -bound <= value <= bound:
        raise ValueError(f"must be from -{bound} to {bound}, got {text!r}")
    return value


def priority_text(value: int) -> str:
    """`high (10)` for a named value, else the number."""
    names = {v: k for k, v in PRIORITY_WORDS.items()}
    return f"{names[value]} ({value})" if value in names else str(value)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _spec_of(paths: TaskPaths, state: TaskState) -> TaskSpec:
    try:
        return parse_task(paths.task_yaml.read_bytes(), default_name=state.name)
    except (TaskFileError, OSError) as e:
        raise BantzError(
            f"task {state.id}: task.yaml can no longer be read ({e}); submit the file again"
        ) from None


def give_spec(home: Home, live: Live, state: TaskState) -> None:
    """Tell a running supervisor the spec of a finished task that is queued again (`retry`):
    it loads no spec for a task that had ended before it started, and a queued task without
    one would never start. A task.yaml that no longer parses fails the request."""
    if live.spec is not None:
        live.spec(state.id, _spec_of(TaskPaths(home.task_dir(state.id)), state))


# rerun -------------------------------------------------------------------------------------


def rerun(view: QueueView, home: Home, live: Live, state: TaskState) -> str:
    """Run a finished task again from the start, as a new attempt of the same task.

    pueue's `restart` makes a new task; bantzd keeps the id, so the task's record stays
    in one place: `attempts` goes on counting, `attempt_log` and `history` keep the earlier
    runs, and the report and `show` tell the whole story. The run starts fresh:
    checkpoint.json and progress.json are removed (a done task's checkpoint would make the
    new attempt resume at its end), and the steps done, answers and progress are cleared by
    the transition (queue/states.py). `retry` is the other way back: it resumes a failed
    task from its checkpoint.
    """
    if state.status not in FINISHED:
        hint = "; `bantzd cancel` it first" if state.status is Status.RUNNING else ""
        raise BantzError(
            f"task {state.id} is {state.status}; only a finished task (done, failed, "
            f"cancelled) can run again{hint}"
        )
    paths = TaskPaths(home.task_dir(state.id))
    spec = _spec_of(paths, state)
    for leftover in (paths.checkpoint, paths.progress):
        try:
            os.unlink(leftover)
        except FileNotFoundError:
            pass
    view.store.transition(
        state,
        Status.QUEUED,
        "rerun requested",
        steps_done=[],
        step=None,
        progress=None,
        answers={},
        answer=None,
        question=None,
    )
    if live.spec is not None:
        live.spec(state.id, spec)
    return (
        f"task {state.id} ({state.name}) queued to run again as attempt {state.attempts + 1} "
        "(from the start: checkpoint cleared, history kept)"
    )


# priority ----------------------------------------------------------------------------------


def set_priority(view: QueueView, live: Live, state: TaskState, value: Any) -> str:
    """Change the priority of a task that waits to start; the scheduler's order follows."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BantzError(f"malformed request: priority should be a whole number, not {value!r}")
    bound = LIMITS["priority"]
    if not -bound <= value <= bound:
        raise BantzError(f"priority must be from -{bound} to {bound}, not {value}")
    if state.status not in REPRIORITISABLE:
        why = "it is running already" if state.status is Status.RUNNING else "it has ended"
        raise BantzError(
            f"task {state.id} is {state.status}; priority only orders tasks waiting to "
            f"start, and {why}"
        )
    old = state.priority
    if old == value:
        return f"task {state.id} ({state.name}) already has priority {priority_text(value)}"
    view.store.update(state, priority=value)
    view.store.note("priority", id=state.id, old=old, new=value)
    if live.reorder is not None:
        live.reorder()
    return (
        f"task {state.id} ({state.name}): priority {priority_text(value)} "
        f"(was {priority_text(old)})"
    )


# edit --------------------------------------------------------------------------------------


def edit(view: QueueView, home: Home, live: Live, state: TaskState, text: Any, base: Any) -> str:
    """Replace a queued or held task's task.yaml with `text`, validated like `submit`.

    Refused when the task left the queue meanwhile (it started while the person edited:
    the running attempt keeps the old file) or when task.yaml is no longer the file the
    editor was opened on (`base`, its sha256: another edit won). What the file says
    about the state is taken over only where the edit changed it: a `bantzd priority`
    given earlier is not undone by an edit of something else. A file that now asks for
    approval holds a queued task; an edit never approves a held one.
    """
    if not isinstance(text, str):
        raise BantzError(f"malformed request: text should be a string, not {type(text).__name__}")
    if state.status not in EDITABLE:
        raise BantzError(
            f"task {state.id} is {state.status} now; only a queued or held task can be "
            "edited, so the edit was not applied"
        )
    paths = TaskPaths(home.task_dir(state.id))
    try:
        current = paths.task_yaml.read_bytes()
    except OSError as e:
        raise BantzError(f"task {state.id}: cannot read task.yaml: {e.strerror or e}") from None
    if isinstance(base, str) and base != sha256(current):
        raise BantzError(
            f"task {state.id}: task.yaml changed since the editor opened it (another edit?); "
            "the edit was not applied"
        )
    data = text.encode("utf-8")
    try:
        spec = parse_task(data, default_name=state.name)
    except TaskFileError as e:
        raise BantzError(f"the edited file is not a valid task:\n{e}") from None
    key = _unique_key_of_edit(view, state, data, spec)
    try:
        old: TaskSpec | None = parse_task(current, default_name=state.name)
    except TaskFileError:
        old = None
    write_bytes_atomic(paths.task_yaml, data)
    changes = _changes(state, old, spec, view.store.clock.time())
    view.store.update(state, **changes, unique_key=key)
    view.store.note("edited", id=state.id, name=state.name)
    if state.status is Status.QUEUED and _needs_approval(home, spec):
        view.store.transition(state, Status.HELD, "waiting for approval")
    if live.spec is not None:
        live.spec(state.id, spec)
    if live.reorder is not None:
        live.reorder()
    held = " and held for approval" if state.status is Status.HELD else ""
    return f"task {state.id} ({state.name}): task.yaml replaced{held}"


def _unique_key_of_edit(
    view: QueueView, state: TaskState, data: bytes, spec: TaskSpec
) -> str | None:
    """The edited file's `unique:` key; refused when another unfinished task holds it
    (the edit would make the duplicate SPEC 10 keeps out of the queue)."""
    from bantzd.queue.unique import UniqueKeys, duplicate_problem, task_key

    key = task_key(data, spec.unique)
    holder = UniqueKeys(view.states.values()).holder(key, besides=state.id)
    if holder is not None:
        raise BantzError(
            f"the edited file is a {duplicate_problem(holder)}: its unique key is taken; "
            "the edit was not applied"
        )
    return key


def _changes(state: TaskState, old: TaskSpec | None, new: TaskSpec, now: float) -> dict[str, Any]:
    from bantzd.supervisor.timing import local_now, resolve_when

    changes: dict[str, Any] = {"kind": new.kind}
    if old is None or new.name != old.name:
        changes["name"] = new.name
    if old is None or new.priority != old.priority:
        changes["priority"] = new.priority
    here = local_now(now)
    if old is None or new.not_before != old.not_before:
        when = new.not_before
        changes["not_before_at"] = resolve_when(when, here).timestamp() if when else None
    if old is None or new.deadline != old.deadline:
        when = new.deadline
        changes["deadline_at"] = resolve_when(when, here).timestamp() if when else None
    return changes


def _needs_approval(home: Home, spec: TaskSpec) -> bool:
    if spec.approval:
        return True
    if spec.category is None:
        return False
    from bantzd.config import load_config

    try:
        return spec.category in load_config(home.config).approval_categories
    except BantzError:
        return False  # a broken config.toml is reported by every command that reads it


# parallel ----------------------------------------------------------------------------------


def set_parallel(home: Home, live: Live, params: dict[str, Any], now: float) -> str:
    """`bantzd parallel N` / `--reset`: persist the override and tell the supervisor."""
    configured = overrides.parallel_status(home)["config"]
    said = f"config.toml says {configured}" if configured is not None else "config.toml is broken"
    if params.get("reset"):
        had = overrides.clear_parallel(home)
        if live.parallel is not None:
            live.parallel(None)
        if not had:
            return f"max_parallel was not overridden; {said}"
        return f"max_parallel back to config.toml's value ({configured})"
    try:
        value = overrides.check_parallel(params.get("max_parallel"))
    except ValueError as e:
        raise BantzError(str(e)) from None
    overrides.write_parallel(home, value, now)
    if live.parallel is not None:
        live.parallel(value)
    return f"max_parallel {value} (set by bantzd parallel; {said})"
