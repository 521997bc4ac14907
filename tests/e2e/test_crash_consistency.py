"""The power-cut promise, checked the ALICE way (Pillai et al., OSDI 2014).

A real `bantzd run --once` runs under strace while it takes in three task files (one
exits 0, one fails with `retries: 0`, one `python:` task saves two checkpoints), starts
them, records their ends, and stops. From the trace, tests/crashfs builds every state a
POSIX file system may be left in by a power cut at each point of the run (unsynced writes
lost or torn, unsynced renames and creations undone; see tests/crashfs/replay.py), and
each distinct state gets bantzd's real recovery (`Supervisor.recover()` in-process, the
code a restarted `bantzd run` runs first; a sample also through the real CLI). Then:

* recovery does not crash and logs no error;
* every task accepted into tasks/ (task.yaml in place) is still there, in exactly one
  valid state, and none is left `running` (after a power cut nothing runs);
* each spool file is exactly one thing: still in the spool, or one task's task.yaml,
  never both and never none; once its acceptance was durable, it stays that task;
* a task whose done/failed state.json was durable keeps that status and exit code;
* every JSON file bantzd replaces atomically (state.json, checkpoint.json, next_id.json,
  supervisor.json) holds a version that was written whole, never a torn one; a durable
  checkpoint is never replaced by an older one;
* the next id is above every id in use or named by the journal.

The number of crash states checked is printed and written to $BANTZ_CRASH_REPORT (default
`bantzd-crash-states.txt` in the temp folder) for the release note.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bantzd.config import load_config
from bantzd.paths import Home
from bantzd.queue.states import FINISHED, Status
from bantzd.queue.store import read_state
from bantzd.supervisor import control
from bantzd.supervisor.loop import Supervisor
from tests.conftest import config_text
from tests.crashfs.model import FsState, Op
from tests.crashfs.replay import CrashState, build, crash_states, durable_at, floor_state
from tests.crashfs.trace import Trace, parse_trace, strace_argv, strace_path

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        strace_path() is None and os.environ.get("CI") != "true",
        reason="strace is not installed (CI installs it with .ci/install-strace); "
        "the crash-consistency test records the supervisor's system calls with it",
    ),
]

CKJOB = """\
def main(ctx, args):
    old = ctx.checkpoint or {"n": 0}
    ctx.save({"n": old["n"] + 1, "pad": "a" * 200})
    ctx.save({"n": old["n"] + 2, "pad": "b" * 200})
