"""Atomic, durable file replacement: the one helper every JSON write goes through.

The sequence is temp file in the same folder -> fsync -> os.replace -> fsync of the folder
(STYLE 8). A reader sees the old or the new file, never half of one, and once the call
returns the new file survives a power cut.

`DurableBatch` does the same for many files at once: the expensive part of a durable write
is the fsyncs, and ext4/xfs commit concurrent fsyncs together, so a supervisor tick that
changes 50 tasks issues its fsyncs in parallel instead of paying for them one by one.

Files are created 0600 (private to the user, whatever the umask). A power cut between the
temp write and the rename leaves a `.NAME.PID.tmp` behind; `leftover_temps` finds those
whose writer is gone, for the supervisor to remove at start.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bantzd.errors import IoPathError
from bantzd.paths import FILE_MODE

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

_POOL: ThreadPoolExecutor | None = None

# `.NAME.PID.tmp`: the temp names `temp_path` gives (and `bantzd submit` uses in the spool).
TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]{1,10})\.tmp$")
# A temp file this old is a leftover even if its pid is alive again (reused after a reboot):
# a real write takes milliseconds.
STALE_TEMP_AGE = 60.0


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        # Imported here: workers import this module and should not pay for threads.
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="bantzd-fsync")
    return _POOL


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or unlink inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def dumps(obj: Any, *, compact: bool = False, sort_keys: bool = False) -> bytes:
    """The JSON encoding bantzd files use: UTF-8, trailing newline; indented with sorted keys
    for the files people read, compact for worker data (checkpoints), where the indenting
    encoder (pure Python) would cost more than the fsyncs."""
    if compact:
        text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    else:
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
    return (text + "\n").encode()


def temp_path(path: Path) -> Path:
    """The temp file a write of `path` goes through: same folder, hidden, this pid's."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def create_private(path: Path) -> int:
    """Create `path` for writing, mode 0600 whatever the umask.

    O_EXCL, because O_TRUNC on a file left by an earlier process would keep *its* mode
    (perhaps 0644); such a leftover is removed and the file created afresh.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        return os.open(path, flags, FILE_MODE)
    except FileExistsError:
        _unlink_quiet(path)
        return os.open(path, flags, FILE_MODE)


def _write_tmp(path: Path, data: bytes, fsync: bool) -> Path:
    tmp = temp_path(path)
    fd = create_private(tmp)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quiet(tmp)
        raise
    os.close(fd)
    return tmp


def _unlink_quiet(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace `path` with `data` atomically and durably."""
    path = Path(path)
    try:
        tmp = _write_tmp(path, data, fsync=True)
        try:
            os.replace(tmp, path)
        except BaseException:
            _unlink_quiet(tmp)
            raise
        fsync_dir(path.parent)
    except OSError as e:
        raise IoPathError(path, "writing", e) from e


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, compact: bool = False) -> None:
    """Replace `path` with `obj` as JSON, atomically and durably."""
    write_bytes_atomic(path, dumps(obj, compact=compact))


