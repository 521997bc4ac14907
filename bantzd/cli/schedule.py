"""What starts the night: the crontab line to install, and the cron/systemd entries installed.

`bantzd init` and `bantzd doctor --cron` print the crontab line with the absolute path of the
bantzd being run, because a line that says `~/.local/bin/bantzd` is wrong for everyone who
installed into a virtual environment, and cron's PATH (/usr/bin:/bin) finds neither.
`bantzd doctor` reads what is installed (`crontab -l`, systemd user units named bantzd*) and
checks that each entry runs a bantzd that exists, for which home.

Only the standard library: reading the entries must work whatever else is broken.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bantzd.paths import Home

NIGHT_SCHEDULE = "0 23 * * *"  # minute hour day month weekday: 23:00 every day
NIGHT_UNTIL = "07:00"
CRON_PATH = "/usr/bin:/bin"  # what cron gives a job when the crontab sets no PATH
_ENV_LINE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")
_NIGHT_COMMANDS = ("run", "start", "restart")


def user_home() -> Path:
    """The home folder cron and systemd give the user's jobs ($HOME and ~ in their lines):
    the passwd entry's, which is $HOME in the shell that runs doctor or init."""
    return Path.home()


def scheduled_default_home() -> Path:
    """The bantzd home a cron job or a unit gets with no --home: no $BANTZ_HOME or
    $XDG_DATA_HOME there, so ~/.local/share/bantzd."""
    return user_home() / ".local" / "share" / "bantzd"


