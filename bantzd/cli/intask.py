"""Commands for use inside a task: checkpoint, progress, ask, answer-of (SPEC section 5)."""

from __future__ import annotations

import json
import sys

import click

from bantzd.cli import main
from bantzd.errors import UsageError
from bantzd.workers.taskapi import NotInTask, context


def _ctx():  # type: ignore[no-untyped-def]
    try:
        return context()
    except NotInTask as e:
        raise UsageError(str(e)) from e


@main.group()
def checkpoint() -> None:
    """Save or show the task's checkpoint (inside a task)."""


@checkpoint.command("save")
@click.argument("state")
def checkpoint_save(state: str) -> None:
    """Replace the checkpoint with STATE (JSON; `-` reads it from stdin)."""
    text = sys.stdin.read() if state == "-" else state
    try:
        value = json.loads(text)
    except ValueError as e:
        raise UsageError(f"the checkpoint is not JSON: {e}") from e
    _ctx().save(value)


@checkpoint.command("show")
def checkpoint_show() -> None:
    """Print the last checkpoint (`null` when none was saved)."""
    click.echo(json.dumps(_ctx().checkpoint))


@main.command()
@click.argument("percent", type=click.FloatRange(0, 100))
@click.argument("message", required=False)
def progress(percent: float, message: str | None) -> None:
    """Report progress: PERCENT (0-100) and an optional MESSAGE."""
    _ctx().progress(percent / 100.0, message)


@main.command()
@click.argument("key")
@click.argument("question")
@click.option("--choice", "choices", multiple=True, help="An allowed answer (repeatable).")
def ask(key: str, question: str, choices: tuple[str, ...]) -> None:
    """Ask a person QUESTION (saved as KEY) and stop the task until it is answered."""
    ctx = _ctx()
    existing = ctx.answer(key)
    if existing is not None:
        click.echo(existing)
        return
    ctx.ask(key, question, list(choices) or None)


@main.command("answer-of")
@click.argument("key")
def answer_of(key: str) -> None:
    """Print the answer to question KEY; exit 1 when it has none yet."""
    value = _ctx().answer(key)
    if value is None:
        sys.exit(1)
    click.echo(value)
