"""`bantzd doctor`: check everything the night needs, and say what to fix (issue 13).

A night fails at 23:00 for reasons that are visible at 15:00: a typo in config.toml, a
crontab line naming a bantzd that a reinstall moved, a spool others can write to, an LLM
server that is not up, a full disk. Each check gives ok, warning (worth knowing, the night
still runs) or problem (it would not), with the fix; the exit status is 1 when any problem.

`--cron` prints only the crontab line (schedule.crontab_line), for
`(crontab -l 2>/dev/null; bantzd doctor --cron) | crontab -`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from bantzd.cli import config_problem, get_home, main
from bantzd.cli import schedule as sched
from bantzd.errors import EXIT_FAILURE, EXIT_OK, BantzError
from bantzd.paths import Home
from bantzd.units import format_size

OK, WARNING, PROBLEM, SKIPPED = "ok", "warning", "problem", "skipped"
# Free space in the home below which the night is at risk (outputs, checkpoints, state)...
DISK_WARNING = 2 << 30
# ...and below which state files may not be written at all.
DISK_PROBLEM = 100 << 20
LLM_TIMEOUT = 3.0


@dataclass(frozen=True)
class Check:
    """One line of the doctor's answer: what was checked, how it went, and what to do."""

    name: str
    status: str  # OK, WARNING or PROBLEM
    message: str
    fix: str | None = None


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.option(
    "--cron",
    "cron_line",
    is_flag=True,
    help="Only print the crontab line for the night (absolute path of this bantzd).",
)
@click.pass_context
def doctor(ctx: click.Context, as_json: bool, cron_line: bool) -> None:
    """Check what the night needs (config, home, spool, cron/systemd entry, LLM, disk,
    supervisor) and say what to fix; exit 1 when something would stop it."""
    home = get_home(ctx)
    if cron_line:
        click.echo(sched.crontab_line(home))
        return
    checks = run_checks(home)
    problems = [c for c in checks if c.status == PROBLEM]
    if as_json:
        out = {"ok": not problems, "checks": [asdict(c) for c in checks]}
        click.echo(json.dumps(out, indent=2))
    else:
        click.echo("\n".join(check_lines(checks)))
    sys.exit(EXIT_FAILURE if problems else EXIT_OK)


def check_lines(checks: list[Check]) -> list[str]:
    """The human form: `NAME  STATUS  message`, the fix indented below, then a verdict."""
    lines = []
    for c in checks:
        lines.append(f"{c.name:<10} {c.status:<8} {c.message}")
        if c.fix:
            lines.extend(f"{'':<19} {part}" for part in f"fix: {c.fix}".splitlines())
    problems = sum(c.status == PROBLEM for c in checks)
    if problems:
        lines.append(f"{problems} problem(s): the night will not go as planned until fixed")
    else:
        lines.append("all ok: the night can run")
    return lines


def run_checks(home: Home) -> list[Check]:
    """Every check, in the order a person would fix things."""
    checks = [check_config(home), *check_home(home), check_spool(home)]
    checks.append(check_schedule(home))
    llm = check_llm(home)
    if llm is not None:
        checks.append(llm)
    checks.append(check_disk(home))
    checks.append(check_supervisor(home))
    return checks


def check_config(home: Home) -> Check:
    problem = config_problem(home)
    if problem is not None:
        return Check(
            "config",
            PROBLEM,
            problem,
            f"edit {home.config} (bantzd run refuses to start until it is valid)",
        )
    if not home.config.exists():
        return Check("config", OK, f"no {home.config}: every setting at its default")
    return Check("config", OK, f"{home.config} is valid")


def check_home(home: Home) -> list[Check]:
    if not home.root.is_dir():
        return [Check("home", PROBLEM, f"no home folder at {home.root}", "bantzd init")]
    from bantzd.cli.view import home_warnings

    warnings = home_warnings(home)
    if not warnings:
        return [Check("home", OK, f"{home.root} is yours and private")]
    return [Check("home", PROBLEM, w) for w in warnings]


def check_spool(home: Home) -> Check:
    """The spool exists, is a folder only you can write, and takes a file now."""
    from bantzd.supervisor.intake import check_spool_permissions

    spool = home.spool
    if not spool.is_dir():
        return Check("spool", PROBLEM, f"no spool folder at {spool}", "bantzd init")
    try:
        check_spool_permissions(spool)
    except BantzError as e:
        return Check("spool", PROBLEM, str(e))
    probe = spool / f".doctor-{os.getpid()}.tmp"  # a dot name: intake never takes it
    try:
        with open(probe, "xb") as f:
            f.write(b"bantzd doctor\n")
    except OSError as e:
        return Check(
            "spool", PROBLEM, f"cannot write into {spool}: {e.strerror or e}", f"check {spool}"
        )
    finally:
        probe.unlink(missing_ok=True)
    return Check("spool", OK, f"{spool} is writable by you alone")