def read_json(path: str | os.PathLike[str], default: Any = None) -> Any:
    """Read a JSON file written by `write_json_atomic`; `default` if it does not exist."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        return default


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (of any user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def leftover_temps(folder: Path, now: float | None = None) -> list[Path]:
    """bantzd's own temp files in `folder` whose writer is gone: its pid is not alive, or
    the file is older than STALE_TEMP_AGE. Other files (a user's own `.x.tmp`) are never
    listed: only names of the `.NAME.PID.tmp` pattern count."""
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for entry in entries:
        m = TEMP_NAME.match(entry.name)
        if m is None:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not (entry.is_file(follow_symlinks=False) or entry.is_symlink()):
            continue
        if not pid_alive(int(m["pid"])) or now - st.st_mtime > STALE_TEMP_AGE:
            found.append(Path(entry.path))
    return sorted(found)


def remove_leftover_temps(folders: Iterable[Path], now: float | None = None) -> list[Path]:
    """Delete `leftover_temps` of each folder (and fsync the folders); returns what went."""
    removed = []
    touched = []
    for folder in folders:
        gone = []
        for path in leftover_temps(folder, now):
            try:
                os.unlink(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise IoPathError(path, "removing the leftover temp file", e) from e
            gone.append(path)
        if gone:
            removed += gone
            touched.append(folder)
    fsync_dirs(touched)
    return removed


def _concurrently(fn: Any, items: list[Any]) -> None:
    """Run `fn` over `items`, in the fsync pool when there is more than one."""
    if len(items) == 1:
        fn(items[0])
    elif items:
        for _ in _pool().map(fn, items):
            pass


def fsync_dirs(dirs: Iterable[Path]) -> None:
    """fsync many folders concurrently (see module docstring)."""
    _concurrently(fsync_dir, list(dict.fromkeys(dirs)))


class DurableBatch:
    """Collects atomic replacements and makes them durable together in `commit()`.

    Each `write` is still atomic on its own (temp + rename happen in `commit`); what is
    shared is the waiting for the disk. Nothing is visible until `commit`.
    """

    def __init__(self) -> None:
        self._pending: dict[Path, bytes] = {}
        self._extra_dirs: list[Path] = []

    def __len__(self) -> int:
        return len(self._pending)

    def write(self, path: str | os.PathLike[str], data: bytes) -> None:
        self._pending[Path(path)] = data

    def write_json(self, path: str | os.PathLike[str], obj: Any) -> None:
        self.write(path, dumps(obj))

    def sync_dir(self, path: str | os.PathLike[str]) -> None:
        """Also fsync this folder at commit (e.g. after a rename done by the caller)."""
        self._extra_dirs.append(Path(path))

    @property
    def empty(self) -> bool:
        return not self._pending and not self._extra_dirs

    def merge_under(self, newer: DurableBatch) -> None:
        """Give `newer` what this (failed) batch still had, without undoing newer writes."""
        for path, data in self._pending.items():
            newer._pending.setdefault(path, data)
        newer._extra_dirs[:0] = self._extra_dirs

    def discard_under(self, folder: Path) -> None:
        """Forget staged writes inside `folder` (it is being deleted)."""
        for path in [p for p in self._pending if p.parent == folder]:
            del self._pending[path]
        self._extra_dirs = [d for d in self._extra_dirs if d != folder]

    def commit(self) -> None:
        """Write everything staged. On failure (ENOSPC...) nothing staged is dropped: the
        next commit tries again, and every file still holds its old or its new version."""
        pending, extra = dict(self._pending), list(self._extra_dirs)
        if len(pending) == 1 and not extra:
            [(path, data)] = pending.items()
            write_bytes_atomic(path, data)
        elif pending or extra:
            self._commit_many(pending, extra)
        for path, data in pending.items():
            if self._pending.get(path) is data:
                del self._pending[path]
        del self._extra_dirs[: len(extra)]

    @staticmethod
    def _commit_many(pending: dict[Path, bytes], extra: list[Path]) -> None:
        # Write every temp file, fsync the open fds concurrently, then rename them all and
        # fsync the folders concurrently: the disk waits overlap instead of adding up.
        tmps: list[tuple[Path, Path]] = []
        fds: list[int] = []
        try:
            for path, data in pending.items():
                tmp = temp_path(path)
                fd = create_private(tmp)
                fds.append(fd)
                tmps.append((tmp, path))
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            _concurrently(os.fsync, fds)
            for tmp, path in tmps:
                os.replace(tmp, path)
            tmps = []
            fsync_dirs([p.parent for p in pending] + extra)
        except OSError as e:
            for tmp, _ in tmps:
                _unlink_quiet(tmp)
            raise IoPathError(next(iter(pending), "files"), "writing", e) from e
        finally:
            for fd in fds:
                os.close(fd)
