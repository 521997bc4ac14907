"""The in-task API at its public path: `from bantzd.worker import context` (SPEC section 5).

SPEC and the README promise `bantzd.worker.context()` to task code, so this import path stays;
the implementation lives in `bantzd.workers.taskapi`, beside the rest of what runs a task.
Nothing else belongs here: it is imported inside tasks and must stay as light as that module.
"""

from __future__ import annotations

from bantzd.workers.taskapi import Context, NotInTask, context

__all__ = ["Context", "NotInTask", "context"]
