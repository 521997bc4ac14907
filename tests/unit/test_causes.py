"""The cause of a failure read from real-looking output.log tails (reports/causes.py)."""

from __future__ import annotations

import pytest

from bantzd.reports.causes import Ending, failure_cause, last_attempt

TORCH = """\
=== bantzd: attempt 1 · 2026-11-22T23:00:05+01:00 · python train.py --epochs 3 ===
Traceback (most recent call last):
  File "/home/me/projects/llm/train.py", line 3, in <module>
    import torch
ModuleNotFoundError: No module named 'torch'
=== bantzd: attempt 1 ended: exit code 1 after 1s ==="""

CHAINED = """\
loading config
Traceback (most recent call last):
  File "load.py", line 8, in read
    return json.load(f)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "load.py", line 12, in <module>
    raise SystemExit("bad config") from e
SystemExit: bad config"""

CUDA_OOM = """\
epoch 1 step 200 loss 2.31
Traceback (most recent call last):
  File "train.py", line 88, in <module>
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB \
(GPU 0; 23.65 GiB total)"""

CASES = {
    "ModuleNotFoundError": (
        TORCH,
        Ending(exit_code=1),
        "ModuleNotFoundError: No module named 'torch'",
    ),
    "the last of chained exceptions": (CHAINED, Ending(exit_code=1), "SystemExit: bad config"),
    "dotted exception name": (
        CUDA_OOM,
        Ending(exit_code=1),
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
        " (GPU 0; 23.65 GiB total)",
    ),
    "dash: command not found": (
        "starting\nsh: 1: foo: not found\n",
        Ending(exit_code=127),
        "command not found: foo",
    ),
    "bash: command not found": (
        "bash: line 3: trainer: command not found",
        Ending(exit_code=127),
        "command not found: trainer",
    ),
    "bash -c: command not found": (
        "bash: foo: command not found",
        Ending(exit_code=127),
        "command not found: foo",
    ),
    "/bin/sh path: not found": (
        "/bin/sh: 1: ./prepare.sh: not found",
        Ending(exit_code=127),
        "command not found: ./prepare.sh",
    ),
    "zsh": ("zsh: command not found: pyhton", Ending(exit_code=127), "command not found: pyhton"),
    "No such file or directory": (
        "reading input\ncat: data/train.csv: No such file or directory",
        Ending(exit_code=1),
        "cat: data/train.csv: No such file or directory",
    ),
    "python can't open file": (
        "python3: can't open file '/home/me/trian.py': [Errno 2] No such file or directory",
        Ending(exit_code=2),
        "python3: can't open file '/home/me/trian.py': [Errno 2] No such file or directory",
    ),
    "Permission denied": (
        "sh: 1: ./deploy.sh: Permission denied",
        Ending(exit_code=126),
        "sh: 1: ./deploy.sh: Permission denied",
    ),
    "killed by the OOM killer": (
        "allocating 60 GiB\nKilled",
        Ending(exit_code=137),
        "killed (SIGKILL): out of memory?",
    ),
    "SIGKILL seen by the supervisor": (
        "sh: 1: line 1: 4242 Killed  python big.py",
        Ending(signal=9),
        "killed (SIGKILL): out of memory?",
    ),
    "over bantzd's memory limit": (
        "allocating\nTerminated",
        Ending(signal=15, error="memory limit"),
        "killed: over its memory limit",
    ),
    "segfault": (
        "Segmentation fault (core dumped)",
        Ending(exit_code=139),
        "Segmentation fault (core dumped)",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_recognisable_cause_is_found(name: str) -> None:
    log, ending, cause = CASES[name]
    assert failure_cause(log.split("\n"), ending) == cause


@pytest.mark.parametrize(
    "log,ending",
    [
        ("reading part 1\nerror: settings.toml: no such file", Ending(exit_code=2)),
        ("", Ending(exit_code=1)),
        ("step 3 done\nKilled", Ending(exit_code=1)),  # "Killed" alone, not a SIGKILL end
        ("ValueError", Ending(exit_code=1)),  # a bare name without a traceback: a word
        ("  File \"x.py\", line 3\n    raise ValueError('x')", Ending(exit_code=1)),
        ("UserWarning: deprecated", Ending(exit_code=1)),
        # A timeout is the cause, said beside the signal; the traceback its SIGTERM caused
        # is not.
        (
            'Traceback (most recent call last):\n  File "x.py", line 1\nKeyboardInterrupt',
            Ending(signal=9, error="timeout after 1h"),
        ),
    ],
)
def test_nothing_recognisable_gives_none(log: str, ending: Ending) -> None:
    assert failure_cause(log.split("\n"), ending) is None


def test_only_the_last_attempt_counts() -> None:
    log = [
        "=== bantzd: attempt 1 · 2026-11-22T23:00:05+01:00 · ./run.sh ===",
        "bash: foo: command not found",
        "=== bantzd: attempt 1 ended: exit code 127 after 0s; retry at 23:01:05 ===",
        "=== bantzd: attempt 2 · 2026-11-22T23:01:05+01:00 · ./run.sh ===",
        "exiting with 3",
        "=== bantzd: attempt 2 ended: exit code 3 after 2s ===",
    ]
    assert last_attempt(log) == ["exiting with 3"]
    assert failure_cause(log, Ending(exit_code=3)) is None


def test_a_bare_exception_after_a_traceback_counts() -> None:
    log = ["Traceback (most recent call last):", '  File "x.py", line 1', "KeyboardInterrupt"]
    assert failure_cause(log, Ending(exit_code=130)) == "KeyboardInterrupt"


def test_a_long_line_is_cut() -> None:
    cause = failure_cause(["RuntimeError: " + "x" * 500], Ending(exit_code=1))
    assert cause is not None and len(cause) <= 200 and cause.endswith("…")
