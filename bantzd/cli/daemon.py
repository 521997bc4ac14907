"""`bantzd start` / `stop` / `restart`: the supervisor of `run`, as a daemon (python-daemon).

`restart` restarts the supervisor, never a task: pueue's `restart` means running a task
again, which is `bantzd rerun ID` here; `bantzd restart 42` says so instead of guessing.

`start` forks; the child detaches with python-daemon's DaemonContext (new session, umask
0o077 so that bantzd's own files are private (the tasks get back the user's umask), working
directory = the home, stdin/stdout/stderr on /dev/null, every other file closed except
bantzd.log and a pipe back to the parent) and runs `run_supervisor`, which
takes the single-instance lock and writes bantzd.pid, so both belong to the daemon process.
The parent waits until the lock shows the daemon's pid, then prints `started, pid N`.

Whether a supervisor runs is decided by the lock, never by bantzd.pid: a pid file left by a
daemon killed with SIGKILL is stale but blocks nothing.

`stop` sends SIGTERM to whichever supervisor holds the home (a daemon or a `bantzd run` in a
terminal or from cron): it stops starting tasks, gives running ones `stop_grace` to
checkpoint, requeues them as `interrupted` and exits. `stop` waits for the lock to be free.
With no supervisor running, `stop` says so and exits 0 (what it is asked for already holds;
`restart` and scripts rely on that). A second `stop` while tasks are still stopping is a
second SIGTERM: the supervisor kills them at once.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import sys
import time
from pathlib import Path

import click

from bantzd.cli import get_home, main
from bantzd.errors import EXIT_FAILURE, EXIT_OK, BantzError, UsageError
from bantzd.paths import Home
from bantzd.supervisor.lock import supervisor_info

log = logging.getLogger("bantzd")

UMASK = 0o077
START_TIMEOUT = 10.0
DEFAULT_STOP_TIMEOUT = "60"
POLL = 0.05
LOG_TAIL_LINES = 15


@main.command()
@click.option(
    "--until",
    "until_text",
    metavar="TIME",
    help="Stop starting tasks then, checkpoint running ones, write the report and exit: "
    "HH:MM (the next one) or an ISO date-time.",
)
@click.pass_context
def start(ctx: click.Context, until_text: str | None) -> None:
    """Start the supervisor as a daemon (logs to bantzd.log)."""
    home = get_home(ctx)
    until = _resolve_until(until_text)
    sys.exit(start_daemon(home, until))


@main.command()
@click.option(
    "--timeout",
    "timeout_text",
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    help="How long to wait for running tasks to checkpoint and the supervisor to exit "
    "(seconds, or 90s, 2m).",
)
@click.pass_context
def stop(ctx: click.Context, timeout_text: str) -> None:
    """Stop the supervisor gracefully and wait for it (exit 0 when none runs)."""
    home = get_home(ctx)
    sys.exit(stop_supervisor(home, _duration(timeout_text)))


@main.command()
@click.argument("task", required=False, metavar="")
@click.option("--until", "until_text", metavar="TIME", help="As for `start`.")
@click.option(
    "--timeout",
    "timeout_text",
    default=DEFAULT_STOP_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    help="As for `stop`.",
)
@click.pass_context
def restart(
    ctx: click.Context, task: str | None, until_text: str | None, timeout_text: str
) -> None:
    """Restart the supervisor daemon: stop it (if one runs), then start it again.

    This restarts bantzd itself, not a task. To run a finished task again (what
    `pueue restart` does), use `bantzd rerun ID`.
    """
    if task is not None:
        raise UsageError(
            f"`bantzd restart` restarts the supervisor daemon and takes no task; "
            f"to run task {task} again use `bantzd rerun {task}`"
        )
    home = get_home(ctx)
    until = _resolve_until(until_text)  # a bad --until must not stop the running one
    from bantzd.config import load_config

    # Nor a broken config.toml: the new one would refuse to start, leaving no supervisor.
    load_config(home.config)
    code = stop_supervisor(home, _duration(timeout_text))
    if code != EXIT_OK:
        sys.exit(code)
    sys.exit(start_daemon(home, until))


# --- start -----------------------------------------------------------------------------------


def start_daemon(home: Home, until: float | None) -> int:
    """Detach a supervisor for `home`; the exit code for the `start` command."""
    from bantzd.config import load_config

    load_config(home.config)  # a broken config is reported here, not in a log nobody reads
    info = supervisor_info(home)
    if info is not None:
        click.echo(f"bantzd: already running, pid {info.get('pid')}", err=True)
        return EXIT_FAILURE
    home.ensure()
    log_offset = _size(home.log)
    sys.stdout.flush()
    sys.stderr.flush()
    ready_r, ready_w = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the forked child, reported through the pipe
        os.close(ready_r)
        code = EXIT_FAILURE
        try:
            code = _become_daemon(home, until, ready_w)
        except BaseException:
            log.exception("the daemon failed to start")
        finally:
            logging.shutdown()
            os._exit(code)
    os.close(ready_w)
    try:
        os.waitpid(child, 0)  # it exits as soon as it has forked the daemon
        return _await_daemon(home, ready_r, log_offset)
    finally:
        os.close(ready_r)


def _become_daemon(home: Home, until: float | None, ready_w: int) -> int:
    """In the forked child: detach, tell the parent our pid, run the supervisor."""
    import daemon

    from bantzd.supervisor.logsetup import setup_logging

    os.umask(UMASK)  # bantzd.log is created here, before the detach: same mask as the rest
    handler = setup_logging(home, verbose=False, daemon=True)
    context = daemon.DaemonContext(
        working_directory=str(home.root),
        umask=UMASK,
        detach_process=True,
        files_preserve=[handler.stream, ready_w],
        # No signal dispositions of our own: ignored signals would be inherited by every
        # task, and the supervisor installs its SIGTERM/SIGINT/SIGHUP handlers itself.
        signal_map={},
        # Core limits are inherited by tasks too; leave them as the user's shell set them.
        prevent_core=False,
    )
    context.open()  # only the daemon returns from here; the intermediate processes exit
    # The pipe stays open (and close-on-exec, so tasks do not hold it) for the daemon's
    # life: if the daemon dies before it holds the lock, the parent reads end-of-file.
    os.write(ready_w, f"{os.getpid()}\n".encode())
    return _run_daemon(home, until)


def _run_daemon(home: Home, until: float | None) -> int:
    from bantzd.clock import iso
    from bantzd.supervisor.loop import run_supervisor

    log.info("daemon started (pid %d)%s", os.getpid(), f", until {iso(until)}" if until else "")
    # The report is written while the supervisor still holds the home lock: a next
    # supervisor (cron, systemd) cannot start before it is complete.
    report = (lambda: _write_report(home)) if until is not None else None
    try:
        code = run_supervisor(home, until=until, before_release=report)
    except BantzError as e:  # e.g. another supervisor won the race for the lock
        log.error("%s", e)
        return e.exit_code
    except Exception:
        log.exception("the supervisor failed")
        return EXIT_FAILURE
    log.info("daemon exiting with status %d", code)
    return code


def _write_report(home: Home) -> None:
    from bantzd.reports.morning import publish_report

    try:
        path = publish_report(home)
    except Exception:
        log.exception("writing the report failed")
        return
    log.info("report written to %s", path)


def _await_daemon(home: Home, ready_r: int, log_offset: int) -> int:
    """Wait until the daemon is up; say what went wrong otherwise.

    Up means: it holds the lock and has written bantzd.pid, which the supervisor does only
    after its start-up checks (a spool others can write to stops it after the lock).
    """
    deadline = time.monotonic() + START_TIMEOUT
    received = b""
    pid: int | None = None
    gone = False
    while True:
        if not gone:
            readable, _, _ = select.select([ready_r], [], [], POLL)
            if readable:
                chunk = os.read(ready_r, 64)
                received += chunk
                gone = not chunk
                if pid is None and b"\n" in received:
                    pid = int(received.split(b"\n", 1)[0])
        else:
            time.sleep(POLL)
        holds = pid is not None and _still_held_by(home, pid)
        if holds and _pidfile(home) == pid:
            click.echo(f"bantzd: started, pid {pid}")
            return EXIT_OK
        if gone:
            what = "the daemon exited before it was up"
            break
        if time.monotonic() >= deadline:
            if holds:  # up, but could not write bantzd.pid (a full disk?): the log says
                click.echo(f"bantzd: started, pid {pid} (but bantzd.pid was not written)")
                return EXIT_OK
            who = f"pid {pid} is running" if pid else "no pid came back"
            what = f"no supervisor holds the lock after {START_TIMEOUT:g}s ({who})"
            break
    click.echo(f"bantzd: not started: {what}", err=True)
    tail = _log_tail(home.log, log_offset)
    if tail:
        click.echo(f"bantzd: the end of {home.log}:", err=True)
        click.echo("\n".join(f"  {line}" for line in tail), err=True)
    else:
        click.echo(f"bantzd: nothing new in {home.log}", err=True)
    return EXIT_FAILURE


def _log_tail(path: Path, offset: int) -> list[str]:
    """The last lines written to `path` since `offset` (all of it if it was rotated)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(offset if size >= offset else 0)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-LOG_TAIL_LINES:]


