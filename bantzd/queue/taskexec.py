"""A task file's `executor:` (SPEC section 13): where this task runs, over `[executor] kind`.

Parsed here rather than in taskfile.py (over its size budget); taskfile.py calls `check`.
"""

from __future__ import annotations

EXECUTORS = ("local", "slurm")


def check(word: str) -> str:
    """`local` or `slurm` (any case); ValueError saying what is accepted."""
    lowered = word.strip().lower()
    if lowered in EXECUTORS:
        return lowered
    import difflib  # only on the error path

    close = difflib.get_close_matches(lowered, EXECUTORS, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"expected local or slurm, got {word!r}{hint}")


def resolve(task_executor: str | None, default: str) -> str:
    """Where a task runs: its own `executor:`, else config.toml's `[executor] kind`."""
    return task_executor or default
