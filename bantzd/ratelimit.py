"""Named rate limits (`[limits.NAME]` in config.toml), shared by every process of a home.

State lives in `home/limits.json`, replaced atomically under `home/limits.lock` (a filelock),
so the supervisor and every worker see the same counts and they survive restarts:

    {"limits": {"llm": {"takes": [t, ...], "held": {"12": 1}, "backoff_until": t}}}

- `takes`: one wall time per unit taken in the last hour (or minute, when the limit has no
  `per_hour`), for the sliding `per_minute` / `per_hour` windows (a blocking take, one per
  request, is stamped WINDOW_LEAD ahead: the request reaches the server after the take).
- `held`: units held for `concurrent`, by task id, so when a task ends the supervisor
  releases them whether or not its worker got to say goodbye (a crash, a SIGKILL).
  A task holds at most what it asked for at once: a task that started with `uses: {llm: 1}`
  and then calls `ctx.take("llm")` per request still holds one unit, not one per request.
  Units are held until the task ends; `take` outside a task checks `concurrent` but holds
  nothing (nobody would release it).
- `backoff_until`: after `ctx.backoff(NAME, seconds)` (an HTTP 429), no unit of the limit
  is given to anyone before then.

The decisions are pure functions of (limit, state, now) (`blocked`, `take_into`), used by
`LimitsView`, the in-memory snapshot the supervisor judges a whole tick with, and by
`RateLimits`, which does the locked read-modify-write.

Reasons: `rate limit NAME: next at HH:MM:SS` while a window or a back-off holds, `rate limit
NAME: 2 of 2 in use` while `concurrent` is full (both clear with time: scheduler treats them
as transient). A name that config.toml does not define, or a request larger than the limit
itself (`uses: {llm: 5}` with `per_minute = 3`), can never start; those reasons start with
`uses:` so that `run --once` does not wait for them.

Imported by workers (`ctx.take`): keep it free of click and rich.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bantzd.clock import Clock, SystemClock, hms
from bantzd.config import Limit
from bantzd.errors import BantzError
from bantzd.paths import Home

log = logging.getLogger("bantzd")

STATE_FILE = "limits.json"
LOCK_FILE = "limits.lock"
RATE_LIMIT = "rate limit"
# (Limit field, window in seconds, words for reasons)
WINDOWS = (("per_minute", 60.0, "per minute"), ("per_hour", 3600.0, "per hour"))
LOCK_TIMEOUT = 30.0
# Polling of a blocked `take`: never longer than this, so a released `concurrent` unit or a
# lifted back-off is noticed soon; never shorter than MIN_POLL, to spare the lock.
MAX_POLL = 1.0
MIN_POLL = 0.05
# A blocking take (`acquire`: one per request) is recorded this far in the future, so its
# unit ages out a window after the request *reaches the server*, not after the take: a
# server counts requests as they arrive, and the time from take to arrival (the fsync of
# limits.json, a thread's turn, a new connection) varies. Any window of the server then
# holds at most the limit, for requests that arrive within WINDOW_LEAD of their take;
# 1 s a minute costs 1.7 % of the limit.
WINDOW_LEAD = 1.0


class LimitError(BantzError):
    """A take that can never succeed (unknown limit, more units than the limit allows)."""


class LimitTimeout(BantzError):
    """A blocking take gave up after its timeout."""


def unknown_limit(name: str) -> str:
    return f"uses: no limit named {name} in config.toml"


@dataclass
class LimitState:
    """One limit's shared state (see the module docstring)."""

    takes: list[float] = field(default_factory=list)
    held: dict[str, int] = field(default_factory=dict)
    backoff_until: float = 0.0

    @classmethod
    def from_json(cls, obj: Any) -> LimitState:
        if not isinstance(obj, dict):
            return cls()
        takes = sorted(float(t) for t in obj.get("takes") or [] if isinstance(t, int | float))
        held = {
            str(k): int(v)
            for k, v in (obj.get("held") or {}).items()
            if isinstance(v, int) and not isinstance(v, bool) and v > 0
        }
        until = obj.get("backoff_until")
        return cls(takes, held, float(until) if isinstance(until, int | float) else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "takes": [round(t, 3) for t in self.takes],
            "held": dict(self.held),
            "backoff_until": round(self.backoff_until, 3),
        }

    def copy(self) -> LimitState:
        return LimitState(list(self.takes), dict(self.held), self.backoff_until)


