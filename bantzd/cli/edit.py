"""`bantzd edit TASK`: change a queued or held task's file in $EDITOR, validated first.

The editor works on a private temporary copy, never on tasks/<id>/task.yaml itself: a
half-saved or invalid file is never what the supervisor sees. After the editor exits the
copy is checked with the parser `submit` uses (queue/taskfile.parse_task); a valid one is
sent as the `edit` control action, which the lock holder applies only while the task is
still queued or held and its task.yaml is still the file the editor opened (supervisor/
taskedits.edit). An invalid one is shown with its problems; on a terminal the person may
edit again or keep the original; otherwise `edit` exits 1 with the original kept. Whenever
an edit is not applied, the edited copy is kept and its path printed: nothing typed is lost.

The editor is $VISUAL, else $EDITOR, else vi; it may carry arguments (`code --wait`).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from bantzd.cli import get_home, main
from bantzd.errors import EXIT_FAILURE, EXIT_OK, BantzError
from bantzd.paths import TaskPaths
from bantzd.queue.lookup import resolve
from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.supervisor import control
from bantzd.supervisor.taskedits import EDITABLE, sha256


def editor_argv() -> list[str]:
    """The editor command: $VISUAL, else $EDITOR, else vi (split like a shell would)."""
    for var in ("VISUAL", "EDITOR"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                return shlex.split(value)
            except ValueError as e:
                raise BantzError(f"${var} cannot be split into a command: {e}") from None
    return ["vi"]


def run_editor(path: Path) -> None:
    argv = [*editor_argv(), str(path)]
    try:
        code = subprocess.call(argv)
    except OSError as e:
        raise BantzError(f"cannot start the editor {argv[0]!r}: {e.strerror or e}") from None
    if code != 0:
        raise BantzError(f"the editor exited with status {code}; the task was not changed")


def _interactive() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


@main.command()
@click.argument("task")
@click.pass_context
def edit(ctx: click.Context, task: str) -> None:
    """Edit a queued or held TASK's task file in $VISUAL / $EDITOR (else vi).

    The edited file is checked like `bantzd submit` checks one; it replaces the task's
    file only if valid and only while the task has not started.
    """
    home = get_home(ctx)
    state = resolve(home, task)
    if state.status not in EDITABLE:
        click.echo(
            f"bantzd: task {state.id} is {state.status}; only a queued or held task can be edited",
            err=True,
        )
        sys.exit(EXIT_FAILURE)
    original = TaskPaths(home.task_dir(state.id)).task_yaml.read_bytes()
    base = sha256(original)
    fd, name = tempfile.mkstemp(prefix=f"bantzd-task-{state.id}-", suffix=".yaml")
    copy = Path(name)
    with os.fdopen(fd, "wb") as f:  # mkstemp makes it 0600: task files carry secrets
        f.write(original)
    keep = True
    try:
        while True:
            run_editor(copy)
            data = copy.read_bytes()
            if data == original:
                click.echo(f"task {state.id}: no changes; kept as it was")
                keep = False
                sys.exit(EXIT_OK)
            try:
                parse_task(data, default_name=state.name)
            except TaskFileError as e:
                click.echo(
                    f"bantzd: the edited file is not a valid task:\n{_indent(str(e))}", err=True
                )
                if _interactive() and click.confirm("Edit it again?", default=True):
                    continue
                click.echo(
                    f"bantzd: task {state.id} kept as it was; your edited copy is {copy}",
                    err=True,
                )
                sys.exit(EXIT_FAILURE)
            break
        reply = control.send(home, "edit", state.id, text=data.decode("utf-8"), base=base)
        if reply.get("ok"):
            keep = False
            click.echo(reply.get("message", ""))
            sys.exit(int(reply.get("exit", 0)))
        click.echo(f"bantzd: {reply.get('message', '')}", err=True)
        click.echo(f"bantzd: your edited copy is {copy}", err=True)
        sys.exit(int(reply.get("exit", EXIT_FAILURE)) or EXIT_FAILURE)
    except BantzError:
        if copy.exists() and copy.read_bytes() != original:
            click.echo(f"bantzd: your edited copy is {copy}", err=True)
        else:
            keep = False
        raise
    finally:
        if not keep:
            copy.unlink(missing_ok=True)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
