"""Ending the processes of an attempt that left its process group (`setsid`, double forks).

`killpg` reaches only the attempt's process group. A task that runs `setsid sleep 300 &`
leaves a process that no group signal reaches, that outlives the attempt, and that keeps
the task's worker.lock fd (so the next attempt would find "a previous attempt of this task
is still alive"). Two ways find such processes, chosen once per supervisor by `setup`:

* **cgroup v2** (root, or a delegated cgroup2 directory we may write): each spawn gets an
  empty cgroup of its own under `<base>` (`cgroups`: one that an ended attempt left empty
  is reused, marked as this attempt's, rather than a mkdir per spawn); the wrapper writes
  its own pid into cgroup.procs as its first command, before the task's command starts,
  and every process the task forks is born inside it, whatever it does with sessions,
  groups or its environment. Ending the attempt writes cgroup.kill (Linux 5.14+; older
  kernels: SIGKILL every pid in cgroup.procs until it is empty), waits until the cgroup is
  empty, and keeps it for reuse or removes it. The path is in worker.lock, so a restarted
  supervisor ends an adopted attempt the same way (only while the cgroup is still marked
  as that attempt's).
* **Elsewhere (or BANTZ_NO_CGROUP=1)**: the supervisor is a child subreaper
  (PR_SET_CHILD_SUBREAPER), so an orphaned process of an attempt becomes the supervisor's
  child instead of init's; and every process of an attempt inherits BANTZ_ATTEMPT_TOKEN
  (random per spawn, also written into worker.lock). Once the attempt's wrapper has
  ended, the processes that are (descendants of) our orphaned children and carry the
  token in /proc/PID/environ, or belong to the wrapper's session, or descend from such a
  process, are killed. A process that exec'd with a cleared environment (`env -i`) *and*
  started its own session escapes this; so does, after a supervisor restart, one that
  cleared its environment (a restarted supervisor is nobody's parent: it scans every
  process of our uid for the token).

Being a subreaper means reaping the orphans that end as our children: `reap_orphans`
reaps exited children that are not attempt wrappers (whose exit status `spawn.reap`
needs) and not in our own session (children of the supervisor's own helpers, which their
subprocess.Popen waits for).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import secrets
import select
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from bantzd.workers import cgroups
from bantzd.workers.cgroups import (  # noqa: F401 - where callers have always found them
    cgroup2_mount,
    find_cgroup_base,
    in_cgroup,
    make_cgroup,
    own_cgroup,
    remove_cgroup,
)

log = logging.getLogger("bantzd")

TOKEN_ENV = "BANTZ_ATTEMPT_TOKEN"
NO_CGROUP_ENV = "BANTZ_NO_CGROUP"
_PROC = "/proc"
_LINUX = sys.platform.startswith("linux")
PR_SET_CHILD_SUBREAPER = 36
# How long ending an attempt may wait for its killed processes to be gone (see `cgroups`).
END_WAIT = cgroups.END_WAIT
# Rounds of "find and kill" in the fallback: a process forking as fast as it can makes
# new ones while we kill the old ones.
KILL_ROUNDS = 50


@dataclass(frozen=True)
class Containment:
    """How this supervisor finds an attempt's processes (see the module docstring)."""

    cgroup_base: Path | None = None  # per-home parent of the attempts' cgroups
    cgroup_kill: bool = False  # the kernel has cgroup.kill
    mount: Path | None = None  # where cgroup2 is mounted, when cgroup_base is set
    subreaper: bool = False
    reuse: bool = False  # ended attempts' empty cgroups are handed to later spawns

    def describe(self) -> str:
        if self.cgroup_base is not None:
            return f"each attempt in its own cgroup under {self.cgroup_base}"
        if self.subreaper:
            return "child subreaper; escaped processes found by BANTZ_ATTEMPT_TOKEN"
        return "escaped processes found by BANTZ_ATTEMPT_TOKEN"


_current = Containment()


def current() -> Containment:
    """The containment `setup` chose; without `setup`, only the environment marker."""
    return _current


def setup(home_root: Path) -> Containment:
    """Choose how attempts are contained, for the life of this supervisor process.

    Called once by `Supervisor.run()`, before recovery. Also removes the empty cgroups
    that earlier supervisors of this home left behind.
    """
    global _current
    subreaper = _set_subreaper()
    base = None
    kill = False
    if os.environ.get(NO_CGROUP_ENV, "") in ("", "0"):
        base, kill = cgroups.find_cgroup_base(home_root)
    mount = cgroups.cgroup2_mount() if base is not None else None
    reuse = cgroups.use(base, kill=kill)
    _current = Containment(
        cgroup_base=base, cgroup_kill=kill, mount=mount, subreaper=subreaper, reuse=reuse
    )
    if base is not None:
        cgroups.sweep(base, home_root, _kill_closed)
        cgroups.sweep_homes(base, home_root)
        atexit.register(_at_exit, base)  # ours, when empty, at a normal exit
    log.debug("attempts: %s", _current.describe())
    return _current


