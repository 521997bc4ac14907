"""A tiny in-memory file system: folders, names pointing at inodes, inode contents.

Both the trace parser (which replays the recorded run to know which inode a name means at
each moment) and the crash-state builder (which replays a subset of it) use it. Paths are
relative to the recorded root, with "/" separators; "" is the root itself.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def parent(path: str) -> str:
    return path.rpartition("/")[0]


@dataclass(frozen=True)
class Op:
    """One logical file-system operation of the recorded run.

    `index` is its place in the sequence (the order calls completed in); `start` and `end`
    are the trace lines where the call began and returned: an fsync persists only what
    completed before it began (calls of other threads may overlap it).
    """

    index: int
    start: int
    end: int
    pid: int
    kind: str  # create mkdir rename link unlink rmdir write truncate fsync sync
    path: str = ""  # the name (create, mkdir, unlink, rmdir, fsync of a folder), or the source
    dst: str = ""  # rename / link target
    inode: int = -1  # create, write, truncate, fsync of a file
    offset: int = 0
    data: bytes = b""
    size: int = 0  # truncate
    append: bool = False  # a write that extended the file
    is_dir: bool = False  # an fsync of a folder

    DIR_KINDS = frozenset({"create", "mkdir", "rename", "link", "unlink", "rmdir"})
    DATA_KINDS = frozenset({"write", "truncate"})

    @property
    def is_barrier(self) -> bool:
        return self.kind in ("fsync", "sync")

    @property
    def is_dir_op(self) -> bool:
        return self.kind in self.DIR_KINDS

    @property
    def is_data_op(self) -> bool:
        return self.kind in self.DATA_KINDS

    def dirs(self) -> tuple[str, ...]:
        """The folders whose entries this operation changes (each must be fsynced)."""
        if self.kind in ("rename", "link"):
            return tuple(dict.fromkeys([parent(self.path), parent(self.dst)]))
        if self.is_dir_op:
            return (parent(self.path),)
        return ()

    def describe(self) -> str:
        where = f"#{self.index} (pid {self.pid})"
        if self.kind in ("rename", "link"):
            return f"{where} {self.kind} {self.path} -> {self.dst}"
        if self.kind == "write":
            shown = self.data[:60]
            more = "..." if len(self.data) > 60 else ""
            how = "append" if self.append else "write"
            return (
                f"{where} {how} {len(self.data)} bytes at {self.offset} to {self.path}: "
                f"{shown!r}{more}"
            )
        if self.kind == "truncate":
            return f"{where} truncate {self.path} to {self.size}"
        if self.kind == "fsync":
            return f"{where} fsync {'folder ' if self.is_dir else ''}{self.path or '.'}"
        if self.kind == "sync":
            return f"{where} sync"
        return f"{where} {self.kind} {self.path}"

    def cut(self) -> Op:
        """This write with only the first half of its bytes (a torn append)."""
        from dataclasses import replace

        return replace(self, data=self.data[: len(self.data) // 2])


@dataclass
class FsState:
    """Folders, file names -> inode, inode -> bytes."""

    dirs: set[str] = field(default_factory=lambda: {""})
    names: dict[str, int] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)

    @classmethod
    def from_folder(cls, root: Path) -> FsState:
        """The state of a real folder (the snapshot taken before the recorded run)."""
        fs = cls()
        inode = 0
        for folder, dirs, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            rel = "" if rel == "." else rel.replace(os.sep, "/")
            for d in dirs:
                fs.dirs.add(f"{rel}/{d}" if rel else d)
            for f in files:
                path = Path(folder) / f
                if path.is_symlink() or not path.is_file():
                    raise ValueError(f"{path}: only folders and regular files can be modelled")
                inode -= 1  # snapshot inodes are negative: traced ones count up from 1
                fs.names[f"{rel}/{f}" if rel else f] = inode
                fs.data[inode] = path.read_bytes()
        return fs

    def copy(self) -> FsState:
        return FsState(set(self.dirs), dict(self.names), dict(self.data))

    def exists(self, path: str) -> bool:
        return path in self.names or path in self.dirs

    def apply(self, op: Op) -> bool:
        """Apply `op`; False (and nothing changed) when it cannot apply in this state,
        because an operation it depends on was dropped (its folder, its source name)."""
        kind = op.kind
        if kind == "create":
            if parent(op.path) not in self.dirs or op.path in self.dirs:
                return False
            self.names[op.path] = op.inode
            self.data.setdefault(op.inode, b"")
            return True
        if kind == "mkdir":
            if parent(op.path) not in self.dirs or self.exists(op.path):
                return False
            self.dirs.add(op.path)
            return True
        if kind in ("rename", "link"):
            return self._move(op.path, op.dst, keep=kind == "link")
        if kind == "unlink":
            return self.names.pop(op.path, None) is not None
        if kind == "rmdir":
            busy = any(p.startswith(op.path + "/") for p in (*self.names, *self.dirs))
            if op.path not in self.dirs or busy:
                return False
            self.dirs.discard(op.path)
            return True
        if kind == "write":
            old = self.data.get(op.inode, b"")
            pad = b"\0" * max(0, op.offset - len(old))
            end = op.offset + len(op.data)
            self.data[op.inode] = old[: op.offset] + pad + op.data + old[end:]
            return True
        if kind == "truncate":
            old = self.data.get(op.inode, b"")
            self.data[op.inode] = old[: op.size] + b"\0" * max(0, op.size - len(old))
            return True
        return True  # fsync, sync: no change of content

    def _move(self, src: str, dst: str, *, keep: bool) -> bool:
        if parent(dst) not in self.dirs:
            return False
        if src in self.names:
            if dst in self.dirs:
                return False
            self.names[dst] = self.names[src]
            if not keep and src != dst:
                del self.names[src]
            return True
        if src in self.dirs and not keep:  # a folder: move everything under it
            if self.exists(dst):
                return False
            pre = src + "/"
            self.dirs = {
                dst + d[len(src) :] if d == src or d.startswith(pre) else d for d in self.dirs
            }
            self.names = {
                (dst + p[len(src) :] if p.startswith(pre) else p): i for p, i in self.names.items()
            }
            return True
        return False

    def files(self) -> dict[str, bytes]:
        """Every file's content by path."""
        return {p: self.data.get(i, b"") for p, i in self.names.items()}

    def read(self, path: str) -> bytes | None:
        inode = self.names.get(path)
        return None if inode is None else self.data.get(inode, b"")

    def digest(self, exclude: frozenset[str] = frozenset()) -> str:
        """A hash of the folders and file contents (two equal states are checked once)."""
        h = hashlib.blake2b(digest_size=16)
        for d in sorted(self.dirs):
            h.update(b"D" + d.encode() + b"\0")
        for p, content in sorted(self.files().items()):
            if p in exclude:
                continue
            h.update(b"F" + p.encode() + b"\0" + hashlib.blake2b(content).digest())
        return h.hexdigest()

    def write_to(self, folder: Path) -> None:
        """Materialise the state as a real folder (which must not exist yet)."""
        folder.mkdir(mode=DIR_MODE)
        for d in sorted(self.dirs, key=lambda p: p.count("/")):
            if d:
                (folder / d).mkdir(mode=DIR_MODE)
        first: dict[int, Path] = {}
        for p, inode in sorted(self.names.items()):
            target = folder / p
            if inode in first:
                os.link(first[inode], target)  # a hard link stays one file
                continue
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            try:
                os.write(fd, self.data.get(inode, b""))
            finally:
                os.close(fd)
            first[inode] = target
