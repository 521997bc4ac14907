"""`unique:` (SPEC 10): the key of a task file, and which unfinished task holds a key."""

from __future__ import annotations

import pytest

from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.queue.taskfile import TaskFileError, parse_task
from bantzd.queue.unique import (
    CONTENT_PREFIX,
    UniqueKeys,
    content_key,
    duplicate_problem,
    task_key,
)

BASE = "name: notes\nunique: true\nrun: summarise ~/notes\nretries: 2\n"


def key_of(text: str) -> str | None:
    spec = parse_task(text, default_name="f")
    return task_key(text.encode(), spec.unique)


def test_unique_true_keys_by_content_without_comments_and_name() -> None:
    key = key_of(BASE)
    assert key is not None and key.startswith(CONTENT_PREFIX)
    same = [
        "# the weekly notes\nunique: true\nname: other-name\nrun: summarise ~/notes  # why\n"
        "retries: 2\n",
        "{unique: true, run: 'summarise ~/notes', retries: 2}\n",  # flow style, no name
        'unique: true\nrun: "summarise ~/notes"\nretries: 0x2\n',  # the same values
    ]
    for text in same:
        assert key_of(text) == key, text
    different = [
        BASE.replace("retries: 2", "retries: 3"),
        BASE.replace("~/notes", "~/notes2"),
        BASE + "priority: high\n",
        BASE.replace("run: summarise ~/notes", "run: [summarise, ~/notes]"),
    ]
    for text in different:
        assert key_of(text) != key, text


def test_unique_with_a_key_is_the_key_and_false_is_not_unique() -> None:
    assert key_of("unique: notes-summary\nrun: a\n") == "notes-summary"
    assert key_of("unique: '  notes-summary '\nrun: b\n") == "notes-summary"
    assert key_of("unique: 2026\nrun: b\n") == "2026"  # as written
    assert key_of("unique: false\nrun: a\n") is None
    assert key_of("run: a\n") is None
    assert parse_task("unique: k\nrun: a\n", default_name="f").to_dict()["unique"] == "k"


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("[a, b]", "expected true, or a key like notes-summary"),
        ("''", "got an empty text"),
        ('"a\\nb"', "one line"),
        ("" + "x" * 201, "at most 200 characters"),
        ("", "expected true, or a key"),
    ],
)
def test_a_bad_unique_is_rejected_naming_the_field(value: str, words: str) -> None:
    with pytest.raises(TaskFileError) as e:
        parse_task(f"run: a\nunique: {value}\n", default_name="f")
    (problem,) = e.value.problems
    assert problem.key == "unique" and problem.line == 2
    assert words in problem.message


def test_a_misspelt_unique_gets_a_suggestion() -> None:
    with pytest.raises(TaskFileError) as e:
        parse_task("run: a\nuniqe: true\n", default_name="f")
    assert "did you mean 'unique'?" in str(e.value)


def test_content_key_of_a_file_that_is_not_a_mapping_hashes_the_bytes() -> None:
    assert content_key(b"- a\n") == content_key(b"- a\n") != content_key(b"- b\n")


def state(task_id: int, key: str | None, status: Status = Status.QUEUED) -> TaskState:
    return TaskState(id=task_id, name=f"t{task_id}", status=status, unique_key=key)


def test_the_oldest_unfinished_task_holds_a_key() -> None:
    a, b = state(3, "k", Status.RUNNING), state(5, "k")
    keys = UniqueKeys([b, a, state(4, None), state(6, "other")])
    assert keys.holder("k") is a
    assert duplicate_problem(a) == "duplicate of task 3 (running)"
    assert keys.holder("nobody") is None and keys.holder(None) is None
    assert keys.holder("k", besides=3) is b


@pytest.mark.parametrize(
    "status", [Status.QUEUED, Status.HELD, Status.WAITING_HUMAN, Status.RUNNING]
)
def test_unfinished_statuses_hold_the_key(status: Status) -> None:
    assert UniqueKeys([state(1, "k", status)]).holder("k") is not None


def test_a_task_that_ended_frees_its_key_and_a_retried_one_takes_it_again() -> None:
    task = state(1, "k")
    keys = UniqueKeys([task])
    for ended in (Status.DONE, Status.FAILED, Status.CANCELLED):
        task.status = ended  # the live state: no need to tell the index
        assert keys.holder("k") is None
    task.status = Status.QUEUED  # `bantzd retry`
    assert keys.holder("k") is task


def test_an_edited_key_is_seen_once_the_task_is_added_again() -> None:
    task = state(1, "old")
    keys = UniqueKeys([task])
    task.unique_key = "new"
    assert keys.holder("old") is None  # the stale entry no longer counts
    keys.add(task)
    assert keys.holder("new") is task
    keys.forget(1, "new")
    assert keys.holder("new") is None
