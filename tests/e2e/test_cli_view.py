"""The read-only commands (`list`, `show`, `logs`, `status`) against hand-built task folders.

No supervisor runs here: every task folder is written directly, the way the store would
leave it, so each test is fast and says exactly what state it looks at.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bantzd.cli import main
from bantzd.cli.display import MASK, mask_task_yaml, mask_values, plain_table, tail_offset
from bantzd.cli.view import collect_status, follow_log, print_log
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.supervisor.lock import acquire
from bantzd.supervisor.probes import Reading, read_machine, throttle_reason

ANSI = re.compile(r"\x1b\[")
ALL_STATUSES = {"queued", "running", "done", "failed", "held", "waiting_human", "cancelled"}
STATE_FIELDS = {
    "id", "name", "status", "reason", "attempts", "created", "started", "finished",
    "exit_code", "signal", "error", "progress", "question", "answer", "pid",
}  # fmt: skip
API_KEY = "sk-live-0123456789abcdef"
HF_TOKEN = "hf_abcdefghijklmnop"


def make_task(
    home: Path, state: TaskState, yaml_text: str | None = None, log: str | bytes | None = None
) -> Path:
    """A task folder as the store leaves it: task.yaml, state.json and maybe output.log."""
    tdir = home / "tasks" / str(state.id)
    tdir.mkdir(parents=True)
    (tdir / "task.yaml").write_text(yaml_text or f"name: {state.name}\nrun: echo hi\n")
    (tdir / "state.json").write_text(json.dumps(state.to_json()))
    if log is not None:
        data = log.encode() if isinstance(log, str) else log
        (tdir / "output.log").write_bytes(data)
    return tdir


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home with one task in each status (ids 1-7) and a second "train" (id 8)."""
    root = tmp_path / "home"
    t0 = "2026-11-22T23:00:00+00:00"
    make_task(
        root,
        TaskState(
            1,
            "prepare",
            Status.DONE,
            attempts=1,
            created=t0,
            started=t0,
            finished="2026-11-22T23:12:05+00:00",
            exit_code=0,
        ),
    )
    make_task(
        root,
        TaskState(
            2,
            "train",
            Status.RUNNING,
            attempts=1,
            created=t0,
            started=t0,
            pid=4242,
            progress={"percent": 42.0, "message": "epoch 2"},
        ),
    )
    make_task(
        root,
        TaskState(
            3, "wait-a-bit", Status.QUEUED, reason="retry at 23:41:07", attempts=1, created=t0
        ),
    )
    make_task(root, TaskState(4, "broken", Status.FAILED, attempts=3, exit_code=2, created=t0))
    make_task(root, TaskState(5, "deploy", Status.HELD, reason="approval required"))
    make_task(
        root,
        TaskState(
            6,
            "publish",
            Status.WAITING_HUMAN,
            attempts=1,
            question={"key": "publish", "text": "Upload the model?", "choices": ["yes", "no"]},
        ),
    )
    make_task(root, TaskState(7, "gone", Status.CANCELLED, reason="cancelled by user"))
    make_task(root, TaskState(8, "train", Status.QUEUED, reason="after: prepare (running)"))
    return root


def bantz(home: Path, *args: str) -> object:
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


# list --------------------------------------------------------------------------------------


def test_list_prints_a_plain_table_when_piped(home: Path) -> None:
    res = bantz(home, "list")
    assert res.exit_code == 0, res.output
    assert not ANSI.search(res.stdout)
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "STATUS", "ATTEMPTS", "INFO"]
    ids = [int(line.split()[0]) for line in lines[1:]]
    assert ids == [1, 2, 3, 4, 5, 6, 7, 8]
    row = {int(line.split()[0]): line for line in lines[1:]}
    assert "42% epoch 2" in row[2]
    assert "retry at 23:41:07" in row[3]
    assert "Upload the model? (yes/no)" in row[6]
    assert "exit 2" in row[4]
    assert "took 12m 5s" in row[1]


