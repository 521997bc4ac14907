"""The real cause of a failure, read from the end of its output.log.

`exit code 1` says nothing; the log usually does: a Python traceback ends with the
exception (`ModuleNotFoundError: No module named 'torch'`), a shell says `foo: command not
found`. `failure_cause` looks for such lines, in the last attempt's part of the tail, with
a table of patterns (most telling first) and returns one line for the report's heading, or
None when nothing there is recognisable. Pure: lines and the recorded end in, text out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

MAX_CAUSE = 200

# The lines bantzd itself writes into output.log (attempt markers, its own notes).
_OURS = re.compile(r"^=== bantzd: |^bantzd: ")
_ATTEMPT_START = re.compile(r"^=== bantzd: attempt \d+ · ")
_TRACEBACK = "Traceback (most recent call last):"

# `ModuleNotFoundError: No module named 'torch'`, `torch.OutOfMemoryError: CUDA out of
# memory`, `KeyboardInterrupt`: an exception line, at the start of a line as Python prints
# the last line of a traceback (frames are indented).
_EXCEPTION = re.compile(
    r"^(?P<name>(?:[A-Za-z_]\w*\.)*[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Fault))"
    r"(?P<message>:\s.*)?$"
)
# `sh: 1: foo: not found` (dash), `bash: foo: command not found`, `bash: line 3: foo:
# command not found`, `/bin/sh: 1: foo: not found`; zsh: `zsh: command not found: foo`.
_NOT_FOUND = re.compile(
    r"^(?:\S*sh|env|nohup|xargs|nice|timeout)?:?\s*(?:line \d+:\s*|\d+:\s*)?"
    r"(?P<cmd>[^\s:][^:]*?): (?:command )?not found$"
)
_ZSH_NOT_FOUND = re.compile(r"^\S*sh: command not found: (?P<cmd>.+)$")
_NO_SUCH_FILE = re.compile(r"No such file or directory")
_PERMISSION = re.compile(r"Permission denied")
_KILLED = re.compile(r"^(?:.*\s)?Killed(?:\s.*)?$|[Oo]ut of memory|oom-kill")
_SEGFAULT = re.compile(r"Segmentation fault")


@dataclass(frozen=True)
class Ending:
    """What state.json recorded of the end: exit code, signal, the supervisor's error."""

    exit_code: int | None = None
    signal: int | None = None
    error: str | None = None

    @property
    def sigkill(self) -> bool:
        return self.signal == 9 or self.exit_code == 137


def _line(m: re.Match[str], line: str, traceback: bool) -> str | None:
    return line.strip()


def _exception(m: re.Match[str], line: str, traceback: bool) -> str | None:
    # A bare `ValueError` line is only a cause right after a traceback.
    return line.strip() if m.group("message") or traceback else None


def _command(m: re.Match[str], line: str, traceback: bool) -> str | None:
    return f"command not found: {m.group('cmd').strip()}"


Rule = tuple[str, re.Pattern[str], Callable[[re.Match[str], str, bool], str | None]]

# Most telling first: the first rule that matches a line of the tail (looking from its
# end) gives the cause.
RULES: tuple[Rule, ...] = (
    ("python exception", _EXCEPTION, _exception),
    ("command not found", _NOT_FOUND, _command),
    ("command not found", _ZSH_NOT_FOUND, _command),
    ("no such file", _NO_SUCH_FILE, _line),
    ("permission denied", _PERMISSION, _line),
    ("segfault", _SEGFAULT, _line),
)


def last_attempt(lines: Sequence[str]) -> list[str]:
    """The lines of the last attempt in a log tail (all of them when its start marker is
    not in the tail), without bantzd's own lines."""
    start = 0
    for i, line in enumerate(lines):
        if _ATTEMPT_START.match(line):
            start = i + 1
    return [line for line in lines[start:] if not _OURS.match(line)]


def failure_cause(lines: Sequence[str], ending: Ending = Ending()) -> str | None:
    """One line saying why the task failed, from its log tail and its recorded end; None
    when neither says more than the exit status."""
    error = ending.error or ""
    # What the supervisor itself stopped the task for is known for sure; a log line
    # after its SIGTERM (a traceback from the signal) would only blur it. A timeout is
    # said next to the signal already.
    if error.startswith("memory limit"):
        return "killed: over its memory limit"
    if error.startswith("timeout after"):
        return None
    body = [line.rstrip() for line in last_attempt(lines)]
    traceback = any(line.startswith(_TRACEBACK) for line in body)
    for _kind, pattern, make in RULES:
        for line in reversed(body):
            m = pattern.search(line.strip()) if pattern is not _EXCEPTION else pattern.match(line)
            if m and (found := make(m, line, traceback)):
                return _cut(found)
    if ending.sigkill and any(_KILLED.search(line) for line in body):
        return "killed (SIGKILL): out of memory?"
    return None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 2].rstrip() + " …"
