"""Where a task's attempts ran (a Slurm job's node), in the words status, show, list and the
report use: `vm`, `job 12 on vm`, `1: vm1, 2: vm2`. Nothing for a task that ran locally."""

from __future__ import annotations

from typing import Any

from bantzd.queue.task import TaskState


def nodes(state: TaskState) -> list[tuple[int, str]]:
    """(attempt, node) for each attempt that ran on a Slurm node: the attempt log's, and
    for the latest attempt the job's own (a short job can end between two polls, before
    the log heard of its node)."""
    out = []
    for entry in state.attempt_log:
        if isinstance(entry, dict) and isinstance(entry.get("node"), str) and entry["node"]:
            attempt = entry.get("attempt")
            out.append((attempt if isinstance(attempt, int) else 0, entry["node"]))
    slurm = state.slurm if isinstance(state.slurm, dict) else {}
    node = slurm.get("node")
    if isinstance(node, str) and node and all(a != state.attempts for a, _ in out):
        out.append((state.attempts, node))
    return out


def nodes_text(state: TaskState) -> str | None:
    """`vm` when every attempt ran there, else `1: vm1, 2: vm2`; None: none ran on a node."""
    found = nodes(state)
    if not found:
        return None
    if len({n for _, n in found}) == 1:
        return found[0][1]
    return ", ".join(f"{a}: {n}" for a, n in found)


def job_text(slurm: Any) -> str | None:
    """`job 12 on vm (RUNNING)`, `job 13 (PENDING: Resources)`, from state.json's `slurm`."""
    if not isinstance(slurm, dict) or not isinstance(slurm.get("job_id"), int):
        return None
    text = f"job {slurm['job_id']}"
    if slurm.get("node"):
        text += f" on {slurm['node']}"
    state, reason = slurm.get("state") or "", slurm.get("reason") or ""
    if state:
        text += f" ({state}: {reason})" if reason else f" ({state})"
    return text


def running_where(state: TaskState) -> str | None:
    """For a running task: `on vm`, or the job's wait (`slurm: pending (Resources)`)."""
    if state.reason and state.reason.startswith("slurm:"):
        return state.reason
    slurm = state.slurm if isinstance(state.slurm, dict) else None
    if slurm and slurm.get("node"):
        return f"on {slurm['node']}"
    return None
