"""An index of every task's state for the read-only commands, kept in one file of the home.

`bantzd status` and `list` want every task. With 10,000 queued tasks, opening and parsing
10,000 state.json files (and building a TaskState of each) is most of a second; one stat
per task is a few milliseconds. So `state-index.json` keeps, per task, the stat of its
state.json and what the readers need of it: status, name and paused, and the task object's
JSON text (what `show --json` prints), which `list --json` joins without encoding 10,000
objects again. The file has two lines: the entries, then the texts in the same order, so
`status` parses only the first.

It is a cache, never the truth. Every read checks each entry against a fresh stat of its
state.json (inode, mtime, ctime, size: the store replaces the file, so a new version is a
new inode) and re-reads the entries that differ; folders that are gone leave it; a missing,
damaged or other-version file is rebuilt from the task folders. A file changed within
`RACY_NS` of being read is not written into the index (its next change could keep the
same stat, as in git's "racily clean" entries), so it is re-read until it has settled.

Only readers write it: neither the supervisor nor the Store knows of it, so no write path
pays for it. It is replaced atomically and durably (queue/atomic.py, mode 0600): any number
of readers may refresh it at once, the last rename wins and every version is whole.
"""

from __future__ import annotations

import gc
import json
import math
import os
import threading
import time
from json.encoder import encode_basestring as _encode_str  # the C one, ensure_ascii=False
from pathlib import Path
from typing import Any, BinaryIO

from bantzd.paths import Home
from bantzd.queue.states import FINISHED
from bantzd.queue.task import TaskState

INDEX_NAME = "state-index.json"
# Bumped whenever what an entry holds changes (the task object's fields, its JSON form):
# an index of another version is rebuilt rather than read.
VERSION = 1
# A state.json whose mtime or ctime is this close to the moment it was read is not trusted
# to show its next change in its stat (timestamps are coarse: jiffies on ext4, 2 s on FAT).
RACY_NS = 2_000_000_000
# The index is rewritten when this many of its entries were re-read or dropped (or a share
# of them, for a big queue): a task that changes every second costs one re-read per reader,
# not a rewrite of the whole file.
REWRITE_MIN = 32
REWRITE_SHARE = 100
# An entry: [id, st_ino, st_mtime_ns, st_ctime_ns, st_size, status, name, paused], status
# None for a folder that is not a complete task (read_state's None).
_KEY = slice(1, 5)
_INF = math.inf
# One writer of the index at a time in a process: temp names are per process (atomic.py).
_WRITE_LOCK = threading.Lock()


class Row:
    """One task as the index knows it: what `status` counts and `list` prints."""

    __slots__ = ("_text", "home", "id", "name", "paused", "status")

    def __init__(
        self, home: Home, task_id: int, name: str, status: str, paused: bool, text: str | None
    ) -> None:
        self.home = home
        self.id = task_id
        self.name = name
        self.status = status
        self.paused = paused
        self._text = text

    @property
    def finished_state(self) -> bool:
        return self.status in FINISHED

    @property
    def text(self) -> str:
        """json.dumps(state.to_json(), indent=2, ensure_ascii=False): the task object."""
        if self._text is None:
            self._text = _render(self.state())
        return self._text

    def obj(self) -> dict[str, Any]:
        """The task object (`state.to_json()`)."""
        if self._text is None:  # rows read without texts: the task's own file answers
            return self.state().to_json()
        data: dict[str, Any] = json.loads(self._text)
        return data

    def state(self) -> TaskState:
        """The task's TaskState (read from its folder when the row has no text)."""
        if self._text is not None:
            return TaskState.from_json(json.loads(self._text))
        from bantzd.queue.stateread import read_state

        folder = self.home.task_dir(self.id)
        state = read_state(folder)
        if state is None:  # removed since the index was checked
            raise FileNotFoundError(folder / "state.json")
        return state


def index_path(home: Home) -> Path:
    return home.root / INDEX_NAME


