"""Notifications through apprise (the optional extra `bantzd[notify]`).

`[notify] urls` are apprise URLs (mailto://, tgram://, ntfy://, json://...) and `on` says
which events are sent: `report`, `question`, `failed`. A notification is a courtesy: a
missing apprise, a bad URL or a server that does not answer is logged on the
`bantzd.notify` logger and never raises, and the supervisor never waits for one.

- `notify(config, event, title, body) -> bool` sends now, in the calling thread.
- `notify_async(...) -> Future[bool]` hands it to one daemon sender thread and returns at
  once. The queue is bounded (a night of failures cannot pile up threads or memory) and
  apprise's own socket timeouts bound each send.
- `question_asked(config, state, task_dir)` and `task_failed(config, state, task_dir)` build
  the message for the supervisor's two events and send it asynchronously, with the task's
  secrets masked.
- `report_written(config, path, summary)` sends the report's summary line and path, waiting
  a bounded time: it runs as the process is about to exit, when a daemon thread would die.
"""

from __future__ import annotations

import logging
import os
import queue
import shlex
import threading
from concurrent.futures import Future
from concurrent.futures import wait as wait_for_futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bantzd.reports.i18n import language

if TYPE_CHECKING:
    from bantzd.config import Config
    from bantzd.queue.task import TaskState

log = logging.getLogger("bantzd.notify")

EVENTS = ("report", "question", "failed")
QUEUE_MAX = 100
REPORT_WAIT = 20.0  # seconds report_written waits for the send
MAX_BODY = 2000


def wanted(config: Config, event: str) -> bool:
    """Whether `event` goes anywhere: URLs are configured and `on` lists it."""
    return bool(config.notify.urls) and event in config.notify.on


