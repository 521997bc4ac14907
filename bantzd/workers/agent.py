"""Runs an `agent:` task (SPEC section 12): a tool-calling loop on the `[llm]` endpoint.

Started by the supervisor as `python -m bantzd.workers.agent`, under the same attempt wrapper
as every task. Each turn: the conversation so far goes to the model with the tools' schemas
(one Caller, shared with `llm:` tasks: limits, 429/503 back-off, fallback models); the reply
is appended to agent-journal.jsonl (bantzd.workers.agentjournal) before any of its calls
runs; each call's result is appended under its id. So an attempt that dies anywhere resumes
from the journal: no reply is asked for twice, and a call that started but has no result runs
again only when its tool is read-only -- otherwise the person is asked.

The loop ends when the model answers with text and no calls (result.md), or when
`max_steps` turns or `max_tokens` are used up (the task fails with that reason; the
transcript stays). transcript.md, progress.json ("step 7/30: shell: make test") and
agent.json (steps, calls per tool; copied into state.json) are rewritten after every step.

With `plan: true` the loop has three phases (bantzd.workers.agentplan): a numbered plan
first, then the work (a `plan_done` tool marks the plan's steps; progress is the share
done), then one turn that checks the answer against the goal.

A malformed call (no name, a tool that does not exist, arguments that are not a JSON
object) gets an error as its result, and the model tries again; an empty reply gets a
reminder. Both cost a step, so a confused model still ends at `max_steps`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bantzd.errors import BantzError
from bantzd.queue.atomic import write_bytes_atomic, write_json_atomic
from bantzd.workers.agentfetch import Allow, Fetcher, missing_library
from bantzd.workers.agentjournal import AgentJournal, parse_arguments
from bantzd.workers.agentmcp import McpProblem, McpTools
from bantzd.workers.agentmcp import missing_library as missing_mcp
from bantzd.workers.agentplan import NOT_NOW, PLAN_TOOL, Plan, parse_plan
from bantzd.workers.agentplan import SCHEMA as PLAN_SCHEMA
from bantzd.workers.agenttools import Toolbox, ToolError
from bantzd.workers.llmcall import Caller, CallFailed
from bantzd.workers.llmtask import LimitTaker, SetupProblem, Tokens, make_caller
from bantzd.workers.taskapi import Context, context

CHECKPOINT_VERSION = 1
JOURNAL_FILE = "agent-journal.jsonl"
TRANSCRIPT_FILE = "transcript.md"
EMPTY_REPLY = "Your reply was empty. Call one of the tools, or give your final answer as text."
SYSTEM = (
    "You work on a task overnight, alone, with the tools given. Use them to do the task; "
    "ask the person (the ask tool) only when you cannot go on without a decision. "
    "When the task is done, reply with the final answer in Markdown and no tool call: "
    "that reply is the result the person reads in the morning."
)

_ASKING = {
    "plan": "writing the plan",
    "work": "asking the model",
    "check": "checking the result against the goal",
}


class TaskProblem(BantzError):
    """The task cannot go on: a budget used up, or it cannot run as written."""


class AgentTask:
    """One attempt of an `agent:` task, resuming from the journal it finds."""

    def __init__(
        self, ctx: Context, spec: Mapping[str, Any], caller: Caller, toolbox: Toolbox
    ) -> None:
        self.ctx = ctx
        self.spec = spec
        self.caller = caller
        self.tools = toolbox
        self.goal = str(spec["goal"]).strip()
        self.system = str(spec.get("system") or SYSTEM)
        self.max_steps = int(spec.get("max_steps") or 30)
        self.max_tokens = spec.get("max_tokens")
        self.plan = bool(spec.get("plan"))
        self.journal = AgentJournal(ctx.dir / JOURNAL_FILE)
        if ctx.checkpoint != {"agent": CHECKPOINT_VERSION}:
            # A first attempt (or `bantzd rerun`, which removes the checkpoint): start over.
            self.journal.clear()
            ctx.save({"agent": CHECKPOINT_VERSION})
        self.tokens = Tokens(ctx)
        self.limits = LimitTaker(ctx)
        caller.on_reply = self.tokens.count
        caller.take = self.limits

    # the loop ----------------------------------------------------------------------------

    def run(self) -> None:
        while True:
            plan = Plan(self.journal.entries) if self.plan else None
            pending = self.journal.pending()
            if pending:
                phase = (self.journal.last_reply() or {}).get("phase")
                for call in pending:
                    if phase in ("plan", "check"):  # these turns run no tool
                        text = NOT_NOW.format(phase=f"the {phase}")
                        self.journal.add_result(call, text, ok=False)
                    else:
                        self._call(call, plan)
                continue
            final = self.journal.final() if plan is None else plan.answer
            if final is not None and (plan is None or plan.phase == "done"):
                self._finish(final, plan)
                return
            phase = "work" if plan is None else plan.phase
            if phase != "check":  # the check comes after the answer, whatever the budget
                self._check_budgets()
            if plan is not None and (said := plan.instruction(self.goal)) is not None:
                self.journal.add({"k": "user", "text": said})
            self._show(f"step {self.journal.steps + 1}/{self.max_steps}: {_ASKING[phase]}", plan)
            reply = self.caller.chat(
                self.journal.messages(self.system, self.goal),
                what=f"step {self.journal.steps + 1}",
                tools=self._schemas(),
            )
            extra: dict[str, Any] = {}
            if phase in ("plan", "check"):
                extra["phase"] = phase
            if phase == "plan":
                extra["plan"] = parse_plan(reply.text)
            entry = self.journal.add_reply(reply, **extra)
            if phase == "work" and not entry["calls"] and not entry["text"].strip():
                self.journal.add({"k": "user", "text": EMPTY_REPLY})
            self._after_step()
            if self.max_tokens is not None and self.tokens.total > self.max_tokens:
                self._fail(
                    f"max_tokens ({self.max_tokens:,}) used up: {self.tokens.total:,} tokens "
                    f"in {self.journal.steps} steps, no final answer yet"
                )

    def _schemas(self) -> list[dict[str, Any]]:
        return self.tools.schemas() + ([PLAN_SCHEMA] if self.plan else [])

    def _check_budgets(self) -> None:
        if self.journal.steps >= self.max_steps:
            self._fail(f"max_steps ({self.max_steps}) reached without a final answer")
        if self.max_tokens is not None and self.tokens.total >= self.max_tokens:
            self._fail(f"max_tokens ({self.max_tokens:,}) used up before a final answer")

    def _call(self, call: dict[str, Any], plan: Plan | None = None) -> None:
        """Run one call of the last reply and record its result (or ask first)."""
        name = call["name"]
        if not name:
            self.journal.add_result(call, "error: this tool call has no tool name", ok=False,
                                    invalid=True)  # fmt: skip
            return
        if plan is not None and name == PLAN_TOOL:
            self._mark(call, plan)
            return
        if not self.tools.knows(name):
            known = ", ".join(self.tools.names + ((PLAN_TOOL,) if self.plan else ()))
            self.journal.add_result(
                call, f"error: there is no tool named {name!r}; the tools are: {known}",
                ok=False, invalid=True,
            )  # fmt: skip
            return
        try:
            args = parse_arguments(call["arguments"])
        except ValueError as e:
            self.journal.add_result(call, f"error: {e}", ok=False, invalid=True)
            return
        shown = describe(name, args)
        if self.journal.begun(call) and not self.tools.read_only(name):
            again = self._answer_or_ask(
                f"rerun-{call['id']}",
                f'the step "{shown}" was interrupted; run it again?',
                ("yes", "no"),
            )
            if again.strip().lower() not in ("yes", "y"):
                self.journal.add_result(
                    call, f"Not run again after an interruption: the person said {again!r}.",
                    ok=False,
                )  # fmt: skip
                return
        answer = None
        try:
            question = self.tools.question(f"{name}-{call['id']}", name, args)
        except ToolError as e:
            self.journal.add_result(call, f"error: {e}", ok=False)
            return
        self._show(
            f"step {self.journal.steps}/{self.max_steps}: {shown}", plan
        )  # also while asking
        if question is not None:
            answer = self._answer_or_ask(question.key, question.text, question.choices)
        if not self.tools.read_only(name):
            self.journal.add({"k": "begin", "id": call["id"]})
        try:
            text, ok = self.tools.run(name, args, answer), True
        except ToolError as e:
            text, ok = f"error: {e}", False
        self.journal.add_result(call, text, ok=ok)
        self._after_step()

    def _mark(self, call: dict[str, Any], plan: Plan) -> None:
        """A `plan_done` call: a step of the plan is done (it only writes the journal, so
        it may run again after an interruption)."""
        try:
            step, text = plan.mark(parse_arguments(call["arguments"]))
        except ValueError as e:
            self.journal.add_result(call, f"error: {e}", ok=False)
            return
        self.journal.add_result(call, text, ok=True, plan_step=step)
        self._after_step()

    def _answer_or_ask(self, key: str, text: str, choices: tuple[str, ...]) -> str:
        """The person's answer to question `key`; without one, ask and end the attempt."""
        answer = self.ctx.answer(key)
        if answer is not None:
            return answer
        self._after_step(waiting=text)
        self.ctx.ask(key, text, list(choices) or None)  # does not return
        raise AssertionError("ctx.ask returned")  # pragma: no cover

    # what a person sees ------------------------------------------------------------------

    def _show(self, message: str, plan: Plan | None = None) -> None:
        fraction = self.journal.steps / self.max_steps
        if plan is not None:  # progress is the share of the plan done (SPEC 12)
            fraction, done = Plan(self.journal.entries).progress()
            message = f"{done}; {message}"
        self.limits.progress(min(fraction, 0.99), message)
        self._stats(message)

    def _stats(self, step: str) -> None:
        stats: dict[str, Any] = {
            "steps": self.journal.steps,
            "max_steps": self.max_steps,
            "tool_calls": self.journal.tool_counts(),
            "step": step,
        }
        if self.plan:
            stats["plan"] = Plan(self.journal.entries).summary()
        write_json_atomic(self.ctx.paths.agent_stats, stats, compact=True)

    def _after_step(self, *, waiting: str | None = None, ending: str | None = None) -> None:
        if waiting:
            ending = f"Waiting for the person: {waiting}"
        text = self.journal.transcript(self.goal, ending=ending)
        write_bytes_atomic(self.ctx.dir / TRANSCRIPT_FILE, text.encode())

    def _fail(self, reason: str) -> None:
        self._after_step(ending=f"Failed: {reason}")
        self._stats(f"failed: {reason}")
        raise TaskProblem(reason)

    def _finish(self, answer: str, plan: Plan | None = None) -> None:
        counts = self.journal.tool_counts()
        calls = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
        models = sorted({str(e.get("model")) for e in self.journal.entries if e.get("model")})
        used = self.tokens.counts
        footer = [
            "",
            "---",
            "",
            f"Steps: {self.journal.steps}; tool calls: {calls}",
            f"Model: {', '.join(models)}" if models else "",
            f"Tokens: {used['prompt']:,} prompt + {used['completion']:,} completion",
        ]
        if plan is not None:
            answer += "\n" + plan.result_text()
            footer.insert(4, f"Plan: {len(plan.done)} of {len(plan.items)} steps done")
        text = answer + "\n" + "\n".join(line for line in footer if line is not None) + "\n"
        write_bytes_atomic(self.ctx.paths.result_md, text.encode())
        self._after_step(ending="Done: the final answer is in result.md.")
        self._stats("done")
        self.limits.progress(1.0, f"done in {self.journal.steps} steps")


