"""End-to-end: the words and numbers a person reads (issue 13, items 4 and 5).

`took` and `started` mean the same in `list`, `show` and the report; the closing summary
of `bantzd run` counts every status; output.log's attempt markers quote commands as typed
and every attempt ends with a line saying how; `logs` says what a task that does not run
waits for; the report's Failed section gives the cause and the command to run it again;
a `: ` in a plain YAML value gets a hint. All through the real CLI and real processes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest

from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow


def run_once(bantz: Bantz, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    res = bantz("run", "--once", timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res


def test_took_and_started_mean_the_same_in_list_show_and_report(bantz: Bantz, tmp_path) -> None:
    marker = tmp_path / "second-time"
    bantz.drop(
        "flaky.yaml",
        textwrap.dedent(f"""\
        name: flaky
        run: |
          sleep 1
          if [ -e {marker} ]; then echo ok; else touch {marker}; exit 1; fi
        retries: 1
        retry_delay: 2s
    """),
    )
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "done" and state["attempts"] == 2
    log = state["attempt_log"]
    # `started` is the first start, not the retry's.
    assert state["started"] == log[0]["start"] != log[1]["start"]

    def seconds(iso: str) -> float:
        return datetime.fromisoformat(iso).timestamp()

    # took: both attempts added up (about 2s), not first start to end (which has the
    # 2s retry delay in it too).
    ran = sum(seconds(e["end"]) - seconds(e["start"]) for e in log)
    wall = seconds(state["finished"]) - seconds(state["started"])
    assert ran < wall
    took = f"{round(ran)}s"

    listed = bantz("list", check=True).stdout
    assert re.search(rf"^1\s+flaky\s+done\s+2\s+took {took} \(2 attempts\)$", listed, re.M), listed
    shown = bantz("show", "1", check=True).stdout
    assert f"  took:       {took} (2 attempts)\n" in shown, shown
    assert f"  started:    {state['started']}\n" in shown
    assert f"  last attempt started: {log[1]['start']}\n" in shown
    report = bantz("report", "--stdout", check=True).stdout
    assert f"| 1 | `flaky` | {took} | 2 |" in report, report


def test_run_summary_counts_every_status(bantz: Bantz) -> None:
    bantz.drop("a.yaml", "name: ok\nrun: 'true'\n")
    bantz.drop("b.yaml", "name: bad\nrun: exit 4\n")
    bantz.drop("c.yaml", "name: gated\napproval: true\nrun: 'true'\n")
    bantz.drop("d.yaml", "name: unwanted\napproval: true\nrun: 'true'\n")
    run_once(bantz)
    bantz("reject", "4", check=True)  # held -> cancelled, no supervisor running
    res = run_once(bantz)
    last = res.stdout.strip().splitlines()[-1]
    assert last == (
        "bantzd: 1 done, 1 failed, 1 cancelled, 0 waiting for an answer, "
        "1 held for approval, 0 queued, 0 running"
    ), res.stdout


def test_attempt_markers_quote_the_command_and_say_how_it_ended(bantz: Bantz) -> None:
    python = json.dumps(sys.executable)
    bantz.drop(
        "script.yaml",
        "name: script\nrun: |\n  echo one\n  echo 'two: 2'\n",
    )
    bantz.drop("argv.yaml", "name: argv\nrun: [printf, '%s|', a b, \"it's\"]\n")
    bantz.drop("slow.yaml", "name: slow\nrun: sleep 30\ntimeout: 1s\n")
    bantz.drop(
        "asks.yaml",
        f"name: asks\nenv: {{PYTHON: {python}}}\n"
        'run: \'"$PYTHON" -m bantzd ask publish "Upload?" --choice yes --choice no\'\n',
    )
    bantz.drop("fails.yaml", "name: fails\nrun: exit 3\nretries: 1\nretry_delay: 0.5s\n")
    run_once(bantz)

    script = bantz.output(1)
    # The script as written, not flattened into one line.
    assert re.search(
        r"=== bantzd: attempt 1 · \S+ · run: \| ===\n    echo one\n    echo 'two: 2'\n"
        r"one\ntwo: 2\n=== bantzd: attempt 1 ended: exit code 0 after [\d.]+s ===\n$",
        script,
    ), script
    argv = bantz.output(2)
    # shlex.join: what a person would paste into a shell.
    assert " · printf '%s|' 'a b' 'it'\"'\"'s' ===\n" in argv, argv
    # printf wrote no newline: the end marker still starts a line of its own.
    assert re.search(r"a b\|it's\|\n=== bantzd: attempt 1 ended: exit code 0 after [\d.]+s ===\n$",
                     argv), argv  # fmt: skip
    assert bantz.output(3).endswith("=== bantzd: attempt 1 killed after timeout 1s ===\n")
    asks = bantz.output(4)
    assert re.search(
        r"=== bantzd: attempt 1 stopped: waiting for an answer to 'publish' after [\d.]+s ===\n$",
        asks,
    ), asks
    fails = bantz.output(5)
    assert re.search(
        r"=== bantzd: attempt 1 ended: exit code 3 after [\d.]+s; retry at \d\d:\d\d:\d\d ===\n",
        fails,
    ), fails
    assert re.search(r"=== bantzd: attempt 2 ended: exit code 3 after [\d.]+s ===\n$", fails)


def test_an_interrupted_attempt_says_so(bantz: Bantz) -> None:
    bantz.drop("long.yaml", "name: long\nrun: sleep 60\n")
    proc = bantz.start("run")
    wait_for(lambda: bantz.status_of(1) == "running", 30, what="the task to start")
    proc.terminate()
    assert proc.wait(30) == 0
    assert bantz.status_of(1) == "queued"
    assert re.search(
        r"=== bantzd: attempt 1 stopped as the supervisor stopped after [\d.]+s "
        r"\(no checkpoint: starts over\) ===\n$",
        bantz.output(1),
    ), bantz.output(1)


def test_an_attempt_stopped_at_the_end_of_the_night_says_it_is_checkpointed(
    bantz: Bantz,
) -> None:
    python = json.dumps(sys.executable)
    bantz.drop(
        "night.yaml",
        f"name: night\nenv: {{PYTHON: {python}}}\n"
        'run: \'"$PYTHON" -m bantzd checkpoint save "{\\"epoch\\": 1}" && sleep 60\'\n',
    )
    until = datetime.fromtimestamp(datetime.now().timestamp() + 4).isoformat(timespec="seconds")
    res = bantz("run", "--until", until, timeout=60)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "queued"
    assert (bantz.task_dir(1) / "checkpoint.json").exists()
    assert re.search(
        r"=== bantzd: attempt 1 stopped for the end of the night after [\d.]+s "
        r"\(checkpointed: resumes from it\) ===\n$",
        bantz.output(1),
    ), bantz.output(1)


def test_logs_says_what_a_task_waits_for_then_follows_it(bantz: Bantz) -> None:
    bantz.drop("gated.yaml", "name: gated\napproval: true\nrun: echo the-output\n")
    run_once(bantz)  # takes it in; it stays held
    assert bantz.status_of(1) == "held"

    res = bantz("logs", "1", check=True)
    assert res.stdout == ""
    assert res.stderr.strip() == (
        "task 1 has not run yet, it is held: waiting for approval (bantzd approve 1); "
        "`bantzd logs -f 1` follows its log from when it starts"
    )

    follow = subprocess.Popen(
        bantz.argv("logs", "-f", "1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=bantz.env,
        stdin=subprocess.DEVNULL,
    )
    bantz.procs.append(follow)  # type: ignore[arg-type]
    assert follow.stderr is not None
    first = follow.stderr.readline()
    assert first.strip() == (
        "task 1 is held: waiting for approval (bantzd approve 1); "
        "following its log from when it starts"
    )
    assert follow.poll() is None  # still following
    bantz("approve", "1", check=True)
    run_once(bantz)
    out, _ = follow.communicate(timeout=30)
    assert follow.returncode == 0
    assert "the-output\n" in out and "=== bantzd: attempt 1 ended: exit code 0" in out


def test_logs_of_a_queued_task_gives_its_reason(bantz: Bantz) -> None:
    bantz.drop("late.yaml", "name: late\nrun: echo hi\nnot_before: '2099-01-01T00:00'\n")
    run_once(bantz)
    state = bantz.state(1)
    assert state["status"] == "queued" and state["reason"]
    res = bantz("logs", "1", check=True)
    assert res.stderr.strip() == (
        f"task 1 has not run yet, it is queued: {state['reason']}; "
        "`bantzd logs -f 1` follows its log from when it starts"
    )


def test_the_report_gives_the_cause_and_how_to_run_it_again(bantz: Bantz) -> None:
    bantz.drop(
        "imp.yaml",
        f"name: imp\nrun: [{json.dumps(sys.executable)}, -c, 'import no_such_module_xyz']\n",
    )
    bantz.drop("nocmd.yaml", "name: nocmd\nrun: 'true && no-such-command-xyz --go'\n")
    bantz.drop("after.yaml", "name: after\nrun: 'true'\nafter: [imp]\n")
    run_once(bantz)
    assert [bantz.status_of(i) for i in (1, 2, 3)] == ["failed"] * 3
    report = bantz("report", "--stdout", check=True).stdout
    failed = report.split("## Failed")[1].split("## Still queued")[0]
    assert (
        "### #1 `imp` — `ModuleNotFoundError: No module named 'no_such_module_xyz'`\n\n"
        "exit code 1 · 1 attempt\n\nRun it again: `bantzd retry 1`\n" in failed
    ), failed
    assert "### #2 `nocmd` — `command not found: no-such-command-xyz`\n" in failed, failed
    assert "Run it again: `bantzd retry 2`" in failed
    assert (
        "### #3 `after`\n\nnever started: dependency `imp` failed\n\n"
        "Run its dependency again first: `bantzd retry imp`, then `bantzd retry 3`\n" in failed
    ), failed
    assert "no exit status recorded" not in report


@pytest.mark.parametrize(
    "text,hint",
    [
        ("name: x\nrun: echo a: b\n", "quote the value (run: 'echo a: b'), or write `run: |`"),
        ("name: my: task\nrun: 'true'\n", "quote the value (name: 'my: task')"),
        (
            'steps:\n  - name: s\n    run: echo "x": y\n',
            "quote the value (run: 'echo \"x\": y'), or write `run: |`",
        ),
    ],
)
def test_validate_suggests_quoting_a_colon_in_a_plain_value(
    bantz: Bantz, tmp_path, text: str, hint: str
) -> None:
    path = tmp_path / "task.yaml"
    path.write_text(text)
    res = bantz("validate", str(path))
    assert res.returncode == 1
    assert "mapping values are not allowed" in res.stdout + res.stderr
    assert hint in res.stdout + res.stderr, res.stdout + res.stderr
    # And the suggestion, applied, is valid.
    fixed = tmp_path / "fixed.yaml"
    quoted = re.search(r"quote the value \((\w+): (.*?)\)(?:, or|$)", res.stdout + res.stderr)
    assert quoted
    key, value = quoted.groups()
    lines = [
        re.sub(rf"^(\s*(?:- )?){key}: .*$", lambda m: f"{m.group(1)}{key}: {value}", line)
        for line in text.splitlines()
    ]
    fixed.write_text("\n".join(lines) + "\n")
    assert bantz("validate", str(fixed)).returncode == 0
