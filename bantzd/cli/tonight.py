"""`bantzd tonight "TEXT"` (SPEC section 12): a request in plain words becomes task files.

The model on `[llm]` (the same Caller as `llm:` and `agent:` tasks: back-off, fallback
models) is asked once for task files; it answers with a `task_file` call per file (or, for a
model that writes text instead, ```yaml blocks). Each file is checked as `bantzd validate`
checks it, and more: only `agent:` and `llm:` tasks are placed (a request in plain words
must not become a command that runs unasked), and no `shell_allow` (commands that run
without approval are for a person to write). All files are shown with their problems; they
go into the spool, and are taken in as `bantzd submit` does, only when every one is valid and
the person says yes (`--yes` for scripts). Nothing of an invalid answer is placed.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from bantzd.cli import get_home, main
from bantzd.errors import EXIT_FAILURE, BantzError

TOOL = "task_file"
SCHEMA = {
    "type": "function",
    "function": {
        "name": TOOL,
        "description": "Write one bantzd task file (YAML) for tonight.",
        "parameters": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "description": "a short file name, like news-summary"},
                "yaml": {"type": "string", "description": "the task file, YAML"},
            },
            "required": ["name", "yaml"],
        },
    },
}
SYSTEM = """You turn a person's request for tonight into bantzd task files. bantzd runs them
overnight; the person reads the results in the morning. Call {tool} once per task, each with
a short name and the YAML of one task file. Two kinds of task only:

An agent task works towards a goal with tools (read and list files under cwd, write files to
its own work folder, fetch web pages, ask the person):

name: conferences
agent:
  goal: "Find AI conferences held in Turkey in March 2027: name, city, dates, link."
  tools: [fetch, read, write, ask]
  max_steps: 30
uses: {{llm: 1}}

An llm task answers a prompt over documents (a glob under cwd):

name: weekly-notes
cwd: ~/notes
llm:
  prompt: "Summarise these notes in ten bullet points."
  inputs: "week/*.md"
uses: {{llm: 1}}

