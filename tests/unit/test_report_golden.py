"""Golden files: a fixed night (journal, task folders, load history) -> the exact report.

The home is built on disk and the report written with `write_report`, so the whole path is
covered: choosing the period, reading the files, rendering, masking. Every recorded time
carries an explicit offset, so the text does not depend on the machine's time zone.

To accept a deliberate change of the report, run
    BANTZ_UPDATE_GOLDEN=1 pytest tests/unit/test_report_golden.py
and read the diff of tests/golden/ before committing it.

`check_gantt` is a grammar check of the Mermaid gantt subset the report writes (the lexer
rules of Mermaid's gantt.jison that matter for it); test_report.py uses it too.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bantzd.config import config_from_mapping
from bantzd.paths import Home
from bantzd.queue.states import Status
from bantzd.queue.task import TaskState
from bantzd.reports.morning import report_text, write_report
from bantzd.reports.secrets import looks_secret

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("BANTZ_UPDATE_GOLDEN") == "1"

DAY = date(2026, 11, 22)
T0 = datetime(2026, 11, 21, 23, 0, tzinfo=UTC).timestamp()  # the run starts at 23:00
END = T0 + 8 * 3600  # and ends at 07:00
HF_TOKEN = "hf_Zx81kQpL0secretvalue"
SHORT_SECRET = "pa55"


def at(offset: float) -> str:
    return datetime.fromtimestamp(T0 + offset, UTC).isoformat(timespec="seconds")


def attempt(n: int, start: float, end: float | None, outcome: str | None) -> dict:
    return {"attempt": n, "start": at(start), "end": None if end is None else at(end),
            "outcome": outcome}  # fmt: skip


# --- the night ------------------------------------------------------------------------------


def night_states() -> list[tuple[TaskState, str]]:
    """(state, task.yaml) of every task in the home."""
    m = 60
    h = 3600
    return [
        (  # finished before the previous report: must not appear
            TaskState(id=1, name="last-week", status=Status.DONE, attempts=1,
                      started=at(-3 * 86400), finished=at(-3 * 86400 + 5),
                      attempt_log=[attempt(1, -3 * 86400, -3 * 86400 + 5, "done")]),
            "name: last-week\nrun: 'true'\n",
        ),
        (
            TaskState(id=2, name="prepare-data", status=Status.DONE, attempts=1,
                      started=at(0), finished=at(42), exit_code=0,
                      attempt_log=[attempt(1, 0, 42, "done")]),
            "name: prepare-data\nrun: ./prepare.sh\n",
        ),
        (
            TaskState(id=3, name="train|model", status=Status.DONE, attempts=2,
                      started=at(60), finished=at(2 * m + 1 * h + 12 * m), exit_code=0,
                      attempt_log=[attempt(1, 60, 2 * m, "failed"),
                                   attempt(2, 2 * m, 2 * m + 1 * h + 12 * m, "done")]),
            f"name: train|model\nrun: python train.py\nenv: {{HF_TOKEN: {HF_TOKEN}}}\n",
        ),
        (
            TaskState(id=4, name="weekly-ai-news", status=Status.DONE, attempts=1, kind="agent",
                      started=at(3 * m), finished=at(9 * m),
                      tokens={"prompt": 12840, "completion": 1536},
                      agent={"steps": 9, "max_steps": 30, "step": "done",
                             "tool_calls": {"write": 1, "fetch": 6, "plan_done": 3},
                             "plan": {"steps": ["Find", "Read", "Summarise"],
                                      "done": [1, 2, 3]}},
                      attempt_log=[attempt(1, 3 * m, 9 * m, "done")]),
            "name: weekly-ai-news\nagent: {goal: Summarise last week's AI news, plan: true}\n",
        ),
        (
            TaskState(id=5, name="broken-config", status=Status.FAILED, attempts=1,
                      exit_code=2, error="exit 2", started=at(10), finished=at(12),
                      attempt_log=[attempt(1, 10, 12, "failed")]),
            f"name: broken-config\nrun: ./load.sh\nenv:\n  DB_PASSWORD: {SHORT_SECRET}\n",
        ),
        (
            TaskState(id=6, name="stuck-scrape", status=Status.FAILED, attempts=2, signal=9,
                      error="timeout after 1h", tokens={"prompt": 800, "completion": 0},
                      kind="agent", agent={"steps": 1, "tool_calls": {}},
                      started=at(2 * h), finished=at(4 * h),
                      attempt_log=[attempt(1, 2 * h, 3 * h, "failed"),
                                   attempt(2, 3 * h, 4 * h, "failed")]),
            "name: stuck-scrape\nagent: {goal: Scrape the listings}\ntimeout: 1h\nretries: 1\n",
        ),
        (
            TaskState(id=7, name="late-report", status=Status.FAILED, attempts=0,
                      reason="missed deadline 06:00", error="missed deadline 06:00",
                      finished=at(7 * h)),
            "name: late-report\nrun: ./report.sh\ndeadline: '06:00'\n",
        ),
        (
            TaskState(id=8, name="publish-model", status=Status.WAITING_HUMAN, attempts=1,
                      reason="question: publish",
                      question={"key": "publish", "text": "Upload the model to the hub?",
                                "choices": ["yes", "no"]},
                      attempt_log=[attempt(1, 1 * h + 20 * m, 1 * h + 25 * m, "asked")]),
            "name: publish-model\npython: pub:main\n",
        ),
        (
            TaskState(id=9, name="deploy-docs", status=Status.HELD,
                      reason="waiting for approval"),
            f"name: deploy-docs\ncategory: external\nrun: ./deploy.sh --token {HF_TOKEN}\n"
            f"env: {{API_KEY: {HF_TOKEN}}}\n",
        ),
        (
            TaskState(id=10, name="rotate-keys", status=Status.HELD,
                      reason="waiting for approval"),
            "name: rotate-keys\napproval: true\nrun: [vault, rotate, --all]\n",
        ),
        (
            TaskState(id=11, name="nightly-eval", status=Status.QUEUED,
                      reason="outside window 23:00-05:00"),
            "name: nightly-eval\nrun: ./eval.sh\nwindow: '23:00-05:00'\n",
        ),
        (
            TaskState(id=12, name="interrupted-render", status=Status.QUEUED, attempts=1,
                      reason="interrupted",
                      attempt_log=[attempt(1, 6 * h, 8 * h, "interrupted")]),
            "name: interrupted-render\nrun: ./render.sh\n",
        ),
        (
            TaskState(id=13, name="spam", status=Status.CANCELLED, reason="rejected: not tonight",
                      finished=at(5 * m)),
            "name: spam\napproval: true\nrun: ./spam.sh\n",
        ),
        (  # the cause in its log goes in the heading
            TaskState(id=14, name="finetune", status=Status.FAILED, attempts=1, exit_code=1,
                      error="exit 1", started=at(5 * h), finished=at(5 * h + 3),
                      attempt_log=[attempt(1, 5 * h, 5 * h + 3, "failed")]),
            "name: finetune\nrun: python finetune.py\n",
        ),
        (  # never started: what it waited for failed
            TaskState(id=15, name="evaluate", status=Status.FAILED, attempts=0,
                      reason="dependency failed: finetune", error="dependency failed: finetune",
                      finished=at(5 * h + 4)),
            "name: evaluate\nrun: python eval.py\nafter: [finetune]\n",
        ),
        (  # a schedule's firing of the night (Coming up lists it under its schedule)
            TaskState(id=16, name="digest@2026-11-21T23:30", status=Status.DONE, attempts=1,
                      schedule="digest", firing=at(30 * m), started=at(30 * m),
                      finished=at(31 * m), attempt_log=[attempt(1, 30 * m, 31 * m, "done")]),
            "name: digest@2026-11-21T23:30\nrun: ./digest.sh\n",
        ),
        (  # the one missed firing of `sync` made up at the start; it ran past the next
            TaskState(id=17, name="sync@2026-11-21T22:00", status=Status.DONE, attempts=1,
                      schedule="sync", firing=at(-h), started=at(0), finished=at(70 * m),
                      attempt_log=[attempt(1, 0, 70 * m, "done")]),
            "name: sync@2026-11-21T22:00\nrun: ./sync.sh\n",
        ),
        (  # held back by the fit rule (SPEC 11): named under Still queued
            TaskState(id=18, name="full-export", status=Status.QUEUED,
                      reason="would not finish before 07:00 (estimate 3h10m from 2 runs)"),
            "name: full-export\nrun: ./export.sh\n",
        ),
    ]  # fmt: skip


# The runs estimates.json has: the estimate each task ran with (the Done table's column).
ESTIMATES = {
    "version": 1,
    "names": {
        "prepare-data": [{"task": 2, "took": 42, "estimate": 60}],
        "train|model": [{"task": 3, "took": 4200, "estimate": None}],
        "weekly-ai-news": [{"task": 30, "took": 300, "estimate": None},
                           {"task": 4, "took": 360, "estimate": 300}],
        "full-export": [{"task": 31, "took": 11000, "estimate": None},
                        {"task": 32, "took": 11800, "estimate": 11000}],
    },
}  # fmt: skip


def schedule_files() -> dict[str, tuple[str, dict]]:
    """(schedule.yaml, state.json) of the home's schedules: fixed, so the section is."""
    h = 3600
    return {
        "digest": (
            "name: digest\nschedule: {cron: '30 23 * * *', tz: UTC}\nrun: ./digest.sh\n",
            {"name": "digest", "next_fire": "2026-11-22T23:30:00+00:00", "last_task": 16,
             "instances": [16]},
        ),
        "sync": (
            "name: sync\nschedule: {cron: '0 * * * *', tz: UTC}\nrun: ./sync.sh\n",
            {"name": "sync", "next_fire": "2026-11-22T08:00:00+00:00", "paused": True,
             "last_task": 17, "instances": [17],
             "missed": [{"firing": at(-2 * h), "first": at(-4 * h), "count": 3, "at": at(0),
                         "because": "missed; one made up at most"},
                        {"firing": at(-30 * h), "count": 1, "at": at(-29 * h),
                         "because": "before the period"}],
             "skipped": [{"firing": at(h), "at": at(h), "because": "task 17 (running)"}]},
        ),
    }  # fmt: skip


