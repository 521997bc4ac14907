"""What an `llm:` task has done so far: the answer log and how its entries rebuild the state.

Every answer is made durable before the next request by one fsynced append to
llm-answers.jsonl (`AnswerLog`), so a killed attempt resumes at the first piece not done.
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
    parts of a document in progress, unreadable documents, and the reduce rounds."""
    return {"partials": {}, "chunks": {}, "unreadable": {}, "reduce": {}}


def apply_entry(state: dict[str, Any], entry: dict[str, Any]) -> None:
    """Fold one log entry into `state` (the fields `nothing_done` makes). A part or a
    reduce group other than the next one expected is ignored, so the pieces stay in order."""
    kind, doc = entry.get("k"), entry.get("doc")
    text = str(entry.get("text", ""))
    if kind == "part" and isinstance(doc, str):
        done = state["chunks"].setdefault(doc, [])
        if entry.get("part") == len(done):
            done.append(text)
        of = int(entry.get("of") or 1)
        if len(done) >= of:
            state["partials"][doc] = (
                done[0]
                if of == 1
                else "\n\n".join(f"(part {i + 1} of {of}) {t}" for i, t in enumerate(done))
            )
            del state["chunks"][doc]
    elif kind == "bad" and isinstance(doc, str):
        state["unreadable"][doc] = str(entry.get("why", ""))
    elif kind == "reduce":
        done = state["reduce"].setdefault(str(entry.get("level", 0)), [])
        if entry.get("group") == len(done):
            done.append(text)
    elif kind == "single":
        state["single"] = text
    elif kind == "final":
        state["answer"] = text
