"""Commands that change tasks: cancel, retry, pause, resume, approve, reject, answer, and
the pueue-like rerun, priority and parallel.

They work with or without a running supervisor (see supervisor/control.py) and exit with
the reply's code: 0 done, 1 refused (e.g. cancelling a finished task), 3 no such task.
"""

from __future__ import annotations

import sys

import click

from bantzd.cli import get_home, main
from bantzd.queue.lookup import resolve
from bantzd.supervisor import control


def _send(ctx: click.Context, action: str, ref: str | None, **params: object) -> None:
    home = get_home(ctx)
    task_id = resolve(home, ref).id if ref is not None else None
    exit_with_reply(control.send(home, action, task_id, **params))


def exit_with_reply(reply: dict[str, object]) -> None:
    """Say the lock holder's reply (stdout when done, stderr when refused) and exit with
    its code: every control command ends the same way."""
    message = reply.get("message", "")
    if reply.get("ok"):
        click.echo(message)
    else:
        click.echo(f"bantzd: {message}", err=True)
    sys.exit(int(reply.get("exit", 0 if reply.get("ok") else 1)))  # type: ignore[call-overload]


@main.command()
@click.argument("task")
@click.pass_context
def cancel(ctx: click.Context, task: str) -> None:
    """Cancel TASK (a running one is stopped first)."""
    _send(ctx, "cancel", task)


@main.command()
@click.argument("task")
@click.pass_context
def retry(ctx: click.Context, task: str) -> None:
    """Queue a failed or cancelled TASK again, with a fresh retry budget."""
    _send(ctx, "retry", task)


@main.command()
@click.argument("task", required=False)
@click.pass_context
def pause(ctx: click.Context, task: str | None) -> None:
    """Pause TASK (a running one is stopped with SIGSTOP); with no TASK, stop all new starts."""
    _send(ctx, "pause", task)


@main.command()
@click.argument("task", required=False)
@click.pass_context
def resume(ctx: click.Context, task: str | None) -> None:
    """Resume TASK; with no TASK, allow new starts again."""
    _send(ctx, "resume", task)


@main.command()
@click.argument("task")
@click.pass_context
def approve(ctx: click.Context, task: str) -> None:
    """Queue a TASK held for approval."""
    _send(ctx, "approve", task)


@main.command()
@click.argument("task")
@click.option("--reason", default=None, help="Why, for the journal and the report.")
@click.pass_context
def reject(ctx: click.Context, task: str, reason: str | None) -> None:
    """Cancel a TASK held for approval."""
    _send(ctx, "reject", task, reason=reason)


@main.command()
@click.argument("task")
@click.argument("text")
@click.option("--key", default=None, help="Which question (default: the one asked).")
@click.pass_context
def answer(ctx: click.Context, task: str, text: str, key: str | None) -> None:
    """Answer the question TASK asked; it is queued to resume with the answer."""
    _send(ctx, "answer", task, text=text, key=key)


@main.command()
@click.option(
    "--older-than",
    default="7d",
    show_default=True,
    help="Only tasks finished longer ago than this duration.",
)
@click.pass_context
def clean(ctx: click.Context, older_than: str) -> None:
    """Remove the folders of finished tasks (done, failed, cancelled). Ids are never reused."""
    from bantzd.units import parse_duration

    try:
        seconds = parse_duration(older_than)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from e
    _send(ctx, "clean", None, older_than=seconds)


# pueue / task-spooler parity ---------------------------------------------------------------


@main.command()
@click.argument("task")
@click.pass_context
def rerun(ctx: click.Context, task: str) -> None:
    """Run a finished TASK again from the start (pueue's `restart`).

    The same task, a new attempt: its id, attempt count, attempt log and history are kept;
    its checkpoint is cleared so it does not resume at its end. To resume a failed task
    from its checkpoint instead, use `bantzd retry`.
    """
    _send(ctx, "rerun", task)


@main.command()
@click.argument("task")
@click.argument("value", metavar="PRIORITY")
@click.pass_context
def priority(ctx: click.Context, task: str, value: str) -> None:
    """Set the PRIORITY of a queued or held TASK: high, normal, low or a whole number
    (higher starts first), as in task files."""
    from bantzd.supervisor.taskedits import parse_priority

    try:
        number = parse_priority(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="PRIORITY") from e
    _send(ctx, "priority", task, priority=number)


@main.command()
@click.argument("value", metavar="N", type=int, required=False)
@click.option("--reset", is_flag=True, help="Go back to config.toml's max_parallel.")
@click.pass_context
def parallel(ctx: click.Context, value: int | None, reset: bool) -> None:
    """Set how many tasks run at once (max_parallel), now and after restarts; with no N,
    print it. The running supervisor uses it at its next start of a task; config.toml is
    left as it is (the value lives in parallel.json in the home)."""
    from bantzd.supervisor.overrides import check_parallel, parallel_status, parallel_text

    home = get_home(ctx)
    if value is not None and reset:
        raise click.UsageError("give N or --reset, not both")
    if value is None and not reset:
        click.echo(f"max_parallel {parallel_text(parallel_status(home))}")
        return
    if value is not None:
        try:
            check_parallel(value)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="N") from e
        _send(ctx, "parallel", None, max_parallel=value)
    else:
        _send(ctx, "parallel", None, reset=True)