def _at_exit(base: Path) -> None:
    if _current.cgroup_base == base:
        cgroups.drop_pool()
    cgroups.rmdir(base, wait=False)


def new_token() -> str:
    """A fresh marker for one spawn; what `TOKEN_ENV` is set to."""
    return secrets.token_hex(8)


# --- the subreaper --------------------------------------------------------------------


def _set_subreaper() -> bool:
    if not _LINUX:
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


# The attempt wrappers this process started and has not reaped: their exit status belongs
# to `spawn.reap`, never to `reap_orphans`.
_wrappers: set[int] = set()


def register_wrapper(pid: int) -> None:
    """Note a wrapper `spawn` started (its status is `spawn.reap`'s to collect)."""
    _wrappers.add(pid)


def forget_wrapper(pid: int) -> None:
    """The wrapper `pid` was reaped."""
    _wrappers.discard(pid)


def reap_orphans(extra_keep: Iterable[int] = ()) -> int:
    """Reap exited children that are orphans of attempts; returns how many.

    Never an attempt wrapper (whose status `spawn.reap` reads), never a child in our own
    session (a helper's: its Popen waits for it). A cheap peek first: with no exited child
    at all, this is one syscall per tick.
    """
    try:
        first = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return 0
    if first is None:
        return 0
    keep = _wrappers | set(extra_keep)
    own_sid = os.getsid(0)
    reaped = 0
    children = _children()
    for pid in children if children is not None else [first.si_pid]:
        if pid in keep:
            continue
        stat = _stat(pid)
        if stat is None or stat[0] != b"Z" or stat[3] == own_sid:
            continue
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
        except ChildProcessError:
            pass
    return reaped


def _children() -> list[int] | None:
    """Our direct children that an attempt's orphans can be: the thread-group leader's,
    from /proc/self/task/PID/children; None where the kernel does not have that file.

    The kernel hands an orphan to the first live thread of its subreaper, the leader while
    it runs (kernel/exit.c, find_alive_thread walks the thread list from its head). Other
    threads' children are their own Popens (in our session) or wrappers (`_wrappers`), never
    looked at here. One file, not one per thread: this runs at the end of every attempt.
    """
    try:
        with open(f"{_PROC}/self/task/{os.getpid()}/children", "rb") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return []


def _orphans(exclude: int | None) -> list[int]:
    """Our live children that are neither attempt wrappers nor in our own session: the
    orphans of attempts that the subreaper took in."""
    children = _children()
    if children is None:
        me = os.getpid()
        children = [pid for pid, st in _table().items() if st[1] == me]
    own_sid = os.getsid(0)
    found = []
    for pid in children:
        if pid == exclude or pid in _wrappers:
            continue
        stat = _stat(pid)
        if stat is not None and stat[0] not in (b"Z", b"X") and stat[3] != own_sid:
            found.append(pid)
    return found


# --- cgroup v2 (see `cgroups`) ---------------------------------------------------------


def cgroup_of(pid: int) -> Path | None:
    """The attempt cgroup (under this supervisor's base) that `pid` is in, else None."""
    base, mount = _current.cgroup_base, _current.mount
    if base is None or mount is None:
        return None
    path = cgroups.own_cgroup(_read_text(f"{_PROC}/{pid}/cgroup"))
    if not path:
        return None
    full = mount / path.lstrip("/")
    return full if full.parent == base else None


def _kill_closed(pid: int) -> None:
    """SIGKILL `pid` (a member of a cgroup being ended) through a pidfd, and close it."""
    fd = _kill(pid)
    if fd is not None:
        os.close(fd)


# --- ending an attempt ------------------------------------------------------------------


