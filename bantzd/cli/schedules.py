"""`bantzd schedules [--json]` and `bantzd schedule pause|resume|remove|fire NAME` (SPEC 9).

`schedules` reads `schedules/` and the instances' state.json (safe at any time: every write
is an atomic replace). The `schedule` commands change a schedule through a control request,
applied by the running supervisor or, when none runs, by the command itself
(supervisor/control.py), like every command that changes a task.
"""

from __future__ import annotations

import json
import time
from typing import Any

import click

from bantzd.cli import get_home, main
from bantzd.paths import Home


def schedule_objects(home: Home) -> list[dict[str, Any]]:
    """Every schedule as `schedules --json` shows it (the README documents the shape)."""
    from bantzd.queue import schedules as disk
    from bantzd.queue.schedulefile import ScheduleSpec, describe, parse_spool_file
    from bantzd.queue.store import read_state
    from bantzd.queue.taskfile import TaskFileError
    from bantzd.supervisor.firing import zone_of

    out = []
    for name in disk.schedule_names(home):
        data = disk.read_schedule_yaml(home, name) or b""
        state = disk.read_schedule_state(home, name) or disk.ScheduleState(name)
        obj: dict[str, Any] = {"name": name, "error": None, "rule": None, "words": None}
        try:
            spec = parse_spool_file(data, default_name=name, check_ends=False)
        except TaskFileError as e:
            spec, obj["error"] = None, f"schedule.yaml can no longer be read: {e}"
        if isinstance(spec, ScheduleSpec):
            obj["rule"] = spec.rule.to_dict()
            obj["words"] = describe(spec.rule)
            obj["tz"] = str(getattr(zone_of(spec.rule), "key", None) or zone_of(spec.rule))
        else:
            obj["tz"] = None
        last = None
        if state.last_task is not None:
            task = read_state(home.task_dir(state.last_task))
            last = {
                "id": state.last_task,
                "name": task.name if task else None,
                "status": str(task.status) if task else None,
            }
        obj.update(
            next_fire=state.next_fire,
            next_slot=state.next_slot,
            paused=state.paused,
            last_fired=state.last_fired,
            last_task=last,
            instances=list(state.instances),
            skipped=list(state.skipped),
            missed=list(state.missed),
        )
        out.append(obj)
    return out


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON array (see the README).")
@click.pass_context
def schedules(ctx: click.Context, as_json: bool) -> None:
    """List the schedules: the rule in words, zone, next firing, last instance."""
    objs = schedule_objects(get_home(ctx))
    if as_json:
        click.echo(json.dumps(objs, indent=2))
        return
    if not objs:
        click.echo("no schedules (a task file with `schedule:` makes one; see the README)")
        return
    for obj in objs:
        click.echo("\n".join(_lines(obj)))


def _lines(obj: dict[str, Any]) -> list[str]:
    head = click.style(obj["name"], bold=True)
    if obj["paused"]:
        head += "  " + click.style("paused", fg="yellow")
    lines = [head]
    if obj["error"]:
        return [*lines, f"  {obj['error']}"]
    nxt = (obj["next_fire"] or "none (it has ended)").replace("T", " ")
    lines.append(f"  rule:      {obj['words']} ({obj['tz']})")
    lines.append(f"  next:      {nxt}{' (paused)' if obj['paused'] else ''}")
    last = obj["last_task"]
    if last is not None:
        lines.append(
            f"  last:      #{last['id']} {last['name'] or '(gone)'}  {last['status'] or ''}"
        )
    else:
        lines.append("  last:      none yet")
    if obj["skipped"]:
        s = obj["skipped"][-1]
        lines.append(f"  skipped:   {len(obj['skipped'])}, last {s['firing']}: {s['because']}")
    return lines


@main.group()
def schedule() -> None:
    """Pause, resume, remove or fire a schedule now."""


def send_request(home: Home, op: str, name: str) -> dict[str, Any]:
    """Send `bantzd schedule OP NAME`'s control request and return its reply `{ok, exit,
    message}`; the dashboard's buttons send it through here too. A `fire` carries the
    sender's time, which names the firing (supervisor/schedctl.py)."""
    from bantzd.supervisor import control

    params: dict[str, Any] = {"at": time.time()} if op == "fire" else {}
    return control.send(home, "schedule", None, op=op, name=name, **params)


def _send(ctx: click.Context, op: str, name: str) -> None:
    from bantzd.cli.control import exit_with_reply

    exit_with_reply(send_request(get_home(ctx), op, name))


@schedule.command("pause")
@click.argument("name")
@click.pass_context
def pause(ctx: click.Context, name: str) -> None:
    """Stop NAME from firing (its tasks made so far go on)."""
    _send(ctx, "pause", name)


@schedule.command("resume")
@click.argument("name")
@click.pass_context
def resume(ctx: click.Context, name: str) -> None:
    """Let NAME fire again, from its next firing (those passed while paused are not made)."""
    _send(ctx, "resume", name)


@schedule.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Remove NAME; the tasks it made stay."""
    _send(ctx, "remove", name)


@schedule.command("fire")
@click.argument("name")
@click.pass_context
def fire(ctx: click.Context, name: str) -> None:
    """Make NAME's task now (named for this minute); its next firing stays as it was."""
    _send(ctx, "fire", name)
