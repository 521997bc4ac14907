"""Questions and approvals end to end: real supervisors, real tasks, the real CLI.

A task asks at night and stops in waiting_human; in the morning a person answers from the
command line (a wrong choice is refused and the choices are listed); the next run resumes
the task, which sees the answer and its last checkpoint. Held tasks are approved or
rejected. The morning report shows each with the command that answers it.
"""

from __future__ import annotations

import json
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow

SHELL_TASK = textwrap.dedent("""\
    name: publish-shell
    env: {{PYTHON: {python}}}
    run: |
      set -e
      cp=$("$PYTHON" -m bantzd checkpoint show)
      echo "attempt $BANTZ_ATTEMPT sees checkpoint $cp"
      if [ "$cp" = "null" ]; then
        "$PYTHON" -m bantzd checkpoint save '{{"stage": "trained"}}'
      fi
      answer=$("$PYTHON" -m bantzd ask publish "Upload?" --choice yes --choice no)
      echo "ask printed: $answer"
      echo "answer-of: $("$PYTHON" -m bantzd answer-of publish)"
""")

PYTHON_WORKER = textwrap.dedent("""\
    import json

    def main(ctx, args):
        with open(args["ledger"], "a") as f:
            seen = {"attempt": ctx.attempt, "checkpoint": ctx.checkpoint,
                    "publish": ctx.answer("publish"), "license": ctx.answer("license")}
            f.write(json.dumps(seen) + "\\n")
        if ctx.checkpoint is None:
            ctx.save({"epoch": 3})
        if ctx.answer("publish") is None:
            ctx.ask("publish", "Upload the model to the hub?", choices=["yes", "no"])
        if ctx.answer("license") is None:
            ctx.ask("license", "Which license?")
        ctx.result({"summary": f"published={ctx.answer('publish')} "
                               f"license={ctx.answer('license')}"})
""")


def run_once(bantz: Bantz) -> None:
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr


def test_a_shell_task_asks_is_answered_and_resumes(bantz: Bantz) -> None:
    bantz.drop("publish.yaml", SHELL_TASK.format(python=json.dumps(sys.executable)))
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"] == {"key": "publish", "text": "Upload?", "choices": ["yes", "no"]}
    assert state["reason"] == "question: publish"
    assert state["attempts"] == 1 and state["failures"] == 0  # asking is not failing
    assert state["attempt_log"][-1]["outcome"] == "asked"
    assert "attempt 1 sees checkpoint null" in bantz.output(1)
    # The attempt stopped at the question (the script itself is quoted, indented, in the
    # attempt's marker; no line of output says it).
    assert "\nask printed" not in bantz.output(1)
    assert "stopped: waiting for an answer to 'publish'" in bantz.output(1)

    # The report says what is waiting and how to answer it.
    report = bantz("report", "--stdout", check=True).stdout
    needs = report.split("## Needs you")[1].split("## Done")[0]
    assert "- #1 `publish-shell` asks: Upload? (choices: yes, no)" in needs
    assert "`bantzd answer 1 yes`" in needs

    wrong = bantz("answer", "1", "maybe")
    assert wrong.returncode == 1
    assert "'maybe' is not one of the choices: yes, no" in wrong.stderr
    assert bantz.status_of(1) == "waiting_human"
    other_key = bantz("answer", "1", "yes", "--key", "license")
    assert other_key.returncode == 1 and "asked 'publish'" in other_key.stderr

    ok = bantz("answer", "publish-shell", "yes")  # by name, as any command
    assert ok.returncode == 0, ok.stderr
    state = bantz.state(1)
    assert state["status"] == "queued" and state["reason"] == "answered"
    assert state["answers"] == {"publish": "yes"} and state["question"] is None

    run_once(bantz)
    state = bantz.state(1)
    out = bantz.output(1)
    assert state["status"] == "done", out
    assert state["attempts"] == 2
    assert 'attempt 2 sees checkpoint {"stage": "trained"}' in out
    assert "ask printed: yes" in out  # `bantzd ask` with an answer prints it and goes on
    assert "answer-of: yes" in out
    again = bantz("answer", "1", "no")
    assert again.returncode == 1 and "has not asked anything" in again.stderr


