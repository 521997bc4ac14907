"""`bantzd demo --llm URL` runs the agent examples (bantzd/examples/agent/) against the
scripted stand-in: the research example fetches the saved pages from the demo's own local
site, and the agenda example asks its question and waits under "Needs you"."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bantzd.queue.taskfile import parse_task
from tests.agent_server import ScriptedLLM, calls, text
from tests.conftest import run_demo

pytest.importorskip("openai")
pytest.importorskip("html_text")

EXAMPLES = Path(__file__).resolve().parents[2] / "bantzd" / "examples" / "agent"
QUESTION = "Put the budget for next quarter's GPU hours on the agenda?"


def _tool_results(messages: list[dict[str, Any]]) -> list[str]:
    return [str(m.get("content")) for m in messages if m.get("role") == "tool"]


def _fetch_index(messages: list[dict[str, Any]]) -> dict[str, Any]:
    goal = next(str(m["content"]) for m in messages if m.get("role") == "user")
    site = re.search(r"http://127\.0\.0\.1:\d+", goal)
    assert site, goal
    return calls(("fetch", {"url": f"{site[0]}/index.html"}))


def _fetch_named_pages(messages: list[dict[str, Any]]) -> dict[str, Any]:
    index = _tool_results(messages)[-1]
    base = index.split(" ", 1)[0].rsplit("/", 1)[0]  # "URL (200, text/html)" comes first
    names = [n for n in dict.fromkeys(re.findall(r"[\w-]+\.html", index)) if n != "index.html"]
    return calls(*(("fetch", {"url": f"{base}/{n}"}) for n in names))


def _answer_from_pages(messages: list[dict[str, Any]]) -> dict[str, Any]:
    rows = []
    for page in _tool_results(messages)[1:]:
        url = page.split(" ", 1)[0]
        title = page.split("\n\n", 1)[1].strip().splitlines()[0]
        found = re.search(r"Dates: ([^.]+)\. City: (\w+), (\w+)\.", page)
        if found and found[3] == "Turkey":
            rows.append(f"| {title} | {found[2]} | {found[1]} | {url.rsplit('/', 1)[1]} |")
    table = "| conference | city | dates | page |\n| --- | --- | --- | --- |\n" + "\n".join(rows)
    return text(f"{table}\n\nThe pages do not say what the tickets cost.")


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.llm_tasks = True  # the demo's llm: examples are answered too
    server.by_goal = {
        "Which AI conferences take place in Turkey": "research",
        "Draft the agenda for Thursday": "agenda",
    }
    server.scripts["research"] = [_fetch_index, _fetch_named_pages, _answer_from_pages]
    server.scripts["agenda"] = [
        calls(("list", {})),
        calls(("read", {"path": "meetings.md"}), ("read", {"path": "todo.md"})),
        calls(("write", {"path": "agenda.md", "content": "1. Release 0.9 (Deniz)\n"})),
        calls(("ask", {"question": QUESTION, "choices": ["yes", "no"]})),
        text("The agenda is in work/agenda.md."),
    ]
    server.start()
    yield server
    server.stop()


def _task(home: Path, name: str) -> tuple[Path, dict[str, Any]]:
    for state_file in sorted(home.glob("tasks/*/state.json")):
        state = json.loads(state_file.read_text())
        if state.get("name") == name:
            return state_file.parent, state
    raise AssertionError(f"no task {name} in {home}")


@pytest.mark.slow
def test_the_demo_runs_the_agent_examples_on_the_local_pages_site(
    llm: ScriptedLLM, tmp_path: Path
) -> None:
    out = run_demo(tmp_path, tmp_path / "no-home", "--llm", llm.base_url)
    home = Path(re.search(r"^demo home: (.+)$", out, re.M)[1])  # type: ignore[index]
    assert "10-research.yaml, 20-agenda.yaml" in out
    config = (home / "config.toml").read_text()
    assert 'fetch_allow = ["127.0.0.1"]' in config

    folder, state = _task(home, "agent-research")
    assert state["status"] == "done", state
    assert state["agent"]["tool_calls"] == {"fetch": 4}
    result = (folder / "result.md").read_text()
    istanbul = "| AI Summit Istanbul 2027 | Istanbul | 12-14 March 2027 | ai-summit-istanbul.html |"
    assert istanbul in result
    assert "| Ankara ML Days | Ankara | 20-21 May 2027 | ankara-ml-days.html |" in result
    assert "Berlin" not in result  # the third page was fetched and is not in Turkey
    transcript = (folder / "transcript.md").read_text()
    assert "nlp-week-berlin.html" in transcript and "tracking" not in transcript
    (tmp_path / "research-transcript.md").write_text(transcript)  # for a look by hand

    folder, state = _task(home, "agent-agenda")
    assert state["status"] == "waiting_human", state
    assert (folder / "work" / "agenda.md").read_text().startswith("1. Release 0.9")
    report = out[out.index("# Morning report") :]
    needs = report.split("## Needs you")[1].split("## Done")[0]
    assert f"`agent-agenda` asks: {QUESTION} (choices: yes, no)" in needs
    done = report.split("## Done")[1].split("## Failed")[0]
    assert "`agent-research`" in done and "`weekly-notes`" in done
    assert llm.turns("research") == {0: 1, 1: 1, 2: 1}
    assert llm.turns("agenda") == {0: 1, 1: 1, 2: 1, 3: 1}


def test_the_agent_examples_are_valid_and_name_the_address_the_demo_replaces() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert [f.name for f in files] == ["10-research.yaml", "20-agenda.yaml"]
    for path in files:
        spec = parse_task(path.read_bytes(), default_name=path.stem)
        assert spec.kind == "agent" and dict(spec.uses) == {"llm": 1}
    assert "http://127.0.0.1:8000/" in files[0].read_text()
    index = (EXAMPLES / "pages" / "index.html").read_text()
    for name in re.findall(r'href="([^"]+)"', index):
        assert (EXAMPLES / "pages" / name).is_file()
    assert {p.name for p in (EXAMPLES / "notes").iterdir()} == {"meetings.md", "todo.md"}