Write each goal so that it can be done alone, in plain words, with what the result should
contain. Use only the keys shown. Today is {today}."""
_FENCED = re.compile(r"```ya?ml[^\n]*\n(.*?)```", re.S | re.I)
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")


class TonightError(BantzError):
    """The request could not be turned into task files (no endpoint, the model failed)."""


@dataclass
class Draft:
    """One task file the model wrote, and what is wrong with it."""

    name: str
    data: bytes
    problems: list[str] = field(default_factory=list)

    @property
    def file(self) -> str:
        return f"{self.name}.yaml"


def drafts_of(text: str, calls: list[dict[str, Any]]) -> list[Draft]:
    """The task files in a reply: its task_file calls, else the ```yaml blocks of its text."""
    out: list[Draft] = []
    for i, call in enumerate(calls, 1):
        if call.get("name") != TOOL:
            out.append(Draft(f"tonight-{i}", b"", [f"a call of {call.get('name')!r}, not {TOOL}"]))
            continue
        try:
            args = json.loads(call.get("arguments") or "{}")
        except ValueError:
            args = None
        if not isinstance(args, dict) or not isinstance(args.get("yaml"), str):
            shown = " ".join(str(call.get("arguments")).split())[:200]
            out.append(
                Draft(f"tonight-{i}", b"", [f"the call's arguments are not usable: {shown}"])
            )
            continue
        out.append(Draft(_file_name(args.get("name"), i), args["yaml"].encode()))
    if not calls:
        for i, block in enumerate(_FENCED.findall(text or ""), 1):
            out.append(Draft(_file_name(_yaml_name(block), i), block.encode()))
    _unique_names(out)
    return out


def check(draft: Draft, now: float | None = None) -> None:
    """Fill in `draft.problems`: `bantzd validate`'s checks, then tonight's own."""
    from bantzd.queue.schedulefile import parse_spool_file
    from bantzd.queue.taskfile import TaskFileError, TaskSpec

    if draft.problems:
        return
    if not draft.data.strip():
        draft.problems.append("the task file is empty")
        return
    try:
        spec = parse_spool_file(draft.data, default_name=draft.name, now=now)
    except TaskFileError as e:
        draft.problems += str(e).splitlines()
        return
    if not isinstance(spec, TaskSpec):
        draft.problems.append("a schedule file: tonight places only tasks for tonight")
    elif spec.kind not in ("agent", "llm"):
        draft.problems.append(
            f"a {spec.kind}: task: tonight places only agent: and llm: tasks "
            "(submit a command yourself with bantzd add or bantzd submit)"
        )
    elif spec.agent is not None and spec.agent.get("shell_allow"):
        draft.problems.append(
            "agent.shell_allow: commands that run without asking are yours to write; "
            "tonight leaves them out (each shell command is asked about)"
        )


def ask_model(home_config: Any, request: str) -> tuple[str, list[dict[str, Any]]]:
    """The model's reply to `request`: (text, tool calls)."""
    from bantzd.workers.llmcall import Caller, CallFailed
    from bantzd.workers.llmtask import SetupProblem, openai_client

    llm = home_config.llm
    try:
        client = openai_client(llm)
    except SetupProblem as e:
        raise TonightError(str(e)) from None
    models = list(dict.fromkeys([llm.model, *llm.fallback_models]))
    caller = Caller(
        client=client,
        models=models,
        timeout=llm.timeout,
        on_notice=lambda text: click.echo(f"bantzd tonight: {text}", err=True),
    )
    today = datetime.now().astimezone().strftime("%A %Y-%m-%d")
    messages = [
        {"role": "system", "content": SYSTEM.format(tool=TOOL, today=today)},
        {"role": "user", "content": request},
    ]
    try:
        reply = caller.chat(messages, what="tonight", tools=[SCHEMA])
    except CallFailed as e:
        raise TonightError(f"{llm.base_url}: {e}") from None
    return reply.text, [dict(c) for c in reply.tool_calls]


@main.command()
@click.option("--yes", is_flag=True, help="Place the task files without asking (for scripts).")
@click.argument("request")
@click.pass_context
def tonight(ctx: click.Context, request: str, yes: bool) -> None:
    """Ask the model on [llm] to turn REQUEST into agent: and llm: task files; show them
    checked, and place them in the spool when you say yes."""
    from bantzd.config import load_config

    home = get_home(ctx)
    if not request.strip():
        raise click.UsageError("say what is to be done tonight, in plain words")
    config = load_config(home.config)
    click.echo(f"Asking {config.llm.model} at {config.llm.base_url} ...", err=True)
    text, calls = ask_model(config, request)
    drafts = drafts_of(text, calls)
    if not drafts:
        click.echo("The model wrote no task file. It said:\n" + _indent(text or "(nothing)"))
        sys.exit(EXIT_FAILURE)
    for draft in drafts:
        check(draft)
        click.echo(f"--- {draft.file}")
        click.echo(draft.data.decode(errors="replace").rstrip("\n") or "(empty)")
        if draft.problems:
            click.echo(f"{draft.file}: invalid\n" + _indent("\n".join(draft.problems)))
        else:
            click.echo(f"{draft.file}: ok")
    bad = [d for d in drafts if d.problems]
    if bad:
        click.echo(
            f"{len(bad)} of {len(drafts)} task files have problems: nothing was placed. "
            "Ask again in other words, or fix the files above and submit them.",
            err=True,
        )
        sys.exit(EXIT_FAILURE)
    if not yes:
        try:
            placing = click.confirm(f"Place {_files(len(drafts))} in the spool?", default=False)
        except click.Abort:
            placing = False
        if not placing:
            click.echo("Nothing was placed.", err=True)
            sys.exit(EXIT_FAILURE)
    failed = sum(not _place(home, draft) for draft in drafts)
    sys.exit(EXIT_FAILURE if failed else 0)


def _place(home: Any, draft: Draft) -> bool:
    """Place one file and take it in (as `bantzd submit`); False when it was not accepted."""
    from bantzd.cli.taking import pending_text, rejected_text, take_now
    from bantzd.cli.tasks import SpoolWriteError, place_file

    try:
        placed = place_file(home, draft.file, draft.data)
    except SpoolWriteError as e:
        click.echo(f"{draft.file}: not placed: {e}", err=True)
        return False
    answer = take_now(home, placed)
    if answer.id is not None:
        click.echo(f"{draft.file}: submitted as #{answer.id} {answer.name}")
        return True
    if answer.problem is not None:
        click.echo(f"{draft.file}: not accepted\n{rejected_text(home, answer)}", err=True)
        return False
    click.echo(f"{draft.file}: {pending_text(placed, answer)}")
    return not answer.failed


def _file_name(given: Any, index: int) -> str:
    name = _SAFE_NAME.sub("-", str(given or "")).strip("-.")[:60]
    return name or f"tonight-{index}"


def _yaml_name(block: str) -> str | None:
    found = re.search(r"^name:\s*['\"]?([^'\"\n#]+)", block, re.M)
    return found[1].strip() if found else None


def _unique_names(drafts: list[Draft]) -> None:
    seen: set[str] = set()
    for draft in drafts:
        base, n = draft.name, 2
        while draft.name in seen:
            draft.name, n = f"{base}-{n}", n + 1
        seen.add(draft.name)


def _files(n: int) -> str:
    return "1 task file" if n == 1 else f"{n} task files"


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
