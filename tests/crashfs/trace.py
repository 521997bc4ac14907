"""Record a command's file-system calls with strace and turn them into logical operations.

strace runs with `-f` (the supervisor writes state from a writer thread and fsyncs from a
pool; workers are child processes), `-yy` (every fd printed with the path it refers to)
and `-xx -s 65536` (every string, paths and written data alike, in hex: parsing is exact
and nothing is cut). Only calls on paths under the recorded root become operations.

The parser replays the operations on an `FsState` as it goes, starting from a snapshot of
the root taken before the run, so it knows which inode a name means at each moment (a
write to `.state.json.123.tmp` is a write to the inode that a later rename calls
`state.json`). Offsets of plain writes come from the open file description (opened by
this process and thread, else the latest description of that inode, else an append).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.crashfs.model import FsState, Op

SYSCALLS = (
    "open,openat,creat,close,dup,dup2,dup3,lseek,write,pwrite64,writev,ftruncate,truncate,"
    "fsync,fdatasync,sync,syncfs,rename,renameat,renameat2,link,linkat,unlink,unlinkat,"
    "mkdir,mkdirat,rmdir"
)


def strace_path() -> str | None:
    return shutil.which("strace")


def strace_argv(trace_file: Path, argv: list[str]) -> list[str]:
    """The command line that runs `argv` under strace, writing the trace to `trace_file`."""
    strace = strace_path() or "strace"
    return [
        strace,
        "-f",
        "-qq",
        "-yy",
        "-xx",
        "-s",
        "65536",
        "-e",
        f"trace={SYSCALLS}",
        "-e",
        "signal=none",
        "-o",
        str(trace_file),
        *argv,
    ]


class TraceError(Exception):
    """The trace cannot be modelled soundly (says which line and why)."""


@dataclass
class _Desc:
    inode: int
    append: bool
    pos: int = 0


@dataclass
class Trace:
    ops: list[Op]
    snapshot: FsState
    final: FsState  # the state after every operation (what the run left)
    # Calls on relative paths with no folder to resolve them against: the model cannot
    # tell whether they touched the root.
    unresolved: list[str] = field(default_factory=list)
    lines: int = 0


_LINE = re.compile(r"^(\d+)\s+(.*)$")
_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(-?\d+|\?)(?:<((?:\\x[0-9a-f]{2})*)>)?")
_FD = re.compile(r"^(-?\d+|AT_FDCWD)<((?:\\x[0-9a-f]{2})*)>(\(deleted\))?$")
_STR = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
_UNFINISHED = "<unfinished ...>"


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def split_args(text: str) -> list[str]:
    """Split a call's argument list at the top-level commas."""
    args, depth, quoted, cur = [], 0, False, []
    i = 0
    while i < len(text):
        c = text[i]
        if quoted:
            if c == "\\":
                cur.append(text[i : i + 2])
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c in "{[(":
            depth += 1
        elif c in "}])":
            depth -= 1
        elif c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    if cur or args:
        args.append("".join(cur).strip())
    return args


def _string(arg: str, what: str) -> tuple[bytes, bool]:
    m = _STR.fullmatch(arg)
    if m is None:
        raise TraceError(f"{what}: expected a string, got {arg[:80]!r}")
    return _hex(m[1]), m[2] is not None


def _fd(arg: str) -> tuple[int | None, str | None, bool]:
    """(fd number or None for AT_FDCWD, the path it refers to, deleted?)."""
    m = _FD.match(arg)
    if m is None:
        return None, None, False
    num = None if m[1] == "AT_FDCWD" else int(m[1])
    return num, os.fsdecode(_hex(m[2])), m[3] is not None