def state_rows(home: Home, *, texts: bool = True, write: bool = True) -> list[Row]:
    """Every complete task (what `store.scan_states` yields), as rows, by id.

    Reads the index, checks each entry by a stat of its state.json, re-reads what changed,
    and (with `write`) saves the index again when enough changed to be worth it. Without
    `texts` the texts line is not parsed (`status` needs the counts, not the objects).
    """
    try:
        names = os.listdir(home.tasks)
    except FileNotFoundError:
        return []
    ids = sorted(int(n) for n in names if n.isdigit())
    # Tens of thousands of small lists and no cycles among them: the cyclic collector
    # would walk them again and again for nothing (a third of the time at 10,000 tasks).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with _Index.load(index_path(home)) as index:
            return _rows(home, ids, index, texts=texts, write=write)
    finally:
        if collecting:
            gc.enable()


def _rows(home: Home, ids: list[int], index: _Index, *, texts: bool, write: bool) -> list[Row]:
    old = index.entries
    fresh: dict[int, list[Any]] = {}
    new_texts: dict[int, str | None] = {}
    rows: list[Row] = []
    changed = 0
    now = time.time_ns()
    try:
        # Stats relative to the tasks folder: 10,000 paths are not walked from the root.
        tasks_fd = os.open(home.tasks, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        for task_id in ids:
            try:
                st = os.stat(f"{task_id}/state.json", dir_fd=tasks_fd)
            except OSError:
                continue  # no state (yet): not a task for the readers, as in read_state
            key = [st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size]
            entry = old.get(task_id)
            if entry is not None and entry[_KEY] != key:
                entry = None
            text = index.text(entry) if entry is not None and texts else None
            if text is None and texts and entry is not None and entry[5] is not None:
                entry = None  # not rendered yet (or lost with a damaged texts line): read it
            if entry is not None:
                fresh[task_id] = entry
            else:
                entry, text = _read_entry(home.task_dir(task_id), task_id, key, render=texts)
                if now - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS:
                    fresh[task_id] = entry
                    new_texts[task_id] = text
                    changed += 1
            if entry[5] is not None:
                rows.append(Row(home, task_id, entry[6], entry[5], entry[7], text))
    finally:
        os.close(tasks_fd)
    changed += sum(1 for task_id in old if task_id not in fresh)
    threshold = max(REWRITE_MIN, len(fresh) // REWRITE_SHARE)
    if write and (fresh or old) and (not index.valid or changed >= threshold):
        _save_entries(index_path(home), index, fresh, new_texts)
    return rows


def _save_entries(
    path: Path, index: _Index, fresh: dict[int, list[Any]], new_texts: dict[int, str | None]
) -> None:
    """Write `fresh` (a text None is one not rendered yet, or lost with a damaged texts
    line: the next `list --json` reads that task again)."""
    entries = [fresh[i] for i in sorted(fresh)]
    texts = [new_texts[e[0]] if e[0] in new_texts else index.text(e) for e in entries]
    save(path, entries, texts)


def _render(state: TaskState) -> str:
    """json.dumps(state.to_json(), indent=2, ensure_ascii=False), the same text faster."""
    obj = state.to_json()
    try:
        return indented(obj)
    except _Unusual:
        return json.dumps(obj, indent=2, ensure_ascii=False)


class _Unusual(Exception):
    """A value `indented` leaves to json.dumps (a tuple, a key that is not a string)."""


def indented(value: Any, indent: str = "") -> str:
    """What `json.dumps(value, indent=2, ensure_ascii=False)` returns, for values parsed
    from JSON (dicts with string keys, lists, strings, numbers, booleans, None).

    Python's encoder is pure Python as soon as it indents, and rendering the texts is
    most of what building the index costs; this does the same walk with the C string
    encoder and no generators, more than twice as fast. Anything else raises _Unusual.
    """
    kind = type(value)
    if kind is str:
        return _encode_str(value)
    if kind is dict:
        if not value:
            return "{}"
        inner = indent + "  "
        items = []
        for key, item in value.items():
            if type(key) is not str:
                raise _Unusual
            items.append(f"{inner}{_encode_str(key)}: {indented(item, inner)}")
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if kind is list:
        if not value:
            return "[]"
        inner = indent + "  "
        return "[\n" + ",\n".join(inner + indented(v, inner) for v in value) + "\n" + indent + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float:
        if value != value:
            return "NaN"
        if value in (_INF, -_INF):
            return "Infinity" if value > 0 else "-Infinity"
        return float.__repr__(value)
    raise _Unusual


def _read_entry(
    folder: Path, task_id: int, key: list[int], *, render: bool
) -> tuple[list[Any], str | None]:
    """(entry, text) of a task folder, read now; status and text None when it is not a
    complete task (read_state's None: no task.yaml, unreadable or invalid state.json).

    Without `render` the text is None: encoding the indented JSON (Python's indenting
    encoder is pure Python) is half of what reading a task costs, and `status` does not
    print it; the first `list --json` reads such an entry again and renders it."""
    from bantzd.queue.stateread import read_state

    state = read_state(folder)
    if state is None:
        return [task_id, *key, None, "", False], None
    entry = [task_id, *key, str(state.status), state.name, state.paused]
    return entry, _render(state) if render else None


class _Index:
    """The index file as read: its entries by id, and its texts line parsed when first
    asked for (`status` never asks)."""

    def __init__(self, entries: dict[int, list[Any]], file: BinaryIO | None, valid: bool) -> None:
        self.entries = entries
        self.valid = valid
        # Open on the version read, for its texts line: a reader that renamed a new index
        # in meanwhile does not mix its texts with these entries.
        self._file = file
        self._texts: list[Any] | None = None
        self._pos = {task_id: i for i, task_id in enumerate(entries)} if entries else {}

    @classmethod
    def load(cls, path: Path) -> _Index:
        """The index at `path`; an empty, invalid one when it is missing, damaged or of
        another version. An entry that is not what this version writes is left out."""
        try:
            f = open(path, "rb")  # noqa: SIM115 (closed by __exit__ or below)
        except OSError:
            return cls({}, None, valid=False)
        try:
            body = json.loads(f.readline())
        except (OSError, ValueError):
            body = None
        ok = isinstance(body, dict) and body.get("version") == VERSION
        raw = body.get("entries") if ok else None  # type: ignore[union-attr]
        if not isinstance(raw, list):
            f.close()
            return cls({}, None, valid=False)
        # Every entry keeps its place in the texts line, valid or not.
        entries = {e[0] if _valid(e) else -1 - i: e for i, e in enumerate(raw)}
        return cls(entries, f, valid=True)

    def __enter__(self) -> _Index:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()

    def text(self, entry: list[Any]) -> str | None:
        """The text of `entry`, an entry of this index (None: not a task, or the texts
        line is damaged; the caller then renders it from the file)."""
        if self._texts is None:
            try:
                texts = json.loads(self._file.read()) if self._file is not None else None
            except (OSError, ValueError):
                texts = None
            ok = isinstance(texts, list) and len(texts) == len(self._pos)
            if not ok:  # rows render their texts from the files, and the index is rewritten
                texts, self.valid = [None] * len(self._pos), False
            self._texts = texts
        assert self._texts is not None
        value = self._texts[self._pos[entry[0]]]
        return value if isinstance(value, str) else None


def _valid(entry: object) -> bool:
    """Whether `entry` is one this version writes (the types the readers rely on; the key
    is compared with a stat, so a wrong one only makes the entry re-read)."""
    if type(entry) is not list or len(entry) != 8 or type(entry[0]) is not int:
        return False
    status = entry[5]
    if status is None:
        return True
    return type(status) is str and type(entry[6]) is str and type(entry[7]) is bool


def save(path: Path, entries: list[list[Any]], texts: list[str | None]) -> bool:
    """Write the index; False when it could not be (a full disk, a read-only home): the
    readers answered anyway, and the next one tries again."""
    from bantzd.errors import IoPathError
    from bantzd.queue.atomic import write_bytes_atomic

    compact = {"ensure_ascii": False, "separators": (",", ":")}
    head = json.dumps({"version": VERSION, "entries": entries}, **compact)  # type: ignore[arg-type]
    data = f"{head}\n{json.dumps(texts, **compact)}\n".encode()  # type: ignore[arg-type]
    with _WRITE_LOCK:
        try:
            write_bytes_atomic(path, data)
        except IoPathError:
            return False
    return True


def list_json(rows: list[Row]) -> str:
    """`json.dumps([row.obj() for row in rows], indent=2, ensure_ascii=False)`, from the
    rows' texts: nesting an indented object one level deeper indents each of its lines by
    two spaces (JSON strings hold no raw newline)."""
    if not rows:
        return "[]"
    return "[\n" + ",\n".join("  " + r.text.replace("\n", "\n  ") for r in rows) + "\n]"
