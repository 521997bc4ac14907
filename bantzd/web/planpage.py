"""The Tonight page (SPEC 14): `bantzd plan`'s forecast, with its gantt drawn in the page.

The forecast is `supervisor/forecast.py`'s, the one `bantzd plan` prints: the real
supervisor run on a copy of the queue with a fake clock. That copies the home and
simulates the night, so it is never part of a snapshot or an event stream: the page has
no live parts, and a `PlanCache` computes a forecast when a page asks for it, keeps it for
`PLAN_FRESH` seconds per end of night, and runs one forecast at a time. Pages are built in
Starlette's worker threads, so the event loop never waits for it. The gantt is what
`bantzd plan --mermaid` prints (cli/plan.py `mermaid_text`), rendered as the reports'
Mermaid is.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import Markup

from bantzd.errors import BantzError
from bantzd.paths import Home
from bantzd.supervisor.forecast import Forecast
from bantzd.supervisor.probes import Reading, read_machine
from bantzd.web.mdview import render_markdown
from bantzd.web.snapshot import HomeView, Snapshot

Context = dict[str, Any]
DEFAULT_UNTIL = "07:00"  # as `bantzd plan`
# A forecast is reused for this long (per end of night) before a page load makes another.
PLAN_FRESH = 60.0
# How many ends of night are kept (any `?until=` makes one; the oldest goes first).
KEPT = 8


class BadUntil(ValueError):
    """`?until=` is not a time (the page says so, with the form to try again)."""


@dataclass(frozen=True)
class Planned:
    """One forecast and when it was made."""

    forecast: Forecast
    made: float  # wall time
    took: float  # seconds the forecast took


class PlanCache:
    """Forecasts of one home, each made at most once per `fresh` seconds per end of night;
    thread-safe, and only one forecast runs at a time (the others wait for it)."""

    def __init__(
        self,
        home: Home,
        *,
        probe: Callable[[], Reading] = read_machine,
        monotonic: Callable[[], float] = time.monotonic,
        fresh: float = PLAN_FRESH,
    ) -> None:
        self.home = home
        self._probe = probe
        self._monotonic = monotonic
        self._fresh = fresh
        self._lock = threading.Lock()  # held while a forecast runs
        self._kept: OrderedDict[float, tuple[float, Planned]] = OrderedDict()
        self.runs = 0  # forecasts made (for tests and the benchmark)

    def get(self, until: float) -> Planned:
        """The forecast until `until` (epoch seconds), made now unless a fresh one is kept."""
        with self._lock:
            kept = self._kept.get(until)
            if kept is not None and self._monotonic() - kept[0] < self._fresh:
                return kept[1]
            planned = self._make(until)
            self._kept[until] = (self._monotonic(), planned)
            self._kept.move_to_end(until)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
            return planned

    def _make(self, until: float) -> Planned:
        from bantzd.config import load_config
        from bantzd.supervisor.forecast import forecast, quiet_config

        self.runs += 1
        started = time.perf_counter()
        config = quiet_config(load_config(self.home.config))
        now = time.time()
        result = forecast(self.home, config, now, until, self._probe())
        return Planned(result, now, time.perf_counter() - started)


_CACHES: weakref.WeakKeyDictionary[HomeView, PlanCache] = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()


def plan_cache(view: HomeView) -> PlanCache:
    """The view's forecast cache (one per dashboard)."""
    with _CACHES_LOCK:
        cache = _CACHES.get(view)
        if cache is None:
            cache = _CACHES[view] = PlanCache(view.home, probe=view.probe)
        return cache


def resolve(text: str) -> float:
    """`?until=`'s text as `bantzd plan --until` reads it; epoch seconds."""
    from bantzd.supervisor.timing import local_now, resolve_until

    try:
        return resolve_until(text, local_now()).timestamp()
    except ValueError as e:
        raise BadUntil(f"until: {e}") from e


def _hm(ts: float | None, now: float) -> str | None:
    if ts is None:
        return None
    local = datetime.fromtimestamp(ts).astimezone()
    day = datetime.fromtimestamp(now).astimezone().date()
    return local.strftime("%H:%M") if local.date() == day else local.strftime("%a %H:%M")


def plan_context(result: Forecast, snap: Snapshot) -> Context:
    """What the page shows of a forecast: its runs in start order, what waits and why, and
    the gantt as `bantzd plan --mermaid` has it."""
    from bantzd.cli.plan import mermaid_text

    runs = sorted(result.runs, key=lambda r: (r.start, r.task_id))
    rows = [
        {
            "id": r.task_id,
            "known": snap.task(r.task_id) is not None,  # not yet taken in: no page
            "name": result.names.get(r.task_id, "?"),
            "start": _hm(r.start, result.now),
            "end": _hm(r.end, result.now),
            "stopped": r.stopped,
            "estimate": result.estimates.get(r.task_id),
        }
        for r in runs
    ]
    waiting = [
        {
            "id": task_id,
            "known": snap.task(task_id) is not None,
            "name": result.names.get(task_id, "?"),
            "reason": why,
            "estimate": result.estimates.get(task_id),
        }
        for task_id, why in sorted(result.waiting.items())
    ]
    gantt = render_markdown(mermaid_text(result), snap.mask) if runs else ""
    return {"runs": rows, "waiting": waiting, "gantt": Markup(gantt)}


def tonight(view: HomeView, snap: Snapshot, params: Mapping[str, str]) -> Context:
    """The page: the --until chooser, then the forecast (or why there is none)."""
    text = (params.get("until") or "").strip() or DEFAULT_UNTIL
    context: Context = {"until_text": text, "error": None, "runs": [], "waiting": []}
    try:
        until = resolve(text)
        planned = plan_cache(view).get(until)
    except (BadUntil, BantzError) as e:
        context.update(error=str(e), status_code=400 if isinstance(e, BadUntil) else 500)
        return context
    result = planned.forecast
    context.update(plan_context(result, snap))
    context.update(
        planned_at=planned.made,
        took=f"{planned.took:.2f}s",
        until=datetime.fromtimestamp(result.until).astimezone().strftime("%a %Y-%m-%d %H:%M"),
        fresh=int(PLAN_FRESH),
    )
    return context