class _Parser:
    def __init__(self, root: Path, snapshot: FsState) -> None:
        self.root = os.path.realpath(root)
        self.fs = snapshot.copy()
        self.ops: list[Op] = []
        self.descs: dict[tuple[int, int], _Desc] = {}
        self.latest: dict[int, _Desc] = {}
        self.unresolved: list[str] = []
        self.next_inode = 1
        self.line = 0
        self.start = 0
        self.pid = 0

    # paths -------------------------------------------------------------------------------

    def rel(self, path: str | None) -> str | None:
        if path is None:
            return None
        path = os.path.normpath(path)
        if path == self.root:
            return ""
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1 :]
        return None

    def path_arg(self, dirfd: str | None, arg: str, call: str) -> str | None:
        raw, _ = _string(arg, call)
        path = os.fsdecode(raw)
        if not path.startswith("/"):
            base = _fd(dirfd)[1] if dirfd is not None else None
            if base is None:
                self.unresolved.append(f"line {self.line}: {call}({path!r})")
                return None
            path = os.path.join(base, path)
        return self.rel(path)

    # operations --------------------------------------------------------------------------

    def emit(self, kind: str, **fields: object) -> Op:
        op = Op(
            index=len(self.ops), start=self.start, end=self.line, pid=self.pid, kind=kind, **fields
        )  # type: ignore[arg-type]
        if not self.fs.apply(op):
            raise TraceError(f"line {self.line}: {op.describe()} does not apply to the model")
        self.ops.append(op)
        return op

    def name_of(self, inode: int) -> str:
        return next((p for p, i in self.fs.names.items() if i == inode), "?")

    def handle(self, call: str, args: list[str], ret: int, ret_path: str | None) -> None:
        pid = self.pid
        if call in ("open", "openat", "creat"):
            self.do_open(call, args, ret, ret_path)
        elif call == "close":
            self.descs.pop((pid, _fd(args[0])[0] or -1), None)
        elif call in ("dup", "dup2", "dup3"):
            old = _fd(args[0])[0]
            desc = self.descs.get((pid, old)) if old is not None else None
            if desc is not None:
                self.descs[(pid, ret)] = desc
            else:
                self.descs.pop((pid, ret), None)
        elif call == "lseek":
            fd = _fd(args[0])[0]
            desc = self.descs.get((pid, fd)) if fd is not None else None
            if desc is not None:
                desc.pos = ret
        elif call in ("write", "pwrite64", "writev"):
            self.do_write(call, args, ret)
        elif call in ("ftruncate", "truncate"):
            if call == "ftruncate":
                _, path, deleted = _fd(args[0])
                rel = None if deleted else self.rel(path)
            else:
                rel = self.path_arg(None, args[0], call)
            if rel is not None and rel in self.fs.names:
                inode = self.fs.names[rel]
                self.emit("truncate", path=rel, inode=inode, size=int(args[1]))
        elif call in ("fsync", "fdatasync"):
            _, path, deleted = _fd(args[0])
            rel = None if deleted else self.rel(path)
            if rel is None:
                return
            if rel in self.fs.dirs:
                self.emit("fsync", path=rel, is_dir=True)
            elif rel in self.fs.names:
                self.emit("fsync", path=rel, inode=self.fs.names[rel])
        elif call in ("sync", "syncfs"):
            self.emit("sync")
        elif call in ("rename", "renameat", "renameat2", "link", "linkat"):
            self.do_move(call, args)
        elif call in ("unlink", "unlinkat", "rmdir"):
            if call == "unlinkat":
                rel = self.path_arg(args[0], args[1], call)
                kind = "rmdir" if "AT_REMOVEDIR" in args[2] else "unlink"
            else:
                rel = self.path_arg(None, args[0], call)
                kind = "rmdir" if call == "rmdir" else "unlink"
            if rel is not None:
                self.emit(kind, path=rel)
        elif call in ("mkdir", "mkdirat"):
            rel = (
                self.path_arg(args[0], args[1], call)
                if call == "mkdirat"
                else self.path_arg(None, args[0], call)
            )
            if rel is not None:
                self.emit("mkdir", path=rel)

    def do_open(self, call: str, args: list[str], fd: int, ret_path: str | None) -> None:
        self.descs.pop((self.pid, fd), None)
        rel = self.rel(ret_path)
        if rel is None or rel in self.fs.dirs:
            return
        flags = (
            "O_CREAT|O_TRUNC|O_WRONLY" if call == "creat" else args[2 if call == "openat" else 1]
        )
        if "O_DIRECTORY" in flags:
            return
        if rel not in self.fs.names:
            if "O_CREAT" not in flags:
                raise TraceError(f"line {self.line}: opened {rel}, which the model lacks")
            self.emit("create", path=rel, inode=self.next_inode)
            self.next_inode += 1
        inode = self.fs.names[rel]
        if "O_TRUNC" in flags and self.fs.data.get(inode):
            self.emit("truncate", path=rel, inode=inode, size=0)
        desc = _Desc(inode, append="O_APPEND" in flags)
        self.descs[(self.pid, fd)] = desc
        self.latest[inode] = desc

    def do_write(self, call: str, args: list[str], ret: int) -> None:
        fd, path, deleted = _fd(args[0])
        rel = None if deleted else self.rel(path)
        if rel is None or ret <= 0:
            return
        if call == "writev":
            parts = [_hex(m[1]) for m in _STR.finditer(args[1])]
            cut = args[1].count('"...') > 0
            data = b"".join(parts)
        else:
            data, cut = _string(args[1], call)
        if len(data) < ret:
            raise TraceError(f"line {self.line}: {call} data cut by strace ({cut=}); raise -s")
        data = data[:ret]
        inode = self.fs.names.get(rel)
        if inode is None:
            raise TraceError(f"line {self.line}: {call} to {rel}, which the model lacks")
        desc = self.descs.get((self.pid, fd)) if fd is not None else None
        if desc is None or desc.inode != inode:
            # Another thread of the process, or a child that inherited the fd.
            desc = self.latest.get(inode) or _Desc(inode, append=True)
        size = len(self.fs.data.get(inode, b""))
        if call == "pwrite64":
            offset = int(args[3])
        else:
            offset = size if desc.append else desc.pos
            desc.pos = offset + ret
        self.emit(
            "write", path=rel, inode=inode, offset=offset, data=data, append=offset + ret > size
        )

    def do_move(self, call: str, args: list[str]) -> None:
        if call in ("rename", "link"):
            src = self.path_arg(None, args[0], call)
            dst = self.path_arg(None, args[1], call)
        else:
            src = self.path_arg(args[0], args[1], call)
            dst = self.path_arg(args[2], args[3], call)
            if call == "renameat2" and "RENAME_EXCHANGE" in args[4]:
                raise TraceError(f"line {self.line}: RENAME_EXCHANGE is not modelled")
        kind = "link" if call.startswith("link") else "rename"
        if src is None and dst is None:
            return
        if src is None:
            raise TraceError(f"line {self.line}: a file moved in from outside is not modelled")
        if dst is None:
            if kind == "rename":
                self.emit("unlink", path=src)
            return
        self.emit(kind, path=src, dst=dst)


