"""The attempts' cgroups (cgroup v2): finding where they may go, handing one to each spawn,
ending what is in one, and the sweep of what earlier supervisors left (see `escape`).

Reuse: creating a cgroup and removing it (mkdir and rmdir in cgroupfs) is the dearest part
of giving an attempt one: they take the cgroup tree's lock, and where the box is busy, or
other controllers are enabled, milliseconds each. So a cgroup that an ended attempt leaves
empty is kept (up to POOL_KEEP of them) and handed to a later spawn, of any task, once it
is seen to be still empty; mkdir only when none is free, rmdir only beyond POOL_KEEP, at a
normal exit, and in the sweep of the next supervisor of the same home.

A reused cgroup must never be taken for the attempt that used it before: worker.lock of
that attempt's task still names it, and a restarted supervisor that ends that attempt, or
the sweep, would kill whatever runs in it now. So each cgroup says whose it is, in an
extended attribute (OWNER_XATTR = "TASK TOKEN", set when it is handed out), and ending
the cgroup of an attempt does nothing unless it still names that attempt's token. Where
the kernel has no user xattrs on cgroupfs (before 5.7), nothing is reused: each spawn
gets a cgroup named `TASK-TOKEN` of its own, as before reuse existed, and the name says
whose it is.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("bantzd")

_PROC = "/proc"
# How long ending an attempt may wait for its killed processes to be gone. SIGKILL is
# near-instant; only a process stuck in the kernel (D state, a dead NFS server) takes
# longer, and then the attempt's cgroup stays and is ended by the next sweep.
END_WAIT = 3.0
# Empty cgroups kept for reuse: about as many as attempts start between two ends.
POOL_KEEP = 8
POOL_PREFIX = "a-"
OWNER_XATTR = "user.bantzd.owner"
HOME_XATTR = "user.bantzd.home"  # on a base: the home whose supervisor made it

# Set by `use` (escape.setup): this supervisor's base, and what its kernel offers.
_base: Path | None = None
_has_kill = False
_reuse = False
_free: list[Path] = []


def use(base: Path | None, *, kill: bool) -> bool:
    """Hand out cgroups under `base` from now on (None: none at all); returns whether
    they are reused (see the module docstring). Drops what an earlier `use` kept."""
    global _base, _has_kill, _reuse
    drop_pool()
    _base, _has_kill = base, kill
    _reuse = base is not None and _xattrs_work(base)
    return _reuse


def _xattrs_work(base: Path) -> bool:
    try:
        os.setxattr(base, OWNER_XATTR, b"- -")
        os.removexattr(base, OWNER_XATTR)
    except OSError:
        return False
    return True


def drop_pool() -> None:
    """Remove the kept empty cgroups (a normal exit, or another base from now on)."""
    while _free:
        rmdir(_free.pop(), wait=False)


# --- where -------------------------------------------------------------------------------


def cgroup2_mount(mountinfo: str | None = None) -> Path | None:
    """Where cgroup2 is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in the hybrid
    layout), from /proc/self/mountinfo; None when it is not mounted."""
    if mountinfo is None:
        try:
            mountinfo = Path(f"{_PROC}/self/mountinfo").read_text()
        except OSError:
            return None
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        fields = left.split()
        if right.split()[:1] == ["cgroup2"] and len(fields) >= 5:
            # Octal escapes (\040 for a space) as the kernel writes them.
            return Path(fields[4].encode().decode("unicode_escape"))
    return None


def own_cgroup(text: str | None = None) -> str | None:
    """Our cgroup2 path (the `0::` line of /proc/self/cgroup), e.g. "/" or "/user.slice/..."."""
    if text is None:
        try:
            text = Path(f"{_PROC}/self/cgroup").read_text()
        except OSError:
            return None
    for line in text.splitlines():
        if line.startswith("0::"):
            return line[3:]
    return None


def find_cgroup_base(home_root: Path) -> tuple[Path | None, bool]:
    """A cgroup2 directory where this home's attempts can each get a cgroup, and whether
    the kernel has cgroup.kill; (None, False) where none can be used.

    Tried in order: `bantzd/` inside our own cgroup (a delegated systemd unit or user
    slice: the attempts stay inside the unit, so `systemctl stop` still ends them), then
    `bantzd/` under the cgroup2 root (root). Each is proven by moving a real process in.
    """
    mount = cgroup2_mount()
    own = own_cgroup()
    if mount is None or own is None or "\n" in str(mount):
        return None, False
    digest = hashlib.sha256(str(home_root.resolve()).encode()).hexdigest()[:12]
    parents = []
    if own not in ("/", ""):
        parents.append(mount / own.lstrip("/"))
    parents.append(mount)
    for parent in parents:
        base = parent / "bantzd" / f"h-{digest}"
        kill = _usable(base)
        if kill is not None:
            return base, kill
    return None, False


def _usable(base: Path) -> bool | None:
    """Whether a process can be moved into a child of `base` (None: it cannot); True when
    the kernel also has cgroup.kill."""
    probe = base / f"probe-{os.getpid()}"
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe.mkdir(exist_ok=True)
    except OSError:
        return None
    try:
        res = subprocess.run(
            ["/bin/sh", "-c", 'echo $$ > "$1/cgroup.procs"', "probe", str(probe)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
        return (probe / "cgroup.kill").exists() if res.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        rmdir(probe)


# --- one per spawn -----------------------------------------------------------------------


def make_cgroup(task_name: str, token: str) -> Path | None:
    """An empty cgroup for one spawn, owned by `token` from now on; None where there are
    no cgroups, or none could be had (the attempt then has the environment marker only).
    A kept one when there is one (see the module docstring), else a new one."""
    base = _base
    if base is None:
        return None
    owner = f"{task_name} {token}".encode(errors="surrogateescape")
    while _reuse and _free:
        path = _free.pop()
        if not populated(path) and path.is_dir() and _set_owner(path, owner):
            return path
        # Gone, or something moved into it while it was kept: not ours to hand out; the
        # sweep of the next supervisor ends and removes what is left.
    path = base / (f"{POOL_PREFIX}{token}" if _reuse else f"{task_name}-{token}")
    try:
        try:
            path.mkdir()
        except FileNotFoundError:
            base.mkdir(parents=True, exist_ok=True)
            path.mkdir()
    except OSError as e:
        log.warning("could not create the cgroup %s (%s); using the environment marker", path, e)
        return None
    if _reuse and not _set_owner(path, owner):
        rmdir(path)
        return None
    return path


def _set_owner(path: Path, owner: bytes) -> bool:
    try:
        os.setxattr(path, OWNER_XATTR, owner)
    except OSError as e:
        log.warning("could not mark the cgroup %s as the attempt's (%s)", path, e)
        return False
    return True


def owner_of(path: Path) -> tuple[str, str] | None:
    """(task folder name, token) of the attempt `path` was last handed to; None when it
    is gone. From its OWNER_XATTR, else (not reused) from its name, `TASK-TOKEN`."""
    try:
        raw = os.getxattr(path, OWNER_XATTR)
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            return None  # gone (ENOENT), or not ours to read
        task, _, token = path.name.rpartition("-")
        return task, token
    task, _, token = raw.decode(errors="surrogateescape").partition(" ")
    return task, token


def release(path: Path) -> None:
    """An attempt's cgroup that is empty now (its attempt ended, or never started): kept
    for the next spawn when there is room (once), else removed."""
    if (
        _reuse
        and path.parent == _base
        and path.name.startswith(POOL_PREFIX)
        and len(_free) < POOL_KEEP
        and path not in _free
    ):
        _free.append(path)
    elif path not in _free:
        rmdir(path)


def in_cgroup(path: Path | None) -> list[int]:
    """The pids in cgroup `path` (empty when it is gone)."""
    if path is None:
        return []
    try:
        with open(path / "cgroup.procs", "rb") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def populated(path: Path) -> bool:
    """Whether any process is in cgroup `path` (False when it is gone)."""
    try:
        fd = os.open(path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return bool(in_cgroup(path))
    try:
        text = os.read(fd, 4096)
    except OSError:
        return bool(in_cgroup(path))
    finally:
        os.close(fd)
    return b"populated 1" in text


def end(path: Path, token: str | None, kill: Callable[[int], object]) -> bool:
    """Kill everything in cgroup `path`, wait until it is empty, release it; False when
    it could not be emptied within END_WAIT (it is left for the sweep). `token`: the
    attempt whose cgroup it is; when the cgroup names another one now (handed to a later
    spawn), nothing of this attempt is in it and it is left alone. None: whoever's.
    `kill(pid)`: SIGKILL one pid safely (kernels without cgroup.kill)."""
    owner = owner_of(path)
    if owner is None or (token is not None and owner[1] != token):
        return True
    busy = populated(path)  # read once: an ended attempt's cgroup is usually empty
    if busy:
        deadline = time.monotonic() + END_WAIT
        if _has_kill:
            try:
                (path / "cgroup.kill").write_text("1")
            except OSError as e:
                log.warning("could not write %s: %s", path / "cgroup.kill", e)
        while (busy := populated(path)) and time.monotonic() < deadline:
            for pid in in_cgroup(path):  # no cgroup.kill, or what raced with it
                kill(pid)
            time.sleep(0.002)
    if busy:
        log.warning("processes in %s did not end within %gs after SIGKILL", path, END_WAIT)
        return False
    release(path)
    return True


def sweep(base: Path, home_root: Path, kill: Callable[[int], object]) -> None:
    """Remove this home's attempt cgroups that no live attempt uses: the empty ones, and
    those whose token is no longer the one in their task's worker.lock (killed first)."""
    try:
        names = os.listdir(base)
    except OSError:
        return
    for name in names:
        path = base / name
        if not path.is_dir():
            continue
        if name.startswith("probe-"):
            rmdir(path)
            continue
        if not populated(path):
            rmdir(path)
            continue
        owner = owner_of(path)
        if owner is None:
            continue  # gone meanwhile
        task, token = owner
        lock = _read_text(home_root / "tasks" / task / "worker.lock") if task else None
        if token and token in (lock or "").split():
            continue  # an attempt still running: recovery adopts it
        end(path, None, kill)


