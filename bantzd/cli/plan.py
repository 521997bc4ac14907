"""`bantzd plan [--until TIME] [--json] [--mermaid]`: what tonight will get done (SPEC 11).

The forecast is the supervisor's own night on a copy of the queue with a fake clock
(supervisor/forecast.py), so it needs no supervisor and changes nothing in the home.
"""

from __future__ import annotations

import json
from datetime import datetime

import click

from bantzd.cli import get_home, main
from bantzd.errors import UsageError

DEFAULT_UNTIL = "07:00"


@main.command()
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    default=DEFAULT_UNTIL,
    show_default=True,
    help="The end of the night to plan for: the next TIME local time, or an ISO date-time.",
)
@click.option("--json", "as_json", is_flag=True, help="The forecast as JSON (see the README).")
@click.option("--mermaid", is_flag=True, help="The forecast as a Mermaid gantt chart.")
@click.pass_context
def plan(ctx: click.Context, until_text: str, as_json: bool, mermaid: bool) -> None:
    """Forecast tonight: each task's expected start and end, and what will not fit."""
    from bantzd.config import load_config
    from bantzd.supervisor.forecast import forecast, quiet_config
    from bantzd.supervisor.probes import read_machine
    from bantzd.supervisor.timing import local_now, resolve_until

    if as_json and mermaid:
        raise UsageError("--json and --mermaid cannot be used together")
    home = get_home(ctx)
    now = local_now()
    try:
        until = resolve_until(until_text, now).timestamp()
    except ValueError as e:
        raise UsageError(f"--until: {e}") from e
    config = quiet_config(load_config(home.config))
    result = forecast(home, config, now.timestamp(), until, read_machine())
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    elif mermaid:
        click.echo(mermaid_text(result))
    else:
        click.echo(table_text(result))


def _hm(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    local = datetime.fromtimestamp(ts).astimezone()
    day = datetime.fromtimestamp(now).astimezone().date()
    return local.strftime("%H:%M") if local.date() == day else local.strftime("%a %H:%M")


def table_text(result) -> str:  # type: ignore[no-untyped-def]
    """The terminal form: a table of starts and ends, then what will not fit and why."""
    from bantzd.clock import iso

    lines = [f"Plan from {iso(result.now)} until {iso(result.until)}"]
    rows = [("ID", "NAME", "START", "END", "ESTIMATE")]
    for run in sorted(result.runs, key=lambda r: (r.start, r.task_id)):
        end = _hm(run.end, result.now) + (" (stopped)" if run.stopped else "")
        rows.append(
            (
                str(run.task_id),
                result.names.get(run.task_id, "?"),
                _hm(run.start, result.now),
                end,
                result.estimates.get(run.task_id, ""),
            )
        )
    if len(rows) == 1:
        lines.append("Nothing will start.")
    else:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    if result.waiting:
        lines.append("")
        lines.append("Will not run tonight:")
        for task_id, why in sorted(result.waiting.items()):
            lines.append(f"  {task_id} {result.names.get(task_id, '?')}: {why}")
    return "\n".join(lines)


def mermaid_text(result) -> str:  # type: ignore[no-untyped-def]
    """A Mermaid gantt block of the forecast, one bar per attempt."""
    from bantzd.reports.gantt import mermaid_text as safe

    lines = [
        "```mermaid",
        "gantt",
        "    title Plan for tonight",
        "    dateFormat YYYY-MM-DDTHH:mm:ss",
        "    axisFormat %H:%M",
    ]
    for i, run in enumerate(sorted(result.runs, key=lambda r: (r.start, r.task_id))):
        start = datetime.fromtimestamp(run.start).strftime("%Y-%m-%dT%H:%M:%S")
        end = run.end if run.end is not None else result.until
        seconds = max(1, round(end - run.start))
        label = safe(f"{run.task_id} {result.names.get(run.task_id, '?')}")
        tag = "crit, " if run.stopped else ""
        lines.append(f"    {label} :{tag}p{i}, {start}, {seconds}s")
    until = datetime.fromtimestamp(result.until).strftime("%Y-%m-%dT%H:%M:%S")
    lines.append(f"    night ends :milestone, end, {until}, 0s")
    lines.append("```")
    return "\n".join(lines)