def describe(name: str, args: Mapping[str, Any]) -> str:
    """`shell: make deploy`, `read: notes/a.md`: a call on one line, for people."""
    value = next((args[k] for k in ("command", "path", "url", "question") if k in args), "")
    text = " ".join(f"{name}: {value}".split()) if value else name
    return text if len(text) <= 120 else text[:117] + "..."


def log(text: str) -> None:
    """A line in output.log (the worker's stdout goes there)."""
    print(f"bantzd agent: {text}", flush=True)


def main() -> int:
    ctx = context()
    try:
        return _run(ctx)
    except (TaskProblem, SetupProblem, CallFailed, BantzError) as e:
        ctx.fail(str(e))


def _run(ctx: Context) -> int:
    from bantzd.config import ConfigError, load_config
    from bantzd.queue.taskfile import TaskFileError, parse_task

    try:
        task_spec = parse_task((ctx.dir / "task.yaml").read_bytes(), default_name="agent")
    except TaskFileError as e:
        raise TaskProblem(f"task.yaml: {e}") from None
    spec = task_spec.agent
    if spec is None:
        raise TaskProblem("task.yaml has no agent: mapping")
    try:
        config = load_config(ctx.home / "config.toml")
    except ConfigError as e:
        raise TaskProblem(str(e)) from None
    caller, models = make_caller(
        ctx,
        config.llm,
        model=spec.get("model"),
        uses=task_spec.uses,
        on_notice=log,
        temperature=spec.get("temperature"),
    )
    fetcher = None
    if "fetch" in spec["tools"]:
        missing = missing_library()
        if missing:
            raise TaskProblem(missing)
        fetcher = Fetcher(
            Allow.parse(config.agent.fetch_allow),
            timeout=config.agent.fetch_timeout,
            max_bytes=config.agent.fetch_max_bytes,
        )
    mcp = None
    if spec.get("mcp"):
        missing = missing_mcp()
        if missing:
            raise TaskProblem(missing)
        try:
            mcp = McpTools(spec["mcp"], cwd=Path.cwd())
        except McpProblem as e:
            raise TaskProblem(str(e)) from None
    try:
        toolbox = Toolbox(
            spec["tools"],
            cwd=Path.cwd(),
            work=ctx.dir / "work",
            shell_allow=spec.get("shell_allow") or (),
            fetcher=fetcher,
            mcp=mcp,
        )
        task = AgentTask(ctx, spec, caller, toolbox)
        log(
            f"{config.llm.base_url}, model {' then '.join(models)}, "
            f"tools {', '.join(toolbox.names)}"
            + (f", resuming after step {task.journal.steps}" if task.journal.steps else "")
        )
        task.run()
    finally:
        if mcp is not None:
            mcp.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