def bantzd_argv() -> list[str]:
    """How to start the bantzd that is running now, as an absolute argv.

    The console script that was run (sys.argv[0]) when it is one; `python -m bantzd` from a
    virtual environment finds the script beside its python; the interpreter itself last.
    Symlinks are kept: pipx's ~/.local/bin/bantzd stays valid across upgrades, its target not.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "bantzd" and _executable(argv0):
        return [os.path.abspath(argv0)]
    beside = Path(sys.executable).with_name("bantzd")
    if _executable(str(beside)):
        return [os.path.abspath(beside)]
    found = shutil.which("bantzd")
    if found:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "bantzd"]


def command_line(home: Home, *args: str) -> str:
    """`/abs/bin/bantzd [--home /abs/home] ARGS`, quoted for sh; --home only when the home is
    not the one a scheduled job gets by default."""
    argv = bantzd_argv()
    if Path(home.root) != scheduled_default_home():
        argv += ["--home", str(home.root)]
    return shlex.join([*argv, *args])


def crontab_line(home: Home, schedule: str = NIGHT_SCHEDULE) -> str:
    """The crontab line for the night, exactly as `crontab -e` wants it.

    No output redirection: cron mails the two lines `run` prints (README, contrib/cron), and
    everything else is in bantzd.log. A `%` is a newline to cron, so it is escaped.
    """
    command = command_line(home, "run", "--until", NIGHT_UNTIL)
    return f"{schedule} {command.replace('%', chr(92) + '%')}"


# --- installed entries -------------------------------------------------------------------------


@dataclass
class Entry:
    """One cron line or systemd unit that runs bantzd."""

    where: str  # "crontab line 3", "~/.config/systemd/user/bantzd-night.service"
    text: str  # the line, or the ExecStart= value
    program: str | None = None  # the bantzd it runs, expanded; None when it cannot be told
    home: Path | None = None  # the home it runs on
    runs_night: bool = False  # `run` / `start`: it starts a supervisor
    notes: list[str] = field(default_factory=list)  # why program/home could not be told
    enabled: bool = True  # systemd: enabled (its timer, or itself, is wanted by a target)
    problem: str | None = None  # found while reading it: a program the job's PATH lacks


def read_crontab() -> tuple[str | None, str | None]:
    """(the user's crontab, None), or (None, why not): no crontab program, or none installed."""
    crontab = shutil.which("crontab")
    if crontab is None:
        return None, "there is no crontab program here"
    try:
        res = subprocess.run(
            [crontab, "-l"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"crontab -l failed: {e}"
    if res.returncode != 0:
        return None, "you have no crontab"
    return res.stdout, None


def cron_entries(text: str) -> list[Entry]:
    """The lines of a crontab that run bantzd, each with the program and home it uses."""
    env: dict[str, str] = {}
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _ENV_LINE.match(line)
        if m and not re.match(r"^\s*[@0-9*]", line):
            env[m.group(1)] = _unquote(m.group(2).strip())
            continue
        fields = stripped.split(None, 1 if stripped.startswith("@") else 5)
        if len(fields) < (2 if stripped.startswith("@") else 6) or "bantzd" not in fields[-1]:
            continue
        command = fields[-1].split("%", 1)[0]  # after an unescaped %: the job's stdin
        entry = Entry(where=f"crontab line {number}", text=stripped)
        _fill(entry, command, env.get("PATH", CRON_PATH), env)
        found.append(entry)
    return found


def systemd_folder() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(user_home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_entries(folder: Path | None = None) -> list[Entry]:
    """The user's systemd services named bantzd*, each with its ExecStart= program and home."""
    folder = folder or systemd_folder()
    found = []
    for unit in sorted(folder.glob("bantzd*.service")):
        try:
            text = unit.read_text(errors="replace")
        except OSError:
            continue
        env: dict[str, str] = {}
        exec_start = None
        for line in text.splitlines():
            key, _, value = line.strip().partition("=")
            if key == "Environment":
                for item in _split(_specifiers(value)):
                    name, _, val = item.partition("=")
                    env[name] = val
            elif key == "ExecStart" and value.strip():
                exec_start = value.strip()
        if exec_start is None:
            continue
        entry = Entry(where=str(unit), text=f"ExecStart={exec_start}")
        command = _specifiers(exec_start.lstrip("-@:+!"))
        _fill(entry, command, env.get("PATH", "/usr/local/bin:/usr/bin:/bin"), env)
        timer = unit.with_suffix(".timer")
        wanted = timer.name if timer.exists() else unit.name
        entry.enabled = any(folder.glob(f"*.wants/{wanted}"))
        if not entry.enabled:
            entry.notes.append(f"not enabled: systemctl --user enable --now {wanted}")
        found.append(entry)
    return found


def _fill(entry: Entry, command: str, path: str, env: dict[str, str]) -> None:
    """Find the bantzd program in `command` (expanding $HOME and ~ as sh does) and the home."""
    words = _split(command)
    home_env = env.get("BANTZ_HOME")
    for i, word in enumerate(words):
        name, eq, val = word.partition("=")
        if eq and name == "BANTZ_HOME":
            home_env = val  # `BANTZ_HOME=/x bantzd run`
        is_python = re.fullmatch(r"python[0-9.]*", os.path.basename(word)) and words[
            i + 1 : i + 3
        ] == ["-m", "bantzd"]
        if os.path.basename(word) != "bantzd" and not is_python:
            continue
        rest = words[i + (3 if is_python else 1) :]
        program = _expand(word)
        if "$" in program:
            entry.notes.append(f"it names bantzd through a variable ({word}); cannot check it")
        elif "/" not in program:
            located = shutil.which(program, path=path)
            if located is None:
                entry.problem = (
                    f"{entry.where} runs `{word}`, which the PATH the job gets ({path}) "
                    "does not find"
                )
            program = located or program
        entry.program = program
        home = _option(rest, "--home") or home_env
        entry.home = _absolute(_expand(home)) if home else scheduled_default_home()
        commands = [w for w in rest if not w.startswith("-")]
        entry.runs_night = bool(set(commands) & set(_NIGHT_COMMANDS))
        return


def _option(words: list[str], name: str) -> str | None:
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split()


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _expand(word: str) -> str:
    """$HOME, ${HOME} and a leading ~ as the job's shell expands them (the passwd home)."""
    home = str(user_home())
    word = word.replace("${HOME}", home).replace("$HOME", home)
    if word == "~" or word.startswith("~/"):
        word = home + word[1:]
    return word


def _absolute(path: str) -> Path:
    """A path as the job sees it: relative ones from its working folder, the user's home."""
    return Path(os.path.normpath(os.path.join(str(user_home()), path)))


def _specifiers(text: str) -> str:
    """The systemd specifiers a user unit's command line uses for paths: %h, %u, %%."""
    try:
        user = pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        user = str(os.getuid())
    out = []
    i = 0
    while i < len(text):
        if text[i] == "%" and i + 1 < len(text):
            out.append(
                {"h": str(user_home()), "u": user, "%": "%"}.get(text[i + 1], text[i : i + 2])
            )
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def entry_problem(entry: Entry) -> str | None:
    """Why this entry cannot start bantzd, in words with the fix; None when it can."""
    if entry.problem is not None:
        return entry.problem
    if entry.program is None or "$" in entry.program:
        return None
    if not os.path.exists(entry.program):
        return f"{entry.where} runs {entry.program}, which does not exist"
    if not _executable(entry.program):
        return f"{entry.where} runs {entry.program}, which is not an executable file"
    return None


def same_program(entry: Entry) -> bool:
    """Whether the entry runs this very bantzd (or one of the same file)."""
    if entry.program is None:
        return True
    mine = bantzd_argv()[0]
    try:
        return os.path.samefile(entry.program, mine)
    except OSError:
        return entry.program == mine
