"""The words a person reads, as pure functions: attempt markers and end lines, `took`,
what `logs` says of a task that does not run, the closing summary of `bantzd run`."""

from __future__ import annotations

import json
import shlex

import pytest

from bantzd.cli.display import describe, not_running_note, took_text
from bantzd.cli.tasks import SUMMARY_WORDS, queue_summary_line
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.supervisor.attemptend import Context, end_words
from bantzd.supervisor.outcome import Ended, Verdict
from bantzd.workers.spawn import Outcome, command_text, end_marker, marker_line

WHEN = "2026-11-22T23:00:05+01:00"

# --- attempt markers -------------------------------------------------------------------


def test_a_one_line_command_is_shown_as_written() -> None:
    assert command_text("python train.py --epochs 3") == "python train.py --epochs 3"
    assert (
        marker_line(1, WHEN, command_text("python train.py"))
        == f"\n=== bantzd: attempt 1 · {WHEN} · python train.py ===\n"
    )


def test_an_argv_list_is_shell_quoted_and_pastes_back() -> None:
    argv = ["printf", "%s|", "a b", "it's", "$HOME"]
    shown = command_text(argv)
    assert shown == "printf '%s|' 'a b' 'it'\"'\"'s' '$HOME'"
    assert shlex.split(shown) == argv


def test_a_multi_line_script_is_not_flattened() -> None:
    script = "set -e\nfor f in *.csv; do\n  wc -l $f\ndone\n"
    shown = command_text(script)
    assert shown == "run: |\n    set -e\n    for f in *.csv; do\n      wc -l $f\n    done"
    assert marker_line(2, WHEN, shown) == (
        f"\n=== bantzd: attempt 2 · {WHEN} · run: | ===\n"
        "    set -e\n    for f in *.csv; do\n      wc -l $f\n    done\n"
    )
    assert command_text("a\nb", label="step build").startswith("step build: |\n    a\n")


def test_a_huge_script_is_cut_with_a_count() -> None:
    shown = command_text("\n".join(f"echo {i}" for i in range(100)))
    lines = shown.split("\n")
    assert len(lines) == 1 + 40 + 1 and lines[-1] == "    … (60 more lines)"


def test_the_end_marker() -> None:
    assert end_marker(2, "ended: exit code 0 after 3m 12s") == (
        "=== bantzd: attempt 2 ended: exit code 0 after 3m 12s ===\n"
    )


# --- end words ---------------------------------------------------------------------------

AFTER = Context(seconds=192, timeout=4 * 3600)


@pytest.mark.parametrize(
    ("ended", "verdict", "ctx", "words"),
    [
        (Ended(Outcome(exit_code=0)), Verdict(Status.DONE, log_outcome="done"), AFTER,
         "ended: exit code 0 after 3m 12s"),
        (Ended(Outcome(exit_code=3)), Verdict(Status.FAILED, "exit 3", log_outcome="failed"),
         AFTER, "ended: exit code 3 after 3m 12s"),
        (Ended(Outcome(exit_code=3)),
         Verdict(Status.QUEUED, "retry at 23:41:07", log_outcome="failed"), AFTER,
         "ended: exit code 3 after 3m 12s; retry at 23:41:07"),
        (Ended(Outcome(signal=9)),
         Verdict(Status.FAILED, "killed by SIGKILL", log_outcome="failed"), AFTER,
         "ended: killed by SIGKILL after 3m 12s"),
        (Ended(Outcome(signal=9), stop_reason="timeout"),
         Verdict(Status.FAILED, "timeout after 4h", log_outcome="failed"), AFTER,
         "killed after timeout 4h"),
        (Ended(Outcome(signal=15), stop_reason="memory limit"),
         Verdict(Status.FAILED, "memory limit", log_outcome="failed"), AFTER,
         "killed over its memory limit after 3m 12s"),
        (Ended(Outcome(exit_code=0), question={"key": "publish"}),
         Verdict(Status.WAITING_HUMAN, "question: publish", log_outcome="asked"), AFTER,
         "stopped: waiting for an answer to 'publish' after 3m 12s"),
        (Ended(Outcome(signal=15), stop_reason="cancelled"),
         Verdict(Status.CANCELLED, "cancelled by user", log_outcome="cancelled"), AFTER,
         "stopped: cancelled after 3m 12s"),
        (Ended(Outcome(signal=15), stop_reason="interrupted"),
         Verdict(Status.QUEUED, "interrupted", log_outcome="interrupted"),
         Context(seconds=5, checkpointed=True, night_over=True),
         "stopped for the end of the night after 5s (checkpointed: resumes from it)"),
        (Ended(Outcome(signal=15), stop_reason="interrupted"),
         Verdict(Status.QUEUED, "interrupted", log_outcome="interrupted"),
         Context(seconds=5, resumes_at_step="train"),
         "stopped as the supervisor stopped after 5s (resumes at step train)"),
        (Ended(Outcome(signal=15), stop_reason="interrupted"),
         Verdict(Status.QUEUED, "interrupted", log_outcome="interrupted"), Context(seconds=5),
         "stopped as the supervisor stopped after 5s (no checkpoint: starts over)"),
        (Ended(Outcome(signal=15), stop_reason="interrupted"),
         Verdict(Status.FAILED, "interrupted 6 times (max_interruptions = 5)",
                 log_outcome="interrupted"), Context(seconds=5),
         "stopped as the supervisor stopped after 5s; failed: interrupted 6 times "
         "(max_interruptions = 5)"),
        (Ended(Outcome(known=False)), Verdict(Status.QUEUED, "interrupted",
                                               log_outcome="interrupted"), Context(),
         "ended while no supervisor watched it (no checkpoint: starts over)"),
        (Ended(spawn_error="cwd does not exist: /nope"),
         Verdict(Status.FAILED, "cwd does not exist: /nope", log_outcome="failed"), Context(),
         "could not start: cwd does not exist: /nope"),
    ],
)  # fmt: skip
def test_every_way_an_attempt_ends_has_words(
    ended: Ended, verdict: Verdict, ctx: Context, words: str
) -> None:
    assert end_words(ended, verdict, ctx) == words