def test_list_json_is_an_array_of_task_objects(home: Path) -> None:
    res = bantz(home, "list", "--json")
    assert res.exit_code == 0
    tasks = json.loads(res.stdout)
    assert [t["id"] for t in tasks] == [1, 2, 3, 4, 5, 6, 7, 8]
    for task in tasks:
        assert set(task) >= STATE_FIELDS
    assert tasks[1]["progress"] == {"percent": 42.0, "message": "epoch 2"}


def test_list_filters_by_status(home: Path) -> None:
    res = bantz(home, "list", "--status", "running,failed", "--json")
    assert [t["id"] for t in json.loads(res.stdout)] == [2, 4]
    res = bantz(home, "list", "--status", "queued", "--status", "held", "--json")
    assert [t["id"] for t in json.loads(res.stdout)] == [3, 5, 8]


@pytest.mark.parametrize("bad", ["runing", "queued,nope", ","])
def test_list_rejects_an_unknown_status_as_usage_error(home: Path, bad: str) -> None:
    res = bantz(home, "list", "--status", bad)
    assert res.exit_code == 2
    assert "waiting_human" in res.stderr  # the message lists the valid statuses


def test_list_on_an_empty_home_is_empty_and_creates_nothing(tmp_path: Path) -> None:
    res = bantz(tmp_path / "nothing", "list", "--json")
    assert res.exit_code == 0 and json.loads(res.stdout) == []
    assert not (tmp_path / "nothing").exists()


# show --------------------------------------------------------------------------------------


def test_show_by_id_and_by_unique_name(home: Path) -> None:
    by_id = bantz(home, "show", "6", "--json")
    by_name = bantz(home, "show", "publish", "--json")
    assert by_id.exit_code == by_name.exit_code == 0
    assert json.loads(by_id.stdout) == json.loads(by_name.stdout)
    task = json.loads(by_id.stdout)
    assert set(task) >= STATE_FIELDS
    assert task["question"]["key"] == "publish"


@pytest.mark.parametrize("ref", ["99", "no-such-name", "train"])  # "train" is ambiguous
def test_show_and_logs_exit_3_for_no_such_task(home: Path, ref: str) -> None:
    for cmd in ("show", "logs"):
        res = bantz(home, cmd, ref)
        assert res.exit_code == 3, (cmd, ref, res.output)
        assert res.stderr.startswith("bantzd: ")
    assert "use an id" in bantz(home, "show", "train").stderr


def test_show_human_view(home: Path) -> None:
    lines = "".join(f"line {i}\n" for i in range(1, 31))
    state = TaskState(
        9,
        "verbose",
        Status.DONE,
        attempts=1,
        exit_code=0,
        history=[
            {"at": "2026-11-22T23:00:00+00:00", "status": "queued"},
            {"at": "2026-11-22T23:01:00+00:00", "status": "done"},
        ],
    )
    make_task(home, state, "name: verbose  # a comment\nrun: seq 30\n", log=lines)
    res = bantz(home, "show", "9")
    assert res.exit_code == 0
    out = res.stdout
    assert not ANSI.search(out)
    assert "task 9: verbose" in out and "done" in out
    assert "history:" in out and "2026-11-22T23:01:00+00:00  done" in out
    assert "name: verbose  # a comment" in out  # the file verbatim
    assert "line 21" in out and "line 30" in out and "line 20\n" not in out