def journal_events() -> list[dict]:
    h = 3600
    events = [
        (-3 * 86400, "supervisor_started", {}),
        (-3 * 86400 + 10, "supervisor_stopped", {}),
        (0, "supervisor_started", {"pid": 4242, "until": at(8 * h)}),
        (42, "transition", {"id": 2, "status": "done"}),
        (12, "transition", {"id": 5, "status": "failed"}),
        (30 * 60, "throttle_start", {"reason": "throttled: cpu load 3.9 > 1.5"}),
        (30 * 60 + 600, "throttle_start", {"reason": "throttled: cpu load 3.9 > 1.5"}),
        (30 * 60 + 1080, "throttle_end", {}),
        (2 * h, "throttle_start", {"reason": "throttled: free memory 1.2 GiB < 2 GiB"}),
        (2 * h + 300, "throttle_start", {"reason": "throttled: cpu load 2.01 > 1.5"}),
        (2 * h + 420, "throttle_end", {}),
        (4 * h, "transition", {"id": 6, "status": "failed"}),
        (7 * h, "transition", {"id": 7, "status": "failed"}),
        (5 * h + 3, "transition", {"id": 14, "status": "failed"}),
        (5 * h + 4, "transition", {"id": 15, "status": "failed"}),
        (8 * h, "supervisor_stopped", {"pid": 4242}),
    ]
    return [{"t": T0 + off, "ts": at(off), "event": name, **extra} for off, name, extra in events]


