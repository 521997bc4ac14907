"""The command table of the lazily loaded CLI matches what the modules define, and the
commands that must be quick import only what they need."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from bantzd.cli import COMMAND_MODULES, load_all_commands, main


def imported(code: str, *roots: str) -> list[str]:
    """The modules under `roots` (a package and its submodules) that a fresh interpreter
    has loaded after running `code`; printed on stderr, as the code may print on stdout."""
    report = (
        "\nimport sys as _sys\n"
        f"print(sorted(m for m in _sys.modules if m in {roots!r}"
        f" or m.startswith({tuple(r + '.' for r in roots)!r})), file=_sys.stderr)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code + report], capture_output=True, text=True, check=True
    )
    return ast.literal_eval(proc.stderr.strip().splitlines()[-1])


def test_every_command_is_in_the_table_under_its_module() -> None:
    load_all_commands()
    actual = {
        name: cmd.callback.__module__.rsplit(".", 1)[1] for name, cmd in main.commands.items()
    }
    table = {cmd: module for module, cmds in COMMAND_MODULES.items() for cmd in cmds}
    assert actual == table


def test_an_in_task_command_does_not_import_the_supervisor() -> None:
    code = "from bantzd.cli import main; main.get_command(None, 'progress')"
    roots = ("bantzd.supervisor", "bantzd.reports", "rich", "watchdog", "psutil")
    assert imported(code, *roots) == []


def test_status_does_not_import_psutil(tmp_path: Path) -> None:
    """`bantzd status` reads the load and memory from /proc: psutil's import would be a
    tenth of the command's run."""
    code = (
        "from bantzd.cli import main\n"
        f"main(['--home', {str(tmp_path / 'home')!r}, 'status'], standalone_mode=False)"
    )
    assert imported(code, "psutil") == []


def test_show_of_a_file_without_secret_words_does_not_parse_it() -> None:
    """`show` of a task file with nothing secret-looking shows it verbatim without
    importing the YAML parser (a fifth of the command's run)."""
    code = (
        "from bantzd.cli.display import mask_task_yaml, task_yaml_secrets\n"
        "t = 'run: echo hi\\nenv: {HF_HOME: /data}\\n'\n"
        "assert mask_task_yaml(t) == t and task_yaml_secrets(t) == []"
    )
    assert imported(code, "yaml") == []
