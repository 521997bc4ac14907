"""The built-in tools of an `agent:` task (SPEC section 12): read, list, write, shell, ask.

Every tool takes the model's arguments (a JSON object) and gives back text for the model.
What a tool refuses (a path outside its folder, a missing argument) is a `ToolError`, whose
message goes back to the model as the result, so it can try something else; the task goes on.

- `read` / `list`: files under the task's `cwd`. Paths are resolved (symlinks and `..`
  followed) before the check, so no link or `..` leads out of it.
- `write`: files under `tasks/<id>/work/` only, written atomically.
- `shell`: `/bin/sh -c COMMAND` in `cwd`, in the task's own process group (a stopped task
  stops it too), with a timeout and its output capped. A command that matches no pattern of
  `shell_allow`, or that holds shell control characters (`;`, `|`, `&`, `$`, backquotes,
  redirections, newlines: a pattern like `ls *` must not let `ls; rm -rf ~` through),
  becomes a question with the exact command.
- `ask`: a question to the person; the answer is the result.

`read_only` says which tools may simply run again when an attempt died during the call.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bantzd.queue.atomic import write_bytes_atomic

READ_CHARS = 20_000  # of a file the model reads at once
READ_BYTES = 2 * 1024 * 1024  # larger files are refused: the model could not read them anyway
LIST_ENTRIES = 500
WRITE_BYTES = 5 * 1024 * 1024
SHELL_TIMEOUT = 120.0
SHELL_OUTPUT = 16_000  # characters of a command's output the model sees
SHELL_SPECIAL = set(";&|<>$`\n\r(){}\\")
READ_ONLY = frozenset({"read", "list"})
# `ask` changes nothing either: asked again, it gives back the answer already given.
RERUN_SAFE = READ_ONLY | {"ask"}


class ToolError(Exception):
    """What the tool says back instead of a result; the model sees the message."""


@dataclass(frozen=True)
class Question:
    """The call needs a person first: ask `text` under `key`, then run the call again."""

    key: str
    text: str
    choices: tuple[str, ...] = ()


_SCHEMAS: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "read": (
        "Read a text file under the working folder. Returns its text (long files are cut).",
        {"path": {"type": "string", "description": "file path, relative to the working folder"}},
        ("path",),
    ),
    "list": (
        "List a folder under the working folder (folders end in /).",
        {"path": {"type": "string", "description": "folder path; default: the working folder"}},
        (),
    ),
    "write": (
        "Write a text file into the task's work folder (replaces the file if it exists).",
        {
            "path": {"type": "string", "description": "file path, relative to the work folder"},
            "content": {"type": "string", "description": "the whole text of the file"},
        },
        ("path", "content"),
    ),
    "shell": (
        "Run a shell command in the working folder; returns its exit status and output. "
        "Commands not on the allowed list wait for a person's approval.",
        {"command": {"type": "string", "description": "the command line"}},
        ("command",),
    ),
    "ask": (
        "Ask the person a question and wait for their answer (they may answer hours later).",
        {
            "question": {"type": "string"},
            "choices": {"type": "array", "items": {"type": "string"}},
        },
        ("question",),
    ),
}


def shell_allowed(command: str, patterns: Sequence[str]) -> bool:
    """Whether `command` runs without asking: it matches a pattern and has no shell
    control characters (so a pattern's `*` cannot smuggle in a second command)."""
    if any(c in SHELL_SPECIAL for c in command):
        return False
    line = " ".join(command.split())
    return any(fnmatch.fnmatchcase(line, " ".join(p.split())) for p in patterns)


def inside(root: Path, given: str, what: str) -> Path:
    """`given` resolved (symlinks and `..` followed) if it lies under `root`, else ToolError."""
    if not isinstance(given, str) or not given.strip() or "\x00" in given:
        raise ToolError(f"expected a {what} path, got {given!r}")
    base = root.resolve()
    path = (base / os.path.expanduser(given)).resolve()
    if path != base and not path.is_relative_to(base):
        raise ToolError(f"{given} is outside the {what} folder {base}; only paths under it")
    return path


class Toolbox:
    """The tools one task may use, bound to its folders."""

    def __init__(
        self,
        names: Sequence[str],
        *,
        cwd: Path,
        work: Path,
        shell_allow: Sequence[str] = (),
        shell_timeout: float = SHELL_TIMEOUT,
    ) -> None:
        offered = list(names)
        if "read" in offered and "list" not in offered:
            offered.insert(offered.index("read") + 1, "list")
        self.names = tuple(offered)
        self.cwd = cwd
        self.work = work
        self.shell_allow = tuple(shell_allow)
        self.shell_timeout = shell_timeout

    def schemas(self) -> list[dict[str, Any]]:
        """The `tools` parameter of the chat request."""
        out = []
        for name in self.names:
            text, props, required = _SCHEMAS[name]
            params = {"type": "object", "properties": props, "required": list(required)}
            out.append(
                {
                    "type": "function",
                    "function": {"name": name, "description": text, "parameters": params},
                }
            )
        return out

    def read_only(self, name: str) -> bool:
        """Whether a call of `name` may simply run again after an interruption."""
        return name in RERUN_SAFE

    def knows(self, name: str) -> bool:
        return name in self.names

    def question(self, key: str, name: str, args: Mapping[str, Any]) -> Question | None:
        """The question this call needs answered before it runs, if any."""
        if name == "ask":
            choices = args.get("choices")
            ok = isinstance(choices, list) and all(isinstance(c, str) for c in choices)
            return Question(key, _text(args, "question"), tuple(choices) if ok else ())
        if name == "shell":
            command = _text(args, "command")
            if not shell_allowed(command, self.shell_allow):
                return Question(
                    key,
                    f"The agent wants to run a shell command in {self.cwd}:\n{command}\nRun it?",
                    ("yes", "no"),
                )
        return None

    def run(self, name: str, args: Mapping[str, Any], answer: str | None = None) -> str:
        """The call's result for the model; `answer` is the person's answer to the call's
        question. ToolError for what the tool refuses."""
        if name == "read":
            return self._read(_text(args, "path"))
        if name == "list":
            return self._list(str(args.get("path") or "."))
        if name == "write":
            return self._write(_text(args, "path"), args.get("content"))
        if name == "shell":
            command = _text(args, "command")
            if answer is not None and answer.strip().lower() not in ("yes", "y"):
                return f"Not run: the person answered {answer!r} to running it."
            return self._shell(command)
        if name == "ask":
            return f"The person answered: {answer}"
        raise ToolError(f"no tool named {name!r}")

    # the tools -----------------------------------------------------------------------

    def _read(self, given: str) -> str:
        path = inside(self.cwd, given, "working")
        try:
            if path.is_dir():
                raise ToolError(f"{given} is a folder; use list")
            size = path.stat().st_size
            if size > READ_BYTES:
                raise ToolError(f"{given} is {size:,} bytes; files up to {READ_BYTES:,} are read")
            data = path.read_bytes()
        except OSError as e:
            raise ToolError(f"{given}: {e.strerror or e}") from None
        if b"\x00" in data[:8192]:
            raise ToolError(f"{given} is a binary file, not text")
        text = data.decode("utf-8", "replace")
        if len(text) > READ_CHARS:
            return text[:READ_CHARS] + f"\n[... cut: {len(text):,} characters in all]"
        return text

    def _list(self, given: str) -> str:
        path = inside(self.cwd, given, "working")
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as e:
            raise ToolError(f"{given}: {e.strerror or e}") from None
        names = [e.name + ("/" if e.is_dir() else "") for e in entries[:LIST_ENTRIES]]
        if len(entries) > LIST_ENTRIES:
            names.append(f"[... {len(entries) - LIST_ENTRIES} more]")
        return "\n".join(names) if names else "(empty folder)"

    def _write(self, given: str, content: Any) -> str:
        if not isinstance(content, str):
            raise ToolError("content: expected the text of the file")
        data = content.encode("utf-8", "replace")
        if len(data) > WRITE_BYTES:
            raise ToolError(f"content is {len(data):,} bytes; at most {WRITE_BYTES:,}")
        self.work.mkdir(parents=True, exist_ok=True)
        path = inside(self.work, given, "work")
        if path == self.work.resolve() or path.is_dir():
            raise ToolError(f"{given} is a folder; give a file path")
        path.parent.mkdir(parents=True, exist_ok=True)
        path = inside(self.work, given, "work")  # again: a link made in between
        write_bytes_atomic(path, data)
        return f"wrote {path.relative_to(self.work.resolve())} ({len(data):,} bytes)"

    def _shell(self, command: str) -> str:
        # The task's own process group (no new session): stopping the task stops it too.
        with tempfile.TemporaryFile() as out:
            proc = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                code: int | str = proc.wait(self.shell_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                code = f"killed after the {self.shell_timeout:g}s timeout"
            out.seek(0)
            data = out.read(SHELL_OUTPUT * 4 + 1)
            size = out.seek(0, os.SEEK_END)
        text = data.decode("utf-8", "replace")
        if len(text) > SHELL_OUTPUT or size > len(data):
            text = text[:SHELL_OUTPUT] + f"\n[... output cut: {size:,} bytes in all]"
        return f"exit status: {code}\n{text}"


def _text(args: Mapping[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"{key}: expected text, got {json.dumps(value)}")
    return value
