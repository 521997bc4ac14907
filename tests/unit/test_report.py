"""The morning report: `render_report` on fixed inputs, and `write_report` on a hand-built home."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports.i18n import EN, LANGUAGES, TR, language
from bantzd.reports.morning import (
    human_duration,
    mermaid_text,
    report_period,
    report_summary_line,
    result_line,
    tail_lines,
    write_report,
)
from bantzd.reports.render import NightFacts, ResultLine, render_report
from bantzd.reports.secrets import Masker
from tests.conftest import run_demo
from tests.unit.test_report_golden import check_gantt, mermaid_block

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
        "events": [
            {"ts": at(0), "event": "supervisor_started"},
            {"ts": at(8 * 3600), "event": "supervisor_stopped"},
        ],
        "output_tails": {3: ["loading", "error: no such file"]},
        "results": {1: ResultLine("1000 rows"), 2: ResultLine("loss 0.13")},
        "held_categories": {5: "external"},
    }
    args.update(kw)
    return render_report(NightFacts(**args))


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
    assert text.startswith("# Morning report 2026-11-22\n\n")
    assert text.endswith("```\n")


def test_report_summary_line_has_run_span_and_counts() -> None:
    summary = report_summary_line(render())
    assert summary == (
        "Run 2026-11-21 23:00 → 2026-11-22 07:00 · 2 finished · 1 failed · "
        "2 waiting for you · 1 still queued."
    )


def test_report_summary_line_without_a_run() -> None:
    text = render(states=[], events=[])
    assert report_summary_line(text).startswith(
        "No supervisor run since the previous report · 0 finished"
    )
    assert "Nothing is waiting for you." in text
    assert "No task finished." in text
    assert "Nothing failed." in text
    assert "Nothing is left in the queue." in text
    assert "No load history recorded.\n- Starts were never throttled." in text
    assert "No attempts ran in this period." in text


def test_needs_you_gives_the_exact_commands() -> None:
    text = render()
    assert "- #4 `publish` asks: Upload? (choices: yes, no)\n  `bantzd answer 4 yes`" in text
    assert "- #5 `deploy` is held for approval (category external): `bantzd approve 5`" in text
    assert "(or `bantzd reject 5`)" in text


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
    block = mermaid_block(text)
    assert block[:4] == [
        "gantt",
        "    dateFormat YYYY-MM-DD HH:mm:ss",
        "    axisFormat %H:%M",
        "    todayMarker off",
    ]
    assert check_gantt(block) == 5
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
    text = render(states=[state], results={8: ResultLine("x|y")})
    check_gantt(mermaid_block(text))
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
    samples = [{"t": T0 + i, "load_per_core": v} for i, v in enumerate((0.5, 1.5, 1.0))]
    assert "CPU load per core: average 1.00, peak 1.50 (3 samples)." in render(samples=samples)


def test_render_is_pure() -> None:
    assert render() == render()


def test_tokens_per_task_and_a_total_line() -> None:
    states = night()
    states[1].tokens = {"prompt": 12000, "completion": 345}
    states[2].tokens = {"prompt": 5, "completion": "?"}  # a failed task counts in the total
    text = render(states=states)
    assert "| id | name | took | attempts | tokens (prompt + completion) | result |" in text
    assert "| 2 | `train` | 1h 12m | 2 | 12,000 + 345 | loss 0.13 |" in text
    assert "| 1 | `prepare-data` | 45s | 1 |  | 1000 rows |" in text
    assert "Tokens used: 12,005 prompt + 345 completion = 12,350." in text
    assert "tokens" not in render()  # no column and no line when no task used any


def test_missed_deadline_and_dependency_failures_are_listed_under_failed() -> None:
    late = TaskState(
        id=11, name="late", status=Status.FAILED, reason="missed deadline 07:00",
        error="missed deadline 07:00",
    )  # fmt: skip
    dep = TaskState(
        id=12, name="child", status=Status.FAILED, reason="dependency failed: broken",
        error="dependency failed: broken",
    )  # fmt: skip
    bare = TaskState(id=13, name="bare", status=Status.FAILED, error="missed deadline")
    text = render(states=[late, dep, bare])
    section = text.split("## Failed")[1].split("## Still queued")[0]
    assert (
        "### #11 `late`\n\nnever started: its deadline passed (07:00)\n\n"
        "Run it again: `bantzd retry 11`\n" in section
    )
    assert (
        "### #12 `child`\n\nnever started: dependency `broken` failed\n\n"
        "Run its dependency again first: `bantzd retry broken`, then `bantzd retry 12`\n" in section
    )
    assert "### #13 `bare`\n\nnever started: its deadline passed\n" in section
    assert "no exit status" not in section
    assert "No output." not in section  # nothing ran, so nothing to show


def test_the_cause_from_the_log_heads_a_failed_task() -> None:
    state = TaskState(
        id=5, name="train", status=Status.FAILED, attempts=2, exit_code=1, error="exit 1"
    )
    tail = [
        "=== bantzd: attempt 2 · 2026-11-22T23:01:00+00:00 · python train.py ===",
        "Traceback (most recent call last):",
        '  File "train.py", line 1, in <module>',
        "ModuleNotFoundError: No module named 'torch'",
        "=== bantzd: attempt 2 ended: exit code 1 after 1s ===",
    ]
    text = render(states=[state], output_tails={5: tail})
    section = text.split("## Failed")[1].split("## Still queued")[0]
    assert (
        "### #5 `train` — `ModuleNotFoundError: No module named 'torch'`\n\n"
        "exit code 1 · 2 attempts\n\nRun it again: `bantzd retry 5`\n" in section
    )
    # Turkish words, the same command.
    tr = render(states=[state], output_tails={5: tail}, language="tr")
    assert "Yeniden çalıştırmak için: `bantzd retry 5`" in tr


def test_an_attempt_without_exit_status_says_its_error_instead() -> None:
    state = TaskState(
        id=6, name="nowhere", status=Status.FAILED, attempts=1,
        error="cwd does not exist: /nope",
    )  # fmt: skip
    section = render(states=[state]).split("## Failed")[1]
    assert "1 attempt · cwd does not exist: /nope" in section
    assert "no exit status recorded" not in section


def test_a_timeout_keeps_its_reason_next_to_the_signal() -> None:
    state = TaskState(
        id=9, name="slow", status=Status.FAILED, attempts=1, signal=9, error="timeout after 1h"
    )
    assert "signal 9 (SIGKILL) · 1 attempt · timeout after 1h" in render(states=[state])


def test_running_tasks_show_their_progress() -> None:
    running = TaskState(
        id=7, name="r", status=Status.RUNNING, attempts=2,
        progress={"percent": 40.0, "message": "epoch 2\nof 5"},
    )  # fmt: skip
    assert "- #7 `r`: running, attempt 2, 40% epoch 2 of 5" in render(states=[running])
    tr = render(states=[running], language="tr")
    assert "- #7 `r`: çalışıyor, deneme 2, %40 epoch 2 of 5" in tr


def test_a_result_json_without_summary_is_quoted_as_code(tmp_path: Path) -> None:
    from bantzd.paths import TaskPaths

    paths = TaskPaths(tmp_path)
    assert result_line(paths) is None
    (tmp_path / "result.json").write_text('{"loss": 0.12, "note": "a|b"}')
    assert result_line(paths) == ResultLine('{"loss": 0.12, "note": "a|b"}', is_json=True)
    (tmp_path / "result.json").write_text(json.dumps({"summary": "  first\nsecond", "x": 1}))
    assert result_line(paths) == ResultLine("first")
    (tmp_path / "result.json").write_text("[" * 10)
    assert result_line(paths) is None
    (tmp_path / "result.md").write_text("\n\n## Loss 0.1\n")
    assert result_line(paths) == ResultLine("Loss 0.1")
    text = render(results={1: ResultLine('{"a": "b|c"}', is_json=True)})
    assert '| 1 | `prepare-data` | 45s | 1 | `{"a": "b\\|c"}` |' in text


# the Machine section -------------------------------------------------------------------------


def sample(t: float, load: object = 1.0, gpus: object = (), throttled: object = None) -> dict:
    return {"t": T0 + t, "load_per_core": load, "gpus": list(gpus) if isinstance(gpus, tuple)
            else gpus, "throttled": throttled}  # fmt: skip


def machine_section(**kw: object) -> str:
    return render(**kw).split("## Machine\n\n")[1].split("\n\n## Timeline")[0]


def test_gpu_load_per_gpu_and_bad_samples_are_skipped() -> None:
    gib = 2**30
    samples = [
        sample(0, 0.5, ({"index": 0, "util": 10, "free_memory": 10 * gib},)),
        sample(5, 1.5, ({"index": 0, "util": 90, "free_memory": 3 * gib + gib // 2},
                        {"index": 1, "util": None, "free_memory": 20 * gib})),
        sample(10, "high", "no gpus"),
        sample(15, float("nan"), ({"index": "0", "util": 100}, "junk", {"util": 100})),
        sample(20, True, ({"index": 0, "util": float("inf"), "free_memory": None},)),
        {"t": T0 + 25},
    ]  # fmt: skip
    text = machine_section(samples=samples)
    assert text.splitlines()[:3] == [
        "- CPU load per core: average 1.00, peak 1.50 (2 samples).",
        "- GPU 0: utilisation average 50%, peak 90%; least free memory 3.5 GiB.",
        "- GPU 1: utilisation not reported; least free memory 20 GiB.",
    ]


def throttle(t: float, reason: str | None = None, event: str = "throttle_start") -> dict:
    e: dict = {"t": T0 + t, "ts": at(t), "event": event}
    if reason is not None:
        e["reason"] = reason
    return e


def test_throttled_time_from_the_journal() -> None:
    events = [
        {"t": T0, "ts": at(0), "event": "supervisor_started"},
        throttle(-50, event="throttle_end"),  # an end without a start: ignored
        throttle(60, "throttled: cpu load 3.9 > 1.5"),
        throttle(120, "throttled: cpu load 4.2 > 1.5"),  # another reason: a new stretch
        throttle(180, event="throttle_end"),
        throttle(600, "free memory 1 GiB < 2 GiB"),
        {"t": T0 + 900, "ts": at(900), "event": "supervisor_stopped"},  # died throttled
        {"t": T0 + 1000, "ts": at(1000), "event": "supervisor_started"},
        throttle(3000, "throttled: cpu load 2 > 1.5"),
        {"t": "x", "ts": "garbage", "event": "throttle_start", "reason": "cpu load 9 > 1"},
        {"t": T0 + 3600, "ts": at(3600), "event": "transition"},  # the run's last event
    ]
    assert machine_section(events=events).splitlines() == [
        "No load history recorded.",
        "- Starts were throttled for 17m in all:",
        "  - cpu load: 12m, e.g. `cpu load 3.9 > 1.5`",
        "  - free memory: 5m, e.g. `free memory 1 GiB < 2 GiB`",
    ]


def test_throttled_time_from_the_samples_when_the_journal_has_none() -> None:
    samples = [
        sample(0),
        sample(5, throttled="throttled: cpu load 2.1 > 1.5"),
        sample(10, throttled="throttled: cpu load 2.4 > 1.5"),
        sample(15),
        sample(20, throttled="free memory 1 GiB < 2 GiB"),
        sample(3600),  # a gap: the supervisor was not looking; counts MAX_SAMPLE_GAP at most
    ]
    lines = machine_section(samples=samples).splitlines()
    assert lines[1:] == [
        "- Starts were throttled for 1m 10s in all:",
        "  - free memory: 1m, e.g. `free memory 1 GiB < 2 GiB`",
        "  - cpu load: 10s, e.g. `cpu load 2.1 > 1.5`",
    ]


def test_never_throttled() -> None:
    assert machine_section(samples=[sample(0), sample(5)]).endswith(
        "- Starts were never throttled."
    )
    assert "- Yeni görevlerin başlatılması hiç kısıtlanmadı." in render(language="tr")


# secrets --------------------------------------------------------------------------------------


def test_secrets_are_masked_everywhere_they_can_appear() -> None:
    secret = "sk-live-1234567890"
    states = night()
    states[0].name = f"leak-{secret}"
    states[3].question = {"key": "k", "text": f"use {secret}?", "choices": [secret, "no"]}
    text = render(
        states=states,
        output_tails={3: [f"Authorization: Bearer {secret}", "x|" + secret]},
        results={2: ResultLine(f"token={secret}")},
        secrets=[secret],
    )
    assert secret not in text
    assert "Bearer ***" in text and "token=***" in text
    check_gantt(mermaid_block(text))


def test_the_masker_spares_settings_that_only_look_secret() -> None:
    mask = Masker(["false", "1", "pa55", "ab", "hunter2!", "ok"])
    assert (
        mask("TOKENIZERS_PARALLELISM=false, retries 1") == "TOKENIZERS_PARALLELISM=false, retries 1"
    )
    assert mask("password pa55, not pa55word") == "password ***, not pa55word"
    assert mask("x hunter2!y") == "x ***y"
    assert mask("ab ok") == "ab ok"
    assert not Masker([]) and Masker([]).__call__("x") == "x"


# languages ------------------------------------------------------------------------------------


def placeholders(text: object) -> set[str]:
    import string

    texts = text if isinstance(text, tuple) else (text,)
    return {name for t in texts for _, name, _, _ in string.Formatter().parse(t) if name}


def test_every_language_has_every_text_with_the_same_placeholders() -> None:
    for code, lang in LANGUAGES.items():
        assert set(lang.words) == set(EN), code
        for key, text in lang.words.items():
            assert placeholders(text) == placeholders(EN[key]), (code, key)
            assert isinstance(text, str) or len(text) == 2, (code, key)
    assert TR["done"] == "Tamamlananlar" and TR["needs_you"] == "Sizi bekleyenler"


def test_turkish_numbers_percent_and_durations() -> None:
    tr = language("tr_TR.UTF-8")
    assert tr.code == "tr" and language("TR").code == "tr"
    assert language("fr").code == "en" and language(None).code == "en"
    assert tr.number(1234.5, 2) == "1.234,50"
    assert tr.integer(15176) == "15.176"
    assert tr.percent(35.4) == "%35"
    assert tr.duration(4320) == "1 sa 12 dk"
    assert tr.duration(45) == "45 sn"
    assert tr.duration(0) == "0 sn"
    assert tr.duration(90000) == "1 g 1 sa"
    assert tr.n("attempts", 2) == "2 deneme"
    assert language("en").n("attempts", 1) == "1 attempt"


def test_a_turkish_report_has_turkish_headings() -> None:
    text = render(language="tr")
    heads = [line for line in text.splitlines() if line.startswith("#")]
    assert heads == [
        "# Sabah raporu 2026-11-22",
        "## Sizi bekleyenler",
        "## Tamamlananlar",
        "## Başarısız olanlar",
        "### #3 `broken`",
        "## Sırada bekleyenler",
        "## Makine",
        "## Zaman çizelgesi",
    ]
    assert "- #4 `publish` soruyor: Upload? (seçenekler: yes, no)\n  `bantzd answer 4 yes`" in text
    assert "| 2 | `train` | 1 sa 12 dk | 2 | loss 0.13 |" in text


# property: whatever the names, the Markdown and the chart hold ---------------------------------


@settings(max_examples=60, deadline=None)
@given(names=st.lists(st.text(min_size=1, max_size=30), min_size=1, max_size=5))
def test_any_task_names_keep_the_chart_and_the_table_valid(names: list[str]) -> None:
    states = [
        TaskState(
            id=i + 1, name=name, status=Status.DONE, attempts=1,
            attempt_log=[attempt(1, i * 10, i * 10 + 5, "done")],
        )
        for i, name in enumerate(names)
    ]  # fmt: skip
    text = render(states=states, results={})
    assert check_gantt(mermaid_block(text)) == len(names)
    table = text.split("## Done\n\n")[1].split("\n\n")[0].splitlines()
    assert len(table) == 2 + len(names)
    for row in table[2:]:
        assert len(re.findall(r"(?<!\\)\|", row)) == 6  # six unescaped pipes: five cells


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
    assert res.output.startswith("# Morning report ")
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
    # The user's own [llm] endpoint is down: the demo says how to include the LLM examples.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    user = tmp_path / "user-home"
    user.mkdir()
    (user / "config.toml").write_text(f'[llm]\nbase_url = "http://127.0.0.1:{port}/v1"\n')
    out = run_demo(tmp_path, user)
    assert out.startswith(f"demo home: {tmp_path}")
    report = out[out.index("# Morning report") :]
    done = report.split("## Done")[1].split("## Failed")[0]
    for name in ("prepare-data", "train-model", "hello", "argv-list", "flaky-download"):
        assert f"`{name}`" in done
    assert re.search(r"\| `flaky-download` \| [^|]+ \| 2 \|", done)  # failed once, then done
    failed = report.split("## Failed")[1].split("## Still queued")[0]
    assert "`broken-config`" in failed and "no-such-settings.toml" in failed
    assert "Nothing is left in the queue." in report
    assert ":crit," in report.split("```mermaid")[1]
    assert f"LLM examples skipped: no answer from http://127.0.0.1:{port}/v1/models" in out
    assert "bantzd demo --llm http://127.0.0.1:8080/v1" in out
    assert "weekly-notes" not in report
    # The example schedule: fired once by the demo, its task done, its next firing shown.
    assert "schedule nightly-digest fired: task 1 (nightly-digest@" in out
    coming = report.split("## Coming up")[1].split("## Machine")[0]
    assert "- `nightly-digest`: next firing " in coming
    assert re.search(r"  - #1 `nightly-digest@[-0-9T:]+`: done", coming), coming
