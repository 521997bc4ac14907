"""What an `llm:` task has done so far: the answer log and how its entries rebuild the state.

Every answer is made durable as it arrives by one fsynced append to llm-answers.jsonl
(`AnswerLog`), in whatever order the requests in flight finish, so a killed attempt resumes
with every piece not in the log, and only those.
This module owns the log's file handling (including a torn last line after a crash) and its
entry format, written by `answer_entry` and read back by `apply_entry`:

- `part`: one piece of a document (`doc`, `part` from 0, `of` pieces);
- `bad`: a document that could not be read (`doc`, `why`);
- `reduce`: one combining group (`level`, `group`);
- `single`: the answer to a prompt without inputs; `final`: the combined answer.

Answers carry `text` and `model`, and `cut` when the reply stopped at its length limit.
Kept apart from the run (bantzd.workers.llm) so the format is read and written in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bantzd.queue.appendlog import AppendLog

if TYPE_CHECKING:
    from bantzd.workers.llmcall import Reply


class AnswerLog(AppendLog):
    """The answers an `llm:` task has so far, one JSON line each (bantzd.queue.appendlog:
    appended and fsynced, a torn last line dropped, so that one answer is asked for again)."""


def answer_entry(kind: str, reply: Reply, **fields: Any) -> dict[str, Any]:
    """The log entry for one reply: its text and model, and `cut` if it hit the length limit."""
    entry: dict[str, Any] = {"k": kind, **fields, "text": reply.text, "model": reply.model}
    if reply.finish_reason == "length":
        entry["cut"] = True
    return entry


def nothing_done() -> dict[str, Any]:
    """What `apply_entry` fills in from the answer log: finished documents' answers, the
    parts of a document in progress (by part number), unreadable documents, and the reduce
    rounds."""
    return {"partials": {}, "chunks": {}, "unreadable": {}, "reduce": {}}


def apply_entry(state: dict[str, Any], entry: dict[str, Any]) -> None:
    """Fold one log entry into `state` (the fields `nothing_done` makes).

    The parts of a document may arrive in any order (several requests are in flight at
    once): each is kept under its number, and the document's answer is the parts in order
    once all are there. A part already recorded keeps its first answer. A reduce group other
    than the next one expected is ignored, so the groups stay in order."""
    kind, doc = entry.get("k"), entry.get("doc")
    text = str(entry.get("text", ""))
    if kind == "part" and isinstance(doc, str):
        if doc in state["partials"]:
            return
        part, of = entry.get("part"), int(entry.get("of") or 1)
        done: dict[int, str] = state["chunks"].setdefault(doc, {})
        if isinstance(part, int) and 0 <= part < of:
            done.setdefault(part, text)
        if all(i in done for i in range(of)):
            state["partials"][doc] = (
                done[0]
                if of == 1
                else "\n\n".join(f"(part {i + 1} of {of}) {done[i]}" for i in range(of))
            )
            del state["chunks"][doc]
    elif kind == "bad" and isinstance(doc, str):
        state["unreadable"][doc] = str(entry.get("why", ""))
    elif kind == "reduce":
        groups = state["reduce"].setdefault(str(entry.get("level", 0)), [])
        if entry.get("group") == len(groups):
            groups.append(text)
    elif kind == "single":
        state["single"] = text
    elif kind == "final":
        state["answer"] = text
