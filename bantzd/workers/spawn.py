"""Starting and stopping one attempt of a task as an isolated process group (STYLE 6).

Every attempt runs under a tiny /bin/sh wrapper, not a Python interpreter (which would cost
tens of milliseconds per task). The wrapper:

* is the leader of a new session and process group, so one `killpg` reaches everything
  the task started;
* inherits, like every process under it, an fd holding an exclusive flock on the task's
  worker.lock. The kernel releases that lock only when the last of those processes is
  gone, which is how a restarted supervisor tells a live attempt from a dead one without
  trusting a pid;
* first moves itself into the attempt's own cgroup where there is one, before the task's
  command starts, so nothing the task forks can leave it (see `escape`);
* when the task's niceness is above ours, waits at a gate (a pipe on its stdin) until the
  supervisor has reniced it, so the task and all it starts run niced from their first
  instruction with no nice(1) exec (renicing a process is one syscall; an exec of nice(1)
  costs more than the rest of a no-op task's start); then gives the command /dev/null;
* traps SIGTERM/SIGINT/SIGHUP only to outlive its child, then writes exit.json with the
  child's status and the attempt number, so the outcome of an attempt survives the death
  of the supervisor that started it. When that supervisor is gone (its pid, given to the
  wrapper, no longer runs, or is a zombie), the record is made durable before the
  wrapper exits: written to exit.json.tmp, renamed, then fsynced with its folder (`sync
  FILE DIR`), so a power cut cannot lose an outcome that no supervisor has recorded.
  While the supervisor runs, it reaps the wrapper and makes the outcome durable itself
  (state.json, group-committed), and the record is a plain write: two fewer processes
  per task.

The parent owns the outcome: `reap` decides from the wait status, and only when the
supervisor is gone does the exit record speak.

Signal or exit code: the wrapper only sees `$?`, which is 128+N both for a child killed by
signal N and for a child that ran `exit 128+N` (no shell tells them apart, and only the
direct parent ever sees the real wait status). The record therefore also says which
signal reached the wrapper, i.e. the attempt's group (`sig`). 128+N reads as "killed by
signal N" when N reached the group, or when N is not one of the polite stop signals
(HUP, INT, TERM: a segfault, an abort, the OOM killer's SIGKILL are never deliberate exit
codes in practice). It reads as "exit 128+N" when N is HUP/INT/TERM and the group got no
such signal: a script's own `exit 143`. What stays ambiguous: a task killed by SIGTERM
sent to its main pid alone (not the group) reads as exit 143, and a deliberate
`exit 139` reads as SIGSEGV. When the wrapper itself is killed (SIGKILL after the grace),
the supervisor sees that exactly.
"""

from __future__ import annotations

import errno
import fcntl
import functools
import json
import os
import shlex
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from bantzd.errors import BantzError
from bantzd.paths import TaskPaths, open_private
from bantzd.workers import escape


@functools.cache
def _tool(name: str) -> str | None:
    """An absolute path for a tool the wrapper runs: the task's own `env: PATH` must not
    decide whether its exit record is written."""
    return shutil.which(name, path=os.pathsep.join((os.defpath, "/usr/bin", "/bin")))