def redact(url: str) -> str:
    """The scheme of an apprise URL only: the rest often holds a token or a password."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://…" if sep else "(not a URL)"


_warned_missing = False


def notify(config: Config, event: str, title: str, body: str) -> bool:
    """Send `title` and `body` to every `[notify] urls` when `on` lists `event`.

    True when apprise reported every URL as sent; False when nothing was configured for
    the event, apprise is missing, or any URL failed (each logged). Never raises.
    """
    global _warned_missing
    if not wanted(config, event):
        return False
    try:
        import apprise
    except ImportError:
        if not _warned_missing:
            _warned_missing = True
            log.warning(
                "[notify] urls are set but apprise is not installed; "
                "install it with: pip install 'bantzd[notify]'"
            )
        return False
    try:
        sender = apprise.Apprise()
        added = 0
        for url in config.notify.urls:
            if sender.add(url):
                added += 1
            else:
                log.warning("not a usable apprise URL: %s", redact(url))
        if not added:
            return False
        ok = bool(sender.notify(title=title, body=body[:MAX_BODY]))
    except Exception:
        log.exception("sending the %s notification failed", event)
        return False
    if not ok:
        log.warning("the %s notification did not reach every URL (see apprise's log)", event)
    elif added < len(config.notify.urls):
        ok = False
    return ok


# the sender thread -----------------------------------------------------------------------


class _Sender:
    """One daemon thread that sends queued notifications in order."""

    def __init__(self) -> None:
        self.jobs: queue.Queue[tuple[Future[bool], tuple[Any, ...]]] = queue.Queue(QUEUE_MAX)
        self.pending: set[Future[bool]] = set()
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None

    def submit(
        self, config: Config, event: str, title: str, body: str, task_dir: Path | None
    ) -> Future[bool]:
        future: Future[bool] = Future()
        if not wanted(config, event):
            future.set_result(False)
            return future
        try:
            self.jobs.put_nowait((future, (config, event, title, body, task_dir)))
        except queue.Full:
            log.warning("%d notifications are waiting to be sent; dropped: %s", QUEUE_MAX, title)
            future.set_result(False)
            return future
        with self.lock:
            self.pending.add(future)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="bantzd-notify", daemon=True)
                self.thread.start()
        future.add_done_callback(self._done)
        return future

    def _done(self, future: Future[bool]) -> None:
        with self.lock:
            self.pending.discard(future)

    def _run(self) -> None:
        while True:
            future, (config, event, title, body, task_dir) = self.jobs.get()
            try:
                if task_dir is not None:
                    mask = _task_masker(task_dir)
                    title, body = mask(title), mask(body)
                future.set_result(notify(config, event, title, body))
            except Exception:  # the thread must live on for the next notification
                log.exception("preparing the %s notification failed", event)
                future.set_result(False)

    def drain(self, timeout: float) -> bool:
        with self.lock:
            pending = set(self.pending)
        if not pending:
            return True
        _, not_done = wait_for_futures(pending, timeout=timeout)
        return not not_done


_SENDER = _Sender()


def _reset_after_fork() -> None:
    # A forked child (the daemon, a worker) must not inherit a queue whose thread is gone.
    global _SENDER
    _SENDER = _Sender()


os.register_at_fork(after_in_child=_reset_after_fork)


def notify_async(
    config: Config, event: str, title: str, body: str, *, task_dir: Path | None = None
) -> Future[bool]:
    """`notify` in the sender thread; returns at once with a Future of its result.

    With `task_dir`, the secrets of that task (its task.yaml `env`) are masked in the
    title and body before sending. Never raises; the Future never holds an exception.
    """
    return _SENDER.submit(config, event, title, body, task_dir)


def drain(timeout: float = REPORT_WAIT) -> bool:
    """Wait up to `timeout` seconds for queued notifications; True when none is left.

    For a process about to exit (the sender is a daemon thread and dies with it)."""
    return _SENDER.drain(timeout)


def _task_masker(task_dir: Path) -> Any:
    from bantzd.paths import TaskPaths
    from bantzd.reports.secrets import Masker, environment_secrets, read_task_file, secret_values

    doc = read_task_file(TaskPaths(Path(task_dir)))
    return Masker([*secret_values(doc.get("env")), *environment_secrets(os.environ)])


# the supervisor's events -----------------------------------------------------------------


def _one_line(text: object, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " …"


def tell(config: Config, event: str, state: TaskState, task_dir: Path) -> None:
    """The supervisor's hook: send the `question` or `failed` notification of a task in the
    background when [notify] wants it. Never raises: a notification must not fail the loop."""
    if not config.notify.urls or event not in config.notify.on:
        return
    try:
        send = question_asked if event == "question" else task_failed
        send(config, state, task_dir)
    except Exception:
        log.exception("task %d: could not send the %s notification", state.id, event)


def question_asked(config: Config, state: TaskState, task_dir: Path | None = None) -> Future[bool]:
    """Send the `question` notification for a task that just went to waiting_human."""
    lang = language(config.report_language)
    q = state.question if isinstance(state.question, dict) else {}
    choices = [str(c) for c in q.get("choices") or []]
    question = _one_line(q.get("text") or q.get("key") or "?")
    if choices:
        question += f" ({' / '.join(choices)})"
    answer = shlex.quote(choices[0]) if choices else f'"{lang.t("your_answer")}"'
    title = lang.t("notify_question", id=state.id, name=_one_line(state.name, 80))
    body = lang.t(
        "notify_question_body", question=question, command=f"bantzd answer {state.id} {answer}"
    )
    return notify_async(config, "question", title, body, task_dir=task_dir)


def task_failed(config: Config, state: TaskState, task_dir: Path | None = None) -> Future[bool]:
    """Send the `failed` notification for a task that just failed for good."""
    lang = language(config.report_language)
    if state.error or state.reason:
        what = _one_line(state.error or state.reason)
    elif state.signal is not None:
        what = lang.t("signal", signal=state.signal)
    elif state.exit_code is not None:
        what = lang.t("exit_code", code=state.exit_code)
    else:
        what = lang.t("no_exit_status")
    what += f" · {lang.n('attempts', state.attempts)}"
    title = lang.t("notify_failed", id=state.id, name=_one_line(state.name, 80))
    body = lang.t("notify_failed_body", what=what, command=f"bantzd logs {state.id}")
    return notify_async(config, "failed", title, body, task_dir=task_dir)


def report_written(
    config: Config, path: Path, summary: str | None = None, *, wait: float | None = None
) -> bool:
    """Send the `report` notification: the report's summary line and its path.

    `summary` is read from the report when None. Waits up to `wait` seconds (REPORT_WAIT)
    for the send, since the caller is usually about to exit; True when it was delivered.
    """
    if not wanted(config, "report"):
        return False
    if summary is None:
        summary = _summary_of(Path(path))
    lang = language(config.report_language)
    title = lang.t("notify_report", date=Path(path).stem)
    future = notify_async(config, "report", title, f"{summary}\n{path}")
    try:
        return future.result(timeout=REPORT_WAIT if wait is None else wait)
    except TimeoutError:
        log.warning("the report notification is still being sent; not waiting for it")
        return False


def _summary_of(path: Path) -> str:
    from bantzd.reports.render import report_summary_line

    try:
        return report_summary_line(path.read_text(errors="replace"))
    except OSError as e:
        log.warning("cannot read %s for the notification: %s", path, e.strerror or e)
        return ""
