"""How the read-only commands (`list`, `show`, `logs`, `status`) display tasks on a terminal.

Kept apart from the commands so the pieces a user relies on — the JSON task object, secret
masking, reading a log from its end, tables — are plain functions that tests call directly.
The morning report's Markdown is another matter, in `bantzd.reports.render`.
"""

from __future__ import annotations

import copy
import io
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import IO, Any, BinaryIO

from bantzd.queue.states import Status
from bantzd.queue.task import TaskState, took
from bantzd.reports.nodes import running_where
from bantzd.units import format_duration

# Every status, in the order a person reads a queue: what waits, what runs, how it ended.
STATUSES: tuple[Status, ...] = (
    Status.QUEUED,
    Status.HELD,
    Status.RUNNING,
    Status.WAITING_HUMAN,
    Status.DONE,
    Status.FAILED,
    Status.CANCELLED,
)

STATUS_STYLE: dict[str, str] = {
    "queued": "cyan",
    "held": "magenta",
    "running": "blue",
    "waiting_human": "yellow",
    "done": "green",
    "failed": "red",
    "cancelled": "bright_black",
}

MASK = "***"
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
# Outside the env block a secret value is masked wherever it appears (a `run:` line, the
# log tail) only from this length on: shorter values such as `TOKENIZERS_PARALLELISM: false`
# are not secrets, and masking every "false" or "1" would garble the output.
MIN_FREE_TEXT_SECRET = 6


# task objects --------------------------------------------------------------------------


def task_object(state: TaskState) -> dict[str, Any]:
    """The JSON task object of `list --json`, `show --json` and `status --json`.

    It is state.json as is (SPEC section 7: at least the section 4 fields). state.json
    never holds the task's env, so nothing secret can leak through it.
    """
    return state.to_json()


def progress_text(progress: dict[str, Any] | None) -> str:
    """`42% epoch 2`, `42%`, `epoch 2` or '' from a `{percent, message}` object."""
    if not isinstance(progress, dict):
        return ""
    parts = []
    percent = progress.get("percent")
    if isinstance(percent, int | float):
        parts.append(f"{percent:g}%")
    message = progress.get("message")
    if message:
        parts.append(str(message))
    return " ".join(parts)


def question_text(question: dict[str, Any] | None) -> str:
    """`Upload the model? (yes/no)` from a `{key, text, choices}` object."""
    if not isinstance(question, dict):
        return ""
    text = str(question.get("text") or question.get("key") or "")
    choices = question.get("choices")
    if choices:
        text += " (" + "/".join(str(c) for c in choices) + ")"
    return text


def end_text(state: TaskState) -> str:
    """How an attempt ended: `exit 3`, `signal 9`, or ''."""
    if state.signal is not None:
        return f"signal {state.signal}"
    if state.exit_code is not None:
        return f"exit {state.exit_code}"
    return ""


def describe(state: TaskState) -> str:
    """The one-line "why / how far" column of `list`: what a person wants to know next."""
    status = str(state.status)
    if status == Status.RUNNING:
        text = progress_text(state.progress)
        if state.step:
            text = f"step {state.step}" + (f": {text}" if text else "")
        return text or state.reason or running_where(state) or ""
    if status == Status.WAITING_HUMAN:
        return question_text(state.question) or state.reason or ""
    if status == Status.DONE:
        spent = took_text(state)
        return state.reason or (f"took {spent}" if spent else "")
    if status == Status.FAILED:
        # The reason usually is the error ("exit code 2"); the bare code only when neither
        # was recorded.
        parts = [p for p in (state.reason, state.error) if p]
        return "; ".join(dict.fromkeys(parts)) or end_text(state)
    text = state.reason or ""
    if state.paused and "paused" not in text:
        text = f"paused; {text}" if text else "paused"
    return text


def took_text(state: TaskState) -> str | None:
    """`10m`, or `10m (2 attempts)`: what `took` says in `list` and `show`.

    `took` is every attempt's run time added up (`queue.task.took`, the report's too), so
    the count of attempts says what went into it; None while the task has no end yet.
    """
    if not state.finished:
        return None
    seconds = took(state)
    if seconds is None:
        return None
    text = format_duration(seconds)
    return f"{text} ({state.attempts} attempts)" if state.attempts > 1 else text


