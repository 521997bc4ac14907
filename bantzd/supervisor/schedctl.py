"""`bantzd schedule pause|resume|remove|fire NAME`, applied by the lock holder.

The `schedule` control request (supervisor/control.py) carries `op`, `name` and, for
`fire`, `at`: the command's own time, which names the firing, so that a request applied
again after a crash (between its effect and its reply) finds the task it made instead of
making a second one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bantzd.errors import EXIT_FAILURE, EXIT_NO_TASK, BantzError
from bantzd.queue.schedulefile import describe
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskSpec
from bantzd.supervisor.schedules import Maker

if TYPE_CHECKING:
    from bantzd.supervisor.control import ControlHandler

OPS = ("pause", "resume", "remove", "fire")


def _reply(ok: bool, message: str, code: int = 0, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "exit": code if not ok else 0, "message": message, **extra}


def apply(handler: ControlHandler, params: dict[str, Any], request_id: str | None) -> dict:
    """Apply one `schedule` request; the reply `{ok, exit, message}` (+ `id`, `name` for
    a firing)."""
    op, name = params.get("op"), params.get("name")
    if op not in OPS:
        return _reply(False, f"malformed request: op {op!r} (one of {', '.join(OPS)})", 1)
    if not isinstance(name, str) or not name:
        return _reply(False, f"malformed request: name {name!r}", EXIT_FAILURE)
    schedules = handler.loaded_schedules()
    try:
        if op in ("pause", "resume"):
            return _reply(True, schedules.pause(name, op == "pause"))
        if op == "remove":
            return _reply(True, schedules.remove(name))
        at = params.get("at")
        if isinstance(at, bool) or not isinstance(at, int | float):
            at = handler.view.store.clock.time()
        maker = _maker(handler)
        if isinstance(maker, dict):
            return maker
        made = schedules.fire_now(name, float(at), maker)
    except KeyError as e:
        return _reply(False, str(e.args[0]), EXIT_NO_TASK)
    except BantzError as e:
        return _reply(False, str(e), e.exit_code)
    task = made.state
    if made.spec is None:
        message = f"schedule {name}: this firing is task {task.id} ({task.name}), made before"
    else:
        message = f"schedule {name} fired: task {task.id} ({task.name})"
    return _reply(True, message, id=task.id, name=task.name, status=str(task.status))


def _maker(handler: ControlHandler) -> Maker | dict[str, Any]:
    """How a firing's task is made here: into the supervisor's table, or (offline) into
    the view's states, waiting for a supervisor."""
    from bantzd.supervisor.control import NO_SUPERVISOR

    categories = handler.approval_categories
    if categories is None:
        from bantzd.config import load_config

        try:
            categories = load_config(handler.home.config).approval_categories
        except BantzError as e:
            return _reply(False, f"not fired while config.toml is broken: {e}", EXIT_FAILURE)
    view = handler.view

    def add_offline(state: TaskState, spec: TaskSpec) -> None:
        view.states[state.id] = state

    online = handler.on_taken is not None
    return Maker(
        store=view.store,
        states=view.states,
        approval_categories=categories,
        add=handler.on_taken if handler.on_taken is not None else add_offline,
        queued_reason=None if online else NO_SUPERVISOR,
    )


def taken_reply(handler: ControlHandler, file: str, name: str) -> dict[str, Any]:
    """The reply to a `take` of a schedule file (`bantzd submit weekly.yaml`)."""
    entry = handler.loaded_schedules().entries[name]
    next_fire = entry.state.next_fire
    when = next_fire.replace("T", " ") if next_fire else "none (it has ended)"
    message = f"{file}: schedule {name}, {describe(entry.spec.rule)}; next firing {when}"
    return _reply(True, message, schedule=name, next_fire=next_fire)