"""

# name -> (file, expected final status, exit code)
TASKS = {
    "ok": ('name: ok\nrun: "true"\n', "done", 0),
    "bad": ('name: bad\nrun: "exit 3"\nretries: 0\n', "failed", 3),
    "ck": ('name: ck\npython: "ckjob:main"\ncwd: {work}\n', "done", 0),
}
# Files bantzd promises to replace atomically (SPEC section 2): never torn.
ATOMIC = re.compile(r"(^|/)(state|checkpoint|next_id|supervisor|result)\.json$")
# Written for a person to read, never read back by recovery: left out of the state digest so
# that crash points between two log lines are not checked twice.
NOT_COMPARED = frozenset({"bantzd.log"})
# How many distinct crash states also get a real `bantzd run --once` subprocess.
CLI_SAMPLE = 3
MAX_SHOWN = 5


@dataclass
class Recorded:
    root: Path  # the traced home
    base: Path  # scratch folder for crash states
    work: Path
    spool_files: dict[str, bytes]  # spool name -> content, as dropped before the run
    trace: Trace

    @property
    def ops(self) -> list[Op]:
        return self.trace.ops


def record(base: Path, env_extra: dict[str, str] | None = None) -> Recorded:
    """Drop the three task files, snapshot the home, and trace one `bantzd run --once`."""
    root = base / "home"
    work = base / "work"
    work.mkdir()
    (work / "ckjob.py").write_text(CKJOB)
    Home(root).ensure()
    (root / "config.toml").write_text(config_text("max_parallel = 3"))
    spool_files = {}
    for name, (text, _, _) in TASKS.items():
        data = text.format(work=work).encode()
        (root / "spool" / f"{name}.yaml").write_bytes(data)
        spool_files[f"{name}.yaml"] = data
    snapshot = FsState.from_folder(root)
    trace_file = base / "strace.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    env.update(env_extra or {})
    res = subprocess.run(
        strace_argv(
            trace_file, [sys.executable, "-m", "bantzd", "--home", str(root), "run", "--once"]
        ),
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert res.returncode == 0, f"the traced run failed:\n{res.stdout}\n{res.stderr}"
    trace = parse_trace(trace_file.read_text(), root, snapshot)
    return Recorded(root, base, work, spool_files, trace)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """One traced supervisor run over three tasks; the snapshot taken just before it."""
    return record(Path(os.path.realpath(tmp_path_factory.mktemp("crashfs"))))


# the recording ----------------------------------------------------------------------------


def test_trace_models_the_whole_run(recorded: Recorded) -> None:
    """The model replayed from the trace ends exactly where the real run ended, and the run
    covers intake, start, finish and checkpoint: otherwise the crash states prove nothing."""
    tr = recorded.trace
    assert not tr.unresolved, f"calls on relative paths the model cannot place: {tr.unresolved}"
    real = FsState.from_folder(recorded.root)
    assert real.dirs == tr.final.dirs
    real_files, model_files = real.files(), tr.final.files()
    assert sorted(real_files) == sorted(model_files)
    differ = [p for p in real_files if real_files[p] != model_files[p]]
    assert not differ, f"the model's content differs from the real files: {differ}"
    kinds = {(op.kind, op.dst.rsplit("/", 1)[-1]) for op in tr.ops if op.kind == "rename"}
    assert ("rename", "task.yaml") in kinds, "no intake in the trace"
    assert ("rename", "checkpoint.json") in kinds, "no checkpoint in the trace"
    assert any(op.path.endswith("worker.lock") for op in tr.ops), "no start in the trace"
    states = {
        json.loads(real_files[p])["name"]: json.loads(real_files[p])
        for p in real_files
        if p.endswith("/state.json")
    }
    for name, (_, status, code) in TASKS.items():
        assert states[name]["status"] == status and states[name]["exit_code"] == code, states


def test_a_finished_run_is_durable(recorded: Recorded) -> None:
    """Once `bantzd run --once` has exited (it printed its summary), a power cut loses
    nothing: with only the durable operations kept, every task is there with its outcome
    and the last checkpoint. (A supervisor that never fsynced a folder would pass every
    crash-state check vacuously, since nothing would ever be durable; not this one.)"""
    ops = recorded.ops
    floor = floor_state(recorded.trace.snapshot, ops, durable_at(ops), len(ops))
    states = {}
    for task_id in _tasks(floor):
        state = _json(floor.read(f"tasks/{task_id}/state.json"))
        assert isinstance(state, dict), f"task {task_id}: no durable state.json at the end"
        states[state["name"]] = state
    for name, (_, status, code) in TASKS.items():
        assert name in states, f"task {name} is not durable at the end of the run: {states}"
        assert (states[name]["status"], states[name]["exit_code"]) == (status, code)
    [checkpoint] = [p for p in atomic_versions(recorded) if p.endswith("/checkpoint.json")]
    assert floor.read(checkpoint) == atomic_versions(recorded)[checkpoint][-1]
    assert not [p for p in floor.files() if p.startswith("spool/") and p.endswith(".yaml")]


def test_crash_states_lose_what_was_not_synced() -> None:
    """The model itself: a rename whose temp file was never fsynced can leave an empty
    file, one whose folder was never fsynced can be undone; with both synced, neither.
    (Without this, a crash-state generator that loses nothing would pass every check.)"""
    ops = [
        Op(0, 0, 0, 1, "create", path=".a.tmp", inode=1),
        Op(1, 1, 1, 1, "write", path=".a.tmp", inode=1, data=b"new", append=True),
        Op(2, 2, 2, 1, "rename", path=".a.tmp", dst="a"),
        Op(3, 3, 3, 1, "fsync", path="", is_dir=True),
    ]
    snap = FsState(names={"a": -1}, data={-1: b"old"})
    contents = {s.fs.read("a") for s in crash_states(snap, ops)}
    assert b"" in contents, "unsynced data before a rename was never dropped"
    assert b"old" in contents and b"new" in contents
    durable = durable_at(ops)
    assert durable[1] > len(ops), "a write no fsync covered counts as durable"
    synced = [
        *ops[:2],
        Op(2, 2, 2, 1, "fsync", path=".a.tmp", inode=1),
        Op(3, 3, 3, 1, "rename", path=".a.tmp", dst="a"),
        Op(4, 4, 4, 1, "fsync", path="", is_dir=True),
    ]
    after = {s.fs.read("a") for s in crash_states(snap, synced) if s.point == len(synced)}
    assert after == {b"new"}, after
    # An fsync that began before a write completed (another thread) does not cover it.
    racing = [
        ops[0],
        Op(1, 1, 3, 1, "write", path=".a.tmp", inode=1, data=b"x"),
        Op(2, 2, 4, 2, "fsync", path=".a.tmp", inode=1),
    ]
    assert durable_at(racing)[1] > len(racing)


# recovery of every crash state ------------------------------------------------------------


@dataclass
class Verdict:
    state: CrashState
    problems: list[str] = field(default_factory=list)


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + "".join(traceback.format_exception(*record.exc_info))
        self.messages.append(text)


def recover_in_process(root: Path) -> tuple[int | None, list[str]]:
    """What `bantzd run` does before its first tick: mend bantzd's own files, then recover
    every task. Returns the next id the store would hand out, and the problems seen."""
    home = Home(root)
    errors = _Errors()
    logger = logging.getLogger("bantzd")
    logger.addHandler(errors)
    problems: list[str] = []
    next_id = None
    sup = None
    try:
        home.ensure()
        control.recover_own_files(home)
        sup = Supervisor(home, load_config(home.config))
        sup.recover()
        next_id = sup.store.allocate_id()  # staged only, never written
    except Exception:
        problems.append("recovery raised:\n" + traceback.format_exc())
    finally:
        logger.removeHandler(errors)
        if sup is not None:
            sup.signals.close()  # not close(): what recovery staged is never written
    problems += [f"recovery logged an error: {m}" for m in errors.messages]
    return next_id, problems


def atomic_versions(rec: Recorded) -> dict[str, list[bytes]]:
    """Every whole version each atomically replaced file had during the run, in order."""
    versions: dict[str, list[bytes]] = {}
    fs = rec.trace.snapshot.copy()
    for path, content in fs.files().items():
        if ATOMIC.search(path):
            versions[path] = [content]
    for op in rec.ops:
        fs.apply(op)
        if op.kind in ("rename", "link") and ATOMIC.search(op.dst):
            seen = versions.setdefault(op.dst, [])
            content = fs.read(op.dst) or b""
            if content not in seen:
                seen.append(content)
    return versions


def _tasks(fs: FsState) -> dict[int, bytes]:
    """id -> task.yaml of every task folder that reached its commit point."""
    found = {}
    for path, content in fs.files().items():
        m = re.fullmatch(r"tasks/(\d+)/task\.yaml", path)
        if m:
            found[int(m[1])] = content
    return found


def _json(content: bytes | None) -> object:
    if content is None:
        return None
    try:
        return json.loads(content)
    except ValueError:
        return None


def check_state(
    rec: Recorded,
    pre: FsState,
    floor: FsState,
    post_root: Path,
    next_id: int | None,
    versions: dict[str, list[bytes]],
) -> list[str]:
    """The invariants, for one crash state `pre` (recovered into `post_root`) whose durable
    part is `floor`."""
    problems = []
    post = FsState.from_folder(post_root)
    pre_tasks, floor_tasks, post_tasks = _tasks(pre), _tasks(floor), _tasks(post)

    # Torn files: each atomic file holds a version written whole, and recovery keeps it so.
    for path, content in pre.files().items():
        if ATOMIC.search(path) and content not in versions.get(path, []):
            problems.append(
                f"{path} is torn after the crash (not a version ever written "
                f"whole): {content[:120]!r}"
            )
    for path, content in post.files().items():
        if ATOMIC.search(path) and _json(content) is None:
            problems.append(f"{path} is not valid JSON after recovery: {content[:120]!r}")

    # Accepted tasks: not lost, one valid state each, none left running.
    for task_id in sorted(set(pre_tasks) | set(floor_tasks)):
        if task_id not in pre_tasks:
            problems.append(
                f"task {task_id} was durable but is missing after the crash (model error)"
            )
            continue
        if post_tasks.get(task_id) != pre_tasks[task_id]:
            problems.append(f"task {task_id}: accepted, but its task.yaml is gone after recovery")
            continue
        state = read_state(post_root / "tasks" / str(task_id))
        if state is None:
            problems.append(f"task {task_id}: no valid state.json after recovery")
        elif state.id != task_id:
            problems.append(f"task {task_id}: state.json says id {state.id}")
        elif state.status is Status.RUNNING:
            problems.append(f"task {task_id}: still `running` after recovery, with no process")

    # Spool files: exactly one of {still in the spool, one task}, never both or none.
    for name, content in rec.spool_files.items():
        as_tasks = [i for i, c in post_tasks.items() if c == content]
        in_spool = post.read(f"spool/{name}") == content
        rejected = [
            p for p, c in post.files().items() if p.startswith("spool/rejected/") and c == content
        ]
        count = len(as_tasks) + in_spool + len(rejected)
        if count != 1:
            where = f"tasks {as_tasks}, in the spool: {in_spool}, rejected: {rejected}"
            problems.append(f"spool file {name} is now {count} things ({where})")
        durable_ids = [i for i, c in floor_tasks.items() if c == content]
        if durable_ids and durable_ids != as_tasks:
            problems.append(f"spool file {name} was durably task {durable_ids}, now {as_tasks}")

    # Outcomes that were durable stay.
    for task_id in floor_tasks:
        durable = _json(floor.read(f"tasks/{task_id}/state.json"))
        if not isinstance(durable, dict) or durable.get("status") not in [str(s) for s in FINISHED]:
            continue
        now = _json(post.read(f"tasks/{task_id}/state.json"))
        now = now if isinstance(now, dict) else {}
        for key in ("status", "exit_code", "signal"):
            if now.get(key) != durable.get(key):
                problems.append(
                    f"task {task_id}: its durable outcome {key}={durable.get(key)!r} "
                    f"became {now.get(key)!r}"
                )

    # What the durable journal says happened did happen: an accepted task exists, and a
    # task it records as finished is finished that way (the journal is written after the
    # states it describes are durable).
    for line in (floor.read("journal.jsonl") or b"").splitlines():
        event = _json(line)
        if not isinstance(event, dict) or not isinstance(event.get("id"), int):
            continue
        task_id = event["id"]
        if event.get("event") == "accepted" and task_id not in post_tasks:
            problems.append(
                f"task {task_id}: the durable journal says it was accepted, but "
                f"it is gone after recovery"
            )
        if event.get("status") in [str(s) for s in FINISHED]:
            now = _json(post.read(f"tasks/{task_id}/state.json"))
            status = now.get("status") if isinstance(now, dict) else None
            if status != event["status"]:
                problems.append(
                    f"task {task_id}: the durable journal says {event['status']}, "
                    f"its state.json after recovery says {status!r}"
                )

    # Checkpoints never go back past a durable one.
    for path, seq in versions.items():
        if not path.endswith("/checkpoint.json"):
            continue
        was, now = floor.read(path), post.read(path)
        if was is not None and (now is None or now not in seq or seq.index(now) < seq.index(was)):
            problems.append(f"{path}: the durable checkpoint {was[:40]!r} became {now!r}")

    # The next id is fresh.
    used = set(post_tasks) | set(floor_tasks)
    for line in (post.read("journal.jsonl") or b"").splitlines():
        event = _json(line)
        if isinstance(event, dict) and isinstance(event.get("id"), int):
            used.add(event["id"])
    if next_id is not None and used and next_id <= max(used):
        problems.append(f"the next id would be {next_id}, but ids up to {max(used)} are used")
    return problems


@dataclass
class Outcome:
    distinct: int
    generated: int
    failures: list[Verdict]
    sample: list[CrashState]


def check_all(rec: Recorded, *, stop_after: int | None = None) -> Outcome:
    """Recover every distinct crash state of the recorded run and check the invariants."""
    ops = rec.ops
    durable = durable_at(ops)
    versions = atomic_versions(rec)
    floors: dict[int, FsState] = {}
    seen: set[str] = set()
    out = Outcome(0, 0, [], [])
    scratch = rec.base / "states"
    scratch.mkdir(exist_ok=True)
    for state in crash_states(rec.trace.snapshot, ops):
        out.generated += 1
        digest = state.fs.digest(NOT_COMPARED)
        if digest in seen:
            continue
        seen.add(digest)
        if state.point not in floors:
            floors[state.point] = floor_state(rec.trace.snapshot, ops, durable, state.point)
        folder = scratch / f"s{len(seen)}"
        state.fs.write_to(folder)
        next_id, problems = recover_in_process(folder)
        problems += check_state(rec, state.fs, floors[state.point], folder, next_id, versions)
        shutil.rmtree(folder)
        if problems:
            out.failures.append(Verdict(state, problems))
            if stop_after is not None and len(out.failures) >= stop_after:
                break
        elif _worth_a_cli_run(state, out.sample):
            out.sample.append(state)
    out.distinct = len(seen)
    return out


def describe_failures(ops: list[Op], failures: list[Verdict]) -> str:
    return "\n\n".join(
        f"{v.state.explain(ops, quiet=NOT_COMPARED)}\nbroken:\n  " + "\n  ".join(v.problems)
        for v in failures[:MAX_SHOWN]
    )


def test_every_crash_state_recovers(recorded: Recorded, capsys: pytest.CaptureFixture[str]) -> None:
    ops = recorded.ops
    out = check_all(recorded)
    text = (
        f"crash consistency: {out.distinct} distinct crash states checked "
        f"({out.generated} generated at {len(ops) + 1} crash points of {len(ops)} operations)"
    )
    target = Path(
        os.environ.get("BANTZ_CRASH_REPORT")
        or Path(tempfile.gettempdir()) / "bantzd-crash-states.txt"
    )
    target.write_text(text + "\n")
    with capsys.disabled():
        print(f"\n{text} (also in {target})")
    if out.failures:
        shown = describe_failures(ops, out.failures)
        pytest.fail(
            f"{len(out.failures)} of {out.distinct} crash states break an invariant:\n\n{shown}"
        )
    assert len(out.sample) == CLI_SAMPLE, [s.variant for s in out.sample]
    for i, state in enumerate(out.sample):
        _run_cli_on(recorded, state, recorded.base / "states" / f"cli{i}")


NO_FSYNC = """\
import os
os.fsync = os.fdatasync = lambda fd: None
# The attempt wrapper syncs its exit record with sync(1): leave that out too.
import bantzd.workers.spawn as _spawn
_tool = _spawn._tool
_spawn._tool = lambda name: None if name == "sync" else _tool(name)
"""


def test_the_checks_catch_a_supervisor_that_skips_fsync(tmp_path: Path) -> None:
    """The whole chain can fail: the same run with every fsync of bantzd's turned into a
    no-op (sitecustomize) must give crash states that break an invariant."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_FSYNC)
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    rec = record(Path(os.path.realpath(tmp_path)), {"PYTHONPATH": path})
    assert not any(op.kind == "fsync" for op in rec.ops), "fsync still reached the kernel"
    out = check_all(rec, stop_after=1)
    assert out.failures, "no crash state of a run without any fsync broke an invariant"


