"""Checkpoints and resume across failures, stops, and supervisor crashes (real processes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bantzd.paths import TaskPaths
from bantzd.workers.spawn import worker_alive
from tests.conftest import Bantz, config_text, wait_for

pytestmark = pytest.mark.slow

TRAIN = textwrap.dedent("""\
    import os, signal, time

    def train(ctx, args):
        state = ctx.checkpoint or {"epoch": 0}
        for epoch in range(state["epoch"], args["epochs"]):
            with open(args["ledger"], "a") as f:
                f.write(f"{ctx.attempt} {epoch}\\n")
            time.sleep(args.get("pause", 0))
            ctx.save({"epoch": epoch + 1})
            ctx.progress((epoch + 1) / args["epochs"], f"epoch {epoch + 1}")
            if epoch == args.get("crash_at") and ctx.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        ctx.result({"summary": f"trained {args['epochs']} epochs"})
""")


def python_task(tmp_path: Path, **args: object) -> str:
    (tmp_path / "trainer.py").write_text(TRAIN)
    lines = ["python: trainer:train", f"cwd: {tmp_path}", "args:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in args.items()]
    return "\n".join(lines) + "\n"


def ledger_lines(path: Path) -> list[tuple[int, int]]:
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]


def test_python_task_resumes_from_its_checkpoint_after_a_crash(
    bantz: Bantz, tmp_path: Path
) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop(
        "train.yaml",
        python_task(tmp_path, epochs=5, ledger=str(ledger), crash_at=2)
        + "retries: 1\nretry_delay: 0.1s\n",
    )
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done", state
    assert state["attempts"] == 2
    assert state["progress"] == {"percent": 100.0, "message": "epoch 5"}
    # Attempt 1 ran epochs 0-2 and was killed after saving epoch 3; attempt 2 went on at 3.
    assert ledger_lines(ledger) == [(1, 0), (1, 1), (1, 2), (2, 3), (2, 4)]
    result = json.loads((bantz.task_dir(1) / "result.json").read_text())
    assert result == {"summary": "trained 5 epochs"}


def test_graceful_stop_requeues_and_the_next_run_resumes(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    bantz.drop("train.yaml", python_task(tmp_path, epochs=40, ledger=str(ledger), pause=0.05))
    proc = bantz.start("run")
    paths = TaskPaths(bantz.task_dir(1))

    def epochs_saved() -> int:
        try:
            return json.loads(paths.checkpoint.read_text())["epoch"]
        except (OSError, ValueError, KeyError):
            return 0

    wait_for(lambda: epochs_saved() >= 3, what="a few checkpoints")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    state = bantz.state(1)
    assert state["status"] == "queued" and state["reason"] == "interrupted"
    assert state["interruptions"] == 1 and state["failures"] == 0
    saved = epochs_saved()
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done"
    lines = ledger_lines(ledger)
    second = [epoch for attempt, epoch in lines if attempt == 2]
    # The resumed attempt starts at the saved epoch; at most the epoch in flight reruns.
    assert second[0] == saved
    assert [e for _, e in lines if _ == 1][-1] in (saved - 1, saved)
    assert sorted(set(e for _, e in lines)) == list(range(40))


def test_killed_supervisor_adopts_a_live_worker(bantz: Bantz, tmp_path: Path) -> None:
    go = tmp_path / "go"
    ledger = tmp_path / "ledger"
    bantz.drop(
        "slow.yaml",
        f"run: echo start >> {ledger}; while [ ! -e {go} ]; do sleep 0.05;"
        f" done; echo end >> {ledger}; exit 7\n",
    )
    proc = bantz.start("run")
    wait_for(lambda: bantz.status_of(1) == "running", what="the task to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    paths = TaskPaths(bantz.task_dir(1))
    assert worker_alive(paths), "the worker must outlive its supervisor"
    second = bantz.start("run", "--once")
    wait_for(lambda: "adopted" in (bantz.home / "bantzd.log").read_text(), what="adoption")
    assert bantz.status_of(1) == "running"
    go.touch()
    assert second.wait(30) == 0
    state = bantz.state(1)
    assert state["status"] == "failed" and state["exit_code"] == 7
    assert state["attempts"] == 1
    assert ledger.read_text().split() == ["start", "end"]


def test_worker_that_died_with_the_supervisor_is_requeued(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    marker = tmp_path / "ran-once"
    bantz.drop(
        "job.yaml",
        f"run: echo run >> {ledger}; [ -e {marker} ] && exit 0; touch {marker}; sleep 300\n",
    )
    proc = bantz.start("run")
    wait_for(lambda: marker.exists(), what="the first attempt")
    # state.json of a task accepted and started in one tick is written just after the
    # start (the writer thread): wait for it rather than read it once.
    pid = int(wait_for(lambda: bantz.state(1).get("pid"), what="the pid in state.json"))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    os.killpg(pid, signal.SIGKILL)  # the power cut took the worker too
    wait_for(lambda: not worker_alive(TaskPaths(bantz.task_dir(1))), what="the worker to die")
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done"
    assert state["attempts"] == 2 and state["interruptions"] == 1 and state["failures"] == 0
    assert ledger.read_text().split() == ["run", "run"]


def test_interruptions_are_bounded(bantz: Bantz) -> None:
    (bantz.home / "config.toml").write_text(config_text("max_interruptions = 1"))
    bantz.drop("forever.yaml", "run: sleep 300\n")
    for _ in range(2):
        proc = bantz.start("run")
        wait_for(lambda: bantz.status_of(1) == "running", what="the task to start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    state = bantz.state(1)
    assert state["status"] == "failed"
    assert state["error"].startswith("interrupted 2 times")


def test_steps_resume_at_the_first_step_not_done(bantz: Bantz, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    marker = tmp_path / "b-failed-once"
    bantz.drop(
        "pipeline.yaml",
        textwrap.dedent(f"""\
        retries: 1
        retry_delay: 0.1s
        steps:
          - {{name: a, run: echo a >> {ledger}}}
          - name: b
            run: echo b >> {ledger}; [ -e {marker} ] || {{ touch {marker}; exit 1; }}
          - {{name: c, run: echo c >> {ledger}}}
    """),
    )
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done" and state["attempts"] == 2
    assert ledger.read_text().split() == ["a", "b", "b", "c"]


def test_shell_checkpoint_and_progress_commands(bantz: Bantz, tmp_path: Path) -> None:
    py = sys.executable
    script = tmp_path / "count.sh"
    script.write_text(
        textwrap.dedent(f"""\
        set -e
        last=$({py} -m bantzd checkpoint show)
        echo "last=$last"
        {py} -m bantzd checkpoint save '{{"step": 3}}'
        {py} -m bantzd progress 40 "epoch 2 of 5"
        {py} -m bantzd checkpoint show
    """)
    )
    bantz.drop("shell.yaml", f"run: [sh, {script}]\n")
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    out = bantz.output(1)
    assert "last=null" in out and '{"step": 3}' in out
    state = bantz.state(1)
    assert state["status"] == "done", out
    assert state["progress"] == {"percent": 40.0, "message": "epoch 2 of 5"}
    assert json.loads((bantz.task_dir(1) / "checkpoint.json").read_text()) == {"step": 3}


def test_in_task_commands_outside_a_task_are_a_usage_error(bantz: Bantz) -> None:
    res = bantz("checkpoint", "show")
    assert res.returncode == 2
    assert "not running under a bantzd task" in res.stderr


@pytest.mark.parametrize("module", ["bantzd.worker", "bantzd.workers.taskapi"])
def test_worker_import_stays_light(module: str) -> None:
    # The public path and the module behind it are both imported inside tasks.
    heavy = {"click", "pydantic", "rich", "yaml", "watchdog", "psutil"}
    code = (
        f"import sys, {module}; "
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_public_worker_path_is_the_in_task_api() -> None:
    # SPEC documents `bantzd.worker.context()`; it must be the same API, not a copy.
    import bantzd.worker
    import bantzd.workers.taskapi as taskapi

    assert bantzd.worker.__all__ == ["Context", "NotInTask", "context"]
    for name in bantzd.worker.__all__:
        assert getattr(bantzd.worker, name) is getattr(taskapi, name)


def test_cancel_without_a_supervisor_stops_an_orphaned_attempt(bantz: Bantz) -> None:
    bantz.drop("orphan.yaml", "run: trap '' TERM; sleep 300\n")
    proc = bantz.start("run")
    wait_for(lambda: bantz.status_of(1) == "running", what="the task to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    paths = TaskPaths(bantz.task_dir(1))
    assert worker_alive(paths)
    res = bantz("cancel", "1", timeout=30)
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "cancelled"
    assert not worker_alive(paths), "the orphan (which ignores SIGTERM) must be gone"
