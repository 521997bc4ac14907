"""Commands that feed and run the queue: run, submit, validate, add."""

from __future__ import annotations

import errno
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bantzd.cli import get_home, main
from bantzd.cli.addargs import (
    AddCommand,
    after_dashdash,
    default_name,
    is_shell_line,
    misplaced_hint,
    misplaced_option,
)
from bantzd.errors import EXIT_FAILURE, BantzError, UsageError
from bantzd.paths import Home
from bantzd.queue.atomic import create_private, fsync_dir, temp_path

if TYPE_CHECKING:
    from bantzd.cli.taking import Placed


@main.command()
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    help="Stop starting tasks then, checkpoint running ones, write the report: "
    "HH:MM (the next one) or an ISO date-time.",
)
@click.option(
    "--once", is_flag=True, help="Exit when nothing runs and nothing queued can start by itself."
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Log to stderr too, and print a line per task start and end even when stdout "
    "is not a terminal (under cron).",
)
@click.option(
    "-q", "--quiet", is_flag=True, help="No line per task start and end, even on a terminal."
)
@click.pass_context
def run(ctx: click.Context, until_text: str | None, once: bool, verbose: bool, quiet: bool) -> None:
    """Run the supervisor in the foreground.

    On a terminal it prints a line per task start and end; under cron it is quiet unless
    asked (-v). A first Ctrl-C says what it does and stops; a second one kills the tasks.
    """
    from bantzd.supervisor.loop import run_supervisor
    from bantzd.supervisor.narrate import is_terminal
    from bantzd.supervisor.timing import local_now, resolve_until

    if verbose and quiet:
        raise UsageError("-v/--verbose and -q/--quiet cannot be used together")
    home = get_home(ctx)
    until = None
    if until_text:
        try:
            # The zone with its DST rules: at 23:00 on a spring night, 07:00 is 7 hours away.
            until = resolve_until(until_text, local_now()).timestamp()
        except ValueError as e:
            raise UsageError(f"--until: {e}") from e
    # The report is written while the supervisor still holds the home lock.
    report = (lambda: _write_report(home)) if until is not None else None
    # The account of starts and ends is for a person at a terminal (or one who asks);
    # the answer to Ctrl-C goes to a terminal's stderr whatever -q says.
    narrate = sys.stdout if verbose or (not quiet and is_terminal(sys.stdout)) else None
    alerts = sys.stderr if verbose or is_terminal(sys.stderr) else None
    counts: Counter[str] = Counter()
    code = run_supervisor(
        home,
        counts=counts,
        once=once,
        until=until,
        verbose=verbose,
        before_release=report,
        narrate=narrate,
        alerts=alerts,
    )
    click.echo(queue_summary_line(home, counts or None))
    sys.exit(code)


def queue_summary_line(home: Home, counts: Counter[str] | None = None) -> str:
    """One line for cron's mail after `run`: what the queue holds now (`counts` by status,
    from the supervisor that just ended; else read from the task folders)."""
    if counts is None:
        from bantzd.queue.store import scan_states

        counts = Counter(str(s.status) for s in scan_states(home))
    parts = [f"{counts.get(status, 0)} {words}" for status, words in SUMMARY_WORDS]
    return "bantzd: " + ", ".join(parts)


# Every status, in the words a person reads in cron's mail (how it ended, then what waits).
SUMMARY_WORDS: tuple[tuple[str, str], ...] = (
    ("done", "done"),
    ("failed", "failed"),
    ("cancelled", "cancelled"),
    ("waiting_human", "waiting for an answer"),
    ("held", "held for approval"),
    ("queued", "queued"),
    ("running", "running"),
)


def _write_report(home: Home) -> None:
    """The morning report at the end of `run --until`, and its notification."""
    from bantzd.reports.morning import publish_report

    path = publish_report(home)
    click.echo(f"bantzd: report written to {path}")


def _check(path: Path) -> tuple[bytes | None, str | None]:
    """(bytes, None) for a valid task file (or schedule file), (None, problems) otherwise."""
    from bantzd.queue.schedulefile import parse_spool_file
    from bantzd.queue.taskfile import MAX_TASK_FILE_BYTES, TaskFileError

    try:
        if path.stat().st_size > MAX_TASK_FILE_BYTES:
            return None, f"file is larger than {MAX_TASK_FILE_BYTES} bytes"
        data = path.read_bytes()
    except OSError as e:
        return None, f"cannot be read: {e.strerror}"
    stem = path.name.rsplit(".", 1)[0] if path.suffix in (".yaml", ".yml") else path.name
    try:
        parse_spool_file(data, default_name=stem)
    except TaskFileError as e:
        return None, str(e)
    return data, None


