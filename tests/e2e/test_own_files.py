"""bantzd's own small files (issue 11 item 5) and reason changes in the history (item 11).

Every file bantzd reads in its home is either rebuilt from what it can trust or refused
with a message naming the file; a damaged one never stops intake or crashes `bantzd run`.
Through the real CLI, with real processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bantzd.clock import FakeClock
from bantzd.paths import Home
from bantzd.queue.atomic import leftover_temps, write_json_atomic
from bantzd.queue.store import Store, read_state, reason_changed
from bantzd.queue.task import TaskState
from tests.conftest import Bantz

RUN_TIMEOUT = 60


def soon(seconds: float) -> str:
    """An `--until` this many seconds from now."""
    when = datetime.now().astimezone() + timedelta(seconds=seconds)
    return when.isoformat(timespec="seconds")


def run_once(bantz: Bantz) -> subprocess.CompletedProcess[str]:
    """`bantzd run --once`, which must end by itself (a crash loop would hang or exit 1)."""
    return bantz("run", "--once", timeout=RUN_TIMEOUT)


def log_text(bantz: Bantz) -> str:
    try:
        return (bantz.home / "bantzd.log").read_text()
    except FileNotFoundError:
        return ""


def journal(bantz: Bantz) -> list[dict]:
    lines = (bantz.home / "journal.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# next_id.json ---------------------------------------------------------------------------


def test_an_empty_next_id_file_is_rebuilt_and_no_id_is_reused(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    bantz.drop("b.yaml", "run: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(2) == "done"
    # Task 1's folder is cleaned away: only the journal still knows id 1 and 2 were used.
    res = bantz("clean", "--older-than", "0s")
    assert res.returncode == 0, res.stderr
    assert not bantz.task_dir(1).exists() and not bantz.task_dir(2).exists()
    (bantz.home / "next_id.json").write_bytes(b"")  # a power cut right after the create

    bantz.drop("c.yaml", "run: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(3) == "done", bantz.state(3)
    assert not bantz.task_dir(1).exists() and not bantz.task_dir(2).exists()
    assert json.loads((bantz.home / "next_id.json").read_text()) == {"next": 4}
    assert "next_id.json is not valid JSON" in log_text(bantz)


def test_a_garbled_next_id_never_hands_out_an_existing_id(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    assert run_once(bantz).returncode == 0
    for garbage in (b'{"next": "x"}', b'{"next": 1e400}', b"[1]", b"\xff\xfe", b'{"next": 0}'):
        (bantz.home / "next_id.json").write_bytes(garbage)
        bantz.drop("again.yaml", "run: 'true'\n")
        res = run_once(bantz)
        assert res.returncode == 0, (garbage, res.stderr)
    ids = sorted(int(p.name) for p in (bantz.home / "tasks").iterdir())
    assert ids == [1, 2, 3, 4, 5, 6]
    assert all(bantz.status_of(i) == "done" for i in ids)


# supervisor.json ------------------------------------------------------------------------


def test_a_torn_supervisor_json_does_not_stop_the_supervisor(bantz: Bantz) -> None:
    (bantz.home / "supervisor.json").write_bytes(b'{"paus')
    bantz.drop("a.yaml", "run: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    log = log_text(bantz)
    assert "supervisor.json cannot be read" in log and "not paused (by default)" in log
    # Rewritten with the flag it settled on, so the next start has nothing to warn about.
    assert json.loads((bantz.home / "supervisor.json").read_text()) == {"paused": False}


def test_the_pause_flag_of_a_torn_file_comes_from_the_journal(bantz: Bantz) -> None:
    res = bantz("pause")
    assert res.returncode == 0, res.stderr
    (bantz.home / "supervisor.json").write_bytes(b"")
    status = json.loads(bantz("status", "--json", check=True).stdout)
    assert status["paused"] is True
    assert any("supervisor.json" in w for w in status["warnings"])
    bantz.drop("a.yaml", "run: 'true'\n")
    res = bantz("run", "--until", soon(2), timeout=RUN_TIMEOUT)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "queued"  # still paused: nothing started
    assert "as the journal last recorded" in log_text(bantz)
    assert json.loads((bantz.home / "supervisor.json").read_text()) == {"paused": True}
    status = json.loads(bantz("status", "--json", check=True).stdout)
    assert status["warnings"] == []


# control/ requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_text",
    [
        b'{"action": "cancel", "task": "abc"}',
        b'{"action": "clean", "task": null, "params": {"older_than": "soon"}}',
        b'{"action": "pause", "task": null, "params": [1]}',
        b'{"action": ["cancel"]}',
        b'{"acti',
    ],
)
def test_a_malformed_control_request_is_answered_once_and_removed(
    bantz: Bantz, request_text: bytes
) -> None:
    control = bantz.home / "control"
    (control / "100-1.req.json").write_bytes(request_text)
    bantz.drop("a.yaml", "run: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    assert not (control / "100-1.req.json").exists()
    reply = json.loads((control / "100-1.reply.json").read_text())
    assert reply["ok"] is False and reply["exit"] == 1, reply
    assert "error in apply_control" not in log_text(bantz)


# journal.jsonl and load.jsonl -----------------------------------------------------------


def test_a_torn_journal_line_is_skipped_and_the_next_line_starts_fresh(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    assert run_once(bantz).returncode == 0
    with open(bantz.home / "journal.jsonl", "ab") as f:
        f.write(b'{"event": "transition", "id": 99')  # a power cut mid-append
    bantz.drop("b.yaml", "run: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(2) == "done"
    lines = (bantz.home / "journal.jsonl").read_bytes().splitlines()
    assert lines.count(b'{"event": "transition", "id": 99') == 1  # left alone, on its own
    events = [json.loads(line) for line in lines if not line.endswith(b"99")]
    assert any(e.get("id") == 2 and e.get("status") == "done" for e in events)
    res = bantz("report", "--stdout")
    assert res.returncode == 0, res.stderr


def test_a_torn_load_history_line_is_not_glued_to_the_next_sample(tmp_path: Path) -> None:
    from bantzd.supervisor.probes import LoadHistory, Reading

    path = tmp_path / "load.jsonl"
    path.write_bytes(b'{"t": 1, "load_per_core": 0.5, "free_mem')
    history = LoadHistory(path)
    history.append(Reading(0.25, 1024), None, 2.0)
    assert [s["t"] for s in history.read()] == [2.0]
    fresh = LoadHistory(tmp_path / "new.jsonl")
    fresh.append(Reading(0.25, 1024), None, 3.0)
    assert oct(fresh.path.stat().st_mode & 0o777) == "0o600"


# bantzd.lock content --------------------------------------------------------------------


def test_garbage_in_the_lock_file_does_not_matter(bantz: Bantz) -> None:
    (bantz.home / "bantzd.lock").write_bytes(b'\xff{"pid": "x"')
    status = json.loads(bantz("status", "--json", check=True).stdout)
    assert status["supervisor"]["running"] is False
    bantz.drop("a.yaml", "run: 'true'\n")
    assert run_once(bantz).returncode == 0
    assert bantz.status_of(1) == "done"


# state.json -----------------------------------------------------------------------------


def test_a_state_json_with_wrong_types_is_rebuilt(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "name: first\nrun: 'true'\n")
    bantz("pause", check=True)
    assert bantz("run", "--until", soon(2), timeout=RUN_TIMEOUT).returncode == 0
    state = bantz.state(1)
    assert state["status"] == "queued"
    state["attempts"] = "many"  # valid JSON, wrong type: would crash arithmetic later
    (bantz.task_dir(1) / "state.json").write_text(json.dumps(state))
    assert read_state(bantz.task_dir(1)) is None
    bantz("resume", check=True)
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    assert bantz.state(1)["name"] == "first"
    assert "state.json was missing or unreadable" in log_text(bantz)


# config.toml ----------------------------------------------------------------------------


def test_a_torn_config_is_refused_naming_the_file(bantz: Bantz) -> None:
    cfg = bantz.home / "config.toml"
    cfg.write_text('max_parallel = 2\nstop_grace = "2')
    res = run_once(bantz)
    assert res.returncode == 1
    assert str(cfg) in res.stderr and "not valid TOML" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# leftover temp files --------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_leftover_temp_files_are_removed_at_start(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "run: 'true'\n")
    assert run_once(bantz).returncode == 0
    dead = _dead_pid()
    home = bantz.home
    leftovers = [
        home / f".next_id.json.{dead}.tmp",
        home / f".supervisor.json.{dead}.tmp",
        home / "tasks" / "1" / f".state.json.{dead}.tmp",
        home / "control" / f".1-2.req.json.{dead}.tmp",
        home / "spool" / f".job.yaml.{dead}.tmp",
        home / "reports" / f".2026-01-01.md.{dead}.tmp",
    ]
    old_but_alive = home / f".limits.json.{os.getpid()}.tmp"
    keep = [
        home / "spool" / ".job.yaml.tmp",  # a user's own temp name: not ours to remove
        home / "spool" / ".half-written.yaml",
        home / "spool" / f".fresh.yaml.{os.getpid()}.tmp",  # a live writer, just now
    ]
    for path in [*leftovers, old_but_alive, *keep]:
        path.write_bytes(b"{")
    past = time.time() - 3600
    os.utime(old_but_alive, (past, past))  # a pid alive again after a reboot

    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    for path in [*leftovers, old_but_alive]:
        assert not path.exists(), path
    for path in keep:
        assert path.exists(), path
    assert "left by a write a crash interrupted" in log_text(bantz)


def test_leftover_temps_only_matches_bantzds_own_names(tmp_path: Path) -> None:
    dead = _dead_pid()
    for name in (f".x.json.{dead}.tmp", ".x.json.tmp", f"x.json.{dead}.tmp", f".{dead}.tmp"):
        (tmp_path / name).write_text("")
    (tmp_path / f".dir.{dead}.tmp").mkdir()
    assert [p.name for p in leftover_temps(tmp_path)] == [f".x.json.{dead}.tmp"]


# reason changes (item 11) ---------------------------------------------------------------


def test_reason_changed_ignores_numbers_only() -> None:
    assert not reason_changed("a", "a")
    assert reason_changed(None, "rate limit api: 1 of 1 in use")
    assert reason_changed("rate limit api: 1 of 1 in use", None)
    assert not reason_changed(
        "memory: 4 GiB wanted, 3.1 GiB free", "memory: 4 GiB wanted, 2.9 GiB free"
    )
    assert reason_changed("after: 3 (queued)", "after: 3 (running)")
    assert reason_changed("memory: 4 GiB wanted, 3 GiB free", "cpus: 2 wanted, 0 of 2 free")


def test_a_reason_change_goes_to_the_history_and_the_journal(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    store = Store(home, FakeClock(1_000_000.0))
    spool_file = home.spool / "a.yaml"
    spool_file.write_text("run: 'true'\n")
    state = TaskState(id=store.allocate_id(), name="a")
    store.create(state, spool_file)
    store.flush()
    before = len(state.history)

    store.update(state, reason="memory: 4 GiB wanted, 3.1 GiB free")
    store.update(state, reason="memory: 4 GiB wanted, 2.9 GiB free")  # numbers only
    store.update(state, reason="memory: 4 GiB wanted, 2.9 GiB free")  # unchanged
    store.update(state, pid=None)  # no reason given: no entry
    store.update(state, reason="rate limit api: 1 of 1 in use")
    store.update(state, reason=None)
    store.flush()

    on_disk = read_state(home.task_dir(state.id))
    assert on_disk is not None and on_disk.reason is None
    added = on_disk.history[before:]
    assert [e.get("reason") for e in added] == [
        "memory: 4 GiB wanted, 3.1 GiB free",
        "rate limit api: 1 of 1 in use",
        None,
    ]
    assert all(e["status"] == "queued" for e in added)
    lines = [json.loads(x) for x in home.journal.read_text().splitlines()]
    reasons = [e for e in lines if e["event"] == "reason"]
    assert [e.get("reason") for e in reasons] == [
        "memory: 4 GiB wanted, 3.1 GiB free",
        "rate limit api: 1 of 1 in use",
        None,
    ]
    assert all(e["id"] == state.id and e["status"] == "queued" for e in reasons)


def test_a_waiting_reason_is_in_show_and_the_journal(bantz: Bantz) -> None:
    cfg = bantz.home / "config.toml"
    cfg.write_text(cfg.read_text() + "[limits.api]\nconcurrent = 1\n")
    bantz.drop("a.yaml", "name: holder\npriority: 5\nuses: {api: 1}\nrun: sleep 1.5\n")
    bantz.drop("b.yaml", "name: waiter\nuses: {api: 1}\nrun: 'true'\n")
    res = run_once(bantz)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done" and bantz.status_of(2) == "done"
    history = bantz.state(2)["history"]
    assert any(
        e["status"] == "queued" and "rate limit api" in (e.get("reason") or "") for e in history
    ), history
    events = [e for e in journal(bantz) if e["event"] == "reason" and e["id"] == 2]
    assert len(events) == 1, events  # once, not once per tick
    assert "rate limit api" in events[0]["reason"]
    shown = bantz("show", "2", check=True).stdout
    assert "rate limit api" in shown


def test_write_json_atomic_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        target = tmp_path / "x.json"
        leftover = tmp_path / f".x.json.{os.getpid()}.tmp"
        leftover.write_text("old")
        os.chmod(leftover, 0o666)  # a leftover of our pid with an open mode
        write_json_atomic(target, {"a": 1})
    finally:
        os.umask(old)
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert json.loads(target.read_text()) == {"a": 1}
