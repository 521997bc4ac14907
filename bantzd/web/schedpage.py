"""The Schedules page (SPEC 9 and 14): each schedule with its rule in words, zone, next
firing, last instance, paused, skipped firings, and its buttons.

The data is `bantzd schedules --json`'s (cli/schedules.py `schedule_objects`, through the
view's once-a-second cache); the buttons send `bantzd schedule OP NAME`'s control request
(cli/schedules.py `send_request`), so a click is that command. Removing asks first, on a
page of its own: a plain form, so the question needs no JavaScript.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bantzd.errors import EXIT_USAGE
from bantzd.paths import Home
from bantzd.units import format_duration
from bantzd.web.snapshot import HomeView, Snapshot

Context = dict[str, Any]
OPS = ("pause", "resume", "fire", "remove")
# How many of a schedule's skipped and missed firings the page lists (newest first).
SHOWN = 5


class NoSchedule(LookupError):
    """The page names a schedule that is not there."""


def when_text(iso_text: object, now: float) -> str | None:
    """`2026-12-03 23:00 +03:00 (in 8h 20m)`: the time as the schedule's zone has it, and
    how far off it is."""
    if not isinstance(iso_text, str) or not iso_text:
        return None
    try:
        value = datetime.fromisoformat(iso_text)
    except ValueError:
        return iso_text
    shown = value.strftime("%Y-%m-%d %H:%M") + (value.strftime(" %z") if value.tzinfo else "")
    if value.tzinfo is None:
        return shown
    delta = value.timestamp() - now
    if abs(delta) < 60:
        return f"{shown} (now)"
    ago = format_duration(abs(delta))
    return f"{shown} ({'in ' + ago if delta > 0 else ago + ' ago'})"


def schedule_row(obj: Mapping[str, Any], now: float) -> Context:
    """What the page shows of one `schedules --json` object."""
    skipped = list(obj.get("skipped") or [])
    missed = list(obj.get("missed") or [])
    return {
        "name": obj["name"],
        "error": obj.get("error"),
        "words": obj.get("words"),
        "tz": obj.get("tz"),
        "next": when_text(obj.get("next_fire"), now),
        "ended": obj.get("error") is None and not obj.get("next_fire"),
        "paused": bool(obj.get("paused")),
        "last_fired": when_text(obj.get("last_fired"), now),
        "last": obj.get("last_task"),
        "made": len(obj.get("instances") or []),
        "skipped": [_entry(e, now) for e in reversed(skipped[-SHOWN:])],
        "skipped_count": len(skipped),
        "missed": [_entry(e, now) for e in reversed(missed[-SHOWN:])],
        "missed_count": len(missed),
    }


def _entry(entry: object, now: float) -> Context:
    data = entry if isinstance(entry, dict) else {}
    return {
        "firing": when_text(data.get("firing"), now),
        "because": data.get("because"),
        "count": data.get("count"),
    }


def schedules(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    """The list; `?name=NAME` shows that schedule alone (where a task page links)."""
    name = params.get("name") or ""
    objs = view.schedules()
    chosen = [o for o in objs if not name or o["name"] == name]
    return {
        "rows": [schedule_row(o, snap.at) for o in chosen],
        "name": name,
        "total": len(objs),
    }


def confirm_remove(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    """The page that asks before a schedule is removed."""
    name = params.get("name") or ""
    obj = next((o for o in view.schedules() if o["name"] == name), None)
    if obj is None:
        raise NoSchedule(f"no schedule named {name!r}")
    return {"row": schedule_row(obj, snap.at)}


def perform(home: Home, fields: Mapping[str, str]) -> dict[str, Any]:
    """A schedule button's form (`op`, `schedule`, and `confirm=yes` for remove), sent as
    `bantzd schedule OP NAME` sends it; the reply `{ok, exit, message}`."""
    from bantzd.cli.schedules import send_request
    from bantzd.errors import BantzError

    op = fields.get("op", "")
    name = (fields.get("schedule") or "").strip()
    if op not in OPS:
        return {"ok": False, "exit": EXIT_USAGE, "message": f"unknown schedule action {op!r}"}
    if not name:
        return {"ok": False, "exit": EXIT_USAGE, "message": f"{op} needs a schedule"}
    if op == "remove" and fields.get("confirm") != "yes":
        return {
            "ok": False,
            "exit": EXIT_USAGE,
            "message": f"removing schedule {name} needs confirm=yes (the page asks first)",
        }
    try:
        return send_request(home, op, name)
    except BantzError as e:
        return {"ok": False, "exit": e.exit_code, "message": str(e)}