@functools.cache
def wrapper_script() -> str:
    """The /bin/sh wrapper: args are RECORD ATTEMPT STEP CGROUP_PROCS GATE SUPERVISOR, then
    the command.

    SUPERVISOR: the pid of the process that starts it (not $PPID, which sh reads when it
    starts: a supervisor killed while the wrapper's exec is still under way leaves it an
    orphan whose $PPID is 1 or a subreaper, alive and well). GATE non-empty: stdin is a
    pipe from the supervisor, which renices the wrapper and then writes a line (see
    `spawn`); the wrapper reads it before anything else runs, and then gives the command
    /dev/null as stdin. "$@" is the command; its status is written before the wrapper exits
    with it. The traps are handlers (not ''), so the command itself starts with default
    dispositions; each remembers which signal reached the group. The command runs with the
    user's umask; the record is written with 077 (bantzd's own files are private).
    """
    mv, sync = _tool("mv"), _tool("sync")
    durable = '> "$rec.tmp" && ' + shlex.quote(mv) + ' -f "$rec.tmp" "$rec"' if mv else '> "$rec"'
    if sync is not None:
        durable += " && " + shlex.quote(sync) + ' "$rec" "${rec%/*}" 2>/dev/null'
    # A record that could not be written (a full disk) leaves no temp file behind.
    rm = _tool("rm")
    cleanup = (shlex.quote(rm) + ' -f "$rec.tmp"') if rm is not None else "true"
    record = (
        'printf \'{"rc": %d, "sig": %d, "attempt": %d, "step": %d}\\n\' '
        '"$rc" "${bs:-0}" "$att" "$step"'
    )
    return (
        'rec="$1"; att="$2"; step="$3"; cg="$4"; gate="$5"; sup="$6"; shift 6; '
        '[ -z "$cg" ] || { echo $$ > "$cg"; } 2>/dev/null; '
        '[ -z "$gate" ] || { read -r gate; exec < /dev/null; }; '
        "trap 'bs=1' HUP; trap 'bs=2' INT; trap 'bs=15' TERM; "
        '"$@"; rc=$?; umask 077; '
        # The supervisor that started us still runs: it reaps us, owns the outcome and
        # makes it durable in its own group commit, so a plain write will do (no two
        # processes per task). Orphaned, the record is all that will speak for the attempt.
        # A supervisor killed but not yet reaped by its own parent is a zombie, which
        # `kill -0` still finds: its state in /proc (read with builtins, no fork) says Z.
        # /proc/PID/status, not stat: sh's `read` takes one byte a syscall, and State is
        # its third line (~45 bytes) where stat's state follows the command name.
        'if kill -0 "$sup" 2>/dev/null && { st=; while read -r k v; do '
        '[ "$k" != State: ] || { st="$v"; break; }; done < "/proc/$sup/status" && '
        '[ -n "$st" ] && [ "${st%% *}" != Z ]; } 2>/dev/null; then ' + record + ' > "$rec"; '
        "else { " + record + " " + durable + "; } || " + cleanup + "; fi; "
        'exit "$rc"'
    )


# Signals whose 128+N is also a usual deliberate exit code ("stopped on request").
_POLITE_SIGNALS = frozenset({signal.SIGHUP, signal.SIGINT, signal.SIGTERM})


# Failures that say nothing about the task: it goes back to the queue, no attempt is used.
MACHINE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EMFILE, errno.ENFILE, errno.EAGAIN, errno.ENOMEM}
)


class SpawnError(BantzError):
    """The attempt could not start at all (missing cwd, unknown command); message says why."""


@dataclass
class Outcome:
    """How an attempt's main process ended."""

    exit_code: int | None = None
    signal: int | None = None
    # False when the supervisor that started the attempt died and nothing recorded its end.
    known: bool = True

    @property
    def ok(self) -> bool:
        return self.known and self.exit_code == 0

    def describe(self) -> str:
        if not self.known:
            return "ended while no supervisor watched it"
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"killed by {name}"
        if self.exit_code == 127:
            return "exit 127: command not found"
        if self.exit_code == 126:
            return "exit 126: command not executable"
        return f"exit {self.exit_code}"


@dataclass
class Attempt:
    """A running attempt as the supervisor tracks it."""

    task_id: int
    attempt: int
    pgid: int
    paths: TaskPaths
    started_mono: float
    popen: subprocess.Popen[bytes] | None = None  # None when adopted after a restart
    step: str | None = None
    step_index: int = -1
    stop_reason: str | None = None  # why we sent SIGTERM: timeout, cancelled, interrupted...
    term_at: float | None = None
    killed: bool = False
    extra: dict[str, object] = field(default_factory=dict)


def command_argv(run: str | tuple[str, ...] | list[str]) -> list[str]:
    """A task's `run` as argv: a string goes through /bin/sh -c, a list is used as is."""
    if isinstance(run, str):
        return ["/bin/sh", "-c", run]
    return list(run)


def niced(argv: list[str], nice: int) -> list[str]:
    """`argv` run at niceness `nice` from its first instruction: through nice(1), so the
    task and everything it starts inherit it (renicing the pid after the start would race
    with the children it forks at once). Only for a niceness below ours, which `spawn`'s
    gate cannot give (lowering it needs a privilege; nice(1) says so in the log)."""
    delta = nice - os.getpriority(os.PRIO_PROCESS, 0)
    path = _nice_path()
    if delta == 0 or path is None:
        return argv
    return [path, "-n", str(delta), *argv]