def load_lines() -> list[str]:
    lines = []
    for i in range(49):  # every 10 minutes from 23:00 to 07:00
        t = T0 + i * 600
        load = [0.2, 0.9, 3.9, 1.1][i % 4]
        gpus = [
            {"index": 0, "util": [10, 95, 60][i % 3], "free_memory": (20 - i % 5) * 2**30},
            {"index": 1, "util": None, "free_memory": 40 * 2**30},
        ]
        sample = {"t": t, "load_per_core": load, "free_memory": 8 * 2**30, "gpus": gpus,
                  "throttled": None}  # fmt: skip
        lines.append(json.dumps(sample))
    lines.insert(3, '{"t": "not a time", "load_per_core": 99}')
    lines.insert(5, json.dumps({"t": T0 + 1, "load_per_core": "high", "gpus": "none"}))
    lines.insert(7, "[1, 2, 3]")
    lines.append(json.dumps({"t": END, "load_per_core": 5})[:-3])  # torn by a crash
    lines.append(json.dumps({"t": T0 - 7200, "load_per_core": 50.0}))  # before the period
    return lines


def build_night(root: Path) -> Home:
    home = Home(root)
    home.ensure()
    for state, task_yaml in night_states():
        tdir = home.task_dir(state.id)
        tdir.mkdir(parents=True)
        (tdir / "task.yaml").write_text(task_yaml)
        (tdir / "state.json").write_text(json.dumps(state.to_json()))
    files = {
        2: {"result.json": json.dumps({"summary": "1000 rows ready\nsecond line", "rows": 1000})},
        3: {"result.md": f"\n# loss 0.13 | acc 0.91 (token {HF_TOKEN})\nmore\n"},
        4: {"result.json": json.dumps({"articles": 12, "ok": True})},
        5: {
            "output.log": "=== bantzd: attempt 1 ===\n"
            + "".join(f"reading part {i}\n" for i in range(25))
            + f"connecting with password {SHORT_SECRET}\n"
            + "```\nerror: settings.toml: no such file\n"
        },
        6: {"output.log": "=== attempt 1 ===\nfetching\rfetching 50%\rfetching 99%\n"},
        14: {
            "output.log": "\n=== bantzd: attempt 1 · 2026-11-22T04:00:00+00:00 · python "
            "finetune.py ===\nTraceback (most recent call last):\n"
            '  File "finetune.py", line 1, in <module>\n    import torch\n'
            "ModuleNotFoundError: No module named 'torch'\n"
            "=== bantzd: attempt 1 ended: exit code 1 after 3s ===\n"
        },
    }
    for task_id, named in files.items():
        for name, text in named.items():
            (home.task_dir(task_id) / name).write_text(text)
    for name, (text, state) in schedule_files().items():
        folder = home.root / "schedules" / name
        folder.mkdir(parents=True)
        (folder / "schedule.yaml").write_text(text)
        (folder / "state.json").write_text(json.dumps(state))
    with open(home.journal, "w") as f:
        for event in journal_events():
            f.write(json.dumps(event) + "\n")
        f.write('{"t": 1, "event": "torn')  # a crash mid-line
    (root / "load.jsonl").write_text("\n".join(load_lines()) + "\n")
    (root / "estimates.json").write_text(json.dumps(ESTIMATES))
    # The previous report covered up to an hour before the run.
    (home.reports / ".last.json").write_text(
        json.dumps({"date": "2026-11-21", "since": None, "until": T0 - 3600})
    )
    return home


