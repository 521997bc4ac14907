"""The index of task states the read-only commands use (queue/stateindex.py).

Real task folders in tmp_path, written the way the store leaves them; the index must always
answer what a scan of the folders (`store.scan_states`) would, however it was left.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd.paths import Home
from bantzd.queue import stateindex
from bantzd.queue.atomic import write_bytes_atomic
from bantzd.queue.stateindex import index_path, list_json, state_rows
from bantzd.queue.states import Status
from bantzd.queue.store import dumps_state, scan_states
from bantzd.queue.task import TaskState

PAST = 1_700_000_000  # an mtime long settled (the racy window is about the present)
REPO = Path(__file__).resolve().parents[2]


def write_task(home: Home, state: TaskState, *, settled: bool = True) -> Path:
    """A task folder as the store leaves it: task.yaml, then state.json."""
    tdir = home.task_dir(state.id)
    tdir.mkdir(parents=True, exist_ok=True)
    (tdir / "task.yaml").write_text(f"name: {state.name}\nrun: 'true'\n")
    write_bytes_atomic(tdir / "state.json", dumps_state(state))
    if settled:
        os.utime(tdir / "state.json", (PAST, PAST))
    return tdir


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    """Five tasks, one of them paused and with a non-ASCII name. Files just written are in
    the racy window (their ctime is now), so the window is closed here; one test opens it."""
    monkeypatch.setattr(stateindex, "RACY_NS", 0)
    monkeypatch.setattr(stateindex, "REWRITE_MIN", 1)
    h = Home(tmp_path / "home")
    h.ensure()
    for i in range(1, 6):
        state = TaskState(id=i, name=f"t{i}", reason="not before 2099-01-01 00:00")
        if i == 2:
            state.name, state.paused = "çalış-ü", True
        if i == 4:
            state.status, state.progress = Status.RUNNING, {"percent": 12.5, "message": "x"}
        write_task(h, state)
    return h


def scanned(home: Home) -> str:
    """What `list --json` printed before there was an index."""
    return json.dumps([s.to_json() for s in scan_states(home)], indent=2, ensure_ascii=False)


def entries(home: Home) -> dict[int, list[object]]:
    head = index_path(home).read_bytes().split(b"\n", 1)[0]
    return {e[0]: e for e in json.loads(head)["entries"]}


def no_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def read(*args: object) -> None:
        raise AssertionError("a state.json was read though the index knew it")

    monkeypatch.setattr(stateindex, "_read_entry", read)


def test_a_missing_index_is_built_and_answers_like_a_scan(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = state_rows(home)
    assert list_json(rows) == scanned(home)
    assert [(r.id, r.name, r.status, r.paused) for r in rows][:2] == [
        (1, "t1", "queued", False),
        (2, "çalış-ü", "queued", True),
    ]
    mode = os.stat(index_path(home)).st_mode
    assert stat.S_IMODE(mode) == 0o600
    no_reads(monkeypatch)  # the second reader stats, and reads nothing
    again = state_rows(home)
    assert list_json(again) == scanned(home)
    assert [r.state() for r in state_rows(home, texts=False)] == list(scan_states(home))


@pytest.mark.parametrize(
    "damage",
    [
        b"",
        b"{",
        b'{"version": 999, "entries": []}\n[]\n',
        b'{"version": 1, "entries": "x"}\n',
        b'{"version": 1, "entries": [[1, 2]]}\n[]\n',
        b"cut",  # the texts line is cut below
    ],
)
def test_a_damaged_index_is_rebuilt(home: Home, damage: bytes) -> None:
    state_rows(home)
    if damage == b"cut":
        damage = index_path(home).read_bytes()[:-40]
    index_path(home).write_bytes(damage)
    assert list_json(state_rows(home)) == scanned(home)
    assert sorted(entries(home)) == [1, 2, 3, 4, 5]
    assert list_json(state_rows(home)) == scanned(home)


def test_an_entry_is_re_read_when_state_json_changes_even_at_the_same_size(
    home: Home,
) -> None:
    state_rows(home)
    path = home.task_dir(3) / "state.json"
    before = path.read_bytes()
    after = before.replace(b'"status":"queued"', b'"status":"failed"')
    assert len(after) == len(before) and after != before
    with open(path, "r+b") as f:  # in place: same inode, same size
        f.write(after)
    assert [r.status for r in state_rows(home) if r.id == 3] == ["failed"]
    replaced = after.replace(b'"status":"failed"', b'"status":"queued"')
    write_bytes_atomic(path, replaced)  # as the store does it: a new inode
    assert [r.status for r in state_rows(home) if r.id == 3] == ["queued"]
    assert list_json(state_rows(home)) == scanned(home)


def test_a_file_changed_just_now_is_read_but_not_trusted_to_the_index(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_rows(home)
    monkeypatch.setattr(stateindex, "RACY_NS", 3_600 * 10**9)
    state = next(s for s in scan_states(home) if s.id == 5)
    state.reason = "changed"
    write_task(home, state, settled=False)
    assert [r.state().reason for r in state_rows(home) if r.id == 5] == ["changed"]
    assert 5 not in entries(home)  # its next change could keep this stat: re-read it
    assert sorted(entries(home)) == [1, 2, 3, 4]


def test_a_removed_task_folder_leaves_the_index(home: Home) -> None:
    state_rows(home)
    for name in os.listdir(home.task_dir(2)):
        os.unlink(home.task_dir(2) / name)
    os.rmdir(home.task_dir(2))
    assert [r.id for r in state_rows(home)] == [1, 3, 4, 5]
    assert sorted(entries(home)) == [1, 3, 4, 5]


def test_folders_that_are_not_tasks_are_left_out_as_by_a_scan(home: Home) -> None:
    (home.task_dir(1) / "task.yaml").unlink()  # read_state's None: no task.yaml
    (home.task_dir(3) / "state.json").write_text('{"id": "three"}')  # a wrong type
    home.task_dir(9).mkdir()  # an intake that did not get far
    state_rows(home)
    rows = state_rows(home)
    assert [r.id for r in rows] == [2, 4, 5] == [s.id for s in scan_states(home)]
    assert list_json(rows) == scanned(home)


def test_small_changes_do_not_rewrite_a_big_index(
    home: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    state_rows(home)
    written = index_path(home).stat().st_ino
    monkeypatch.setattr(stateindex, "REWRITE_MIN", 3)
    state = next(s for s in scan_states(home) if s.id == 4)
    state.progress = {"percent": 50, "message": "y"}
    write_task(home, state)
    assert [r.obj()["progress"] for r in state_rows(home) if r.id == 4] == [state.progress]
    assert index_path(home).stat().st_ino == written  # one re-read costs no rewrite


def test_status_rows_read_without_texts_give_the_same_objects(home: Home) -> None:
    state_rows(home)
    objects = [r.obj() for r in state_rows(home, texts=False)]
    assert objects == [s.to_json() for s in scan_states(home)]


def test_an_empty_or_absent_home_gives_no_rows_and_writes_nothing(tmp_path: Path) -> None:
    assert state_rows(Home(tmp_path / "nothing")) == []
    assert not (tmp_path / "nothing").exists()
    empty = Home(tmp_path / "empty")
    empty.ensure()
    assert state_rows(empty) == [] and list_json([]) == "[]"
    assert not index_path(empty).exists()


READER = """
import json, sys
from bantzd.paths import Home
from bantzd.queue import stateindex
stateindex.RACY_NS = 0
stateindex.REWRITE_MIN = 1
home = Home.resolve(sys.argv[1])
for _ in range(int(sys.argv[2])):
    rows = stateindex.state_rows(home)
    ids = [r.id for r in rows]
    assert ids == list(range(1, 41)), ids
    for r in rows:
        assert json.loads(r.text)["id"] == r.id