@functools.cache
def _nice_path() -> str | None:
    return shutil.which("nice")


def check_runnable(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """Fail early, with a clear reason, on the mistakes that otherwise end as exit 127."""
    if not os.path.isdir(cwd):
        if os.path.lexists(cwd):
            raise SpawnError(f"cwd is not a folder: {cwd}")
        raise SpawnError(f"cwd does not exist: {cwd}")
    prog = argv[0]
    if "/" in prog:
        full = prog if os.path.isabs(prog) else os.path.join(cwd, prog)
        if not os.path.exists(full):
            raise SpawnError(f"command not found: {prog}")
        if not os.access(full, os.X_OK) or os.path.isdir(full):
            raise SpawnError(f"command not executable: {prog}")
    elif shutil.which(prog, path=env.get("PATH", os.defpath)) is None:
        raise SpawnError(f"command not found: {prog}")


def spawn(
    paths: TaskPaths,
    argv: list[str],
    *,
    attempt: int,
    cwd: str,
    env: dict[str, str],
    nice: int,
    marker: str,
    step_index: int = -1,
    umask: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv` as a new attempt (or the next step of one); returns the wrapper's Popen
    (its pid is the pgid). worker.lock then says `PID ATTEMPT STEP TOKEN CGROUP`, so a
    supervisor that restarts before recording the start still knows what runs, and can
    still find what it left (see `read_lock_info`). `umask`: the task's (the user's own,
    while bantzd itself runs with 077); None keeps ours."""
    check_runnable(argv, cwd, env)
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    # Raising the niceness of a process of ours needs no privilege: the wrapper is reniced
    # while it waits at its gate, before it starts anything, with no nice(1) exec.
    gated = nice > ours
    run_argv = argv if nice >= ours else niced(argv, nice)
    lock_fd = open_private(paths.worker_lock)
    try:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            # Never two live workers for one task: the previous attempt still holds it.
            raise SpawnError("a previous attempt of this task is still alive") from None
        for stale in (paths.exit_record, paths.reason):
            try:
                os.unlink(stale)
            except FileNotFoundError:
                pass
        token = escape.new_token()
        cgroup = escape.make_cgroup(paths.dir.name, token)
        env = {**env, escape.TOKEN_ENV: token}
        log_fd = os.open(paths.output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        gate_r = gate_w = -1
        try:
            if gated:
                gate_r, gate_w = os.pipe()  # close-on-exec, both ends
            os.write(log_fd, marker.encode(errors="replace"))
            # No preexec_fn, no uid/gid change: CPython starts it with vfork.
            popen = subprocess.Popen(
                [
                    "/bin/sh",
                    "-c",
                    wrapper_script(),
                    "bantzd-attempt",
                    str(paths.exit_record),
                    str(attempt),
                    str(step_index),
                    str(cgroup / "cgroup.procs") if cgroup else "",
                    "1" if gated else "",
                    str(os.getpid()),
                    *run_argv,
                ],
                stdin=gate_r if gated else subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                close_fds=True,
                pass_fds=(lock_fd,),
                start_new_session=True,
                umask=-1 if umask is None else umask,
            )
        except OSError as e:
            if gate_w >= 0:
                os.close(gate_w)
            if cgroup is not None:
                escape.remove_cgroup(cgroup)
            if e.errno in MACHINE_ERRNOS:
                raise  # the machine's problem (disk full, no fds): the task is not to blame
            raise SpawnError(f"could not start: {e.strerror or e}") from e
        finally:
            os.close(log_fd)
            if gate_r >= 0:
                os.close(gate_r)
        escape.register_wrapper(popen.pid)
        _spawned[popen.pid] = (token, cgroup)
        if gated:
            _open_gate(popen.pid, nice, gate_w)
        elif nice < ours and run_argv is argv:
            # Below ours, and no nice(1): renice the wrapper, late for what it forks at once.
            try:
                os.setpriority(os.PRIO_PROCESS, popen.pid, nice)
            except OSError:
                pass  # the wrapper already exited, or we may not lower it: not fatal
        os.ftruncate(lock_fd, 0)
        line = f"{popen.pid} {attempt} {step_index} {token} {cgroup or '-'}\n"
        os.pwrite(lock_fd, line.encode(errors="surrogateescape"), 0)
        return popen
    finally:
        os.close(lock_fd)


# What each unreaped wrapper we started was given (its marker token and cgroup), by pid:
# `reap` needs them and need not read them back from worker.lock. A pid is ours alone
# until it is reaped, so the entry cannot name anyone else's process.
_spawned: dict[int, tuple[str, Path | None]] = {}


def _open_gate(pid: int, nice: int, gate_w: int) -> None:
    """Renice the wrapper `pid`, which waits at its gate (execed, started nothing yet), then
    let it go on: the task and all it starts run at `nice` from their first instruction.
    The wrapper only waits for the task and writes its record; it runs niced too."""
    try:
        try:
            os.setpriority(os.PRIO_PROCESS, pid, nice)
        except OSError:
            pass  # it is gone (killed already): nothing of the task has started
        try:
            os.write(gate_w, b"\n")
        except OSError:
            pass  # gone: its reap says how it ended
    finally:
        os.close(gate_w)


def exited(att: Attempt) -> bool:
    """Whether the attempt's main process has ended (without reaping it yet)."""
    if att.popen is not None:
        try:
            res = os.waitid(os.P_PID, att.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return res is not None
    # Adopted: its wrapper wrote the exit record as its last act, or every process that
    # held worker.lock is gone (a process that escaped and still holds it must not keep an
    # ended attempt "running": `reap` ends it).
    if _from_record(att.paths, att.attempt, att.step_index) is not None:
        return True
    return not worker_alive(att.paths)


def reap(att: Attempt) -> Outcome:
    """Collect the outcome of an exited attempt and kill everything it left.

    The leftovers are killed *before* the wrapper is reaped, while its pid (= the pgid and
    session id) cannot be reused, so `killpg` can never hit a stranger's group. Then the
    processes that left the group: the attempt's cgroup, or those carrying its marker
    (`escape.end_attempt`). An adopted attempt (not our child) is reaped once its exit
    record is there or worker.lock is free; its pgid may belong to someone else by then,
    so only the cgroup and the marker are used.
    """
    token, cgroup = _containment(att)
    if att.popen is not None:
        kill_group(att.pgid, signal.SIGKILL)
        escape.end_attempt(token, cgroup, session=att.pgid)
        rc = att.popen.wait()
        escape.forget_wrapper(att.popen.pid)
        _spawned.pop(att.popen.pid, None)
        if rc < 0:
            return Outcome(signal=-rc)
        if rc <= 128:
            # The wrapper exits with the command's status, which is all its record says
            # then: only 128+N needs the record's word on which signal reached the group.
            return Outcome(exit_code=rc)
        return _from_record(att.paths, att.attempt) or _from_shell_status(rc)
    escape.end_attempt(token, cgroup, adopted=True)
    record = _from_record(att.paths, att.attempt, att.step_index)
    return record or Outcome(known=False)


def _containment(att: Attempt) -> tuple[str | None, Path | None]:
    """The attempt's marker and cgroup (see `escape`), from worker.lock: written by the
    spawn of this very wrapper, and nothing else spawns for the task while it is unreaped.
    A wrapper this process started needs no read: `spawn` noted them."""
    if att.popen is not None and att.popen.pid == att.pgid:
        noted = _spawned.get(att.pgid)
        if noted is not None:
            return noted
    info = read_lock_info(att.paths)
    if info is None or info.pid != att.pgid or info.attempt != att.attempt:
        return None, None
    return info.token, Path(info.cgroup) if info.cgroup else None


def _from_shell_status(rc: int, sig: int | None = None) -> Outcome:
    """Outcome from `$?` as the wrapper saw it; `sig`: the signal that reached the
    attempt's group (None: not known, an old record). See the module docstring."""
    # sh reports a child killed by signal N as 128+N, and `exit 128+N` the same way.
    if rc > 128 and rc - 128 < signal.NSIG:
        n = rc - 128
        if sig is None or sig == n or n not in _POLITE_SIGNALS:
            return Outcome(signal=n)
    return Outcome(exit_code=rc)


def read_exit_record(
    paths: TaskPaths, attempt: int, step_index: int | None = None
) -> Outcome | None:
    """The outcome the exit record gives for `attempt` (and step), or None (no record of
    it): what a Slurm job's outcome is taken from, since no supervisor reaps a job."""
    return _from_record(paths, attempt, step_index)


def _from_record(paths: TaskPaths, attempt: int, step_index: int | None = None) -> Outcome | None:
    try:
        data = json.loads(paths.exit_record.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("attempt") != attempt:
        return None  # a record from an older attempt says nothing about this one
    if step_index is not None and data.get("step", -1) != step_index:
        return None
    rc = data.get("rc")
    if not isinstance(rc, int):
        return None
    sig = data.get("sig")
    return _from_shell_status(rc, sig if isinstance(sig, int) else None)


def worker_alive(paths: TaskPaths) -> bool:
    """True while any process of the task's attempt holds worker.lock."""
    try:
        fd = os.open(paths.worker_lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def kill_group(pgid: int, sig: int) -> bool:
    """Send `sig` to a process group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    except OSError as e:
        if e.errno == errno.ESRCH:
            return False
        raise
    return True


# A marker quotes at most this much of a command: a generated 5000-line script is not
# worth repeating in the log before every attempt.
MARKER_SCRIPT_LINES = 40
MARKER_LINE_CHARS = 2000


def command_text(run: str | tuple[str, ...] | list[str], label: str = "run") -> str:
    """A task's command as a person would type it, for the attempt marker.

    A one-line `run:` string as written; an argv list shell-quoted (`shlex.join`), so what
    is shown can be pasted into a shell; a multi-line script as a block under `LABEL: |`,
    its lines indented as in the task file, not flattened into one line.
    """
    if not isinstance(run, str):
        return _cut(shlex.join(str(a) for a in run))
    lines = [line.rstrip() for line in run.strip("\n").split("\n")]
    if len(lines) == 1:
        return _cut(lines[0].strip())
    shown = lines[:MARKER_SCRIPT_LINES]
    if len(lines) > len(shown):
        shown.append(f"… ({len(lines) - len(shown)} more lines)")
    return f"{label}: |" + "".join(("\n    " + _cut(line)).rstrip() for line in shown)


def _cut(text: str) -> str:
    return text if len(text) <= MARKER_LINE_CHARS else text[: MARKER_LINE_CHARS - 1] + "…"


def marker_line(attempt: int, when: str, what: str) -> str:
    """The line that opens each attempt (and step) in output.log; a multi-line `what` (a
    script, see `command_text`) follows it, one line of the script a line."""
    head, _, body = what.partition("\n")
    return f"\n=== bantzd: attempt {attempt} · {when} · {head} ===\n" + (
        body + "\n" if body else ""
    )


def end_marker(attempt: int, words: str) -> str:
    """The line that closes an attempt in output.log: `=== bantzd: attempt 2 ended: exit
    code 0 after 3m 12s ===` (the words come from whoever settled the attempt)."""
    return f"=== bantzd: attempt {attempt} {words} ===\n"


@dataclass(frozen=True)
class LockInfo:
    """What worker.lock says about the attempt that holds (or last held) it."""

    pid: int
    attempt: int
    step_index: int
    token: str | None = None
    cgroup: str | None = None


def read_reason(paths: TaskPaths, limit: int = 300) -> str | None:
    """The reason the attempt's worker wrote before failing (reason.txt), on one line."""
    try:
        with open(paths.reason, "rb") as f:
            text = f.read(limit * 4).decode(errors="replace")
    except OSError:
        return None
    text = " ".join(text.split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1] + "…"


def read_lock_info(paths: TaskPaths) -> LockInfo | None:
    """`PID ATTEMPT STEP [TOKEN CGROUP]` written into worker.lock at spawn, or None."""
    try:
        text = Path(paths.worker_lock).read_bytes().decode(errors="surrogateescape")
    except OSError:
        return None
    parts = text.rstrip("\n").split(" ", 4)
    try:
        pid, attempt, step = (int(p) for p in parts[:3])
    except ValueError:
        return None
    token = parts[3] if len(parts) > 3 and parts[3] else None
    cgroup = parts[4] if len(parts) > 4 and parts[4] not in ("", "-") else None
    return LockInfo(pid, attempt, step, token, cgroup)
