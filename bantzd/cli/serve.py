"""`bantzd serve`: the dashboard (SPEC section 14), from the optional `web` extra."""

from __future__ import annotations

import click

from bantzd.cli import get_home, main
from bantzd.errors import BantzError

EXTRA = "pip install 'bantzd[web]'"


@main.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="TCP port (0: any free one; the printed address says which).",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback is reachable from other machines.",
)
@click.pass_context
def serve(ctx: click.Context, port: int, host: str) -> None:
    """Serve the dashboard: the night, the tasks, the reports, with the answers and
    approvals a click away. Prints the address to open, with its token (kept in
    serve.token in the home); stop with Ctrl-C."""
    try:
        from bantzd.web.server import serve as run_server
    except ImportError as e:
        missing = e.name or str(e)
        raise BantzError(f"`bantzd serve` needs the web extra: {EXTRA} (missing: {missing})") from e
    run_server(get_home(ctx), host, port, lambda line: click.echo(line))
