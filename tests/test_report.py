"""The morning report: `render_report` on fixed inputs, and `write_report` on a hand-built home."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports.morning import (
    human_duration,
    mermaid_text,
    render_report,
    report_period,
    tail_lines,
    write_report,
)

DAY = date(2026, 11, 22)
T0 = datetime(2026, 11, 21, 23, 0, tzinfo=UTC).timestamp()  # the run starts at 23:00


def at(offset: float) -> str:
    """ISO time `offset` seconds after T0, with an explicit offset (timezone-independent)."""
    return datetime.fromtimestamp(T0 + offset, UTC).isoformat(timespec="seconds")


def attempt(n: int, start: float, end: float | None, outcome: str | None) -> dict:
    return {
        "attempt": n,
        "start": at(start),
        "end": None if end is None else at(end),
        "outcome": outcome,
    }


def night() -> list[TaskState]:
    return [
        TaskState(
            id=1,
            name="prepare-data",
            status=Status.DONE,
            attempts=1,
            started=at(0),
            finished=at(45),
            attempt_log=[attempt(1, 0, 45, "done")],
        ),
        TaskState(
            id=2,
            name="train",
            status=Status.DONE,
            attempts=2,
            started=at(100),
            finished=at(100 + 3600 + 720 + 60),
            attempt_log=[attempt(1, 50, 100, "failed"), attempt(2, 100, 100 + 4320, "done")],
        ),
        TaskState(
            id=3,
            name="broken",
            status=Status.FAILED,
            attempts=1,
            exit_code=3,
            error="exit 3",
            started=at(10),
            finished=at(12),
            attempt_log=[attempt(1, 10, 12, "failed")],
        ),
        TaskState(
            id=4,
            name="publish",
            status=Status.WAITING_HUMAN,
            attempts=1,
            question={"key": "publish", "text": "Upload?", "choices": ["yes", "no"]},
            attempt_log=[attempt(1, 200, 260, "asked")],
        ),
        TaskState(id=5, name="deploy", status=Status.HELD, reason="category external"),
        TaskState(id=6, name="later", status=Status.QUEUED, reason="outside window 23:00-07:00"),
    ]


def render(states: list[TaskState] | None = None, **kw: object) -> str:
    args: dict = {
        "date": DAY,
        "states": night() if states is None else states,
        "events": [],
        "started": at(0),
        "ended": at(8 * 3600),
        "output_tails": {3: ["loading", "error: no such file"]},
        "results": {1: "1000 rows", 2: "loss 0.13"},
    }
    args.update(kw)
    return render_report(**args)


def test_sections_come_in_spec_order_after_the_title() -> None:
    text = render()
    heads = [line for line in text.splitlines() if line.startswith("## ")]
    assert heads == [
        "## Needs you",
        "## Done",
        "## Failed",
        "## Still queued",
        "## Machine",
        "## Timeline",
    ]
    assert text.startswith("# bantzd report 2026-11-22\n\n")
    assert text.endswith("```\n")


def test_summary_line_has_run_span_and_counts() -> None:
    summary = render().splitlines()[2]
    assert summary == (
        "Run 2026-11-21 23:00 → 2026-11-22 07:00 · 2 finished · 1 failed · "
        "2 waiting for you · 1 still queued."
    )


def test_summary_line_without_a_run() -> None:
    text = render(states=[], started=None, ended=None)
    assert "No supervisor run since the previous report · 0 finished" in text
    assert "Nothing is waiting for you." in text
    assert "No task finished." in text
    assert "Nothing failed." in text
    assert "Nothing is left in the queue." in text
    assert "No load history recorded." in text
    assert "No attempts ran in this period." in text


def test_needs_you_gives_the_exact_commands() -> None:
    text = render()
    assert "- #4 `publish` asks: Upload? (choices: yes, no)\n  `bantzd answer 4 yes`" in text
    assert "- #5 `deploy` is held for approval (category external): `bantzd approve 5`" in text


def test_done_table_rows() -> None:
    lines = render().splitlines()
    start = lines.index("| id | name | took | attempts | result |")
    assert lines[start + 2 : start + 4] == [
        "| 1 | `prepare-data` | 45s | 1 | 1000 rows |",
        "| 2 | `train` | 1h 12m | 2 | loss 0.13 |",
    ]


def test_failed_has_exit_code_attempts_and_the_tail_in_a_fence() -> None:
    text = render()
    section = text.split("## Failed")[1].split("## Still queued")[0]
    assert "### #3 `broken`\n\nexit code 3 · 1 attempt\n\n" in section
    assert "```\nloading\nerror: no such file\n```" in section


def test_failed_tail_with_backticks_gets_a_longer_fence() -> None:
    text = render(output_tails={3: ["```", "inside"]})
    assert "````\n```\ninside\n````" in text


def test_signal_is_named() -> None:
    killed = TaskState(id=9, name="k", status=Status.FAILED, attempts=2, signal=9)
    assert "signal 9 (SIGKILL) · 2 attempts" in render(states=[killed])


def test_still_queued_lists_reasons() -> None:
    assert "- #6 `later`: outside window 23:00-07:00" in render()


def test_timeline_has_one_bar_per_attempt_and_failed_ones_are_crit() -> None:
    text = render()
    block = text.split("```mermaid\n")[1].split("\n```")[0].splitlines()
    assert block[:3] == ["gantt", "    dateFormat YYYY-MM-DD HH:mm:ss", "    axisFormat %H:%M"]
    bars = [line.strip() for line in block if ":" in line and "Format" not in line]
    assert bars == [
        "attempt 1 :done, t1a0, 2026-11-21 23:00:00, 2026-11-21 23:00:45",
        "attempt 1 :crit, t2a0, 2026-11-21 23:00:50, 2026-11-21 23:01:40",
        "attempt 2 :done, t2a1, 2026-11-21 23:01:40, 2026-11-22 00:13:40",
        "attempt 1 :crit, t3a0, 2026-11-21 23:00:10, 2026-11-21 23:00:12",
        "attempt 1 asked :t4a0, 2026-11-21 23:03:20, 2026-11-21 23:04:20",
    ]
    assert "    section 1 prepare-data" in block


def test_an_unfinished_attempt_is_active_until_the_run_end() -> None:
    running = TaskState(
        id=7, name="r", status=Status.RUNNING, attempts=1, attempt_log=[attempt(1, 60, None, None)]
    )
    text = render(states=[running])
    assert "attempt 1 :active, t7a0, 2026-11-21 23:01:00, 2026-11-22 07:00:00" in text
    assert "- #7 `r`: running, attempt 1" in text


def test_names_are_escaped_for_mermaid_and_markdown() -> None:
    nasty = "a:b#c;d|e`f\ng(h)%%"
    state = TaskState(
        id=8,
        name=nasty,
        status=Status.DONE,
        attempts=1,
        attempt_log=[attempt(1, 0, 5, "done")],
    )
    text = render(states=[state], results={8: "x|y"})
    section = next(line for line in text.splitlines() if line.startswith("    section"))
    assert section == "    section 8 a：b＃c；d|e`f g（h）％％"
    for bad in ":#;()%":
        assert bad not in section
    # One table row, pipes escaped, the backtick kept inside a longer code span.
    assert "| 8 | ``a:b#c;d\\|e`f g(h)%%`` | 5s | 1 | x\\|y |" in text
    assert mermaid_text("") == "?"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (45, "45s"),
        (60, "1m"),
        (725, "12m 5s"),
        (3600, "1h"),
        (4320, "1h 12m"),
        (4325, "1h 12m"),
        (90000, "1d 1h"),
        (-3, "0s"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_machine_section_summarises_load_samples() -> None:
    events = [{"event": "load", "load_per_core": v} for v in (0.5, 1.5, 1.0)]
    assert "CPU load per core: average 1.00, peak 1.50 (3 samples)." in render(events=events)


def test_render_is_pure() -> None:
    assert render() == render()


# report_period and tail_lines --------------------------------------------------------------


def test_report_period() -> None:
    assert report_period(None, DAY, 100.0) == (None, 100.0)
    marker = {"date": "2026-11-21", "since": 10.0, "until": 50.0}
    assert report_period(marker, DAY, 100.0) == (50.0, 100.0)  # since the previous report
    marker = {"date": "2026-11-22", "since": 10.0, "until": 50.0}
    assert report_period(marker, DAY, 100.0) == (10.0, 100.0)  # the same report again


def test_tail_lines_of_a_big_log(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    with open(log, "w") as f:
        for i in range(100_000):
            f.write(f"line {i}\n")
        f.write("progress 10%\rprogress 100%\n")
        f.write("x" * 5000 + "\n\n\n")
    (tmp_path / "short.log").write_text("\n\n=== marker ===\nout\n")
    lines = tail_lines(log)
    assert len(lines) == 20
    assert lines[-3] == "line 99999"
    assert lines[-2] == "progress 100%"
    assert lines[-1].startswith("xxx") and lines[-1].endswith(" …") and len(lines[-1]) < 500
    assert tail_lines(tmp_path / "short.log") == ["=== marker ===", "out"]
    assert tail_lines(tmp_path / "missing.log") == []


# write_report on a hand-built home ---------------------------------------------------------


def make_task(home: Home, state: TaskState, output: str = "", **files: str) -> None:
    tdir = home.task_dir(state.id)
    tdir.mkdir(parents=True)
    (tdir / "task.yaml").write_text(f"name: {state.name}\nrun: 'true'\n")
    (tdir / "state.json").write_text(json.dumps(state.to_json()))
    if output:
        (tdir / "output.log").write_text(output)
    for name, text in files.items():
        (tdir / name.replace("_", ".")).write_text(text)


def journal(home: Home, *events: tuple[float, str, dict]) -> None:
    with open(home.journal, "a") as f:
        for offset, name, extra in events:
            f.write(json.dumps({"t": T0 + offset, "ts": at(offset), "event": name, **extra}) + "\n")


@pytest.fixture
def night_home(tmp_path: Path) -> Home:
    home = Home(tmp_path / "home")
    home.ensure()
    states = night()
    make_task(home, states[0], result_md="\n# 1000 rows ready\nmore\n")
    make_task(home, states[1], result_json='{"summary": "loss 0.13\\nline two"}')
    make_task(home, states[2], output="".join(f"out {i}\n" for i in range(30)))
    for state in states[3:]:
        make_task(home, state)
    journal(
        home,
        (0, "supervisor_started", {"pid": 1}),
        (45, "transition", {"id": 1, "status": "done"}),
        (12, "transition", {"id": 3, "status": "failed"}),
        (8 * 3600, "supervisor_stopped", {"pid": 1}),
    )
    return home


def test_write_report_gathers_results_tails_and_the_run(night_home: Home) -> None:
    path = write_report(night_home, now=T0 + 8 * 3600 + 60, date=DAY)
    assert path == night_home.reports / "2026-11-22.md"
    text = path.read_text()
    assert "Run 2026-11-21 23:00 → 2026-11-22 07:00 · 2 finished · 1 failed" in text
    assert "| 1 | `prepare-data` | 45s | 1 | 1000 rows ready |" in text
    assert "| 2 | `train` | 1h 12m | 2 | loss 0.13 |" in text
    tail = text.split("### #3 `broken`")[1].split("## Still queued")[0]
    assert "out 9\n" not in tail and "```\nout 10\n" in tail and "out 29\n```" in tail


def test_writing_twice_gives_the_same_file(night_home: Home) -> None:
    first = write_report(night_home, now=T0 + 8 * 3600 + 60, date=DAY).read_bytes()
    second = write_report(night_home, now=T0 + 9 * 3600, date=DAY).read_bytes()
    assert first == second
    marker = json.loads((night_home.reports / ".last.json").read_text())
    assert marker == {"date": "2026-11-22", "since": None, "until": T0 + 9 * 3600}
    leftovers = [p.name for p in night_home.reports.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_the_next_report_covers_only_what_happened_since(night_home: Home) -> None:
    write_report(night_home, now=T0 + 8 * 3600 + 60, date=DAY)
    day = 24 * 3600
    make_task(
        night_home,
        TaskState(
            id=7,
            name="next-night",
            status=Status.DONE,
            attempts=1,
            started=at(day),
            finished=at(day + 30),
            attempt_log=[attempt(1, day, day + 30, "done")],
        ),
    )
    journal(
        night_home,
        (day - 60, "supervisor_started", {"pid": 2}),
        (day + 30, "transition", {"id": 7, "status": "done"}),
        (day + 3600, "supervisor_stopped", {"pid": 2}),
    )
    text = write_report(night_home, now=T0 + day + 3700, date=date(2026, 11, 23)).read_text()
    assert "Run 2026-11-22 22:59 → 2026-11-23 00:00" in text
    assert "| 7 | `next-night` | 30s | 1 |" in text
    assert "prepare-data" not in text and "`broken`" not in text  # finished last time
    assert "#6 `later`: outside window" in text  # still queued: still reported
    assert "t1a0" not in text and "t7a0" in text


def test_report_command_prints_without_writing(night_home: Home) -> None:
    pytest.importorskip("bantzd.cli")
    from click.testing import CliRunner

    from bantzd.cli import main

    runner = CliRunner()
    res = runner.invoke(main, ["--home", str(night_home.root), "report", "--stdout"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("# bantzd report ")
    assert list(night_home.reports.iterdir()) == []
    res = runner.invoke(main, ["--home", str(night_home.root), "report", "--date", "2026-11-22"])
    assert res.exit_code == 0, res.output
    assert (night_home.reports / "2026-11-22.md").exists()
    res = runner.invoke(main, ["--home", str(night_home.root), "report", "--date", "22/11"])
    assert res.exit_code == 2


# the commands around the report ------------------------------------------------------------


def test_init_is_idempotent(tmp_path: Path) -> None:
    pytest.importorskip("bantzd.cli")
    from click.testing import CliRunner

    from bantzd.cli import main

    root = tmp_path / "home"
    runner = CliRunner()
    first = runner.invoke(main, ["--home", str(root), "init"])
    assert first.exit_code == 0, first.output
    assert "created home folder" in first.output and "created " in first.output
    config = (root / "config.toml").read_bytes()
    (root / "config.toml").write_bytes(config + b"# mine\n")
    again = runner.invoke(main, ["--home", str(root), "init"])
    assert again.exit_code == 0, again.output
    assert "home folder exists" in again.output and "left unchanged" in again.output
    assert (root / "config.toml").read_bytes() == config + b"# mine\n"
    assert (root / "spool" / "rejected").is_dir() and (root / "tasks").is_dir()


@pytest.mark.slow
def test_demo_runs_the_examples_and_prints_the_report(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("BANTZ_")}
    env["TMPDIR"] = str(tmp_path)  # the demo's temporary home lands here
    res = subprocess.run(
        [sys.executable, "-m", "bantzd", "demo"],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert out.startswith(f"demo home: {tmp_path}")
    report = out[out.index("# bantzd report") :]
    done = report.split("## Done")[1].split("## Failed")[0]
    for name in ("prepare-data", "train-model", "hello", "argv-list", "flaky-download"):
        assert f"`{name}`" in done
    assert re.search(r"\| `flaky-download` \| [^|]+ \| 2 \|", done)  # failed once, then done
    failed = report.split("## Failed")[1].split("## Still queued")[0]
    assert "`broken-config`" in failed and "no-such-settings.toml" in failed
    assert "Nothing is left in the queue." in report
    assert ":crit," in report.split("```mermaid")[1]