def sweep_homes(base: Path, home_root: Path) -> None:
    """Mark `base` as `home_root`'s, and remove the bases of other homes whose supervisors
    are gone: the empty ones (`make_cgroup` recreates its base should one go under its
    feet), and those of a home that no longer exists (a deleted test home), with the empty
    cgroups its supervisor kept for reuse when it was killed (SIGKILL: no exit handler)."""
    if _reuse:
        try:
            os.setxattr(base, HOME_XATTR, os.fsencode(home_root.resolve()))
        except OSError:
            pass
    for sibling in base.parent.glob("h-*"):
        if sibling == base:
            continue
        try:
            home = os.getxattr(sibling, HOME_XATTR)
        except OSError:
            home = None
        if home is not None and not os.path.lexists(home):
            for child in sibling.iterdir():
                if child.is_dir() and child.name.startswith(POOL_PREFIX):
                    rmdir(child, wait=False)  # only an empty one goes
        rmdir(sibling, wait=False)


def remove_cgroup(path: Path) -> None:
    """An attempt's cgroup that no process ever joined (a spawn that failed)."""
    release(path)


def rmdir(path: Path, *, wait: bool = True) -> None:
    """Remove cgroup `path` if it is there; `wait`: a moment for its last process to be
    gone (EBUSY)."""
    for _ in range(50):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or not wait:
                return
            time.sleep(0.002)  # the last process is still on its way out


def _read_text(path: Path) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="surrogateescape")
    except OSError:
        return None