def test_no_end_line_while_the_attempt_goes_on_or_was_given_back() -> None:
    assert end_words(Ended(Outcome(exit_code=0)), Verdict(None, launch_next=True), AFTER) is None
    given_back = Verdict(Status.QUEUED, "not started: Too many open files")
    assert end_words(Ended(not_started="Too many open files"), given_back, AFTER) is None


# --- took ----------------------------------------------------------------------------------


def _done(attempts: int, log: list[tuple[str, str]]) -> TaskState:
    return TaskState(
        id=1, name="t", status=Status.DONE, attempts=attempts,
        started=log[0][0], finished=log[-1][1],
        attempt_log=[{"attempt": i + 1, "start": s, "end": e, "outcome": "x"}
                     for i, (s, e) in enumerate(log)],
    )  # fmt: skip


def test_took_adds_up_the_attempts_and_says_how_many() -> None:
    one = _done(1, [("2026-11-22T23:00:00+00:00", "2026-11-22T23:10:00+00:00")])
    assert took_text(one) == "10m" and describe(one) == "took 10m"
    two = _done(
        2,
        [
            ("2026-11-22T23:00:00+00:00", "2026-11-22T23:05:00+00:00"),
            ("2026-11-22T23:45:00+00:00", "2026-11-22T23:50:00+00:00"),
        ],
    )
    assert took_text(two) == "10m (2 attempts)"  # not the 50 minutes from first to last
    assert describe(two) == "took 10m (2 attempts)"
    running = TaskState(id=2, name="r", status=Status.RUNNING, started=one.started)
    assert took_text(running) is None


# --- logs ----------------------------------------------------------------------------------


def test_what_logs_says_of_a_task_that_is_not_running() -> None:
    queued = TaskState(id=42, name="q", status=Status.QUEUED)
    assert not_running_note(queued, follow=True, has_log=False) == (
        "task 42 is queued: waiting for a free slot; following its log from when it starts"
    )
    assert not_running_note(queued, follow=False, has_log=False) == (
        "task 42 has not run yet, it is queued: waiting for a free slot; "
        "`bantzd logs -f 42` follows its log from when it starts"
    )
    retry = TaskState(id=7, name="r", status=Status.QUEUED, attempts=1, reason="retry at 23:41")
    assert not_running_note(retry, follow=True, has_log=True) == (
        "task 7 is queued: retry at 23:41; following its log from when it runs again"
    )
    asks = TaskState(
        id=8, name="a", status=Status.WAITING_HUMAN, attempts=1, question={"key": "publish"}
    )
    assert not_running_note(asks, follow=True, has_log=True) == (
        "task 8 is waiting for an answer to 'publish' "
        "(bantzd answer 8 --key publish TEXT); following its log from when it runs again"
    )
    failed = TaskState(
        id=9, name="f", status=Status.FAILED, reason="dependency failed: prep", finished="x"
    )
    paused = TaskState(id=12, name="p", status=Status.QUEUED, paused=True)
    assert not_running_note(paused, follow=True, has_log=False) == (
        "task 12 is queued: paused; waiting for a free slot; following its log from when it starts"
    )
    assert not_running_note(failed, follow=False, has_log=False) == (
        "task 9 never ran (failed: dependency failed: prep)"
    )
    done = TaskState(id=10, name="d", status=Status.DONE, attempts=1, finished="x")
    assert not_running_note(done, follow=True, has_log=True) is None
    running = TaskState(id=11, name="r", status=Status.RUNNING, attempts=1)
    assert not_running_note(running, follow=True, has_log=False) is None


# --- the closing summary ------------------------------------------------------------------


def test_the_closing_summary_counts_every_status(tmp_path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    assert {s for s, _ in SUMMARY_WORDS} == {str(s) for s in Status}
    for i, status in enumerate(
        ["done", "done", "failed", "cancelled", "waiting_human", "held", "queued"], start=1
    ):
        state = TaskState(id=i, name=f"t{i}", status=Status(status))
        home.task_dir(i).mkdir(parents=True)
        (home.task_dir(i) / "task.yaml").write_text("run: 'true'\n")
        (home.task_dir(i) / "state.json").write_text(json.dumps(state.to_json()))
    assert queue_summary_line(home) == (
        "bantzd: 2 done, 1 failed, 1 cancelled, 1 waiting for an answer, "
        "1 held for approval, 1 queued, 0 running"
    )