# --- the pure decisions ---------------------------------------------------------------------


def problem(limits: Mapping[str, Limit], name: str, n: int) -> str | None:
    """Why `n` units of `name` can never be taken at once, or None."""
    limit = limits.get(name)
    if limit is None:
        return unknown_limit(name)
    for key, _span, words in WINDOWS:
        cap = getattr(limit, key)
        if cap is not None and n > cap:
            return f"uses: {n} units of {name} wanted at once, [limits.{name}] allows {cap} {words}"
    if limit.concurrent is not None and n > limit.concurrent:
        return (
            f"uses: {n} units of {name} wanted at once, "
            f"[limits.{name}] allows {limit.concurrent} concurrent"
        )
    return None


def blocked(
    limit: Limit, state: LimitState, n: int, now: float, task_id: int | None = None
) -> tuple[str | None, float]:
    """(reason, seconds) when `n` units cannot be taken at `now`, else (None, 0).

    `seconds` is how long until the time-based part (windows, back-off) clears; 0 when only
    `concurrent` blocks, since nobody knows when a running task ends.
    """
    until = state.backoff_until if state.backoff_until > now else 0.0
    for key, span, _words in WINDOWS:
        cap = getattr(limit, key)
        if cap is None:
            continue
        recent = [t for t in state.takes if t > now - span]
        over = len(recent) + n - cap
        if over > 0 and recent:  # (no `recent` and still over: n > cap, see `problem`)
            # The window has room once the `over` oldest units in it have aged out.
            until = max(until, recent[min(over, len(recent)) - 1] + span)
    if until > now:
        why = f"{RATE_LIMIT} {limit.name}: next at {hms(math.ceil(until))}"
        if until == state.backoff_until:
            why += " (backing off)"
        return why, until - now
    if limit.concurrent is not None:
        in_use = sum(state.held.values())
        mine = state.held.get(str(task_id), 0) if task_id is not None else 0
        if in_use + max(0, n - mine) > limit.concurrent:
            return f"{RATE_LIMIT} {limit.name}: {in_use} of {limit.concurrent} in use", 0.0
    return None, 0.0


def take_into(limit: Limit, state: LimitState, n: int, now: float, task_id: int | None) -> None:
    """Record `n` units taken at `now` (the caller checked `blocked` first)."""
    if limit.per_minute is not None or limit.per_hour is not None:
        state.takes.extend([now] * n)
    if limit.concurrent is not None and task_id is not None:
        key = str(task_id)
        state.held[key] = max(state.held.get(key, 0), n)


def _prune(limit: Limit | None, state: LimitState, now: float) -> None:
    span = 3600.0 if limit is None or limit.per_hour is not None else 60.0
    state.takes = [t for t in state.takes if t > now - span]
    if state.backoff_until <= now:
        state.backoff_until = 0.0


class LimitsView:
    """A snapshot of every limit, judged and reserved in memory for one supervisor decision.

    `check` and `reserve` are what `resources.Admission` calls; what a decision reserves
    here is only taken for real by `RateLimits.take` when the task starts.
    """

    def __init__(
        self, limits: Mapping[str, Limit], states: Mapping[str, LimitState], now: float
    ) -> None:
        self.limits = limits
        self.states = {name: s.copy() for name, s in states.items()}
        self.now = now

    def problem(self, uses: Mapping[str, int]) -> str | None:
        """Why these uses can never be granted (see `problem`), or None."""
        for name, n in uses.items():
            why = problem(self.limits, name, n)
            if why:
                return why
        return None

    def check(self, uses: Mapping[str, int], task_id: int | None = None) -> str | None:
        """The wait reason for taking `uses` now, or None when every limit has room."""
        why = self.problem(uses)
        if why:
            return why
        for name, n in uses.items():
            why, _ = blocked(self.limits[name], self._state(name), n, self.now, task_id)
            if why:
                return why
        return None

    def reserve(self, uses: Mapping[str, int], task_id: int) -> None:
        """Count `uses` as taken by `task_id` for the rest of this decision."""
        for name, n in uses.items():
            if name in self.limits:
                take_into(self.limits[name], self._state(name), n, self.now, task_id)

    def _state(self, name: str) -> LimitState:
        return self.states.setdefault(name, LimitState())


