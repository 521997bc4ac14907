"""The `bantzd` command line (SPEC section 7).

Each sub-module registers its commands on `main`; this module only holds the group, the
`--home` option and the mapping from bantzd errors to exit codes (0 ok, 1 failure,
2 bad usage, 3 no such task).
"""

from __future__ import annotations

import sys

import click

from bantzd.errors import BantzError
from bantzd.paths import Home


class BantzGroup(click.Group):
    """Turns `BantzError` into a one-line message and its exit code instead of a traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BantzError as e:
            click.echo(f"bantzd: {e}", err=True)
            sys.exit(e.exit_code)


@click.group(cls=BantzGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False),
    default=None,
    help="The bantzd home (default: $BANTZ_HOME, else $XDG_DATA_HOME/bantzd).",
)
@click.version_option(package_name="bantzd")
@click.pass_context
def main(ctx: click.Context, home: str | None) -> None:
    """bantzd: run your jobs overnight, durably, and tell you about it in the morning."""
    ctx.obj = Home.resolve(home)


def get_home(ctx: click.Context) -> Home:
    home: Home = ctx.find_root().obj
    return home


# Register the commands (imports for their side effect on `main`).
from bantzd.cli import control, daemon, intask, limits, setup, tasks, view  # noqa: E402,F401