def _worth_a_cli_run(state: CrashState, sample: list[CrashState]) -> bool:
    """A few states for the real CLI: one with a spool file not yet taken in beside an
    accepted task, one with an attempt recorded running, one with only durable data."""
    if len(sample) >= CLI_SAMPLE:
        return False
    files = state.fs.files()
    kinds = {_cli_kind(s.fs.files(), s) for s in sample}
    kind = _cli_kind(files, state)
    return kind is not None and kind not in kinds


def _cli_kind(files: dict[str, bytes], state: CrashState) -> str | None:
    has_spool = any(
        p.startswith("spool/") and p.endswith(".yaml") and "/rejected/" not in p for p in files
    )
    has_task = any(p.endswith("/task.yaml") for p in files)
    if has_spool and has_task:
        return "spool and tasks"
    if any(p.endswith("/state.json") and b'"status":"running"' in c for p, c in files.items()):
        return "running"
    if state.variant.startswith("only durable") and state.dropped:
        return "durable only"
    return None


def _run_cli_on(rec: Recorded, state: CrashState, folder: Path) -> None:
    """A real `bantzd run --once` on a crash state: it exits 0 and every task ends as it
    should (each spool file exactly one task)."""
    state.fs.write_to(folder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    res = subprocess.run(
        [sys.executable, "-m", "bantzd", "--home", str(folder), "run", "--once"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=90,
    )
    why = state.explain(rec.ops, quiet=NOT_COMPARED)
    assert res.returncode == 0, f"{why}\nbantzd run --once -> {res.returncode}\n{res.stderr}"
    finals = {}
    for tdir in (folder / "tasks").iterdir():
        s = read_state(tdir)
        assert s is not None, f"{why}\n{tdir} has no valid state after run --once"
        finals.setdefault(s.name, []).append(s)
    for name, (_, status, code) in TASKS.items():
        got = finals.get(name, [])
        assert len(got) == 1, f"{why}\ntask {name} is {len(got)} tasks after run --once"
        assert (str(got[0].status), got[0].exit_code) == (status, code), f"{why}\n{got[0]}"
    assert not list((folder / "spool").glob("*.yaml")), f"{why}\nspool files left"
    shutil.rmtree(folder)


def test_new_task_folder_is_durable_before_the_spool_file_leaves(recorded: Recorded) -> None:
    """Intake's commit point is the rename spool/F -> tasks/ID/task.yaml. The file system
    may write the spool folder's change back at any moment after the rename, so the new
    folder's own name (tasks/ID in tasks/) must be durable before the rename: an fsync of
    tasks/ that begins after the mkdir and completes before the rename. Otherwise, on a file
    system that does not commit metadata in order (POSIX allows it; ext4 and xfs journal it
    in order, which is why the crash states above keep a rename only with its folder), a
    power cut can leave the file in neither place: gone from the spool, in a folder that
    tasks/ does not name."""
    ops = recorded.ops
    unsafe = []
    for op in ops:
        if op.kind != "rename" or not op.dst.endswith("/task.yaml"):
            continue
        folder = op.dst.rsplit("/", 1)[0]
        mkdir = next(o for o in ops if o.kind == "mkdir" and o.path == folder)
        if not any(
            o.kind == "fsync"
            and o.is_dir
            and o.path == "tasks"
            and o.start > mkdir.end
            and o.end < op.start
            for o in ops
        ):
            unsafe.append(
                f"{mkdir.describe()}, then {op.describe()} with no fsync of tasks/ in between"
            )
    assert not unsafe, (
        "Store.create must fsync tasks/ between the mkdir and the rename: " + "; ".join(unsafe[:3])
    )


def test_model_rejects_a_torn_state_json(recorded: Recorded, tmp_path: Path) -> None:
    """The checks can fail: a crash state with state.json cut short (as a write without an
    fsync before its rename leaves it) is reported, naming the file."""
    ops = recorded.ops
    durable = durable_at(ops)
    versions = atomic_versions(recorded)
    state = build(recorded.trace.snapshot, ops, len(ops), "all")
    path = next(p for p in state.fs.files() if p.endswith("/state.json"))
    inode = state.fs.names[path]
    state.fs.data[inode] = state.fs.data[inode][:40]
    folder = tmp_path / "torn"
    state.fs.write_to(folder)
    floor = floor_state(recorded.trace.snapshot, ops, durable, len(ops))
    next_id, problems = recover_in_process(folder)
    problems += check_state(recorded, state.fs, floor, folder, next_id, versions)
    assert any(path in p and "torn" in p for p in problems), problems
