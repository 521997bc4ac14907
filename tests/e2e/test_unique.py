"""Duplicates and a full queue (SPEC 10) through the real CLI and real supervisors: two
identical `unique: true` files dropped together, a supervisor killed between the key check
and the acceptance (and around it), `submit` of a duplicate, and `max_queued` with a tiny
limit."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow

# Waits for a task that never comes, so it stays queued and holds its key all test long.
NOTES = "name: notes\nunique: true\nafter: [nothing-yet]\nrun: 'true'\n"
# The same task: another comment, another name, another file name.
NOTES_AGAIN = "# dropped twice by a script\nname: notes-again\n" + NOTES.split("\n", 1)[1]


def rejected(bantz: Bantz) -> dict[str, str]:
    folder = bantz.home / "spool" / "rejected"
    if not folder.exists():
        return {}
    return {
        p.name: (folder / (p.name + ".error.txt")).read_text()
        for p in folder.iterdir()
        if not p.name.endswith(".error.txt")
    }


def task_folders(bantz: Bantz) -> list[int]:
    """The tasks: folders with a task.yaml (a crash may leave an empty folder made for the
    next file of a batch; the next start removes it)."""
    tasks = bantz.home / "tasks"
    return sorted(int(p.name) for p in tasks.iterdir() if (p / "task.yaml").exists())


def one_task_one_rejection(bantz: Bantz) -> None:
    (task_id,) = task_folders(bantz)
    state = bantz.state(task_id)
    assert state["status"] == "queued" and state["unique_key"].startswith("sha256:")
    (problem,) = rejected(bantz).values()
    assert f"duplicate of task {task_id} (queued)" in problem
    assert not list((bantz.home / "spool").glob("*.yaml")), "a spool file was left behind"


def test_two_identical_files_dropped_together_make_one_task(bantz: Bantz) -> None:
    proc = bantz.start("run")
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
    bantz.drop("notes.yaml", NOTES)
    bantz.drop("notes-copy.yaml", NOTES_AGAIN)
    wait_for(lambda: rejected(bantz), what="the rejection")
    one_task_one_rejection(bantz)
    res = bantz("status", "--json")
    assert json.loads(res.stdout)["spool"]["rejected_since_report"] == 1
    proc.terminate()
    assert proc.wait(30) == 0


@pytest.mark.parametrize(
    "point",
    ["intake.after_key_check", "intake.after_mkdir", "intake.after_move", "intake.duplicate_found"],
)
def test_a_crash_around_the_key_check_still_makes_one_task(bantz: Bantz, point: str) -> None:
    # The two files are in the spool before the supervisor starts: its first scan takes
    # them in one after the other, and it dies at `point`, in the first or the second.
    bantz.drop("notes.yaml", NOTES)
    bantz.drop("notes-copy.yaml", NOTES_AGAIN)
    bantz.env["BANTZ_CRASH_AT"] = point
    proc = bantz.start("run")
    del bantz.env["BANTZ_CRASH_AT"]
    assert proc.wait(30) == -9, f"did not crash at {point}: {proc.stderr.read()}"
    if point == "intake.duplicate_found":  # the first is a task, durably, the second waits
        assert task_folders(bantz) == [1] and bantz.status_of(1) == "queued"
        assert [p.name for p in (bantz.home / "spool").glob("*.yaml")] == ["notes-copy.yaml"]

    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    one_task_one_rejection(bantz)
    # Once the task has ended, the same file is accepted again.
    (task_id,) = task_folders(bantz)
    assert bantz("cancel", str(task_id)).returncode == 0
    res = bantz("submit", str(bantz.home / "spool" / "rejected" / "notes-copy.yaml"))
    if not rejected(bantz).get("notes-copy.yaml"):  # the crash point decides which was first
        res = bantz("submit", str(bantz.home / "spool" / "rejected" / "notes.yaml"))
    assert res.returncode == 0, res.stdout + res.stderr
    assert len(task_folders(bantz)) == 2


def test_submit_of_a_duplicate_says_which_task_it_duplicates(bantz: Bantz, tmp_path) -> None:
    first, second = tmp_path / "notes.yaml", tmp_path / "again.yaml"
    first.write_text(NOTES)
    second.write_text(NOTES_AGAIN)
    res = bantz("submit", str(first))
    assert res.returncode == 0, res.stderr
    assert "submitted as #1 notes" in res.stdout
    res = bantz("submit", str(second))  # no supervisor: the command takes it in itself
    assert res.returncode == 1
    assert "duplicate of task 1 (queued)" in res.stdout + res.stderr
    proc = bantz.start("run")  # and with a supervisor running
    wait_for(lambda: (bantz.home / "bantzd.pid").exists(), what="the supervisor")
    res = bantz("submit", str(second))
    assert res.returncode == 1
    assert "duplicate of task 1 (queued)" in res.stdout + res.stderr
    proc.terminate()
    assert proc.wait(30) == 0
    assert task_folders(bantz) == [1]


def test_max_queued_files_wait_in_the_spool_and_status_says_why(bantz: Bantz) -> None:
    config = bantz.home / "config.toml"
    config.write_text("max_queued = 1\n" + config.read_text())
    res = bantz("add", "--name", "first", "--", "true")  # no supervisor: taken in here
    assert res.returncode == 0 and task_folders(bantz) == [1], res.stdout + res.stderr
    res = bantz("add", "--name", "second", "--", "true")  # queue full: placed, exit 0
    assert res.returncode == 0, res.stderr
    assert "queue full (max_queued 1, 1 unfinished tasks)" in res.stdout + res.stderr
    assert task_folders(bantz) == [1]

    res = bantz("status")
    assert "spool:      1 file waits: queue full (max_queued 1)" in res.stdout, res.stdout
    spool = json.loads(bantz("status", "--json").stdout)["spool"]
    assert (spool["queue_full"], spool["max_queued"], len(spool["waiting"])) == (True, 1, 1)

    res = bantz("run", "--once", timeout=60)
    assert res.returncode == 0, res.stderr
    names = sorted(bantz.state(i)["name"] for i in task_folders(bantz))
    assert names == ["first", "second"]
    assert all(bantz.status_of(i) == "done" for i in task_folders(bantz))
    assert not list((bantz.home / "spool").glob("*.yaml"))
    assert "no files waiting" in bantz("status").stdout
