"""The `bantzd` command line (SPEC section 7).

Each sub-module registers its commands on `main`; this module only holds the group, the
`--home` option, the mapping from bantzd errors to exit codes (0 ok, 1 failure,
2 bad usage, 3 no such task), and the one config.toml check every home-reading command gets.
"""

from __future__ import annotations

import importlib
import sys

import click

from bantzd.errors import BantzError
from bantzd.paths import Home, make_private

# Which module defines each command. Modules are imported when their command is used, so a
# command run many times inside a task (`bantzd progress`, `checkpoint save`) does not pay
# for the imports of the supervisor, the report and the terminal tables.
COMMAND_MODULES = {
    "control": (
        "answer",
        "approve",
        "cancel",
        "clean",
        "parallel",
        "pause",
        "priority",
        "reject",
        "rerun",
        "resume",
        "retry",
    ),
    "edit": ("edit",),
    "daemon": ("restart", "start", "stop"),
    "doctor": ("doctor",),
    "intask": ("answer-of", "ask", "checkpoint", "progress"),
    "limits": ("backoff", "take"),
    "plan": ("plan",),
    "schedules": ("schedule", "schedules"),
    "serve": ("serve",),
    "setup": ("demo", "init", "report"),
    "tasks": ("add", "run", "submit", "validate"),
    "tonight": ("tonight",),
    "view": ("list", "logs", "show", "status"),
    "wait": ("wait",),
}
_MODULE_OF = {cmd: module for module, cmds in COMMAND_MODULES.items() for cmd in cmds}
# Commands that do not get the config.toml check before they run: those used inside a task,
# many times per task (they stay cheap and quiet), and those that check it themselves (`run`
# and `start` refuse a broken one, `init` and `doctor` report it, `demo` uses its own home).
NO_CONFIG_CHECK = frozenset((*COMMAND_MODULES["intask"], *COMMAND_MODULES["limits"])) | {
    "run",
    "start",
    "restart",
    "init",
    "doctor",
    "demo",
    "status",  # says it among its warnings (and in `status --json`), once
}


class BantzGroup(click.Group):
    """Loads command modules on demand, and turns `BantzError` into a one-line message and
    its exit code instead of a traceback."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _MODULE_OF:
            importlib.import_module(f"bantzd.cli.{_MODULE_OF[cmd_name]}")
        return self.commands.get(cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        load_all_commands()
        return sorted(self.commands)

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
    # Whatever bantzd creates is the user's alone (task files carry secrets); tasks get the
    # user's own umask back when they are spawned (paths.user_umask).
    make_private()
    ctx.obj = Home.resolve(home)
    if ctx.invoked_subcommand not in NO_CONFIG_CHECK and not ctx.resilient_parsing:
        warn_about_config(ctx.obj)


def get_home(ctx: click.Context) -> Home:
    home: Home = ctx.find_root().obj
    return home


def load_all_commands() -> None:
    """Import every command module (for `--help` and for tests that look at them all)."""
    for module in COMMAND_MODULES:
        importlib.import_module(f"bantzd.cli.{module}")


def config_problem(home: Home) -> str | None:
    """What is wrong with the home's config.toml, in the words `bantzd run` refuses to start
    with (each line names the file and the line); None when it is valid or absent."""
    if not home.config.exists():
        return None  # every default; and `list` need not import the config module
    from bantzd.config import load_config

    try:
        load_config(home.config)
    except BantzError as e:
        return str(e)
    return None


def warn_about_config(home: Home) -> None:
    """Say on stderr what the next night would die of, and carry on: a typo in config.toml
    must not stop a person from seeing the queue or submitting work (SPEC 7)."""
    problem = config_problem(home)
    if problem is not None:
        click.echo(f"bantzd: {problem}", err=True)
        click.echo(
            "bantzd: the next 'bantzd run' will refuse to start until this is fixed "
            "(`bantzd doctor` checks it)",
            err=True,
        )
