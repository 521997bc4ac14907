"""Commands around the queue rather than in it: init, demo and report (SPEC sections 1, 6, 7).

Heavier modules (config, the supervisor loop) are imported inside the commands, so
`bantzd status` and friends do not pay for them at start-up.
"""

from __future__ import annotations

import os
import sys
import tempfile
from datetime import datetime
from importlib import resources
from pathlib import Path

import click

from bantzd.cli import get_home, main
from bantzd.paths import Home


@main.command()
@click.pass_context
def init(ctx: click.Context) -> None:
    """Create the home folder and config.toml (safe to run again: nothing is overwritten)."""
    from bantzd.config import write_default_config

    home = get_home(ctx)
    existed = home.root.is_dir()
    home.ensure()
    click.echo(f"{'home folder exists' if existed else 'created home folder'}: {home.root}")
    if write_default_config(home.config):
        click.echo(f"created {home.config} with every setting at its default")
    else:
        click.echo(f"{home.config} exists; left unchanged")
    click.echo(
        f"next: put task files into {home.spool} (or `bantzd submit FILE`), then "
        "`bantzd run --until 07:00` (e.g. from cron)"
    )


def example_files() -> list[tuple[str, bytes]]:
    """The bundled example tasks (bantzd/examples/*.yaml) as (file name, content), by name."""
    folder = resources.files("bantzd").joinpath("examples")
    found = [
        (entry.name, entry.read_bytes())
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.endswith((".yaml", ".yml"))
    ]
    return sorted(found)


def copy_examples(home: Home) -> list[str]:
    """Place the examples into the spool the safe way (temp name, then rename); their names."""
    names = []
    for name, data in example_files():
        tmp = home.spool / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, home.spool / name)
        names.append(name)
    return names


@main.command()
def demo() -> None:
    """Run the bundled example tasks in a fresh temporary home and print the report."""
    from bantzd.config import write_default_config
    from bantzd.reports.morning import write_report
    from bantzd.supervisor.loop import run_supervisor

    home = Home(Path(tempfile.mkdtemp(prefix="bantzd-demo-")))
    home.ensure()
    write_default_config(home.config)
    # The demo shows the examples now: a busy machine's load must not hold them back.
    text = home.config.read_text().replace("max_load = 1.5", "max_load = 1000.0", 1)
    home.config.write_text(text)
    names = copy_examples(home)
    click.echo(f"demo home: {home.root}")
    click.echo(f"running {len(names)} example tasks: {', '.join(names)}")
    code = run_supervisor(home, once=True)
    path = write_report(home)
    click.echo(f"report: {path}\n")
    click.echo(path.read_text(), nl=False)
    click.echo(
        f"\nlook around: bantzd --home {home.root} list  (remove it with: rm -r {home.root})"
    )
    sys.exit(code)


@main.command()
@click.option(
    "--date",
    "day",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Date the report is named after (default: today).",
)
@click.option("--stdout", "to_stdout", is_flag=True, help="Print the report; write nothing.")
@click.option(
    "--notify",
    "send",
    is_flag=True,
    help="Also send the `report` notification ([notify] in config.toml).",
)
@click.pass_context
def report(ctx: click.Context, day: datetime | None, to_stdout: bool, send: bool) -> None:
    """Write the morning report for everything since the previous one (reports/DATE.md)."""
    from bantzd.reports.morning import publish_report, report_text, write_report

    home = get_home(ctx)
    date = day.date() if day else None
    if to_stdout:
        click.echo(report_text(home, date=date), nl=False)
    elif send:
        click.echo(str(publish_report(home, date=date)))
    else:
        click.echo(str(write_report(home, date=date)))
