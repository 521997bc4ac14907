"""The foreground run talks (issue 13, item 2), through the real CLI and real signals.

A terminal is a real pseudo-terminal here (`pty.openpty`), so the run sees `isatty()` as it
would in a person's shell; cron is a pipe.
"""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import subprocess
import threading
from pathlib import Path

from tests.conftest import Bantz, config_text, wait_for

CLOCK = r"\d\d:\d\d:\d\d"


class Terminal:
    """A command whose stdout and stderr are one pseudo-terminal; what it writes is kept."""

    def __init__(self, bantz: Bantz, *args: str) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            bantz.argv(*args),
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=slave,
            env=bantz.env,
        )
        bantz.procs.append(self.proc)  # type: ignore[arg-type]
        os.close(slave)
        self._master = master
        self._chunks: list[bytes] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO: the last writer closed the terminal
                break
            if not data:
                break
            self._chunks.append(data)
        os.close(self._master)

    @property
    def text(self) -> str:
        return b"".join(self._chunks).decode(errors="replace").replace("\r\n", "\n")

    def wait_for_line(self, pattern: str, timeout: float = 20) -> str:
        regex = re.compile(pattern, re.M)
        found = wait_for(lambda: regex.search(self.text), timeout=timeout, what=repr(pattern))
        return found.group(0)  # type: ignore[union-attr]

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code, self.text


def _two_tasks(bantz: Bantz) -> None:
    bantz.drop("ok.yaml", "name: ok\nrun: 'true'\n")
    bantz.drop("bad.yaml", "name: bad\nrun: exit 2\n")


def test_on_a_terminal_each_start_and_end_is_a_line(bantz: Bantz) -> None:
    _two_tasks(bantz)
    code, text = Terminal(bantz, "run", "--once").finish()
    assert code == 0, text
    lines = text.splitlines()
    for pattern in (
        rf"{CLOCK} started #1 ok \(attempt 1\)",
        rf"{CLOCK} done    #1 ok in \S+",
        rf"{CLOCK} started #2 bad \(attempt 1\)",
        rf"{CLOCK} failed  #2 bad: exit 2",
    ):
        assert any(re.fullmatch(pattern, line) for line in lines), (pattern, text)
    assert lines[-1].startswith("bantzd: "), text  # the closing summary stays last


def test_under_cron_it_is_quiet_unless_asked(bantz: Bantz) -> None:
    _two_tasks(bantz)
    res = bantz("run", "--once")  # stdout and stderr are pipes, as under cron
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        line for line in res.stdout.splitlines() if "bantzd:" in line
    ]
    assert "started #" not in res.stdout + res.stderr

    bantz.drop("again.yaml", "name: again\nrun: 'true'\n")
    res = bantz("run", "--once", "-v")
    assert res.returncode == 0, res.stderr
    assert re.search(rf"^{CLOCK} started #3 again \(attempt 1\)$", res.stdout, re.M), res.stdout
    assert re.search(rf"^{CLOCK} done    #3 again in ", res.stdout, re.M), res.stdout
    assert "bantzd: supervisor started" in res.stderr  # -v still logs to stderr too


def test_quiet_is_quiet_even_on_a_terminal(bantz: Bantz) -> None:
    _two_tasks(bantz)
    code, text = Terminal(bantz, "run", "--once", "-q").finish()
    assert code == 0, text
    assert "started #" not in text and "done " not in text
    assert text.splitlines()[-1].startswith("bantzd: ")
    res = bantz("run", "--once", "-q", "-v")
    assert res.returncode == 2 and "cannot be used together" in res.stderr


