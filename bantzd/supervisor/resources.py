"""May this task start now? Machine throttle, cpus, memory, GPUs and rate limits: pure.

`Admission` is the `admit` hook of `scheduler.decide`, built fresh each tick from one probe
reading, what the running tasks hold and a snapshot of the rate limits. It touches no file,
process or clock, so tests drive it with hand-made readings (STYLE 2). Each call answers for
one task that would otherwise start: a wait reason (SPEC section 4 wording), or None after
reserving what the task takes, so the next task in the same decision sees it taken.

Rules, in the order they are checked:

1. Requests this machine can never satisfy (more GPUs or GPU memory than it has, more cpus
   or memory than it has in all, an unknown or too small rate limit) wait with a reason that
   is not transient (scheduler.GPU_NEVER, `too big for this machine: ...`, `uses: ...`), so
   `run --once` does not wait for them forever.
2. The machine throttle, for every task: the 1-minute load per core must be at most
   `max_load` and free memory at least `min_free_memory` ([throttle]).
   Start storms: the load average needs minutes to show a new process (the kernel's average
   moves 1 - e^(-t/60) of the way in t seconds), so a loop that only looked at it would start
   every queued task before the first one shows. A task started `age` seconds ago is
   therefore counted as `cpus * e^(-age/60)` cores of load the average does not show yet
   (cpus 1 when the task did not say), for `STORM_WINDOW` = 180 s (three time constants:
   95% shows by then). That is exactly the part the average is missing for a task that
   keeps its cores busy, and an overestimate that fades within minutes for one that does not.
   No separate hysteresis is needed: a start raises the counted load at once.
3. `cpus`: the declared cpus of the running tasks plus this one are at most the cores.
   Tasks that declare no cpus reserve none (the throttle covers them).
4. `memory`: that much is free at start, where memory promised to running tasks that they
   have not used yet (declared minus their current tree RSS), or to tasks admitted earlier
   in this decision, does not count as free.
5. `gpus` / `gpu_memory`: that many GPUs, each under `gpu_max_util` percent busy, with at
   least max(gpu_memory, gpu_min_free_memory) free, and not given to another running task
   (or to a task admitted earlier in this decision). A GPU is never shared between tasks.
   A GPU that reports no utilisation (MIG) is judged on its memory alone.
6. Rate limits (`uses:`), against the snapshot (ratelimit.LimitsView).

A task that asks for nothing special is only subject to rule 2 (and 6 if it `uses:` a limit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from bantzd.config import Throttle
from bantzd.ratelimit import unknown_limit
from bantzd.supervisor.probes import Reading, throttle_reason
from bantzd.supervisor.scheduler import GPU_NEVER, Candidate
from bantzd.units import format_size

# The kernel's 1-minute load average is an exponential average with this time constant.
LOAD_TAU = 60.0
# How long a start is counted as load the average does not show yet (3 * LOAD_TAU: 95%).
STORM_WINDOW = 180.0
# The prefix of requests bigger than the machine (not transient: no waiting clears them).
TOO_BIG = "too big for this machine"


@dataclass(frozen=True)
class Held:
    """What one running task holds. `memory` is its declared limit, `rss` its process tree's
    resident memory when measured (memwatch.tree_rss), `started` the wall time it started."""

    task_id: int
    cpus: float | None = None
    memory: int | None = None
    rss: int | None = None
    gpus: tuple[int, ...] = ()
    started: float | None = None


class LimitsCheck(Protocol):
    """What Admission needs from a rate-limit snapshot (ratelimit.LimitsView)."""

    def problem(self, uses: Any) -> str | None: ...

    def check(self, uses: Any, task_id: int | None = None) -> str | None: ...

    def reserve(self, uses: Any, task_id: int) -> None: ...


def unseen_cores(cpus: float, age: float) -> float:
    """Cores of load a task started `age` seconds ago adds that the load average lacks."""
    if age < 0:
        age = 0.0
    if age >= STORM_WINDOW:
        return 0.0
    return cpus * math.exp(-age / LOAD_TAU)


def size(n: int) -> str:
    """Sizes in reasons, written as in task files: `20GiB`, `1.5GiB`, `512MiB`."""
    return format_size(n).replace(" ", "")


class Admission:
    """The `admit` hook of one decision: `decision = decide(..., admit=Admission(...))`.

    After the decision, `gpu_assignment` maps each started task that asked for GPUs to the
    indices it got (for CUDA_VISIBLE_DEVICES), and `throttled` says whether the machine
    throttle holds starts (`throttled: cpu load 3.9 > 1.5`), or None.
    """

    def __init__(
        self,
        reading: Reading,
        throttle: Throttle,
        running: Iterable[Held],
        *,
        cores: int,
        now: float,
        limits: LimitsCheck | None = None,
    ) -> None:
        self.reading = reading
        self.throttle = throttle
        self.cores = max(1, cores)
        self.now = now
        self.limits = limits
        self.gpu_assignment: dict[int, list[int]] = {}
        held = list(running)
        self._cpus_used = sum(h.cpus or 0.0 for h in held)
        self._memory_promised = sum(
            max(0, h.memory - (h.rss or 0)) for h in held if h.memory is not None
        )
        self._gpus_taken: dict[int, int] = {i: h.task_id for h in held for i in h.gpus}
        self._unseen = 0.0  # cores
        self._recent = 0
        for h in held:
            if h.started is not None:
                extra = unseen_cores(h.cpus or 1.0, now - h.started)
                if extra > 0:
                    self._unseen += extra
                    self._recent += 1

    @property
    def throttled(self) -> str | None:
        """The machine-level wait reason every task gets now, or None."""
        why = throttle_reason(
            self.reading,
            self.throttle.max_load,
            self.throttle.min_free_memory,
            unseen_load=self._unseen / self.cores,
            just_started=self._recent,
        )
        return f"throttled: {why}" if why else None

    def __call__(self, cand: Candidate) -> str | None:
        if cand.remote:
            return self._limits_only(cand)  # Slurm places it: only the rate limits are ours
        res = cand.resources
        cpus = getattr(res, "cpus", None) or None
        memory = getattr(res, "memory", None) or None
        gpus = getattr(res, "gpus", 0) or 0
        gpu_memory = getattr(res, "gpu_memory", None)
        if gpu_memory and not gpus:
            gpus = 1
        gpu_need = max(gpu_memory or 0, self.throttle.gpu_min_free_memory)

        why = self._never(cpus, memory, gpus, gpu_need)
        if why is None and cand.uses:
            why = self.limits.problem(cand.uses) if self.limits else _no_limits(cand.uses)
        why = why or self.throttled
        if why is None and cpus is not None:
            why = self._cpus(cpus)
        if why is None and memory is not None:
            why = self._memory(memory)
        picked: list[int] = []
        if why is None and gpus:
            picked, why = self._gpus(gpus, gpu_need)
        if why is None and cand.uses and self.limits is not None:
            why = self.limits.check(cand.uses, cand.id)
        if why is not None:
            return why

        # Admitted: reserve what it takes for the rest of this decision.
        self._cpus_used += cpus or 0.0
        self._memory_promised += memory or 0
        self._unseen += unseen_cores(cpus or 1.0, 0.0)
        self._recent += 1
        if picked:
            self.gpu_assignment[cand.id] = picked
            self._gpus_taken.update(dict.fromkeys(picked, cand.id))
        if cand.uses and self.limits is not None:
            self.limits.reserve(cand.uses, cand.id)
        return None

    def _limits_only(self, cand: Candidate) -> str | None:
        if not cand.uses:
            return None
        if self.limits is None:
            return _no_limits(cand.uses)
        why = self.limits.problem(cand.uses) or self.limits.check(cand.uses, cand.id)
        if why is None:
            self.limits.reserve(cand.uses, cand.id)
        return why

    # the rules -------------------------------------------------------------------------

    def _never(self, cpus: float | None, memory: int | None, gpus: int, need: int) -> str | None:
        if cpus is not None and cpus > self.cores:
            return f"{TOO_BIG}: {cpus:g} cpus wanted, it has {self.cores}"
        total = self.reading.total_memory
        if memory is not None and total and memory > total:
            return f"{TOO_BIG}: {size(memory)} memory wanted, it has {size(total)}"
        if not gpus:
            return None
        all_gpus = self.reading.gpus
        if not all_gpus:
            return GPU_NEVER
        if len(all_gpus) < gpus:
            return f"{GPU_NEVER} for this task: {gpus} GPUs wanted, it has {len(all_gpus)}"
        big = [g for g in all_gpus if g["total_memory"] >= need]
        if len(big) < gpus:
            largest = max(g["total_memory"] for g in all_gpus)
            what = f"{size(need)} each on {gpus} GPUs" if gpus > 1 else size(need)
            return f"{GPU_NEVER} for this task: {what} wanted, the largest has {size(largest)}"
        return None

    def _cpus(self, cpus: float) -> str | None:
        free = self.cores - self._cpus_used
        if cpus > free + 1e-9:
            return f"cpus: {cpus:g} wanted, {max(0.0, free):g} of {self.cores} free"
        return None

    def _memory(self, memory: int) -> str | None:
        free = self.reading.free_memory - self._memory_promised
        if memory > free:
            why = f"memory: {size(memory)} wanted, {size(max(0, free))} free"
            if self._memory_promised:
                why += f" ({size(self._memory_promised)} promised to other tasks)"
            return why
        return None

    def _gpus(self, wanted: int, need: int) -> tuple[list[int], str | None]:
        usable = []
        busy: list[str] = []
        max_util = self.throttle.gpu_max_util
        for g in self.reading.gpus:
            index, util = g["index"], g.get("util")
            if index in self._gpus_taken:
                busy.append(f"{index}: task {self._gpus_taken[index]}")
            elif util is not None and util > max_util:
                busy.append(f"{index}: {util:g}% busy")
            elif g["free_memory"] < need:
                busy.append(f"{index}: {size(g['free_memory'])} free")
            else:
                usable.append(g)
        if len(usable) < wanted:
            head = (
                f"no GPU with {size(need)} free"
                if wanted == 1
                else f"{wanted} GPUs with {size(need)} free wanted, {len(usable)} found"
            )
            return [], f"gpu: {head} ({', '.join(busy)})" if busy else f"gpu: {head}"
        # The least busy first, then the most free memory, then the lowest index.
        usable.sort(key=lambda g: (g.get("util") or 0, -g["free_memory"], g["index"]))
        return sorted(g["index"] for g in usable[:wanted]), None


def _no_limits(uses: Any) -> str:
    return unknown_limit(next(iter(uses)))