def test_a_python_task_asks_twice_and_keeps_every_answer(bantz: Bantz, tmp_path: Path) -> None:
    (tmp_path / "pub.py").write_text(PYTHON_WORKER)
    ledger = tmp_path / "ledger.jsonl"
    bantz.drop(
        "pub.yaml",
        f"name: pub\npython: pub:main\ncwd: {tmp_path}\nargs: {{ledger: {ledger}}}\n",
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"]["key"] == "publish"
    assert bantz("answer", "1", "yes", "--key", "publish").returncode == 0

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "waiting_human", (state, bantz.output(1))
    assert state["question"] == {"key": "license", "text": "Which license?", "choices": []}
    assert state["answers"] == {"publish": "yes"}
    report = bantz("report", "--stdout", check=True).stdout
    assert '- #1 `pub` asks: Which license?\n  `bantzd answer 1 "YOUR ANSWER"`' in report
    answered = bantz("answer", "1", "MIT or Apache-2.0")  # free text: no choices to check
    assert answered.returncode == 0, answered.stderr

    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    assert state["answers"] == {"publish": "yes", "license": "MIT or Apache-2.0"}
    assert state["failures"] == 0 and state["attempts"] == 3
    shown = bantz("show", "1", check=True).stdout
    assert "answers:    license = MIT or Apache-2.0; publish = yes" in shown, shown[:600]
    assert "answer[" not in shown
    seen = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert seen == [
        {"attempt": 1, "checkpoint": None, "publish": None, "license": None},
        {"attempt": 2, "checkpoint": {"epoch": 3}, "publish": "yes", "license": None},
        {
            "attempt": 3,
            "checkpoint": {"epoch": 3},
            "publish": "yes",
            "license": "MIT or Apache-2.0",
        },
    ]
    result = json.loads((bantz.task_dir(1) / "result.json").read_text())
    assert result == {"summary": "published=yes license=MIT or Apache-2.0"}
    report = bantz("report", "--stdout", check=True).stdout
    assert "| 1 | `pub` |" in report and "| published=yes license=MIT or Apache-2.0 |" in report


def test_an_answer_reaches_a_running_supervisor(bantz: Bantz, tmp_path: Path) -> None:
    bantz.drop("publish.yaml", SHELL_TASK.format(python=json.dumps(sys.executable)))
    supervisor = bantz.start("run", stderr=tmp_path / "supervisor.err")
    wait_for(lambda: bantz.status_of(1) == "waiting_human", 30, what="the question")
    res = bantz("answer", "1", "no")
    assert res.returncode == 0, res.stderr
    wait_for(lambda: bantz.status_of(1) == "done", 30, what="the resumed task")
    assert "ask printed: no" in bantz.output(1)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(30) == 0


def test_approval_holds_tasks_until_approved_or_rejected(bantz: Bantz) -> None:
    with open(bantz.home / "config.toml", "a") as f:
        f.write('[approval]\ncategories = ["external"]\n')
    bantz.drop("a-flagged.yaml", "name: flagged\napproval: true\nrun: echo flagged ran\n")
    bantz.drop("b-external.yaml", "name: upload\ncategory: external\nrun: echo upload ran\n")
    bantz.drop("c-internal.yaml", "name: tidy\ncategory: internal\nrun: echo tidy ran\n")
    run_once(bantz)  # held tasks do not keep `--once` waiting
    assert bantz.status_of(1) == "held" and bantz.status_of(2) == "held"
    assert bantz.status_of(3) == "done"
    assert bantz.output(1) == "" and bantz.output(2) == ""

    report = bantz("report", "--stdout", check=True).stdout
    needs = report.split("## Needs you")[1].split("## Done")[0]
    assert "- #1 `flagged` is held for approval: `bantzd approve 1`" in needs
    assert "- #2 `upload` is held for approval (category external): `bantzd approve 2`" in needs
    assert "runs: `echo upload ran`" in needs

    assert bantz("approve", "1").returncode == 0
    rejected = bantz("reject", "upload", "--reason", "not tonight")
    assert rejected.returncode == 0, rejected.stderr
    assert bantz("approve", "3").returncode == 1  # done: nothing to approve
    assert bantz("reject", "1").returncode == 1  # queued now, no longer held
    assert bantz("approve", "99").returncode == 3
    state = bantz.state(2)
    assert state["status"] == "cancelled" and state["reason"] == "rejected: not tonight"
    bantz.drop("plain.yaml", "name: plain\nrun: 'true'\napproval: true\n")
    run_once(bantz)
    plain = max(int(p.name) for p in (bantz.home / "tasks").iterdir())
    assert bantz("reject", str(plain)).returncode == 0
    assert bantz.state(plain)["reason"] == "rejected by user"  # not "rejected: rejected"

    run_once(bantz)
    assert bantz.status_of(1) == "done" and "flagged ran" in bantz.output(1)
    assert bantz.status_of(2) == "cancelled" and bantz.output(2) == ""
