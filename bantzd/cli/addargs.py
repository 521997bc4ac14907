"""How `bantzd add` reads its COMMAND: what runs through the shell, and options that were
meant for bantzd but came after the command.

Everything after the first word of COMMAND belongs to the command (`bantzd add ls -la` runs
`ls -la`, as in pueue and task-spooler), so an option of `add` written after it would be
passed to the command: that is refused with a hint unless `--` says it is meant.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

# What makes a single COMMAND argument a shell command line rather than one program name.
SHELL_SYNTAX = re.compile(r"""[\s&|;<>()$`\\"'*?\[\]{}~]""")
_FIRST_WORD = re.compile(r"""[^\s&|;<>()$`\\"'*?\[\]{}]+""")
HINT = "put options before the command, or use -- before it"


class AddCommand(click.Command):
    """A command that remembers its raw arguments, so `add` can tell `-- make --name x`
    (meant) from `make --name x` (an option in the wrong place)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["bantzd.raw_args"] = list(args)
        return super().parse_args(ctx, args)


def after_dashdash(raw: Sequence[str], command: Sequence[str]) -> bool:
    """Whether COMMAND came after an explicit `--` (the raw arguments end with it)."""
    start = len(raw) - len(command)
    return start >= 1 and raw[start - 1] == "--" and list(raw[start:]) == list(command)


def misplaced_option(command: Sequence[str], options: Iterable[str]) -> int | None:
    """The index in `command` of the first word after the program that is one of `add`'s
    own long options (`--name`, `--name=x`), or None."""
    own = {o for o in options if o.startswith("--")}
    for i, word in enumerate(command[1:], start=1):
        if word == "--":
            return None  # what follows is the command's own `--`
        if word.split("=", 1)[0] in own:
            return i
    return None


def misplaced_hint(command: Sequence[str], index: int, takes_value: bool) -> str:
    """The usage error for an option of `add` written after the command, with both ways
    to write what was meant."""
    word = command[index]
    option = word.split("=", 1)[0]
    end = index + (2 if takes_value and "=" not in word else 1)
    moved = list(command[index:end])
    rest = list(command[:index]) + list(command[end:])
    return (
        f"{option} comes after the command, so it would be passed to {command[0]}; {HINT}:\n"
        f"  {shlex.join(['bantzd', 'add', *moved, *rest])}   (an option of the task)\n"
        f"  {shlex.join(['bantzd', 'add', '--', *command])}   ({command[0]} gets {option})"
    )


def is_shell_line(command: Sequence[str]) -> bool:
    """A single argument with shell syntax (`'echo a && echo b'`, `'make -j4 > log'`) is a
    shell command line, run with sh -c as pueue does; a program path that exists (spaces
    and all) is still run as a program."""
    if len(command) != 1:
        return False
    word = command[0]
    if not SHELL_SYNTAX.search(word):
        return False
    return not (os.path.exists(word) or shutil.which(word))


def default_name(command: Sequence[str], shell_line: bool) -> str:
    """The task's name when `--name` is not given: the program's name (of a shell line,
    its first word)."""
    first = command[0]
    if shell_line:
        match = _FIRST_WORD.search(first)
        first = match.group(0) if match else "task"
    return Path(first).name or "task"