print("ok")
"""


def test_concurrent_readers_each_see_every_task_and_leave_a_valid_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers rewrite the index at every call while a writer replaces state files: no
    reader fails or sees a task missing, and the index left behind is whole."""
    monkeypatch.setattr(stateindex, "RACY_NS", 0)
    home = Home(tmp_path / "home")
    home.ensure()
    for i in range(1, 41):
        write_task(home, TaskState(id=i, name=f"t{i}"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    readers = [
        subprocess.Popen(
            [sys.executable, "-c", READER, str(home.root), "15"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    deadline = time.monotonic() + 60
    round_ = 0
    while any(p.poll() is None for p in readers) and time.monotonic() < deadline:
        round_ += 1  # while they read: the store's atomic replaces
        for i in range(1, 41, 3):
            write_task(home, TaskState(id=i, name=f"t{i}", reason=f"round {round_}"))
    for proc in readers:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    assert sorted(entries(home)) == list(range(1, 41))
    assert list_json(state_rows(home)) == scanned(home)
    leftovers = [n for n in os.listdir(home.root) if n.endswith(".tmp")]
    assert leftovers == []


def test_the_commands_print_what_a_scan_printed_with_a_cold_and_a_warm_index(
    home: Home,
) -> None:
    from click.testing import CliRunner

    from bantzd.cli import main

    def run(*args: str) -> str:
        res = CliRunner().invoke(main, ["--home", str(home.root), *args], catch_exceptions=False)
        assert res.exit_code == 0, res.output
        return res.stdout

    for _ in ("cold", "warm"):
        assert run("list", "--json") == scanned(home) + "\n"
        running = json.loads(run("list", "--json", "--status", "running"))
        assert [t["id"] for t in running] == [4]
        report = json.loads(run("status", "--json"))
        assert report["counts"]["queued"] == 4 and report["paused_tasks"] == {"queued": 1}
        assert report["running"] == [s.to_json() for s in scan_states(home) if s.id == 4]
        assert json.loads(run("show", "çalış-ü", "--json"))["id"] == 2
        assert index_path(home).exists()


def test_status_leaves_the_texts_to_the_first_list(home: Home) -> None:
    """`status` (no texts) builds the index without encoding any task object; the first
    `list --json` renders them and saves them."""
    state_rows(home, texts=False)
    assert json.loads(index_path(home).read_bytes().split(b"\n")[1]) == [None] * 5
    assert list_json(state_rows(home)) == scanned(home)
    texts = json.loads(index_path(home).read_bytes().split(b"\n")[1])
    assert [json.loads(t)["id"] for t in texts] == [1, 2, 3, 4, 5]


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(JSON_VALUES)
def test_indented_is_what_json_dumps_prints(value: object) -> None:
    assert stateindex.indented(value) == json.dumps(value, indent=2, ensure_ascii=False)


@pytest.mark.parametrize("value", [(1, 2), {1: "a"}, {"a": {None: 1}}, object()])
def test_indented_leaves_what_json_did_not_make_to_json_dumps(value: object) -> None:
    with pytest.raises(stateindex._Unusual):
        stateindex.indented(value)
