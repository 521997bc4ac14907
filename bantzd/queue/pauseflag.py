"""The global pause flag (`bantzd pause`) as supervisor.json and the journal say it.

Read by the supervisor (supervisor/control.py, which also writes it) and by `bantzd
status`, which should not import the supervisor's control machinery (task files, YAML) to
print one word.
"""

from __future__ import annotations

from bantzd.paths import Home
from bantzd.queue.atomic import read_json
from bantzd.queue.journal import read_journal


def read_pause_flag(home: Home) -> tuple[bool, str | None]:
    """The global pause flag (`bantzd pause`) and what was wrong with supervisor.json.

    A missing file means not paused. A damaged one (torn by a power cut, edited by hand)
    is not a reason to stop: the flag is taken from the last `paused`/`resumed` line of the
    journal, else it is off; the second value says so, naming the file and the fix.
    """
    path = home.supervisor_state
    try:
        data = read_json(path, default={})
    except (OSError, ValueError) as e:
        data, why = None, f"cannot be read ({getattr(e, 'strerror', None) or e})"
    else:
        why = None if isinstance(data, dict) else "does not hold a JSON object"
        if isinstance(data, dict) and not isinstance(data.get("paused", False), bool):
            data, why = None, "holds a `paused` that is not true or false"
    if why is None:
        return bool(data.get("paused")), None  # type: ignore[union-attr]
    paused = journal_pause_flag(home)
    said = "paused" if paused else "not paused"
    source = "as the journal last recorded" if paused is not None else "by default"
    return bool(paused), (
        f"{path} {why}; treating the queue as {said} ({source}). The supervisor rewrites it "
        f"at its next start; `bantzd pause` or `bantzd resume` sets it too"
    )


def journal_pause_flag(home: Home) -> bool | None:
    """The pause flag the journal's last `paused`/`resumed` event says; None if none."""
    flag = None
    for event in read_journal(home.journal):
        if event.get("event") == "paused":
            flag = True
        elif event.get("event") == "resumed":
            flag = False
    return flag
