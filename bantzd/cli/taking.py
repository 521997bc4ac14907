"""`submit` and `add` give the id at once: the file they placed is taken in by the lock
holder through a `take` control request (supervisor/takeone.py), and they print the answer.

The file is in the spool before the request is sent, so nothing depends on the answer: a
supervisor that does not answer in time (stopped, busy), or a command killed while it
waits, leaves a file that the next scan takes in as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from bantzd.errors import BantzError
from bantzd.paths import Home


@dataclass(frozen=True)
class Placed:
    """A file `submit`/`add` wrote into the spool: where, its (st_dev, st_ino), which a
    rename into tasks/ keeps, and a time from just before it was written."""

    path: Path
    inode: tuple[int, int]
    since: float


@dataclass(frozen=True)
class TakeAnswer:
    """What became of a placed file: a task (`id`), a rejection (`problem`, `rejected`: the
    file's path in spool/rejected/), or nothing yet (`pending`, with why in `message`)."""

    message: str
    id: int | None = None
    name: str | None = None
    problem: str | None = None
    rejected: str | None = None
    failed: bool = False
    schedule: str | None = None  # the file was a schedule, installed under this name

    @property
    def pending(self) -> bool:
        return self.id is None and self.problem is None and not self.failed and not self.schedule


def take_now(home: Home, placed: Placed) -> TakeAnswer:
    """Ask the lock holder to take `placed` in; never raises for the lock holder's trouble
    (the file is submitted either way)."""
    from bantzd.supervisor.control import REPLY_WAIT, send

    # Taken in here when no supervisor runs: the intake's log lines (`rejected ...`) would
    # reach the terminal through logging's last resort, repeating what this command says.
    logger = logging.getLogger("bantzd")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    try:
        reply = send(
            home,
            "take",
            None,
            file=placed.path.name,
            inode=list(placed.inode),
            since=placed.since,
        )
    except BantzError as e:
        return TakeAnswer(f"it is not taken in now: {e}")
    message = str(reply.get("message", ""))
    task_id = reply.get("id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):
        return TakeAnswer(message, id=task_id, name=str(reply.get("name", "")))
    if isinstance(reply.get("schedule"), str):
        return TakeAnswer(message, schedule=reply["schedule"])
    if isinstance(reply.get("problem"), str):
        return TakeAnswer(
            message, problem=reply["problem"], rejected=str(reply.get("rejected") or "") or None
        )
    if reply.get("pending"):  # the lock holder left it in the spool, and says why
        return TakeAnswer(message)
    if reply.get("ok"):  # send's own answer when no reply came in time
        return TakeAnswer(
            f"the supervisor has not taken it in yet (no answer within {REPLY_WAIT:g}s); "
            "it will take it in from the spool"
        )
    return TakeAnswer(message, failed=True)


def pending_text(placed: Placed, answer: TakeAnswer) -> str:
    """The line for a file left in the spool: it is safe there, and why it has no id yet."""
    return f"in the spool as {placed.path.name}; {answer.message}"


def rejected_text(home: Home, answer: TakeAnswer) -> str:
    """The problem, indented, and the command that resubmits the fixed file."""
    from bantzd.queue.spool import resubmit_command

    lines = ["  " + line for line in (answer.problem or "").splitlines()]
    if answer.rejected:
        lines.append(f"  fix it, then: {resubmit_command(home, Path(answer.rejected))}")
    return "\n".join(lines)
