"""Rate limits from the shell: `bantzd take NAME [N]`, `bantzd backoff NAME SECONDS`.

For shell tasks that call a rate-limited API (SPEC section 7, `[limits.NAME]`): `bantzd take
llm && curl ...` waits for a unit first; after a 429, `bantzd backoff llm 60` holds the limit
for every task. Inside a task the units count for that task (BANTZ_TASK_ID); outside one,
`take` still waits for and counts units but holds no `concurrent` unit.
"""

from __future__ import annotations

import os

import click

from bantzd.cli import get_home, main
from bantzd.errors import UsageError
from bantzd.units import parse_duration


def _task_id() -> int | None:
    value = os.environ.get("BANTZ_TASK_ID", "")
    return int(value) if value.isdigit() else None


@main.command()
@click.argument("name")
@click.argument("n", type=click.IntRange(min=1), default=1)
@click.option(
    "--timeout",
    default=None,
    metavar="DURATION",
    help="Give up (exit 1) after this long, e.g. 30s or 5m; default: wait as long as it takes.",
)
@click.pass_context
def take(ctx: click.Context, name: str, n: int, timeout: str | None) -> None:
    """Take N units (default 1) of rate limit NAME, waiting until they are free."""
    from bantzd.ratelimit import open_limits

    seconds = _duration(timeout, "--timeout") if timeout is not None else None
    open_limits(get_home(ctx).root).acquire(name, n, _task_id(), timeout=seconds)


@main.command()
@click.argument("name")
@click.argument("seconds")
@click.pass_context
def backoff(ctx: click.Context, name: str, seconds: str) -> None:
    """Give no unit of rate limit NAME to any task for SECONDS (e.g. 60, 90s, 5m)."""
    from bantzd.ratelimit import open_limits

    open_limits(get_home(ctx).root).backoff(name, _duration(seconds, "SECONDS"))


def _duration(text: str, what: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
