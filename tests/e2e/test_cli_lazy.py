"""The command table of the lazily loaded CLI matches what the modules define."""

from __future__ import annotations

import subprocess
import sys

from bantzd.cli import COMMAND_MODULES, load_all_commands, main


def test_every_command_is_in_the_table_under_its_module() -> None:
    load_all_commands()
    actual = {
        name: cmd.callback.__module__.rsplit(".", 1)[1] for name, cmd in main.commands.items()
    }
    table = {cmd: module for module, cmds in COMMAND_MODULES.items() for cmd in cmds}
    assert actual == table


def test_an_in_task_command_does_not_import_the_supervisor() -> None:
    code = (
        "import sys; from bantzd.cli import main; main.get_command(None, 'progress'); "
        "print(sorted(m for m in sys.modules if m.startswith(('bantzd.supervisor', "
        "'bantzd.reports', 'rich', 'watchdog', 'psutil'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_status_does_not_import_psutil(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`bantzd status` reads the load and memory from /proc: psutil's import would be a
    tenth of the command's run."""
    code = (
        "import sys; from bantzd.cli import main\n"
        "try:\n"
        f"    main(['--home', {str(tmp_path / 'home')!r}, 'status'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('psutil' in sys.modules, file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