CONFIG = {"approval": {"categories": ["external"]}}


@pytest.fixture
def night_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Home:
    for key in list(os.environ):
        if looks_secret(key):
            monkeypatch.delenv(key)
    return build_night(tmp_path / "home")


def matches_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} is missing; run with BANTZ_UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    assert text == expected, f"the report differs from {path}"


def test_english_night_matches_the_golden_file(night_home: Home) -> None:
    config = config_from_mapping(CONFIG)
    path = write_report(night_home, now=END + 60, date=DAY, config=config)
    text = path.read_text()
    matches_golden(text, "night_en.md")
    check_gantt(mermaid_block(text))
    # The same period again, later: the same bytes.
    again = write_report(night_home, now=END + 3600, date=DAY, config=config)
    assert again.read_text() == text


def test_turkish_night_matches_the_golden_file(night_home: Home) -> None:
    config = config_from_mapping({**CONFIG, "report_language": "tr"})
    text = report_text(night_home, now=END + 60, date=DAY, config=config)
    matches_golden(text, "night_tr.md")
    check_gantt(mermaid_block(text))


@pytest.mark.parametrize("lang", ["en", "tr"])
def test_no_secret_reaches_the_report(night_home: Home, lang: str) -> None:
    config = config_from_mapping({**CONFIG, "report_language": lang})
    text = report_text(night_home, now=END + 60, date=DAY, config=config)
    assert HF_TOKEN not in text
    assert not re.search(rf"\b{SHORT_SECRET}\b", text)
    assert "***" in text


