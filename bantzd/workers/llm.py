"""Runs an `llm:` task (SPEC section 8): a prompt, optionally over a set of documents.

Started by the supervisor, under the same attempt wrapper as every task, as
`python -m bantzd.workers.llm`. The shape of the work is map-reduce, with every answer
made durable as it arrives, so that an attempt killed halfway (a crash, `--until`, a
reboot) resumes with the pieces not done and never pays for a finished document twice.
checkpoint.json holds only the stage; the rest is in two files beside it:

1. **Plan** (first attempt only): `inputs:` are expanded (globs, `~`, relative to the
   task's `cwd`) into a sorted list of files, written once to llm-plan.json, so every
   attempt works on the same list even if the folder changes overnight.
2. **Map**: each document is read and split into chunks that fit `[llm] context_chars`;
   each chunk is one request (the prompt plus the text), and each answer is appended to
   llm-answers.jsonl (`AnswerLog`, in bantzd.workers.llmanswers). Up to `concurrency:`
   requests are in flight at once (bantzd.workers.llmpool), answers logged in the order
   they come; a crash loses only the ones in flight.
   A document that cannot be read (missing, binary, not UTF-8, too large) is listed in the
   result instead of failing the task.
3. **Reduce**: the partial answers are combined by a final request (in groups, and then
   groups of groups, when they do not fit in one request). One document needs no reduce.
4. **Result**: `result.md` is the answer, then a short footer (documents, models, tokens).
5. **Confirm** (optional): `confirm:` is asked as question `confirm` once result.md is
   written; the task waits in `waiting_human`, and the attempt after the answer appends
   the decision to result.md.

Tokens are summed into tokens.json (the supervisor copies it into state.json); the totals
survive attempts because the file stays in the task folder.

This module is the run: the stages, the checkpoint, tokens, progress and the result. Reading
documents and wording the requests is bantzd.workers.llminputs; the answer log and its entry
format is bantzd.workers.llmanswers; one chat call with its retries is bantzd.workers.llmcall.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bantzd.errors import BantzError
from bantzd.queue.atomic import read_json, write_bytes_atomic, write_json_atomic
from bantzd.workers.llmanswers import AnswerLog, answer_entry, apply_entry, nothing_done
from bantzd.workers.llmcall import Caller, CallFailed, Reply
from bantzd.workers.llminputs import (
    MAX_CHUNKS_PER_DOC,
    combine_messages,
    expand_inputs,
    map_messages,
    pack,
    read_text,
    split_text,
    with_system,
)
from bantzd.workers.llmpool import in_flight
from bantzd.workers.llmtask import LimitTaker, SetupProblem, Tokens, make_caller
from bantzd.workers.taskapi import Context, context

CHECKPOINT_VERSION = 2
CONFIRM_KEY = "confirm"
PLAN_FILE = "llm-plan.json"
ANSWERS_FILE = "llm-answers.jsonl"
# Requests carry the prompt and some framing besides the text: leave room for it.
FRAMING_CHARS = 400


class TaskProblem(BantzError):
    """The task cannot run as written (no prompt file, no inputs matched); says why."""


@dataclass(frozen=True)
class MapJob:
    """One map request: piece `part` (from 0) of `of` of document `doc`."""

    doc: str
    part: int
    of: int
    messages: list[dict[str, str]]
    what: str


# the run -----------------------------------------------------------------------------------


class LlmTask:
    """One attempt of an `llm:` task, resuming from the checkpoint it finds."""

    def __init__(
        self,
        ctx: Context,
        spec: Mapping[str, Any],
        caller: Caller,
        *,
        cwd: Path,
        context_chars: int,
        width: int = 1,
    ) -> None:
        self.ctx = ctx
        self.width = max(1, width)  # map requests in flight at once (llmpool.width_for)
        self.spec = spec
        self.caller = caller
        self.cwd = cwd
        self.context_chars = context_chars
        self.system = spec.get("system") or None
        self.prompt = self._prompt()
        self.answers = AnswerLog(ctx.dir / ANSWERS_FILE)
        self.entries: list[dict[str, Any]] = []
        self.state: dict[str, Any] = self._load()
        self.tokens = Tokens(ctx)
        self.limits = LimitTaker(ctx)
        caller.on_reply = self.tokens.count
        caller.take = self.limits

    # state ---------------------------------------------------------------------------

    def _load(self) -> dict[str, Any]:
        """The checkpoint says the stage; the plan and the answer log say the rest."""
        saved = self.ctx.checkpoint
        if not (isinstance(saved, dict) and saved.get("llm") == CHECKPOINT_VERSION):
            return {"llm": CHECKPOINT_VERSION, "stage": "plan"}
        state: dict[str, Any] = {"llm": CHECKPOINT_VERSION, "stage": saved.get("stage", "plan")}
        for key in ("answer", "decision"):
            if key in saved:
                state[key] = saved[key]
        if state["stage"] == "plan":
            return state
        plan = read_json(self.ctx.dir / PLAN_FILE, default=None)
        if not isinstance(plan, dict):
            return {"llm": CHECKPOINT_VERSION, "stage": "plan"}  # lost: start over
        state.update(docs=plan.get("docs"), empty_patterns=plan.get("empty_patterns") or [])
        state.update(nothing_done())
        self.state = state
        for entry in self.answers.read():
            self._apply(entry)
        return state

    def _save(self) -> None:
        """The checkpoint proper: small, rewritten only when the stage changes."""
        keep = {k: self.state[k] for k in ("llm", "stage", "answer", "decision") if k in self.state}
        self.ctx.save(keep)

    def _record(self, entry: dict[str, Any]) -> None:
        """One more answer (or unreadable document), durable before anything else is done
        with it (the map phase logs each as it arrives, in the thread that runs the task)."""
        self.answers.append(entry)
        self._apply(entry)

    def _apply(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)
        apply_entry(self.state, entry)

    def _progress(self, fraction: float, message: str) -> None:
        self.limits.progress(fraction, message)

    def _prompt(self) -> str:
        if "prompt" in self.spec:
            return str(self.spec["prompt"]).strip()
        path = Path(os.path.expanduser(str(self.spec["prompt_file"])))
        if not path.is_absolute():
            path = self.cwd / path
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise TaskProblem(f"prompt_file {path}: {why}") from None
        if not text:
            raise TaskProblem(f"prompt_file {path} is empty")
        return text

    # stages --------------------------------------------------------------------------

    def run(self) -> None:
        if self.state["stage"] == "plan":
            self._plan()
        if self.state["stage"] == "map":
            self._map()
            self.state["stage"] = "reduce"
            self._save()
        if self.state["stage"] == "reduce":
            if "answer" not in self.state:
                self._reduce()
            self.state["stage"] = "write"
            self._save()
        if self.state["stage"] == "write":
            self._write_result()
            self.state["stage"] = "confirm" if self.spec.get("confirm") else "done"
            self._save()
        if self.state["stage"] == "confirm":
            self._confirm()

    def _plan(self) -> None:
        patterns = self.spec.get("inputs")  # validated: a tuple of texts, or absent
        if patterns:
            sources, empty = expand_inputs(list(patterns), self.cwd)
            if not sources:
                raise TaskProblem(
                    "inputs matched no files: " + ", ".join(empty) + f" (from {self.cwd})"
                )
            docs: list[list[str]] | None = [[s.name, s.path] for s in sources]
        else:
            docs, empty = None, []
        # Plan first, then the stage: a crash in between plans again, from an empty log.
        self.answers.clear()
        write_json_atomic(self.ctx.dir / PLAN_FILE, {"docs": docs, "empty_patterns": empty})
        self.state.update(docs=docs, empty_patterns=empty, stage="map")
        self.state.update(nothing_done())
        self._save()

    def _chunk_size(self) -> int:
        room = self.context_chars - len(self.prompt) - len(self.system or "") - FRAMING_CHARS
        return max(room, self.context_chars // 4, 200)

    def _map(self) -> None:
        docs = self.state["docs"]
        if docs is None:  # no inputs: the prompt alone
            if "single" not in self.state:
                reply = self.caller.chat(with_system(self.system, self.prompt), what="the request")
                self._record(answer_entry("single", reply))
            return
        partials: dict[str, str] = self.state["partials"]
        unreadable: dict[str, str] = self.state["unreadable"]
        total = len(docs)

        def show() -> None:
            done = len(partials) + len(unreadable)
            words = f"{done} of {total} documents done, {self.width} requests at once"
            self._progress(done / (total + 1), words)

        def record(job: MapJob, reply: Reply) -> None:
            self._record(answer_entry("part", reply, doc=job.doc, part=job.part, of=job.of))
            if self.width > 1:
                show()

        if self.width > 1:
            show()

        in_flight(
            self._map_jobs(),
            lambda job: self.caller.chat(job.messages, what=job.what),
            record,
            self.width,
        )
        if not partials:
            listed = "; ".join(f"{n}: {why}" for n, why in unreadable.items())
            raise TaskProblem(f"none of the {total} inputs could be read: {listed}")

    def _map_jobs(self) -> Iterator[MapJob]:
        """The requests not yet answered, in document order: read lazily, one document at
        a time as a slot frees up (an unreadable one is recorded here and skipped)."""
        docs = self.state["docs"]
        partials: dict[str, str] = self.state["partials"]
        unreadable: dict[str, str] = self.state["unreadable"]
        chunks: dict[str, dict[int, str]] = self.state["chunks"]
        size = self._chunk_size()
        total = len(docs)
        for index, (name, path) in enumerate(docs):
            if name in partials or name in unreadable:
                continue
            if self.width == 1:
                self._progress(index / (total + 1), f"document {index + 1} of {total}: {name}")
            try:
                text = read_text(path, size * MAX_CHUNKS_PER_DOC)
            except ValueError as e:
                log(f"{name}: {e}; listed in the result")
                self._record({"k": "bad", "doc": name, "why": str(e)})
                continue
            pieces = split_text(text, size)
            done = chunks.get(name, {})
            for part in range(len(pieces)):
                if part in done:
                    continue
                messages = map_messages(
                    self.system, self.prompt, name, part + 1, len(pieces), pieces[part]
                )
                what = f"{name}" + (f" part {part + 1}/{len(pieces)}" if len(pieces) > 1 else "")
                yield MapJob(name, part, len(pieces), messages, what)

    def _reduce(self) -> None:
        """Set state["answer"]: the partial answers combined (in rounds when they do not
        fit one request)."""
        if self.state["docs"] is None:
            self.state["answer"] = self.state["single"]
            return
        items = [
            (n, self.state["partials"][n])
            for n, _ in self.state["docs"]
            if n in self.state["partials"]
        ]
        if len(items) == 1:
            self.state["answer"] = items[0][1]
            return
        levels: dict[str, list[str]] = self.state["reduce"]
        budget = self._chunk_size()
        level = 0
        while True:
            groups = pack(items, budget)
            if len(groups) == 1:
                self._progress(0.99, f"combining {len(items)} answers")
                messages = combine_messages(self.system, self.prompt, groups[0])
                reply = self.caller.chat(messages, what="the final combining request")
                self._record(answer_entry("final", reply))
                return
            done = levels.setdefault(str(level), [])
            for i in range(len(done), len(groups)):
                self._progress(
                    0.95, f"combining group {i + 1} of {len(groups)} (round {level + 1})"
                )
                messages = combine_messages(self.system, self.prompt, groups[i])
                reply = self.caller.chat(messages, what=f"combining group {i + 1}")
                self._record(answer_entry("reduce", reply, level=level, group=i))
            items = [
                (f"group {i + 1}: " + ", ".join(label for label, _ in group), done[i])
                for i, group in enumerate(groups)
            ]
            level += 1

    def _write_result(self) -> None:
        answer = str(self.state["answer"]).strip() or "(the model gave an empty answer)"
        lines = [answer, "", "---", ""]
        docs = self.state["docs"]
        if docs is not None:
            unreadable = self.state["unreadable"]
            summarised = len(docs) - len(unreadable)
            head = f"Documents: {len(docs)}, {summarised} read"
            if unreadable:
                head += f", {len(unreadable)} could not be read:"
            lines.append(head)
            lines += [f"- {name}: {why}" for name, why in unreadable.items()]
            lines += [f"- `{p}` matched no files" for p in self.state.get("empty_patterns") or []]
            lines.append("")
        models: dict[str, int] = {}
        for entry in self.entries:
            if entry.get("model"):
                models[entry["model"]] = models.get(entry["model"], 0) + 1
        if models:
            lines.append(
                "Model: "
                + ", ".join(
                    f"{m} ({n} requests)" if len(models) > 1 else m for m, n in models.items()
                )
            )
        for model, why in self.caller.unavailable.items():
            lines.append(f"Not available: {model} ({why})")
        cut = sum(1 for entry in self.entries if entry.get("cut"))
        if cut:
            limit = self.spec.get("max_tokens")
            lines.append(
                f"Cut short: {cut} {'answer' if cut == 1 else 'answers'} reached "
                + (f"max_tokens ({limit})" if limit else "the server's length limit")
                + "; a larger max_tokens gives them room"
            )
        used = self.tokens.counts
        lines.append(f"Tokens: {used['prompt']:,} prompt + {used['completion']:,} completion")
        write_bytes_atomic(self.ctx.paths.result_md, ("\n".join(lines) + "\n").encode())
        self._progress(1.0, "result.md written")

    def _confirm(self) -> None:
        question = str(self.spec["confirm"])
        answer = self.ctx.answer(CONFIRM_KEY)
        if answer is None:
            choices = list(self.spec.get("choices") or []) or None
            self.ctx.ask(CONFIRM_KEY, question, choices)  # does not return
            return
        path = self.ctx.paths.result_md
        try:
            text = path.read_text(encoding="utf-8")
        except OSError:
            text = ""
        decision = f"\n## Decision\n\n{question}\n\n**{answer}**\n"
        write_bytes_atomic(path, (text.rstrip("\n") + "\n" + decision).encode())
        self.state["stage"] = "done"
        self.state["decision"] = answer
        self._save()


def log(text: str) -> None:
    """A line in output.log (the worker's stdout goes there)."""
    print(f"bantzd llm: {text}", flush=True)


def main() -> int:
    ctx = context()
    try:
        return _run(ctx)
    except (TaskProblem, SetupProblem, CallFailed, BantzError) as e:
        ctx.fail(str(e))


def _task_name(ctx: Context) -> str:
    """The name intake gave the task (state.json), or `task-ID` if that cannot be read."""
    try:
        state = read_json(ctx.paths.state, default={})
    except (OSError, ValueError):
        state = None
    name = state.get("name") if isinstance(state, dict) else None
    return name if isinstance(name, str) and name else f"task-{ctx.task_id}"


def _run(ctx: Context) -> int:
    from bantzd.config import ConfigError, load_config
    from bantzd.queue.taskfile import TaskFileError, parse_task
    from bantzd.workers.llmpool import width_for

    # The validated form (choices stay the strings the person wrote, `inputs` a list),
    # with the same parser intake used: the file was checked there already. Without a
    # `name:` key the name came from the spool file's stem; task.yaml's stem is the id,
    # which is no name, so the name intake gave (state.json) stands in for it.
    try:
        task_spec = parse_task((ctx.dir / "task.yaml").read_bytes(), default_name=_task_name(ctx))
    except TaskFileError as e:
        raise TaskProblem(f"task.yaml: {e}") from None
    spec = task_spec.llm
    if spec is None:
        raise TaskProblem("task.yaml has no llm: mapping")
    try:
        config = load_config(ctx.home / "config.toml")
    except ConfigError as e:
        raise TaskProblem(str(e)) from None
    llm = config.llm
    caller, models = make_caller(
        ctx,
        llm,
        model=spec.get("model"),
        uses=task_spec.uses,
        on_notice=log,
        max_tokens=spec.get("max_tokens"),
        temperature=spec.get("temperature"),
    )
    task = LlmTask(
        ctx,
        spec,
        caller,
        cwd=Path.cwd(),
        context_chars=llm.context_chars,
        width=width_for(spec.get("concurrency") or llm.concurrency, task_spec.uses, config.limits),
    )
    log(
        f"{llm.base_url}, model {' then '.join(models)}"
        + (f", {task.width} requests at once" if task.width > 1 else "")
        + (f", resuming at stage {task.state['stage']}" if ctx.checkpoint else "")
    )
    task.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
