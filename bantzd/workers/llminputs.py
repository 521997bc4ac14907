"""The input side of an `llm:` task: which documents, their text, and the requests made of it.

Owns everything between the task's `inputs:` and the messages sent to the model: expanding
the patterns into a sorted list of files (`expand_inputs`), reading one as text or saying in
plain words why it cannot be (`read_text`), cutting it into pieces that fit a request
(`split_text`), packing partial answers into groups that fit a combining request (`pack`),
and the wording of the map and combine messages. None of it touches the task folder, the
checkpoint or the network, so it is tested on its own (tests/e2e/test_llm.py) and the run in
bantzd.workers.llm reads as stages rather than as string handling.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

# A document longer than this many requests' worth of text is listed, not sent: one stray
# multi-gigabyte log in a notes folder must not become thousands of paid requests.
MAX_CHUNKS_PER_DOC = 50
BINARY_SNIFF = 8192


@dataclass(frozen=True)
class Source:
    """One input file: `name` is what people read (relative to cwd when inside it)."""

    name: str
    path: str


# planning ----------------------------------------------------------------------------------


def display_name(path: Path, cwd: Path) -> str:
    try:
        return str(path.relative_to(cwd))
    except ValueError:
        home = Path.home()
        try:
            return "~/" + str(path.relative_to(home))
        except ValueError:
            return str(path)


def expand_inputs(patterns: list[str], cwd: Path) -> tuple[list[Source], list[str]]:
    """Files the `inputs:` patterns name, sorted and without repeats, and a note for each
    pattern that named nothing. Folders matched by a glob are skipped."""
    seen: set[str] = set()
    sources: list[Source] = []
    empty: list[str] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        full = expanded if os.path.isabs(expanded) else str(cwd / expanded)
        if glob.has_magic(full):
            matches = sorted(glob.glob(full, recursive=True))
            files = [m for m in matches if not os.path.isdir(m)]
        else:
            files = [full]  # a plain path: a missing one is listed as missing, not dropped
        if not files:
            empty.append(pattern)
        for f in files:
            path = Path(os.path.normpath(f))
            if str(path) not in seen:
                seen.add(str(path))
                sources.append(Source(display_name(path, cwd), str(path)))
    return sources, empty


def read_text(path: str, max_chars: int) -> str:
    """The document's text; raises ValueError with a reason people understand."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_chars * 4 + 1)
    except FileNotFoundError:
        raise ValueError("not found") from None
    except IsADirectoryError:
        raise ValueError("is a folder") from None
    except OSError as e:
        raise ValueError(f"cannot be read: {e.strerror or e}") from None
    if b"\0" in data[:BINARY_SNIFF]:
        raise ValueError("binary file, not text")
    if len(data) > max_chars * 4:
        raise ValueError(f"too large: more than {MAX_CHUNKS_PER_DOC} requests' worth of text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None
    if len(text) > max_chars:
        raise ValueError(f"too large: more than {MAX_CHUNKS_PER_DOC} requests' worth of text")
    if not text.strip():
        raise ValueError("empty")
    return text


def split_text(text: str, size: int) -> list[str]:
    """Pieces of at most `size` characters, cut at paragraph breaks where possible, then at
    line breaks, then at spaces, and only as a last resort inside a word."""
    text = text.strip()
    if len(text) <= size:
        return [text]
    pieces: list[str] = []
    rest = text
    while len(rest) > size:
        window = rest[: size + 1]
        cut = -1
        for sep in ("\n\n", "\n", " "):
            cut = window.rfind(sep)
            if cut > size // 2:
                break
        if cut <= size // 2:
            cut = size
        pieces.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        pieces.append(rest)
    return [p for p in pieces if p]


def pack(items: list[tuple[str, str]], budget: int) -> list[list[tuple[str, str]]]:
    """Consecutive groups of (label, text) whose texts fit in `budget` characters; an item
    larger than the budget goes alone."""
    groups: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] = []
    used = 0
    for label, text in items:
        size = len(label) + len(text) + 8
        if current and used + size > budget:
            groups.append(current)
            current, used = [], 0
        current.append((label, text))
        used += size
    if current:
        groups.append(current)
    return groups


# messages ----------------------------------------------------------------------------------


def map_messages(
    system: str | None, prompt: str, name: str, part: int, parts: int, text: str
) -> list[dict[str, str]]:
    where = f"Document: {name}" + (f" (part {part} of {parts})" if parts > 1 else "")
    note = (
        "\n(This is one part of a longer document; answer for this part only.)" if parts > 1 else ""
    )
    user = f"{prompt}\n\n{where}{note}\n\n{text}"
    return with_system(system, user)


def combine_messages(
    system: str | None, prompt: str, items: list[tuple[str, str]]
) -> list[dict[str, str]]:
    body = "\n\n".join(f"### {label}\n{text}" for label, text in items)
    user = (
        f"{prompt}\n\nPartial answers: each section below answers the request above for one "
        "document (or a group of them). Combine them into one answer to the request; keep "
        f"what matters, drop repeats.\n\n{body}"
    )
    return with_system(system, user)


def with_system(system: str | None, user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": user})
    return messages