def test_the_period_leaves_out_what_the_previous_report_had(night_home: Home) -> None:
    text = report_text(night_home, now=END + 60, date=DAY, config=config_from_mapping(CONFIG))
    assert "last-week" not in text
    assert "50.00" not in text  # the load sample from before the period


# --- a grammar check of the Mermaid gantt subset ------------------------------------------

# Keywords of gantt.jison (case-insensitive): a task label starting with one is not a label.
_KEYWORDS = (
    "gantt", "dateformat", "inclusiveenddates", "topaxis", "axisformat", "tickinterval",
    "includes", "excludes", "todaymarker", "weekday", "weekend", "title", "acctitle",
    "accdescr", "section", "click", "call", "href",
)  # fmt: skip
_TAGS = {"done", "active", "crit", "milestone"}
_TASK = re.compile(r"^(?P<label>[^:#;%\n]+) :(?P<data>[^#;%\n]+)$")
_DIRECTIVE = re.compile(
    r"^(dateFormat YYYY-MM-DD HH:mm:ss|axisFormat %H:%M|todayMarker off|title [^\n#;%]+)$"
)
_ID = re.compile(r"^[A-Za-z_][\w-]*$")


def mermaid_block(text: str) -> list[str]:
    """The lines inside the report's ```mermaid fence."""
    m = re.search(r"^(`{3,})mermaid\n(.*?)\n\1$", text, re.S | re.M)
    assert m, "no mermaid fence"
    return m.group(2).split("\n")


def check_gantt(lines: list[str]) -> int:
    """Assert `lines` are a gantt chart Mermaid parses; the number of bars."""
    assert lines and lines[0] == "gantt", lines[:1]
    seen_ids: set[str] = set()
    in_section = False
    bars = 0
    for n, raw in enumerate(lines[1:], start=2):
        line = raw.strip()
        where = f"line {n}: {raw!r}"
        assert line, f"{where}: empty line"
        assert "%%" not in line, f"{where}: %% starts a comment"
        if line.startswith("section "):
            title = line[len("section ") :]
            assert title.strip(), where
            assert not set(title) & set(":#;()\n"), f"{where}: section title ends early"
            in_section = True
            continue
        if not in_section:
            assert _DIRECTIVE.match(line), f"{where}: not a directive"
            continue
        m = _TASK.match(line)
        assert m, f"{where}: not a task line"
        label = m.group("label").strip()
        assert label and not set(label) & set("()"), where
        assert not label.lower().startswith(_KEYWORDS), f"{where}: label starts with a keyword"
        assert not re.match(r"\d{4}-\d\d-\d\d", label), f"{where}: label lexes as a date"
        parts = [p.strip() for p in m.group("data").split(",")]
        assert len(parts) >= 3, f"{where}: want [tags,] id, start, end"
        *tags, task_id, start, end = parts
        assert set(tags) <= _TAGS and len(set(tags)) == len(tags), f"{where}: tags {tags}"
        assert _ID.match(task_id) and task_id not in seen_ids, f"{where}: id {task_id!r}"
        seen_ids.add(task_id)
        begin, finish = _gantt_time(start, where), _gantt_time(end, where)
        if "milestone" in tags:
            assert finish >= begin, f"{where}: the milestone ends before it starts"
        else:
            assert finish > begin, f"{where}: the bar ends before it starts"
        bars += 1
    assert bars, "a chart without bars"
    return bars