def not_running_note(state: TaskState, *, follow: bool, has_log: bool) -> str | None:
    """What `logs` says (on stderr) of a task that is not running: what it waits for
    (`task 42 is queued: waiting for a free slot; following its log from when it
    starts`), or, without -f, that it never ran, so an empty answer is not a mystery."""
    if state.status == Status.RUNNING or (state.finished_state and has_log):
        return None
    where = f"task {state.id} {waiting_for(state)}"
    if follow and not state.finished_state:
        then = "from when it starts" if state.attempts == 0 else "from when it runs again"
        return f"{where}; following its log {then}"
    if has_log:  # an earlier attempt's log follows: say why nothing more comes now
        return where
    if state.attempts == 0:
        if state.finished_state:
            why = state.reason or state.error
            return f"task {state.id} never ran ({state.status}" + (f": {why}" if why else "") + ")"
        return (
            f"task {state.id} has not run yet, it {waiting_for(state)}; "
            f"`bantzd logs -f {state.id}` follows its log from when it starts"
        )
    return f"task {state.id} ran but wrote no output"


def waiting_for(state: TaskState) -> str:
    """`is queued: REASON`, `is held: waiting for approval (bantzd approve 42)`, `is waiting
    for an answer to 'publish' (bantzd answer ...)`: a waiting task's status and reason in
    words, with the command that moves it on where there is one."""
    status = str(state.status)
    if status == Status.WAITING_HUMAN:
        key = state.question.get("key") if isinstance(state.question, dict) else None
        key_opt = f" --key {key}" if key else ""
        what = f"an answer to '{key}'" if key else "an answer"
        return f"is waiting for {what} (bantzd answer {state.id}{key_opt} TEXT)"
    if status == Status.HELD:
        return f"is held: waiting for approval (bantzd approve {state.id})"
    reason = state.reason
    if not reason and status == Status.QUEUED:
        reason = "waiting for a free slot"
    if state.paused and "paused" not in (reason or ""):
        reason = f"paused; {reason}" if reason else "paused"
    return f"is {status}: {reason}" if reason else f"is {status}"


# times and sizes -----------------------------------------------------------------------


def parse_iso(text: object) -> datetime | None:
    """A datetime from state.json's ISO strings; naive ones are taken as local time."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo else value.astimezone()


# secrets -------------------------------------------------------------------------------


def is_secret_key(key: object) -> bool:
    """Whether an env key looks like it holds a credential (*KEY*, *TOKEN*, ...)."""
    upper = str(key).upper()
    return any(word in upper for word in SECRET_WORDS)


def secret_env(doc: object) -> dict[str, str]:
    """The secret-looking entries of a parsed task file's `env`, values as strings."""
    env = doc.get("env") if isinstance(doc, dict) else None
    if not isinstance(env, dict):
        return {}
    return {
        str(k): _scalar_text(v)
        for k, v in env.items()
        if is_secret_key(k) and v is not None and _scalar_text(v) != ""
    }


def _may_hold_secrets(text: str) -> bool:
    """False when no key of `text` can be secret-looking, whatever YAML makes of it: none
    of SECRET_WORDS appears in it (any case), and nothing could spell one indirectly (a
    backslash escape, a %-escaped tag, a !!binary key). Then `show` needs no YAML parser,
    whose import is a fifth of its run."""
    upper = text.upper()
    if "\\" in text or "%" in text or "BINARY" in upper:
        return True
    return any(word in upper for word in SECRET_WORDS)


def task_yaml_secrets(text: str) -> list[str]:
    """The secret env values of a task file's text ([] when it does not parse)."""
    if not _may_hold_secrets(text):
        return []
    import yaml  # only `show` masks task files: `list` and `status` need no YAML

    try:
        return list(secret_env(yaml.safe_load(text)).values())
    except yaml.YAMLError:
        return []


def mask_values(text: str, values: Sequence[str]) -> str:
    """`text` with every long-enough secret value replaced by `***` (log tails, run lines)."""
    for value in sorted(set(values), key=len, reverse=True):
        if len(value) >= MIN_FREE_TEXT_SECRET:
            text = text.replace(value, MASK)
    return text


def mask_task_yaml(text: str) -> str:
    """task.yaml for display with the values of secret-looking env keys replaced by `***`.

    The verbatim file (comments, layout) is what a person wants to see, so values are
    masked in place; the result is parsed again, and when the in-place masking did not
    provably hide every secret (odd quoting, block scalars) the parsed document is shown
    re-dumped instead. A file that does not parse is not shown at all: we cannot tell
    where its secrets are. A file with no key that could be secret-looking is shown as it
    is, parsed or not (see `_may_hold_secrets`).
    """
    if not _may_hold_secrets(text):
        return text
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return "(task.yaml does not parse; not shown because it may hold secrets)\n"
    secrets = secret_env(doc)
    if not secrets:
        return text
    masked = text
    for key, value in secrets.items():
        masked = _mask_env_entry(masked, key, value)
    masked = mask_values(masked, list(secrets.values()))
    if _hides(masked, secrets):
        return masked
    redone = yaml.safe_dump(_masked_doc(doc, secrets), sort_keys=False, allow_unicode=True)
    if _hides(redone, secrets):
        return redone
    return "(task.yaml holds secrets that could not be masked; not shown)\n"