def test_show_masks_secret_env_values_everywhere(home: Path) -> None:
    task_yaml = (
        "name: secretive\n"
        "run: \"curl -H 'Authorization: Bearer " + API_KEY + "' https://example.org\"\n"
        "env:\n"
        "  OPENAI_API_KEY: " + API_KEY + "\n"
        '  "hf_token": "' + HF_TOKEN + '"\n'
        "  Db_Password: 'hunter2'\n"
        "  HF_HOME: /data/hf\n"
        "  TOKENIZERS_PARALLELISM: false\n"
    )
    log = f"starting\nusing key {API_KEY}\ndone\n"
    make_task(home, TaskState(9, "secretive", Status.DONE), task_yaml, log=log)
    for args in (
        ["show", "9"],
        ["show", "9", "--json"],
        ["status"],
        ["status", "--json"],
        ["list"],
        ["list", "--json"],
    ):
        out = bantz(home, *args).stdout
        for secret in (API_KEY, HF_TOKEN, "hunter2"):
            assert secret not in out, (args, secret)
    out = bantz(home, "show", "9").stdout
    assert "HF_HOME: /data/hf" in out  # only secret-looking keys are masked
    assert f'OPENAI_API_KEY: "{MASK}"' in out
    assert f"using key {MASK}" in out


@pytest.mark.parametrize(
    "text",
    [
        "run: x\nenv: {API_KEY: abcdefgh, OTHER: 1}\n",
        "run: x\nenv:\n  MY_SECRET: |\n    abcdefgh\n",  # block scalar: re-dumped
        'run: x\nenv:\n  MY_SECRET: "abc\\x64efgh"\n',  # escapes: re-dumped
        "run: x\nenv:\n  PASSWORD: 12345678  # comment\n",
    ],
)
def test_mask_task_yaml_hides_secrets_in_any_yaml_form(text: str) -> None:
    import yaml

    masked = mask_task_yaml(text)
    assert "abcdefgh" not in masked and "12345678" not in masked
    env = yaml.safe_load(masked)["env"]
    assert all(v == MASK for k, v in env.items() if k != "OTHER")


def test_mask_task_yaml_leaves_files_without_secrets_alone() -> None:
    text = "name: a   # keep me\nrun: x\nenv: {HF_HOME: /data}\n"
    assert mask_task_yaml(text) == text
    assert "not shown" in mask_task_yaml("env: {API_KEY: [unclosed\n")


@pytest.mark.parametrize(
    "text",
    [
        'run: x\nenv: {"\\x54OKEN": abcdefgh}\n',  # the key spelled with an escape
        "run: x\nenv: {? !!binary VE9LRU4=\n  : abcdefgh}\n",  # the key as base64 bytes
        'run: x\nenv: {? !<tag:yaml.org,2002:str> "\\u0054OKEN" : abcdefgh}\n',
    ],
)
def test_mask_task_yaml_sees_keys_spelled_indirectly(text: str) -> None:
    """The no-parse shortcut (no secret word in the text) must not miss a key that only
    the parser can read as secret-looking."""
    masked = mask_task_yaml(text)
    assert "abcdefgh" not in masked, masked


def test_mask_values_skips_values_too_short_to_be_secrets() -> None:
    assert mask_values("parallel: false", ["false"]) == "parallel: false"
    assert mask_values("key=abcdefgh!", ["abcdefgh"]) == f"key={MASK}!"


# logs --------------------------------------------------------------------------------------


@pytest.fixture
def big_log(home: Path) -> Path:
    """A ~4 MB log, 100,000 numbered lines, on a finished task (id 20)."""
    data = "".join(f"line {i:06d} " + "x" * 30 + "\n" for i in range(100_000))
    return make_task(home, TaskState(20, "big", Status.DONE), log=data) / "output.log"


def test_logs_n_prints_the_last_lines(home: Path, big_log: Path) -> None:
    res = bantz(home, "logs", "20", "-n", "3")
    assert res.exit_code == 0
    assert [line.split()[1] for line in res.stdout.splitlines()] == ["099997", "099998", "099999"]
    assert bantz(home, "logs", "big", "-n", "0").stdout == ""
    assert len(bantz(home, "logs", "20").stdout) == big_log.stat().st_size


