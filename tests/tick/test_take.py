"""The `take` control request (submit and add get their id at once), one tick at a time.

The supervisor both scans the spool and answers take requests, in one thread: whichever
reaches a file first takes it in, and the answer always names the task the file became.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bantzd.queue.atomic import write_json_atomic
from tests.tick.conftest import Harness


def request(h: Harness, path: Path, *, since: float | None = None, name: str = "r") -> Path:
    """Write a take request for spool file `path` (identified by its inode, as submit does)."""
    st = os.lstat(path)
    req = h.home.control / f"{name}.req.json"
    params: dict[str, Any] = {
        "file": path.name,
        "inode": [st.st_dev, st.st_ino],
        "since": h.clock.time() - 1 if since is None else since,
    }
    write_json_atomic(req, {"action": "take", "task": None, "params": params})
    return req


def reply(req: Path) -> dict[str, Any]:
    return json.loads(req.with_name(req.name.replace(".req.", ".reply.")).read_text())


def tasks(h: Harness) -> list[int]:
    return sorted(int(n) for n in os.listdir(h.home.tasks))


def test_a_take_request_takes_the_file_in_and_answers_its_id(fake: Harness) -> None:
    fake.sup.recover()
    path = fake.submit("job.yaml", "name: train\nrun: 'true'\n")
    req = request(fake, path)
    # apply_control alone (the step before the scan) takes it in.
    fake.sup.apply_control()
    fake.sup.flush()
    answer = reply(req)
    assert (answer["ok"], answer["id"], answer["name"]) == (True, 1, "train")
    assert not path.exists() and fake.state(1)["source"] == "job.yaml"
    assert 1 in fake.sup.table.queued and 1 in fake.sup.table.specs  # it can start
    fake.tick()
    assert tasks(fake) == [1] and fake.status(1) == "running"


def test_a_file_the_scan_took_first_is_answered_with_its_task(fake: Harness) -> None:
    fake.sup.recover()
    path = fake.submit("job.yaml", "run: 'true'\n")
    st = os.lstat(path)
    fake.sup.intake_spool()  # the scan wins the race
    fake.sup.flush()
    assert tasks(fake) == [1]
    # The next submit of a job.yaml gets the same free name, with another inode.
    second = fake.submit("job.yaml", "run: echo second\n")
    req = fake.home.control / "late.req.json"
    params = {"file": "job.yaml", "inode": [st.st_dev, st.st_ino], "since": fake.clock.time() - 1}
    write_json_atomic(req, {"action": "take", "task": None, "params": params})
    fake.sup.apply_control()
    fake.sup.flush()
    assert reply(req)["id"] == 1  # the first file's task, not a new one
    assert second.exists() and tasks(fake) == [1]  # the other submit's file is left alone
    second_req = request(fake, second, name="second")
    fake.tick()
    assert reply(second_req)["id"] == 2 and tasks(fake) == [1, 2]
    assert "second" in (fake.task_dir(2) / "task.yaml").read_text()


def test_a_request_applied_twice_makes_one_task(fake: Harness) -> None:
    # A crash between the take and its reply leaves the request; the next lock holder
    # applies it again and finds the task it made.
    fake.sup.recover()
    path = fake.submit("job.yaml", "run: 'true'\n")
    req = request(fake, path)
    data = json.loads(req.read_text())
    fake.tick()
    first = reply(req)
    write_json_atomic(req, data)
    fake.tick()
    assert reply(req)["id"] == first["id"] == 1 and tasks(fake) == [1]


def test_an_invalid_file_is_rejected_and_the_reply_says_why(fake: Harness) -> None:
    fake.sup.recover()
    path = fake.submit("bad.yaml", "run: 'true'\ntimeout: soon\n")
    req = request(fake, path)
    fake.tick()
    answer = reply(req)
    assert answer["ok"] is False and "timeout" in answer["problem"]
    assert answer["rejected"] == str(fake.home.rejected / "bad.yaml")
    notes = [e for e in fake.journal() if e["event"] == "rejected"]
    assert notes == [
        {**notes[0], "file": "bad.yaml", "moved_to": "bad.yaml", "problem": answer["problem"]}
    ]
    assert not os.listdir(fake.home.tasks)


def test_a_file_the_scan_rejected_first_is_answered_with_the_problem(fake: Harness) -> None:
    fake.sup.recover()
    path = fake.submit("bad.yaml", "run: 'true'\nretires: 2\n")
    st = os.lstat(path)
    fake.sup.intake_spool()
    fake.sup.flush()
    req = fake.home.control / "r.req.json"
    params = {"file": "bad.yaml", "inode": [st.st_dev, st.st_ino], "since": fake.clock.time() - 1}
    write_json_atomic(req, {"action": "take", "task": None, "params": params})
    fake.tick()
    answer = reply(req)
    assert answer["ok"] is False and "retires" in answer["problem"]
    assert "submit it again" not in answer["problem"]  # the hint is not part of the problem


def test_a_file_that_left_the_spool_unaccepted_is_an_error(fake: Harness) -> None:
    fake.sup.recover()
    path = fake.submit("gone.yaml", "run: 'true'\n")
    req = request(fake, path)
    path.unlink()  # removed by hand before anyone took it
    fake.tick()
    answer = reply(req)
    assert answer["ok"] is False and "no longer in the spool" in answer["message"]
    assert not os.listdir(fake.home.tasks)


def test_a_take_request_for_a_path_outside_the_spool_is_refused(fake: Harness) -> None:
    fake.sup.recover()
    outside = fake.home.root / "x.yaml"
    outside.write_text("run: 'true'\n")
    req = fake.home.control / "r.req.json"
    params = {"file": "../x.yaml", "inode": None, "since": None}
    write_json_atomic(req, {"action": "take", "task": None, "params": params})
    fake.tick()
    assert reply(req)["ok"] is False and outside.exists()
    assert not os.listdir(fake.home.tasks)