def end_attempt(
    token: str | None,
    cgroup: Path | None,
    *,
    session: int | None = None,
    adopted: bool = False,
) -> int:
    """Kill every process left of an attempt whose wrapper has ended; returns how many
    were found outside the cgroup (by the marker).

    `session` is the wrapper's pid (its session id) while it is our unreaped zombie, so the
    id cannot belong to anyone else yet. `adopted`: we are not the attempt's parent (a
    restarted supervisor), so its orphans are not our children and every process of our
    uid is looked at.
    """
    if cgroup is not None:
        cgroups.end(cgroup, token, _kill_closed)
    if token is None:
        return 0
    marker = f"{TOKEN_ENV}={token}".encode()
    killed: dict[int, int | None] = {}
    for _ in range(KILL_ROUNDS):
        if adopted or not _current.subreaper:
            # Not our children (a restart; or no subreaper): look at every process of ours.
            found = _marked(marker, None, None)
        else:
            orphans = _orphans(exclude=session)
            if not orphans:
                break  # nothing of any attempt left our tree: the usual case, and cheap
            found = _marked(marker, session, orphans)
        found = [(pid, started) for pid, started in found if pid not in killed]
        if not found:
            break
        for pid, started in found:
            killed[pid] = _kill(pid, started)
    _wait_gone(killed)
    if killed:
        log.info("killed %d process(es) that had left the attempt's group", len(killed))
    return len(killed)


def _marked(marker: bytes, session: int | None, roots: list[int] | None) -> list[tuple[int, int]]:
    """Processes of the attempt: those carrying `marker` in their environment or in the
    wrapper's `session`, and their descendants, as (pid, start time). Only among the
    descendants of `roots` (our orphaned children) when given, else among every process
    of our uid."""
    table = _table()
    children: dict[int, list[int]] = {}
    for pid, (_state, ppid, *_rest) in table.items():
        children.setdefault(ppid, []).append(pid)
    if roots is not None:
        pool: list[int] = []
        stack = [p for p in roots if p in table]
        while stack:
            pid = stack.pop()
            pool.append(pid)
            stack.extend(children.get(pid, ()))
    else:
        uid = os.getuid()
        pool = [pid for pid in table if pid != os.getpid() and _uid(pid) == uid]
    hits = set()
    for pid in pool:
        if table[pid][0] == b"Z":
            continue
        if (session is not None and table[pid][3] == session) or _has_marker(pid, marker):
            hits.add(pid)
    stack = list(hits)
    while stack:  # a child that cleared its environment is still its parent's
        for child in children.get(stack.pop(), ()):
            if child not in hits and table[child][0] != b"Z":
                hits.add(child)
                stack.append(child)
    return sorted((pid, table[pid][4]) for pid in hits)


def _same(pid: int, started: int | None) -> bool:
    stat = _stat(pid)
    return stat is not None and (started is None or stat[4] == started)


def _kill(pid: int, started: int | None = None) -> int | None:
    """SIGKILL `pid` through a pidfd, so a pid reused since we looked is never hit: its
    start time is checked once the pidfd pins the process. Returns the pidfd (to wait on)
    or None."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        if _same(pid, started):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return None
    if not _same(pid, started):
        os.close(fd)
        return None
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    return fd


def _wait_gone(killed: dict[int, int | None]) -> None:
    """Wait (up to END_WAIT) until the killed processes have exited, so they no longer
    hold worker.lock; reap those that are our children."""
    deadline = time.monotonic() + END_WAIT
    for pid, fd in killed.items():
        if fd is not None:
            try:
                select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            finally:
                os.close(fd)
        else:
            while _stat(pid) not in (None,) and not _is_zombie(pid):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.002)
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


# --- /proc ---------------------------------------------------------------------------------


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def read_proc_stat(pid: int | str) -> bytes | None:
    """The raw /proc/PID/stat line, or None when the process is gone or not ours to read.
    os.open/os.read: half the cost of open(), which builds a buffered file object."""
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
        try:
            return os.read(fd, 4096)
        finally:
            os.close(fd)
    except OSError:
        return None


def _stat(pid: int) -> tuple[bytes, int, int, int, int] | None:
    """(state, ppid, pgid, sid, start time) of `pid`, or None when it is gone. The start
    time (clock ticks since boot) tells a process from a later one with the same pid."""
    data = read_proc_stat(pid)
    if data is None:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return fields[0], int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[0] in (b"Z", b"X")


def _table() -> dict[int, tuple[bytes, int, int, int, int]]:
    table = {}
    try:
        names = os.listdir(_PROC)
    except OSError:
        return table
    for name in names:
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def _uid(pid: int) -> int | None:
    try:
        return os.stat(f"{_PROC}/{pid}").st_uid
    except OSError:
        return None


def _has_marker(pid: int, marker: bytes) -> bool:
    try:
        with open(f"{_PROC}/{pid}/environ", "rb") as f:
            env = f.read()
    except OSError:
        return False  # gone, or not ours to read
    return env.startswith(marker + b"\0") or (b"\0" + marker + b"\0") in env
