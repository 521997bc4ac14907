"""The README's checkpoint examples work as written: run, stopped, resumed."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.conftest import Bantz, wait_for

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def examples() -> dict[str, str]:
    """Code blocks that follow an `<!-- example: NAME -->` line, by NAME."""
    pattern = re.compile(r"<!-- example: (\S+) -->\n```[a-z]*\n(.*?)```", re.S)
    return dict(pattern.findall(README.read_text()))


def test_readme_has_the_examples() -> None:
    assert set(examples()) >= {"countdown.py", "count.yaml", "count.sh", "count-sh.yaml"}


def test_checkpoint_examples_resume_after_a_stop(bantz: Bantz, tmp_path: Path) -> None:
    user_home = tmp_path / "user"
    folder = user_home / "bantzd-examples"
    folder.mkdir(parents=True)
    ex = examples()
    (folder / "countdown.py").write_text(ex["countdown.py"])
    (folder / "count.sh").write_text(ex["count.sh"])
    for name in ("count.yaml", "count-sh.yaml"):
        (tmp_path / name).write_text(ex[name])
    bantz.env["HOME"] = str(user_home)
    # `bantzd` as a user has it: the installed command, next to this Python.
    bantz.env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + bantz.env["PATH"]
    res = bantz("submit", str(tmp_path / "count.yaml"), str(tmp_path / "count-sh.yaml"))
    assert res.returncode == 0, res.stderr

    proc = bantz.start("run")

    def saved(task_id: int) -> int:
        try:
            data = json.loads((bantz.task_dir(task_id) / "checkpoint.json").read_text())
        except (OSError, ValueError):
            return 0
        return data["n"] if isinstance(data, dict) else int(data)

    wait_for(lambda: saved(1) >= 5 and saved(2) >= 2, timeout=60, what="a few checkpoints")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    for task_id in (1, 2):
        state = bantz.state(task_id)
        assert (state["status"], state["reason"]) == ("queued", "interrupted"), state
    res = bantz("run", "--once", timeout=120)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done" and bantz.status_of(2) == "done"
    assert "resuming at" in bantz.output(1)
    assert "counted to 30" in bantz.output(2)
    assert saved(1) == 30 and saved(2) == 30
    result = json.loads((bantz.task_dir(1) / "result.json").read_text())
    assert result == {"summary": "counted to 30"}