def check_schedule(home: Home) -> Check:
    """A crontab line or systemd unit starts a supervisor on this home, with a bantzd that
    exists; or a supervisor runs already (`bantzd start`)."""
    line = sched.crontab_line(home)
    add = (
        f"add this line with `crontab -e`:\n  {line}\n"
        f"or at once: (crontab -l 2>/dev/null; {sched.command_line(home, 'doctor', '--cron')})"
        " | crontab -"
    )
    crontab, why_not = sched.read_crontab()
    entries = sched.cron_entries(crontab) if crontab else []
    entries += sched.systemd_entries()
    ours = [e for e in entries if e.runs_night and e.home == Path(home.root)]
    others = [e for e in entries if e.runs_night and e.home != Path(home.root)]
    if not ours:
        from bantzd.supervisor.lock import supervisor_info

        info = supervisor_info(home) if home.root.is_dir() else None
        if info is not None:
            return Check(
                "schedule",
                OK,
                f"no cron or systemd entry, but a supervisor runs (pid {info['pid']})",
            )
        seen = f" ({why_not})" if why_not else ""
        elsewhere = ""
        if others:
            names = "; ".join(f"{e.where} is for {e.home}" for e in others)
            elsewhere = f"; {names}"
        return Check(
            "schedule",
            PROBLEM,
            f"nothing starts the night for {home.root}: no crontab line or systemd unit runs "
            f"bantzd on it{seen}{elsewhere}",
            add,
        )
    problems = [p for p in map(sched.entry_problem, ours) if p]
    if problems:
        return Check("schedule", PROBLEM, "; ".join(problems), f"replace it; {add}")
    notes = [f"{e.where}: {n}" for e in ours for n in e.notes]
    mine = sched.bantzd_argv()[0]
    differ = [e for e in ours if not sched.same_program(e)]
    if differ:
        notes += [f"{e.where} runs {e.program}, not this bantzd ({mine})" for e in differ]
    first = ours[0]
    text = f"{first.where} runs {first.program} on this home"
    if len(ours) > 1:
        text += f" (and {len(ours) - 1} more entry: one supervisor per home runs, others exit)"
    if notes or not all(e.enabled for e in ours):
        return Check("schedule", WARNING, f"{text}; " + "; ".join(notes))
    return Check("schedule", OK, text)


def check_llm(home: Home) -> Check | None:
    """Does the [llm] server answer GET /models? Asked when config.toml points [llm] at a
    server of its own or a task waiting in the queue or spool is an `llm:` task; the file
    `init` writes names the default server, which a person without LLM tasks never runs."""
    from bantzd.cli.setup import _list_models
    from bantzd.config import DEFAULTS, load_config

    try:
        data = tomllib.loads(home.config.read_text(encoding="utf-8"))
        llm = load_config(home.config).llm
    except FileNotFoundError:
        data = {}
        llm = None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, BantzError):
        return None  # a broken config: the config check says so
    table = data.get("llm") if isinstance(data.get("llm"), dict) else {}
    own = table.get("base_url", DEFAULTS["llm"]["base_url"]) != DEFAULTS["llm"]["base_url"]
    waiting = _waiting_llm_tasks(home)
    if llm is None or not (own or waiting):
        return Check("llm", SKIPPED, "not checked: no [llm] server set and no llm: task waits")
    base = llm.base_url.rstrip("/")
    key = os.environ.get(llm.api_key_env or "", "")
    listed, error = _list_models(base, key, timeout=LLM_TIMEOUT)
    if error is not None:
        users = f" ({waiting} waiting)" if waiting else ""
        return Check(
            "llm",
            PROBLEM,
            f"no answer from {base}/models ({error}); llm: tasks would fail{users}",
            "start the server, or correct [llm] base_url in config.toml",
        )
    models = [llm.model, *llm.fallback_models]
    if listed and not set(models) & set(listed):
        return Check(
            "llm",
            WARNING,
            f"{base} answers, but lists none of {', '.join(models)} (it has "
            f"{', '.join(listed[:5])})",
            "set [llm] model to one it lists",
        )
    return Check("llm", OK, f"{base} answers (model {llm.model})")


def _waiting_llm_tasks(home: Home) -> int:
    """How many task files not yet run (queued, held, or still in the spool) are `llm:` tasks."""
    import re

    from bantzd.queue.store import scan_states

    llm_key = re.compile(rb"^llm\s*:", re.M)
    files = [home.task_dir(s.id) / "task.yaml" for s in scan_states(home) if s.status in _WAITING]
    files += [p for p in home.spool.glob("*.y*ml") if p.is_file()] if home.spool.is_dir() else []
    count = 0
    for path in files:
        try:
            count += bool(llm_key.search(path.read_bytes()[: 1 << 20]))
        except OSError:
            continue
    return count


_WAITING = ("queued", "held", "waiting_human")


def check_disk(home: Home) -> Check:
    folder = Path(home.root)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError as e:
        return Check("disk", PROBLEM, f"cannot measure free space at {folder}: {e}")
    text = f"{format_size(free)} free at {folder}"
    if free < DISK_PROBLEM:
        return Check("disk", PROBLEM, text, "free some space: state files cannot be written")
    if free < DISK_WARNING:
        return Check(
            "disk", WARNING, f"{text}; outputs and checkpoints may fill it", "free some space"
        )
    return Check("disk", OK, text)


def check_supervisor(home: Home) -> Check:
    """Who holds the home's lock now, and whether bantzd.pid tells the truth."""
    if not home.root.is_dir():
        return Check("supervisor", OK, "none runs (no home yet)")
    from bantzd.supervisor.lock import holder_pid, supervisor_info

    info = supervisor_info(home)
    if info is not None:
        return Check("supervisor", OK, f"one runs on this home (pid {info['pid']})")
    text = "none runs now"
    if home.pidfile.exists():
        stale = _read_pid(home.pidfile) or holder_pid(home)
        text += f"; bantzd.pid (pid {stale}) is left from one that ended, which is harmless"
    return Check("supervisor", OK, text)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
