"""`bantzd tonight "TEXT"` against the scripted OpenAI-compatible server (tests/agent_server.py):
the model's task files are checked like `bantzd validate`, shown, and placed only on yes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agent_server import ScriptedLLM, calls, text
from tests.conftest import Bantz
from tests.e2e.test_agent import use_server

pytest.importorskip("openai")

AGENT = (
    "name: conferences\nagent:\n  goal: Find AI conferences in Turkey in March.\n"
    "  tools: [fetch, write]\nuses: {llm: 1}\n"
)
LLM = "name: notes\nllm:\n  prompt: Summarise the notes.\n  inputs: 'notes/*.md'\nuses: {llm: 1}\n"


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.start()
    yield server
    server.stop()


def spooled(bantz: Bantz) -> list[str]:
    return sorted(p.name for p in (bantz.home / "spool").glob("*.yaml"))


def tasks(bantz: Bantz) -> list[str]:
    return sorted(p.name for p in (bantz.home / "tasks").glob("*"))


def test_task_files_from_the_model_are_shown_and_placed_on_yes(
    bantz: Bantz, llm: ScriptedLLM
) -> None:
    use_server(bantz, llm)
    llm.scripts["plan"] = [
        calls(
            ("task_file", {"name": "conferences", "yaml": AGENT}),
            ("task_file", {"name": "my notes!", "yaml": LLM}),
        )
    ]
    request = (
        "tonight: find the AI conferences in Turkey in March, summarise my notes [script:plan]"
    )
    res = bantz("tonight", request, input="n\n")
    assert res.returncode == 1 and "Nothing was placed." in res.stderr
    assert "--- conferences.yaml\n" + AGENT.rstrip() + "\nconferences.yaml: ok" in res.stdout
    assert "--- my-notes.yaml\n" + LLM.rstrip() + "\nmy-notes.yaml: ok" in res.stdout
    assert "Place 2 task files in the spool? [y/N]" in res.stdout
    assert spooled(bantz) == [] and tasks(bantz) == []

    res = bantz("tonight", request, input="y\n")
    assert res.returncode == 0, res.stderr
    assert "conferences.yaml: submitted as #1 conferences" in res.stdout
    assert "my-notes.yaml: submitted as #2 notes" in res.stdout
    assert bantz.state(1)["kind"] == "agent" and bantz.state(2)["kind"] == "llm"
    # What the model was asked: the request, the two kinds of task, and the tool to use.
    sent = llm.last_messages["plan"]
    assert sent[1] == {"role": "user", "content": request}
    assert "agent:" in sent[0]["content"] and "llm:" in sent[0]["content"]
    assert [t["function"]["name"] for t in llm.last_tools["plan"]] == ["task_file"]


def test_yaml_blocks_in_the_text_are_task_files_too_and_yes_skips_the_question(
    bantz: Bantz, llm: ScriptedLLM
) -> None:
    use_server(bantz, llm)
    llm.scripts["text"] = [text(f"Here you are:\n\n```yaml\n{AGENT}```\n")]
    res = bantz("tonight", "conferences please [script:text]", "--yes")
    assert res.returncode == 0, res.stderr
    assert "[y/N]" not in res.stdout
    assert "conferences.yaml: submitted as #1 conferences" in res.stdout


def test_invalid_task_files_are_shown_with_their_problems_and_none_is_placed(
    bantz: Bantz, llm: ScriptedLLM
) -> None:
    use_server(bantz, llm)
    allowing = AGENT.replace("[fetch, write]", "[shell]\n  shell_allow: ['*']")
    llm.scripts["bad"] = [
        calls(
            ("task_file", {"name": "good", "yaml": AGENT}),
            ("task_file", {"name": "cmd", "yaml": "name: wipe\nrun: rm -rf ~/old\n"}),
            ("task_file", {"name": "typo", "yaml": AGENT.replace("tools:", "tool:")}),
            ("task_file", {"name": "allow", "yaml": allowing}),
            ("task_file", "{not json"),
            ("search", {"q": "x"}),
        )
    ]
    llm.scripts["none"] = [text("I cannot help with that.")]
    res = bantz("tonight", "do things [script:bad]", "--yes")
    assert res.returncode == 1
    out = res.stdout
    assert "good.yaml: ok" in out
    assert "cmd.yaml: invalid\n  a run: task: tonight places only agent: and llm: tasks" in out
    assert (
        "typo.yaml: invalid\n  line 4, column 3: agent.tool: unknown key (did you mean 'tools'?)"
        in out
    )
    assert "allow.yaml: invalid\n  agent.shell_allow: commands that run without asking" in out
    assert "tonight-5.yaml: invalid\n  the call's arguments are not usable: {not json" in out
    assert "tonight-6.yaml: invalid\n  a call of 'search', not task_file" in out
    assert "5 of 6 task files have problems: nothing was placed." in res.stderr
    assert spooled(bantz) == [] and tasks(bantz) == []

    res = bantz("tonight", "something [script:none]", "--yes")
    assert res.returncode == 1
    assert "The model wrote no task file. It said:\n  I cannot help with that." in res.stdout
    assert spooled(bantz) == [] and tasks(bantz) == []


def test_a_server_that_refuses_says_so_and_nothing_is_placed(
    bantz: Bantz, llm: ScriptedLLM
) -> None:
    use_server(bantz, llm)
    llm.scripts["refused"] = [text("never sent")]
    llm.fail_next(1, 401)
    res = bantz("tonight", "anything [script:refused]", "--yes")
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1].startswith(f"bantzd: {llm.base_url}: ")
    assert "401" in res.stderr and spooled(bantz) == [] and tasks(bantz) == []