def parse_trace(text: str, root: Path, snapshot: FsState) -> Trace:
    """The operations on files under `root` in a trace written by `strace_argv`."""
    p = _Parser(root, snapshot)
    pending: dict[int, tuple[int, str]] = {}
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        m = _LINE.match(raw)
        if m is None:
            continue
        pid, rest = int(m[1]), m[2]
        if rest.startswith(("---", "+++")):
            continue
        if rest.endswith(_UNFINISHED):
            pending[pid] = (lineno, rest[: -len(_UNFINISHED)].rstrip())
            continue
        start = lineno
        resumed = _RESUMED.match(rest)
        if resumed is not None:
            if pid not in pending:
                continue
            start, head = pending.pop(pid)
            rest = head + resumed[2]
        call = _CALL.match(rest)
        if call is None:
            continue
        name, argtext, ret_text, ret_hex = call[1], call[2], call[3], call[4]
        if ret_text == "?" or int(ret_text) < 0:
            continue  # failed, or the process ended inside the call: no effect
        p.line, p.start, p.pid = lineno, start, pid
        ret_path = os.fsdecode(_hex(ret_hex)) if ret_hex is not None else None
        try:
            p.handle(name, split_args(argtext), int(ret_text), ret_path)
        except (IndexError, ValueError) as e:
            raise TraceError(f"line {lineno}: cannot parse {raw[:200]!r}: {e}") from e
    return Trace(
        ops=p.ops, snapshot=snapshot, final=p.fs, unresolved=p.unresolved, lines=len(lines)
    )