class CountingReader(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def test_tail_offset_reads_only_the_end_of_a_big_log(big_log: Path) -> None:
    data = big_log.read_bytes()
    f = CountingReader(data)
    offset = tail_offset(f, 20)
    assert data[offset:].count(b"\n") == 20 and data[offset - 1 : offset] == b"\n"
    assert f.bytes_read < 200_000


@pytest.mark.parametrize(
    ("data", "n", "tail"),
    [
        (b"", 3, b""),
        (b"a\nb\nc\n", 2, b"b\nc\n"),
        (b"a\nb\nc", 2, b"b\nc"),  # no final newline
        (b"a\nb\n", 5, b"a\nb\n"),  # fewer lines than asked
        (b"\n\n\n", 2, b"\n\n"),
        (b"a\nb\n", 0, b""),
    ],
)
def test_tail_offset_edge_cases(data: bytes, n: int, tail: bytes) -> None:
    assert data[tail_offset(io.BytesIO(data), n) :] == tail


def test_tail_offset_across_block_boundaries() -> None:
    data = b"".join(b"%d\n" % i + b"y" * 70_000 + b"\n" for i in range(5))
    offset = tail_offset(io.BytesIO(data), 3)
    assert data[offset:].startswith(b"y" * 10) and data[offset:].count(b"\n") == 3


def test_logs_of_a_task_without_output_is_empty(home: Path) -> None:
    res = bantz(home, "logs", "3")
    assert res.exit_code == 0 and res.stdout == ""


def test_logs_follow_stops_when_a_finished_task_stops_growing(home: Path) -> None:
    make_task(home, TaskState(21, "fin", Status.FAILED), log="a\nb\n")
    res = bantz(home, "logs", "21", "-f")
    assert res.exit_code == 0 and res.stdout == "a\nb\n"


def test_follow_log_prints_appended_output_until_the_task_ends(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"one\n")
    out = io.BytesIO()
    pos = print_log(log, out, None)
    ticks = {"n": 0}
    over = {"value": False}

    def fake_sleep(_: float) -> None:
        # Each poll the "worker" writes a line; after the third, it writes one last line
        # and the task is recorded as finished.
        ticks["n"] += 1
        with open(log, "ab") as f:
            f.write(b"tick %d\n" % ticks["n"])
        if ticks["n"] == 3:
            with open(log, "ab") as f:
                f.write(b"last words\n")
            over["value"] = True

    end = follow_log(log, out, pos, lambda: over["value"], interval=0, sleep=fake_sleep)
    assert out.getvalue() == b"one\ntick 1\ntick 2\ntick 3\nlast words\n"
    assert end == log.stat().st_size


def test_follow_log_restarts_a_log_that_was_truncated(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_bytes(b"old old old\n")
    out = io.BytesIO()
    calls = {"n": 0}

    def finished() -> bool:
        calls["n"] += 1
        if calls["n"] == 2:
            log.write_bytes(b"new\n")
        return calls["n"] >= 2

    follow_log(log, out, log.stat().st_size, finished, interval=0, sleep=lambda _: None)
    assert out.getvalue() == b"new\n"


# status ------------------------------------------------------------------------------------


def test_status_json_has_exactly_the_documented_shape(home: Path) -> None:
    (home / "supervisor.json").write_text('{"paused": true}')
    res = bantz(home, "status", "--json")
    assert res.exit_code == 0
    report = json.loads(res.stdout)
    assert set(report) == {
        "supervisor",
        "paused",
        "max_parallel",
        "counts",
        "paused_tasks",
        "running",
        "waiting_human",
        "load",
        "throttled",
        "warnings",
        "spool",
    }
    assert report["spool"] == {
        "waiting": [],
        "rejected_since_report": 0,
        "rejected_dir": str(home / "spool" / "rejected"),
        "max_queued": 10000,
        "queue_full": False,
    }
    assert report["warnings"] == []  # a home made by bantzd is private
    assert report["supervisor"] == {
        "running": False,
        "pid": None,
        "since": None,
        "stopping": False,
        "stopping_since": None,
    }
    assert report["paused"] is True
    assert report["counts"] == {
        "queued": 2,
        "running": 1,
        "done": 1,
        "failed": 1,
        "held": 1,
        "waiting_human": 1,
        "cancelled": 1,
    }
    assert isinstance(report["paused_tasks"], dict)
    assert [t["id"] for t in report["running"]] == [2]
    assert report["running"][0]["progress"]["percent"] == 42.0
    assert [t["id"] for t in report["waiting_human"]] == [6]
    assert report["waiting_human"][0]["question"]["text"] == "Upload the model?"
    assert set(report["load"]) == {"load_per_core", "free_memory", "gpus"}
    assert isinstance(report["load"]["load_per_core"], float)
    assert isinstance(report["load"]["free_memory"], int)
    assert report["throttled"] is None or isinstance(report["throttled"], str)


def test_status_counts_every_status_on_an_empty_home(tmp_path: Path) -> None:
    report = json.loads(bantz(tmp_path / "empty", "status", "--json").stdout)
    assert report["counts"] == dict.fromkeys(ALL_STATUSES, 0)
    assert report["paused"] is False and report["running"] == []


def test_status_sees_a_supervisor_holding_the_lock(home: Path) -> None:
    lock = acquire(Home(home))
    try:
        report = json.loads(bantz(home, "status", "--json").stdout)
        text = bantz(home, "status").stdout
    finally:
        lock.release()
    assert report["supervisor"]["running"] is True
    assert report["supervisor"]["pid"] == os.getpid()
    assert isinstance(report["supervisor"]["since"], str)
    assert f"pid {os.getpid()}" in text and "up " in text


def test_status_throttled_reason_comes_from_config_limits(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bantzd.cli.view as view

    monkeypatch.setattr(view, "_throttle_limits", lambda _home: (1.5, None))
    busy = Reading(load_per_core=3.9, free_memory=8 << 30)
    assert collect_status(Home(home), busy)["throttled"] == "cpu load 3.9 > 1.5"
    idle = Reading(load_per_core=0.2, free_memory=8 << 30)
    assert collect_status(Home(home), idle)["throttled"] is None


def test_status_plain_text_when_piped(home: Path) -> None:
    res = bantz(home, "status")
    assert res.exit_code == 0
    out = res.stdout
    assert not ANSI.search(out)
    assert "supervisor: not running" in out
    assert "paused:     no" in out
    assert "2 queued" in out and "1 waiting_human" in out and "1 cancelled" in out
    assert "2  train" in out and "42% epoch 2" in out
    assert "bantzd answer 6 --key publish TEXT" in out


# probes and helpers ------------------------------------------------------------------------


def test_read_machine_is_sane() -> None:
    reading = read_machine()
    assert reading.load_per_core >= 0
    assert reading.free_memory > 0
    assert reading.gpus == []


@pytest.mark.parametrize(
    ("load", "free", "limits", "reason"),
    [
        (0.5, 8 << 30, (1.5, 2 << 30), None),
        (3.9, 8 << 30, (1.5, 2 << 30), "cpu load 3.9 > 1.5"),
        (1.52, 8 << 30, (1.5, None), "cpu load 1.52 > 1.5"),
        (0.5, 1 << 30, (1.5, 2 << 30), "free memory 1 GiB < 2 GiB"),
        (9.0, 0, (None, None), None),
    ],
)
def test_throttle_reason(load: float, free: int, limits: tuple, reason: str | None) -> None:
    assert throttle_reason(Reading(load, free), *limits) == reason


def test_plain_table_aligns_columns_and_keeps_cells_whole() -> None:
    text = plain_table(["ID", "NAME", "INFO"], [["1", "a", "x y"], ["10", "long-name", ""]])
    assert text.splitlines() == ["ID  NAME       INFO", "1   a          x y", "10  long-name"]


def test_logs_into_a_closed_pipe_exits_quietly(home: Path, big_log: Path) -> None:
    """`bantzd logs 20 | head -1`: the real CLI, its reader gone after one line."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bantzd", "--home", str(home), "logs", "20"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 0, err
    assert first.startswith(b"line 000000") and b"Traceback" not in err