def place_in_spool(home: Home, name: str, data: bytes) -> Path:
    """Write a task file into the spool atomically and without replacing any file there;
    its path (see `place_file`)."""
    return place_file(home, name, data).path


def place_file(home: Home, name: str, data: bytes) -> Placed:
    """Write a task file into the spool atomically and without replacing any file there.

    A hidden temp file is written and fsynced, then moved to the first free name among
    NAME.yaml, NAME-2.yaml, ... with an exclusive move (intake.move_to_free_name). A check for
    a free name followed by a rename lost files: 20 parallel submits of `job.yaml` renamed
    over each other. Raises SpoolWriteError with the path and the fix.

    The file's identity is taken from the open temp file: once it is in the spool a
    supervisor may take it in at once, and another submit may then get the same name.
    """
    from bantzd.cli.taking import Placed
    from bantzd.supervisor.intake import move_to_free_name

    stem, _, ext = name.rpartition(".")
    if ext not in ("yaml", "yml"):
        stem, ext = name, "yaml"
    stem = stem or "task"
    since = time.time()
    try:
        home.ensure()
    except OSError as e:
        raise SpoolWriteError(e.filename or home.root, e) from None
    wanted = home.spool / f"{stem}.{ext}"
    # bantzd's own temp name (`.NAME.PID.tmp`): the supervisor removes one a crash left.
    tmp = temp_path(wanted)
    try:
        fd = create_private(tmp)
        try:
            with open(fd, "wb", closefd=False) as f:
                f.write(data)
                f.flush()
                os.fsync(fd)
            st = os.fstat(fd)
        finally:
            os.close(fd)
        target = move_to_free_name(tmp, wanted)
        fsync_dir(home.spool)
    except OSError as e:
        raise SpoolWriteError(home.spool, e) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # the spool refused the temp file too: nothing was left there
    return Placed(target, (st.st_dev, st.st_ino), since)


class SpoolWriteError(BantzError):
    """The spool cannot take the file: a full disk, a home that is not the user's, ..."""

    def __init__(self, where: object, cause: OSError) -> None:
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            fix = "the disk is full; free some space and submit again"
        elif cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            fix = (
                "you cannot write there; use a home of your own (--home or $BANTZ_HOME) "
                "or fix the folder's owner and permissions"
            )
        else:
            fix = "nothing was submitted"
        super().__init__(f"cannot write to {where}: {cause.strerror or cause}; {fix}")


PRINT_ID_HELP = "Print only the id of each task, one a line (for scripts)."


@main.command()
@click.option("--print-id", is_flag=True, help=PRINT_ID_HELP)
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.pass_context
def submit(ctx: click.Context, files: tuple[str, ...], print_id: bool) -> None:
    """Check task FILES, place the valid ones into the spool and take them in: each gets
    its id at once (`train.yaml: submitted as #42 train`)."""
    home = get_home(ctx)
    bad = 0
    for name in files:
        path = Path(name)
        data, problems = _check(path)
        if data is None:
            bad += 1
            click.echo(f"{name}: not submitted\n{_indent(problems or '')}", err=True)
            continue
        try:
            placed = place_file(home, path.name, data)
        except SpoolWriteError as e:
            bad += 1
            click.echo(f"{name}: not submitted: {e}", err=True)
            continue
        bad += not _tell_taken(home, placed, print_id, f"{name}: submitted as", f"{name}:")
    sys.exit(EXIT_FAILURE if bad else 0)


def _tell_taken(home: Home, placed: Placed, print_id: bool, done: str, prefix: str) -> bool:
    """Take in `placed` now and say what became of it (`DONE #42 name`, the rejection, or
    that it waits in the spool); False when it was not accepted."""
    from bantzd.cli.taking import pending_text, rejected_text, take_now

    answer = take_now(home, placed)
    if answer.schedule is not None:  # a schedule file: installed, its firings come later
        click.echo(answer.schedule if print_id else answer.message)
        return True
    if answer.id is not None:
        click.echo(str(answer.id) if print_id else f"{done} #{answer.id} {answer.name}")
        return True
    if answer.problem is not None:
        click.echo(f"{prefix} not accepted\n{rejected_text(home, answer)}", err=True)
        return False
    if answer.failed:
        where = placed.path.name
        click.echo(f"{prefix} placed in the spool as {where}, but {answer.message}", err=True)
        return False
    # Submitted all the same: the file is safe in the spool and the next scan takes it.
    click.echo(f"{prefix} {pending_text(placed, answer)}", err=print_id)
    return True


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
def validate(files: tuple[str, ...]) -> None:
    """Check task FILES without submitting them."""
    bad = 0
    for name in files:
        data, problems = _check(Path(name))
        if data is None:
            bad += 1
            click.echo(f"{name}: invalid\n{_indent(problems or '')}")
        else:
            click.echo(f"{name}: ok")
    sys.exit(EXIT_FAILURE if bad else 0)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


