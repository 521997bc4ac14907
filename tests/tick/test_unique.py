"""`unique:` (SPEC 10) one tick at a time: the spool scan and the `take` request apply the
same check, a restart finds the keys again (also of a task whose state.json a crash lost),
and a key is free again once its task has ended."""

from __future__ import annotations

import os
from pathlib import Path

from bantzd.supervisor import control
from tests.tick.conftest import Harness
from tests.tick.test_take import reply, request

NOTES = "name: notes\nunique: true\nrun: summarise\n"


def rejected(h: Harness) -> dict[str, str]:
    """spool/rejected/: file name -> what its .error.txt says."""
    folder = h.home.rejected
    if not folder.exists():
        return {}
    return {
        p.name: (folder / (p.name + ".error.txt")).read_text()
        for p in folder.iterdir()
        if not p.name.endswith(".error.txt")
    }


def scan(h: Harness) -> None:
    """A tick after the next periodic look at the spool is due (no watcher here)."""
    h.clock.advance(h.sup.config.scan_interval + 0.1)
    h.tick()


def tasks(h: Harness) -> list[int]:
    return sorted(int(n) for n in os.listdir(h.home.tasks))


def test_two_identical_files_make_one_task_and_one_rejection(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", NOTES)
    fake.submit(
        "b.yaml", "# the same, another comment and name\n" + NOTES.replace("notes", "n2", 1)
    )
    fake.sup._set_parallel(1)
    fake.tick()
    assert tasks(fake) == [1]
    assert fake.state(1)["unique_key"].startswith("sha256:")
    (problem,) = rejected(fake).values()
    assert "duplicate of task 1 (queued)" in problem  # taken in before the start of the tick
    notes = [e for e in fake.journal() if e.get("event") == "rejected"]
    assert [n["problem"] for n in notes] == ["duplicate of task 1 (queued)"]
    assert not list(fake.home.spool.glob("*.yaml"))


def test_the_key_is_free_again_once_the_task_has_ended(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", "unique: nightly\nrun: one\nafter: [nobody]\n")
    scan(fake)
    fake.submit("b.yaml", "unique: nightly\nrun: another\n")  # another file, the same key
    scan(fake)
    assert tasks(fake) == [1]
    assert "duplicate of task 1 (queued)" in rejected(fake)["b.yaml"]
    reply_ = fake.sup.handler.apply({"action": "cancel", "task": 1})
    assert reply_["ok"], reply_
    fake.submit("b.yaml", "unique: nightly\nrun: another\n")
    scan(fake)
    assert tasks(fake) == [1, 2] and fake.state(2)["unique_key"] == "nightly"
    # A held task holds its key too.
    fake.submit("c.yaml", "unique: held\napproval: true\nrun: x\n")
    fake.submit("d.yaml", "unique: held\nrun: y\n")
    scan(fake)
    assert tasks(fake) == [1, 2, 3]
    assert "duplicate of task 3 (held)" in rejected(fake)["d.yaml"]


def test_a_take_request_applies_the_same_check(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", NOTES)
    scan(fake)
    path = fake.submit("again.yaml", NOTES)
    req = request(fake, path)
    fake.sup.apply_control()
    fake.sup.flush()
    answer = reply(req)
    assert answer["ok"] is False
    assert answer["problem"] == "duplicate of task 1 (running)"
    assert Path(answer["rejected"]).name == "again.yaml" and not path.exists()
    assert tasks(fake) == [1]


def test_a_restart_finds_the_key_of_a_task_whose_state_json_was_lost(fake: Harness) -> None:
    # A crash between the rename into tasks/1/ and the first state.json: recovery rebuilds
    # the state from task.yaml, key included, so the second file is still a duplicate.
    fake.sup.recover()
    fake.submit("a.yaml", NOTES)
    scan(fake)
    (fake.task_dir(1) / "state.json").unlink()
    fake.sup = fake.new_supervisor()
    fake.sup.recover()
    assert fake.state(1)["unique_key"] == fake.sup.table.states[1].unique_key is not None
    fake.submit("b.yaml", NOTES)
    scan(fake)
    assert tasks(fake) == [1]
    assert "duplicate of task 1 (" in rejected(fake)["b.yaml"]


def test_offline_the_check_sees_a_task_folder_without_state_json(fake: Harness) -> None:
    # No supervisor runs: `submit` takes the file in itself (control.apply_offline), from
    # the folders on disk, including one a crash left without its state.json.
    fake.sup.recover()
    fake.submit("a.yaml", NOTES)
    scan(fake)
    fake.sup.close()
    (fake.task_dir(1) / "state.json").unlink()
    path = fake.submit("b.yaml", NOTES)
    req = request(fake, path)
    assert control.apply_offline(fake.home) == 1
    assert reply(req)["problem"] == "duplicate of task 1 (queued)"
    assert tasks(fake) == [1] and not path.exists()
    other = fake.submit("c.yaml", NOTES.replace("summarise", "other"))
    req = request(fake, other, name="c")
    control.apply_offline(fake.home)
    assert reply(req)["id"] == 2


def test_an_edit_that_would_duplicate_another_task_is_refused(fake: Harness) -> None:
    fake.sup.recover()
    fake.submit("a.yaml", "unique: k\nrun: a\nafter: [nobody]\n")
    fake.submit("b.yaml", "run: b\nafter: [nobody]\n")
    scan(fake)
    text = "unique: k\nrun: b\nafter: [nobody]\n"
    answer = fake.sup.handler.apply({"action": "edit", "task": 2, "params": {"text": text}})
    assert answer["ok"] is False
    assert "duplicate of task 1 (queued)" in answer["message"]
    answer = fake.sup.handler.apply(
        {"action": "edit", "task": 2, "params": {"text": "unique: j\nrun: b\nafter: [x]\n"}}
    )
    assert answer["ok"], answer
    scan(fake)
    assert fake.state(2)["unique_key"] == "j"
    fake.submit("c.yaml", "unique: j\nrun: c\n")
    scan(fake)
    assert "duplicate of task 2 (queued)" in rejected(fake)["c.yaml"]