def test_ctrl_c_says_what_it_does_and_status_shows_the_stop(bantz: Bantz) -> None:
    config = config_text().replace('stop_grace = "2s"', 'stop_grace = "30s"')
    (bantz.home / "config.toml").write_text(config)
    # A task that takes its time to save: SIGTERM only makes it say so.
    bantz.drop(
        "slow.yaml",
        "name: slow\n"
        "run: \"trap 'echo saving' TERM; echo ready; while true; do sleep 0.1; done\"\n",
    )
    term = Terminal(bantz, "run")
    term.wait_for_line(rf"^{CLOCK} started #1 slow \(attempt 1\)$")
    # (the attempt's marker line quotes the command, so the word alone is not enough)
    wait_for(lambda: "ready" in bantz.output(1).splitlines(), what="the task's trap to be set")
    term.proc.send_signal(signal.SIGINT)
    term.wait_for_line(r"^stopping: 1 task gets SIGTERM, 30s to save; Ctrl-C again kills them$")

    pid = term.proc.pid
    res = bantz("status")
    assert res.returncode == 0, res.stderr
    line = next(x for x in res.stdout.splitlines() if x.startswith("supervisor:"))
    assert re.fullmatch(rf"supervisor: stopping \(pid {pid}, since \S+; 1 task saving\)", line)
    sup = json.loads(bantz("status", "--json").stdout)["supervisor"]
    assert (sup["running"], sup["stopping"], sup["pid"]) == (True, True, pid)
    assert sup["stopping_since"] is not None

    term.proc.send_signal(signal.SIGINT)
    term.wait_for_line(r"^killing 1 task$")
    code, text = term.finish(timeout=20)
    assert code == 130, text
    assert re.search(
        rf"^{CLOCK} stopped #1 slow \(no checkpoint, starts over next run\)$", text, re.M
    )
    sup = json.loads(bantz("status", "--json").stdout)["supervisor"]
    assert (sup["running"], sup["stopping"]) == (False, False)


def _process_state(pid: int) -> str:
    """The one-letter state of a process in /proc (T: stopped)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text.rsplit(")", 1)[1].split()[0]


def test_status_marks_a_task_stopped_with_sigstop(bantz: Bantz) -> None:
    proc = bantz.start("run")
    bantz.drop("long.yaml", "name: long\nrun: sleep 300\n")
    wait_for(lambda: bantz.status_of(1) == "running", what="the task to start")
    assert bantz("pause", "1").returncode == 0
    wait_for(lambda: bantz.state(1).get("paused"), what="the task to be paused")
    wait_for(lambda: _process_state(bantz.state(1)["pid"]) == "T", what="SIGSTOP to arrive")

    res = bantz("status")
    lines = res.stdout.splitlines()
    assert any(re.fullmatch(r"  1  long  for \S+  paused \(SIGSTOP\)", x) for x in lines), (
        res.stdout
    )
    tasks = next(x for x in lines if x.startswith("tasks:"))
    assert "1 running (1 paused)" in tasks, tasks
    report = json.loads(bantz("status", "--json").stdout)
    assert report["paused_tasks"] == {"running": 1}
    assert report["running"][0]["paused"] is True

    assert bantz("resume", "1").returncode == 0
    wait_for(lambda: not bantz.state(1).get("paused"), what="the task to be resumed")
    report = json.loads(bantz("status", "--json").stdout)
    assert report["paused_tasks"] == {}
    assert "paused" not in next(x for x in bantz("status").stdout.splitlines() if "long" in x)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


def test_a_task_waiting_for_a_slot_says_so_in_list_and_show(bantz: Bantz, tmp_path: Path) -> None:
    (bantz.home / "config.toml").write_text(config_text("max_parallel = 1"))
    go = tmp_path / "go"
    proc = bantz.start("run")
    bantz.drop("first.yaml", f"name: first\nrun: 'while [ ! -e {go} ]; do sleep 0.05; done'\n")
    wait_for(lambda: bantz.status_of(1) == "running", what="the first task to start")
    bantz.drop("second.yaml", "name: second\nrun: 'true'\n")
    reason = "waiting for a free slot (1 of 1 running)"
    wait_for(lambda: bantz.state(2).get("reason") == reason, what="the slot reason on disk")

    listed = bantz("list")
    row = next(x for x in listed.stdout.splitlines() if x.split()[:1] == ["2"])
    assert "second" in row and "queued" in row and row.rstrip().endswith(reason), listed.stdout
    shown = bantz("show", "2").stdout
    assert re.search(rf"^  reason:\s+{re.escape(reason)}$", shown, re.M), shown
    as_json = json.loads(bantz("list", "--json").stdout)
    assert [t["reason"] for t in as_json if t["id"] == 2] == [reason]

    go.touch()
    wait_for(lambda: bantz.status_of(2) == "done", what="the second task to run")
    assert bantz.state(2)["reason"] is None
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
