"""Untrusted YAML text to nodes, with every failure a `Problem` that has a line and column.

The first half of reading a task file (the schema checks are in taskfile.py): decoding,
composing with the safe loader only, and the guards that keep a hostile file from crashing
the process (libyaml's recursive composer, PyYAML's own depth limit, control characters).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import yaml
from yaml.nodes import Node, ScalarNode

from bantzd.errors import BantzError

TAG = "tag:yaml.org,2002:"

# libyaml is ten times faster than the pure-Python loader on a big file, but its composer
# recurses in C: a file of 100000 `[` crashes the process (SIGSEGV) instead of raising
# RecursionError. So with libyaml the nesting depth is measured first from the parser's events
# (iterative, no recursion), and only a file within _MAX_DEPTH is composed.
_C_LOADER = getattr(yaml, "CSafeLoader", None)
_MAX_DEPTH = 100


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a task file; line and column are 1-based, None when unknown."""

    message: str
    key: str | None = None
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = ""
        if self.line is not None and self.column is not None:
            where = f"line {self.line}, column {self.column}: "
        elif self.line is not None:
            where = f"line {self.line}: "
        what = f"{self.key}: {self.message}" if self.key else self.message
        return where + what


class TaskFileError(BantzError):
    """A task file that cannot be accepted; `problems` lists everything wrong, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        message = f"not UTF-8 text: byte 0x{raw[e.start]:02x} at offset {e.start}"
        raise TaskFileError([Problem(message, line=line, column=column)]) from None


def compose(text: str) -> Node:
    try:
        if _C_LOADER is not None:
            _check_depth(text)
            root = yaml.compose(text, Loader=_C_LOADER)
        else:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        problem = e.problem or "invalid YAML"
        if "nesting depth" in problem:
            # PyYAML >= 6.0.3 has its own depth limit; say it the way _check_depth does.
            message = f"the YAML is nested too deeply ({problem})"
        elif e.context and problem.startswith("but "):
            message = f"YAML syntax error: {e.context} {problem}"
        else:
            message = f"YAML syntax error: {problem}" + (f" ({e.context})" if e.context else "")
        mark = e.problem_mark or e.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        if mark and _indented_with_tab(text, mark.line):
            message += "; YAML indents with spaces, not tabs"
        elif mark and "mapping values are not allowed" in problem:
            message += colon_hint(text, mark.line) or ""
        raise TaskFileError([Problem(message, line=line, column=column)]) from None
    except yaml.reader.ReaderError as e:
        raise TaskFileError([_reader_problem(text, e)]) from None
    except yaml.YAMLError as e:
        raise TaskFileError([Problem(f"YAML syntax error: {e}")]) from None
    except RecursionError:
        raise TaskFileError([Problem("the YAML is nested too deeply")]) from None
    if root is None or (isinstance(root, ScalarNode) and root.tag == TAG + "null"):
        raise TaskFileError([Problem("empty task file")])
    return root


def _reader_problem(text: str, e: yaml.reader.ReaderError) -> Problem:
    """A character YAML refuses (a control character): with its line and column, as every
    other YAML error, not the "position N" PyYAML gives."""
    pos = e.position if isinstance(e.position, int) and 0 <= e.position <= len(text) else None
    char = e.character if isinstance(e.character, int) else None
    message = f"YAML syntax error: {e.reason}"
    if char is not None:
        message += f", found U+{char:04X}"
    if char is not None and char < 0x20:
        message += f'; write it as "\\x{char:02x}" inside double quotes'
    if pos is None:
        return Problem(message)
    line = text.count("\n", 0, pos) + 1
    return Problem(message, line=line, column=pos - (text.rfind("\n", 0, pos) + 1) + 1)


# `key: value` on one line, maybe as an item of a list (`- run: ...`).
_KEY_VALUE = re.compile(r"^\s*(?:-\s+)?(?P<key>[A-Za-z_][\w-]*):\s+(?P<value>\S.*?)\s*$")
# Keys whose value is a command: a block scalar is the other way to write them.
_COMMAND_KEYS = frozenset({"run"})


def colon_hint(text: str, line: int) -> str | None:
    """What to do about `mapping values are not allowed` on `line` (0-based) when it comes
    from a `: ` inside a plain value (`run: echo a: b`): quote the value, or for a
    command write it as a `run: |` block. None when the line is not of that form."""
    lines = text.splitlines()
    m = _KEY_VALUE.match(lines[line]) if line < len(lines) else None
    if m is None or ": " not in m.group("value") or m.group("value")[0] in "'\"[{|>":
        return None
    key, value = m.group("key"), m.group("value")
    quoted = f"'{value}'" if "'" not in value else json.dumps(value, ensure_ascii=False)
    hint = f'; a ": " inside a plain value starts a new key: quote the value ({key}: {quoted})'
    if key in _COMMAND_KEYS:
        hint += f", or write `{key}: |` and the command on the next line, indented"
    return hint


def _indented_with_tab(text: str, line: int) -> bool:
    lines = text.splitlines()
    if line >= len(lines):
        return False
    body = lines[line]
    return "\t" in body[: len(body) - len(body.lstrip())]


def _check_depth(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_C_LOADER):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                mark = event.start_mark
                problem = Problem(
                    f"the YAML is nested more than {_MAX_DEPTH} levels deep",
                    line=mark.line + 1,
                    column=mark.column + 1,
                )
                raise TaskFileError([problem])
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