def _pidfile(home: Home) -> int | None:
    try:
        return int(home.pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --- stop ------------------------------------------------------------------------------------


def stop_supervisor(home: Home, timeout: float) -> int:
    """SIGTERM the supervisor holding `home` and wait for the lock to be free."""
    info = supervisor_info(home)
    if info is None:
        click.echo("bantzd: not running")
        return EXIT_OK
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        click.echo("bantzd: a supervisor holds the lock but its pid is unknown", err=True)
        return EXIT_FAILURE
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # exiting already; the lock tells when it is gone
    except PermissionError:
        click.echo(f"bantzd: pid {pid} belongs to another user; not stopped", err=True)
        return EXIT_FAILURE
    deadline = time.monotonic() + timeout
    while _still_held_by(home, pid):
        if time.monotonic() >= deadline:
            click.echo(
                f"bantzd: pid {pid} still stopping after {timeout:g}s; {_running_text(home)}. "
                "`bantzd stop` again kills them now.",
                err=True,
            )
            return EXIT_FAILURE
        time.sleep(POLL)
    click.echo(f"bantzd: stopped, pid {pid}")
    return EXIT_OK


def _still_held_by(home: Home, pid: int) -> bool:
    info = supervisor_info(home)
    return info is not None and info.get("pid") == pid


def _running_text(home: Home) -> str:
    from bantzd.queue.store import scan_states

    running = [s for s in scan_states(home) if str(s.status) == "running"]
    if not running:
        return "no task is running"
    items = ", ".join(f"#{s.id} {s.name}" + (f" (pid {s.pid})" if s.pid else "") for s in running)
    return f"still running: {items}"


# --- arguments -------------------------------------------------------------------------------


def _resolve_until(text: str | None) -> float | None:
    if not text:
        return None
    from bantzd.supervisor.timing import local_now, resolve_until

    try:
        return resolve_until(text, local_now()).timestamp()
    except ValueError as e:
        raise UsageError(f"--until: {e}") from e


def _duration(text: str) -> float:
    from bantzd.units import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"--timeout: {e}") from e
