"""Notifications: through apprise's json:// URL to a local HTTP receiver, and every way one
can fail without raising or blocking."""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bantzd.config import Config, config_from_mapping
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports import notify
from bantzd.reports.morning import publish_report

pytest.importorskip("apprise")

SECRET = "sk-live-abcdef123456"


class Receiver:
    """An HTTP server on 127.0.0.1 that records every JSON body posted to it."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.bodies: list[dict] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                data = self.rfile.read(length)
                time.sleep(delay)
                receiver.bodies.append(json.loads(data))
                receiver.arrived.set()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    r = Receiver()
    yield r
    r.close()


def config(urls: list[str], on: list[str] | None = None, **extra: object) -> Config:
    table: dict = {"urls": urls}
    if on is not None:
        table["on"] = on
    return config_from_mapping({"notify": table, **extra})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# reaching the receiver ------------------------------------------------------------------------


def test_the_report_notification_carries_the_summary_and_the_path(
    receiver: Receiver, tmp_path: Path
) -> None:
    path = tmp_path / "2026-11-22.md"
    assert notify.report_written(config([receiver.url]), path, "Run 23:00 → 07:00 · 2 finished.")
    [body] = receiver.bodies
    assert body["title"] == "bantzd: morning report 2026-11-22"
    assert body["message"] == f"Run 23:00 → 07:00 · 2 finished.\n{path}"


def test_publish_report_writes_the_report_then_notifies(receiver: Receiver, tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    cfg = config([receiver.url], report_language="tr")
    path = publish_report(home, cfg, now=1_795_000_000.0, date=date(2026, 11, 22))
    assert path == home.reports / "2026-11-22.md"
    summary = path.read_text().splitlines()[2]
    assert summary.startswith("Önceki rapordan bu yana hiç çalışma olmadı · 0 tamamlandı")
    [body] = receiver.bodies
    assert body["title"] == "bantzd: sabah raporu 2026-11-22"
    assert body["message"] == f"{summary}\n{path}"


def test_question_and_failure_notifications_mask_the_tasks_secrets(
    receiver: Receiver, tmp_path: Path
) -> None:
    task_dir = tmp_path / "7"
    task_dir.mkdir()
    (task_dir / "task.yaml").write_text(f"run: ./up.sh\nenv: {{HUB_TOKEN: {SECRET}}}\n")
    cfg = config([receiver.url])
    asking = TaskState(
        id=7,
        name="publish",
        status=Status.WAITING_HUMAN,
        question={"key": "publish", "text": f"Upload with {SECRET}?", "choices": ["yes", "no"]},
    )
    assert notify.question_asked(cfg, asking, task_dir).result(timeout=30)
    failed = TaskState(
        id=7, name="publish", status=Status.FAILED, attempts=3, exit_code=2, error="exit 2"
    )
    assert notify.task_failed(cfg, failed, task_dir).result(timeout=30)
    question, failure = receiver.bodies
    assert question["title"] == "bantzd: task 7 (publish) asks a question"
    assert question["message"] == "Upload with ***? (yes / no)\nAnswer with: bantzd answer 7 yes"
    assert failure["title"] == "bantzd: task 7 (publish) failed"
    assert failure["message"] == "exit 2 · 3 attempts\nSee: bantzd logs 7"
    assert SECRET not in json.dumps(receiver.bodies)


def test_only_the_events_in_on_are_sent(receiver: Receiver, tmp_path: Path) -> None:
    cfg = config([receiver.url], on=["failed"])
    state = TaskState(id=1, name="x", status=Status.WAITING_HUMAN, question={"key": "k"})
    assert notify.question_asked(cfg, state).result(timeout=5) is False
    assert notify.report_written(cfg, tmp_path / "2026-11-22.md", "s") is False
    assert notify.notify(config([]), "failed", "t", "b") is False  # no URLs at all
    assert notify.notify(cfg, "failed", "title", "body")
    assert [b["title"] for b in receiver.bodies] == ["title"]


# failing without raising or blocking ------------------------------------------------------------


def test_an_unreachable_url_is_logged_and_returns_false(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bantzd.notify")
    cfg = config([f"json://127.0.0.1:{closed_port()}/"])
    assert notify.notify(cfg, "failed", "t", "b") is False
    assert "did not reach every URL" in caplog.text


def test_a_server_error_is_logged_and_returns_false(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.WARNING, logger="bantzd.notify")
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    broken = Receiver(status=500)
    try:
        assert notify.notify(config([broken.url]), "report", "t", "b") is False
    finally:
        broken.close()
    assert len(broken.bodies) == 1
    assert "did not reach every URL" in caplog.text


def test_a_bad_url_is_logged_without_its_credentials(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bantzd.notify")
    bad = f"nosuchscheme://user:{SECRET}@host/"
    assert notify.notify(config([bad]), "failed", "t", "b") is False
    assert "not a usable apprise URL: nosuchscheme://…" in caplog.text
    # One good URL and one bad: the good one is still sent, and the result says not all were.
    assert notify.notify(config([bad, receiver.url]), "failed", "t", "b") is False
    assert len(receiver.bodies) == 1
    assert SECRET not in caplog.text


def test_without_apprise_it_logs_once_and_returns_false(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bantzd.notify")
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise -> ImportError
    monkeypatch.setattr(notify, "_warned_missing", False)
    cfg = config(["json://127.0.0.1:9/"])
    assert notify.notify(cfg, "failed", "t", "b") is False
    assert notify.notify(cfg, "failed", "t", "b") is False
    assert caplog.text.count("apprise is not installed") == 1
    assert notify.notify_async(cfg, "failed", "t", "b").result(timeout=5) is False


def test_an_exception_inside_apprise_is_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import apprise

    def boom(*args: object, **kwargs: object) -> bool:
        raise RuntimeError("plugin crashed")

    monkeypatch.setattr(apprise.Apprise, "notify", boom)
    caplog.set_level(logging.WARNING, logger="bantzd.notify")
    assert notify.notify(config(["json://127.0.0.1:9/"]), "failed", "t", "b") is False
    assert "plugin crashed" in caplog.text


def test_a_slow_server_never_blocks_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    slow = Receiver(delay=2.0)
    try:
        cfg = config([slow.url])
        started = time.monotonic()
        future = notify.notify_async(cfg, "failed", "t", "b")
        assert time.monotonic() - started < 0.5  # handed to the sender thread
        assert not future.done()
        started = time.monotonic()
        assert notify.report_written(cfg, Path("2026-11-22.md"), "s", wait=0.2) is False
        assert time.monotonic() - started < 1.0  # gave up waiting; the send goes on
        assert notify.drain(timeout=30)
        assert future.result() is True
        assert len(slow.bodies) == 2
    finally:
        slow.close()


def test_the_queue_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(notify, "notify", lambda *a: release.wait(30))
    monkeypatch.setattr(notify, "_SENDER", notify._Sender())
    cfg = config(["json://127.0.0.1:9/"])
    futures = [
        notify.notify_async(cfg, "failed", f"n{i}", "b") for i in range(notify.QUEUE_MAX + 5)
    ]
    dropped = [f for f in futures if f.done()]
    assert 4 <= len(dropped) <= 5 and all(f.result() is False for f in dropped)
    release.set()
    assert notify.drain(timeout=30)
    assert sum(f.result() for f in futures) == len(futures) - len(dropped)