def _gantt_time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text, "%Y-%m-%d %H:%M:%S")  # the dateFormat above
    except ValueError:
        raise AssertionError(f"{where}: {text!r} does not match the dateFormat") from None


MERMAID_SCRIPT = """
import { JSDOM } from 'jsdom';
import fs from 'fs';
const dom = new JSDOM('<!doctype html><html><body></body></html>');
globalThis.window = dom.window; globalThis.document = dom.window.document;
globalThis.DOMParser = dom.window.DOMParser; globalThis.Element = dom.window.Element;
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false });
const diagram = await mermaid.mermaidAPI.getDiagramFromText(fs.readFileSync(0, 'utf8'));
console.log(JSON.stringify(diagram.db.getTasks().map((t) => ({
  section: t.section, id: t.id, start: t.startTime.toISOString(), end: t.endTime.toISOString(),
  crit: !!t.crit, done: !!t.done, active: !!t.active }))));
"""


def test_mermaid_itself_reads_the_timeline(night_home: Home, tmp_path: Path) -> None:
    """With BANTZ_MERMAID_MODULES=DIR/node_modules holding `mermaid` and `jsdom` (npm install
    mermaid jsdom), Mermaid's own parser reads every bar as meant. Skipped otherwise."""
    import shutil
    import subprocess

    modules = os.environ.get("BANTZ_MERMAID_MODULES")
    if not modules or not shutil.which("node") or not Path(modules, "mermaid").is_dir():
        pytest.skip("set BANTZ_MERMAID_MODULES to a node_modules with mermaid and jsdom")
    (tmp_path / "node_modules").symlink_to(Path(modules).absolute())
    (tmp_path / "read.mjs").write_text(MERMAID_SCRIPT)
    config = config_from_mapping(CONFIG)
    lines = mermaid_block(report_text(night_home, now=END + 60, date=DAY, config=config))
    res = subprocess.run(
        ["node", str(tmp_path / "read.mjs")],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TZ": "UTC"},
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    section = ""
    want = []
    for line in lines:
        if line.startswith("    section "):
            section = line[len("    section ") :]
        elif section:
            *tags, task_id, start, end = [p.strip() for p in line.split(" :", 1)[1].split(",")]
            iso = "{}T{}.000Z".format
            want.append({"section": section, "id": task_id, "start": iso(*start.split()),
                         "end": iso(*end.split()), "crit": "crit" in tags,
                         "done": "done" in tags, "active": "active" in tags})  # fmt: skip
    assert got == want


def test_the_grammar_check_rejects_what_mermaid_rejects() -> None:
    good = ["gantt", "    dateFormat YYYY-MM-DD HH:mm:ss", "    section a b",
            "    attempt 1 :crit, t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01"]  # fmt: skip
    assert check_gantt(good) == 1
    bad_cases = [
        ["    section a:b"],
        ["    section a # b"],
        ["    section a %% b"],
        ["    section a", "    title x :t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01"],
        ["    section a", "    x :boom, t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01"],
        ["    section a", "    x :t1, 2026-11-22 01:00:00, 2026-11-22 00:00:00"],
        ["    section a", "    x :t1, 2026-11-22 01:00, 2026-11-22 02:00"],
        ["    section a", "    x :t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01",
         "    y :t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01"],
        ["    attempt :t1, 2026-11-22 01:00:00, 2026-11-22 01:00:01"],
    ]  # fmt: skip
    for case in bad_cases:
        with pytest.raises(AssertionError):
            check_gantt([*good[:2], *case])