# --- the shared file ------------------------------------------------------------------------


class RateLimits:
    """The rate limits of one home: locked read-modify-write of home/limits.json.

    Every method takes `now` (wall time) for tests; left out, the clock says.
    """

    def __init__(
        self,
        home: Home | str | os.PathLike[str],
        limits: Mapping[str, Limit],
        clock: Clock | None = None,
    ) -> None:
        # A bantzd.paths.Home or the home folder itself (a Path's own `.root` is "/").
        root = home.root if isinstance(home, Home) else Path(home)
        self.path = root / STATE_FILE
        self.limits = limits
        self.clock = clock or SystemClock()
        self._lock_path = root / LOCK_FILE
        self._lock: Any = None

    # reading ---------------------------------------------------------------------------

    def view(self, now: float | None = None) -> LimitsView:
        """A snapshot for one decision (one locked read)."""
        with self._locked():
            states = self._load()
        return LimitsView(self.limits, states, self._now(now))

    def check(self, uses: Mapping[str, int], now: float | None = None) -> str | None:
        """The wait reason for taking `uses` now, or None (nothing is taken)."""
        return self.view(now).check(uses)

    def wait_time(self, name: str, n: int = 1, now: float | None = None) -> float:
        """Seconds until windows and back-off let `n` units of `name` go (0: now, or only
        `concurrent` blocks, which no clock predicts). Raises LimitError for a request that
        can never succeed."""
        why = problem(self.limits, name, n)
        if why:
            raise LimitError(why)
        now = self._now(now)
        with self._locked():
            state = self._load().get(name, LimitState())
        return blocked(self.limits[name], state, n, now)[1]

    # changing --------------------------------------------------------------------------

    def take(
        self, uses: Mapping[str, int], task_id: int | None, now: float | None = None
    ) -> str | None:
        """Take `uses` for `task_id` if every limit has room (all or nothing) and return
        None; else take nothing and return the wait reason.

        The supervisor calls this as it starts a task that a `LimitsView` admitted: a worker
        may have taken the room in between, and then the task just waits another tick.
        """
        return self._take(uses, task_id, self._now(now))[0]

    def release(self, task_id: int) -> None:
        """Give back every `concurrent` unit `task_id` holds (when the task ends, any way)."""
        self._change(lambda states: _drop_holders(states, lambda key: key == str(task_id)))

    def keep_only(self, task_ids: Iterable[int]) -> None:
        """Release the units of every task not in `task_ids` (the running ones) at startup:
        tasks that ended while no supervisor was there to release them."""
        keep = {str(t) for t in task_ids}
        self._change(lambda states: _drop_holders(states, lambda key: key not in keep))

    def backoff(self, name: str, seconds: float, now: float | None = None) -> None:
        """Give no unit of `name` to anyone for `seconds` (after an HTTP 429)."""
        if name not in self.limits:
            raise LimitError(unknown_limit(name))
        until = self._now(now) + max(0.0, float(seconds))

        def extend(states: dict[str, LimitState]) -> bool:
            state = states.setdefault(name, LimitState())
            if until <= state.backoff_until:
                return False
            state.backoff_until = until
            return True

        self._change(extend)

    def acquire(
        self,
        name: str,
        n: int = 1,
        task_id: int | None = None,
        *,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Take `n` units of `name`, waiting as long as it takes (`ctx.take`, `bantzd take`).

        Polls with the lock released in between, sleeping until the window or back-off is
        due (at most MAX_POLL, with a little jitter so waiters do not move in step). The take
        is stamped WINDOW_LEAD ahead (see there). Safe from several threads of one process
        (the lock is a per-thread flock), as an `llm:` task's requests in flight take.
        Raises LimitError when the take can never succeed, LimitTimeout after `timeout`.
        """
        why = problem(self.limits, name, n)
        if why:
            raise LimitError(why)
        start = self.clock.monotonic()
        while True:
            why, wait = self._take({name: n}, task_id, None, lead=WINDOW_LEAD)
            if why is None:
                return
            pause = min(MAX_POLL, max(MIN_POLL, wait)) * random.uniform(1.0, 1.1)
            if timeout is not None and self.clock.monotonic() - start + pause > timeout:
                raise LimitTimeout(f"{why}; gave up after {timeout:g}s")
            sleep(pause)

    # the file ----------------------------------------------------------------------------

    def _take(
        self,
        uses: Mapping[str, int],
        task_id: int | None,
        now: float | None,
        lead: float = 0.0,
    ) -> tuple[str | None, float]:
        """`now` None: the clock is read once the lock is held, so a take recorded is never
        earlier than it happened (waiting for the lock can take a while when many requests
        in flight take at once). The units taken are stamped `lead` seconds after `now`."""
        for name, n in uses.items():
            why = problem(self.limits, name, n)
            if why:
                return why, 0.0
        with self._locked():
            if now is None:
                now = self.clock.time()
            states = self._load()
            for name, n in uses.items():
                why, wait = blocked(
                    self.limits[name], states.get(name, LimitState()), n, now, task_id
                )
                if why:
                    return why, wait
            for name, n in uses.items():
                state = states.setdefault(name, LimitState())
                take_into(self.limits[name], state, n, now + lead, task_id)
            self._save(states, now)
        return None, 0.0

    def _change(self, fn: Callable[[dict[str, LimitState]], bool]) -> None:
        with self._locked():
            states = self._load()
            if fn(states):
                self._save(states, self.clock.time())

    def _now(self, now: float | None) -> float:
        return self.clock.time() if now is None else now

    def _locked(self) -> Any:
        if self._lock is None:
            from filelock import FileLock

            self._lock_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock = FileLock(str(self._lock_path), timeout=LOCK_TIMEOUT)
        return self._lock

    def _load(self) -> dict[str, LimitState]:
        from bantzd.queue.atomic import read_json

        try:
            data = read_json(self.path, default={})
        except (OSError, ValueError) as e:
            # Only a damaged disk gets here (writes are atomic); forgetting recent takes
            # costs at most one window of over-use, refusing every task costs the night.
            log.warning("%s unreadable (%s): rate limits start from zero", self.path, e)
            data = {}
        raw = data.get("limits") if isinstance(data, dict) else None
        if not isinstance(raw, dict):
            return {}
        return {str(name): LimitState.from_json(obj) for name, obj in raw.items()}

    def _save(self, states: dict[str, LimitState], now: float) -> None:
        from bantzd.queue.atomic import write_json_atomic

        out = {}
        for name, state in sorted(states.items()):
            _prune(self.limits.get(name), state, now)
            if state.takes or state.held or state.backoff_until:
                out[name] = state.to_json()
        write_json_atomic(self.path, {"limits": out}, compact=True)


def _drop_holders(states: dict[str, LimitState], drop: Callable[[str], bool]) -> bool:
    changed = False
    for state in states.values():
        for key in [k for k in state.held if drop(k)]:
            del state.held[key]
            changed = True
    return changed


def open_limits(home: str | os.PathLike[str]) -> RateLimits:
    """The RateLimits of `home`, with the limits its config.toml defines (workers, CLI)."""
    from bantzd.config import load_config

    root = Path(home)
    return RateLimits(root, load_config(root / "config.toml").limits)