@main.command(
    cls=AddCommand,
    # Everything from the command's name on is the command's (`bantzd add ls -la`).
    context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False},
)
@click.option("--name", help="Task name (default: the command's name).")
@click.option("--after", multiple=True, help="Name or id that must be done first (repeatable).")
@click.option("--priority", help="high, normal, low or an integer.")
@click.option("--retries", type=int, help="Extra attempts after a failure.")
@click.option("--retry-delay", help="First backoff, doubled each attempt (e.g. 1m).")
@click.option("--timeout", help="Per attempt (e.g. 4h).")
@click.option(
    "--cwd", type=click.Path(file_okay=False), help="Working directory (default: the current one)."
)
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE", help="Repeatable.")
@click.option("--cpus", type=float)
@click.option("--memory")
@click.option("--gpus", type=int)
@click.option("--gpu-memory")
@click.option("--window")
@click.option("--not-before")
@click.option("--deadline")
@click.option("--approval", is_flag=True, default=None)
@click.option("--category")
@click.option("--shell", is_flag=True, help="Run COMMAND as one shell command line.")
@click.option("--print-id", is_flag=True, help="Print only the task's id (for scripts).")
@click.argument("command", nargs=-1, required=True)
@click.pass_context
def add(
    ctx: click.Context,
    command: tuple[str, ...],
    env_pairs: tuple[str, ...],
    shell: bool,
    print_id: bool,
    **opts: object,
) -> None:
    """Queue COMMAND ARGS... as a task (like `pueue add`) and print its id: bantzd add
    make -j4, bantzd add 'make && make test' (one argument with shell syntax runs with sh -c).
    Options go before the command, or -- goes before it."""
    import yaml

    from bantzd.queue.taskfile import TaskFileError, parse_task

    home = get_home(ctx)
    _refuse_misplaced_option(ctx, command)
    shell = shell or is_shell_line(command)
    task: dict[str, object] = {}
    name = opts.pop("name") or default_name(command, shell)
    task["name"] = name
    task["run"] = " ".join(command) if shell else list(command)
    task["cwd"] = opts.pop("cwd") or os.getcwd()
    after = opts.pop("after")
    if after:
        task["after"] = [int(a) if a.isdigit() else a for a in after]
    if env_pairs:
        env = {}
        for pair in env_pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--env")
            env[key] = value
        task["env"] = env
    resources = {}
    for key in ("cpus", "memory", "gpus", "gpu_memory"):
        value = opts.pop(key)
        if value is not None:
            resources[key] = value
    if resources:
        task["resources"] = resources
    for key, value in opts.items():
        if value is not None:
            task[key] = (
                int(value) if key == "priority" and str(value).lstrip("-").isdigit() else value
            )
    data = yaml.safe_dump(task, sort_keys=False, allow_unicode=True).encode()
    try:
        parse_task(data, default_name=str(name))
    except TaskFileError as e:
        raise UsageError(f"the task would be invalid:\n{e}") from e
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in str(name)) or "task"
    placed = place_file(home, f"{safe}.yaml", data)
    if not _tell_taken(home, placed, print_id, "added", f"{name}:"):
        sys.exit(EXIT_FAILURE)


def _refuse_misplaced_option(ctx: click.Context, command: tuple[str, ...]) -> None:
    """`bantzd add make --name build` is a usage error with the hint, not a task that runs
    `make --name build`; after `--` (`bantzd add -- make --name build`) it is meant."""
    if after_dashdash(ctx.meta.get("bantzd.raw_args", []), command):
        return
    options = {o: p for p in ctx.command.params if isinstance(p, click.Option) for o in p.opts}
    index = misplaced_option(command, [*options, "--help"])
    if index is not None:
        param = options.get(command[index].split("=", 1)[0])
        takes_value = param is not None and not param.is_flag
        raise UsageError(misplaced_hint(command, index, takes_value))