def _scalar_text(value: object) -> str:
    import yaml

    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def _mask_env_entry(text: str, key: str, value: str) -> str:
    # `KEY: value`, `"KEY": 'value'`, `{A: 1, KEY: value}`: the key, a colon, the value
    # (optionally quoted) and then the end of the scalar (a flow delimiter, comment or EOL).
    pattern = re.compile(
        r"(?P<k>(?<![\w.-])(?P<kq>['\"]?)" + re.escape(key) + r"(?P=kq)[ \t]*:[ \t]*)"
        r"(?P<q>['\"]?)" + re.escape(value) + r"(?P=q)(?=[ \t]*(?:[,}\]]|#|$))",
        re.MULTILINE,
    )
    return pattern.sub(lambda m: m.group("k") + '"' + MASK + '"', text)


def _masked_doc(doc: Any, secrets: dict[str, str]) -> Any:
    doc = copy.deepcopy(doc)
    for key in list(doc["env"]):
        if str(key) in secrets:
            doc["env"][key] = MASK
    return _walk_mask(doc, list(secrets.values()))


def _walk_mask(node: Any, values: list[str]) -> Any:
    if isinstance(node, str):
        return mask_values(node, values)
    if isinstance(node, dict):
        return {k: _walk_mask(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk_mask(v, values) for v in node]
    return node


def _hides(text: str, secrets: dict[str, str]) -> bool:
    """Whether `text` parses to an env whose secret entries are all masked, and no long
    secret value is left anywhere in it."""
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    env = doc.get("env") if isinstance(doc, dict) else None
    if not isinstance(env, dict):
        return False
    for key, value in env.items():
        if str(key) in secrets and value != MASK:
            return False
    return not any(len(v) >= MIN_FREE_TEXT_SECRET and v in text for v in secrets.values())


# logs ----------------------------------------------------------------------------------

TAIL_BLOCK = 64 * 1024


def tail_offset(f: BinaryIO, n: int, *, max_bytes: int | None = None) -> int:
    """The offset where the last `n` lines of the open file `f` begin.

    Reads backwards a block at a time, so `logs -n 20` on a 100 MB log touches only the
    end of it. A final newline ends the last line rather than starting an empty one, as in
    `tail`. `max_bytes` caps how far back to look (a log with no newlines at all).
    """
    size = f.seek(0, io.SEEK_END)
    if n <= 0 or size == 0:
        return size
    f.seek(size - 1)
    needed = n + (1 if f.read(1) == b"\n" else 0)
    limit = 0 if max_bytes is None else max(0, size - max_bytes)
    pos = size
    while pos > limit:
        start = max(limit, pos - TAIL_BLOCK)
        f.seek(start)
        chunk = f.read(pos - start)
        found = chunk.count(b"\n")
        if found >= needed:
            idx = len(chunk)
            for _ in range(needed):
                idx = chunk.rindex(b"\n", 0, idx)
            return start + idx + 1
        needed -= found
        pos = start
    return limit


def tail_text(path: Any, n: int, *, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `n` lines of a log as a terminal shows them (text after a `\\r`)."""
    try:
        with open(path, "rb") as f:
            offset = tail_offset(f, n, max_bytes=max_bytes)
            f.seek(offset)
            data = f.read()
    except OSError:
        return []
    lines = data.decode(errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r").rsplit("\r", 1)[-1] for line in lines[-n:]]


# tables --------------------------------------------------------------------------------


def is_tty(stream: IO[Any] | None = None) -> bool:
    """Whether output goes to a terminal; pipes and files get plain text, no ANSI codes."""
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded with spaces like `ps`: stable, greppable and never truncated."""
    rows = [[_one_line(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [c.ljust(widths[i]) for i, c in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines) + "\n"


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    status_column: int | None = None,
    stream: IO[str] | None = None,
) -> None:
    """A rich table on a terminal, `plain_table` text anywhere else."""
    stream = stream if stream is not None else sys.stdout
    if not is_tty(stream):
        stream.write(plain_table(headers, rows))
        stream.flush()
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False)
    for i, header in enumerate(headers):
        last = i == len(headers) - 1
        table.add_column(header, no_wrap=not last, overflow="fold" if last else "ellipsis")
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            style = STATUS_STYLE.get(cell, "") if i == status_column else ""
            # Text, not markup: a task name like "[prod]" must print as written.
            cells.append(Text(_one_line(cell), style=style))
        table.add_row(*cells)
    Console(file=stream, highlight=False).print(table)


def _one_line(text: object) -> str:
    return " ".join(str(text).split()) if "\n" in str(text) or "\t" in str(text) else str(text)
