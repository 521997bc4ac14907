"""The start decision with resources: machine throttle, start storms, cpus, memory, GPUs and
rate limits, as pure functions (scheduler.decide + resources.Admission, no files, no clock)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bantzd.config import Limit, Throttle, config_from_mapping
from bantzd.queue.taskfile import Resources
from bantzd.ratelimit import LimitState, LimitsView
from bantzd.supervisor.probes import Reading
from bantzd.supervisor.resources import (
    STORM_WINDOW,
    TOO_BIG,
    Admission,
    Held,
    unseen_cores,
)
from bantzd.supervisor.scheduler import GPU_NEVER, Candidate, Decision, decide

NOW = 1_800_000_000.0
GiB = 1 << 30
THROTTLE: Throttle = config_from_mapping({}).throttle  # max_load 1.5, 2GiB, 30%, 4GiB


def gpu(index: int, util: float | None = 0, free: int = 24 * GiB, total: int = 24 * GiB) -> dict:
    return {
        "index": index,
        "name": "NVIDIA GeForce RTX 4090",
        "util": util,
        "free_memory": free,
        "total_memory": total,
    }


def machine(
    load: float = 0.1, free: int = 32 * GiB, gpus: list[dict] | None = None, total: int = 64 * GiB
) -> Reading:
    return Reading(load, free, gpus or [], total)


def task(i: int, priority: int = 0, uses: dict[str, int] | None = None, **res: Any) -> Candidate:
    return Candidate(i, f"t{i}", priority=priority, resources=Resources(**res), uses=uses or {})


def run(
    cands: list[Candidate],
    reading: Reading,
    running: list[Held] = (),  # type: ignore[assignment]
    *,
    cores: int = 8,
    max_parallel: int = 20,
    throttle: Throttle = THROTTLE,
    limits: LimitsView | None = None,
    now: float = NOW,
) -> tuple[Decision, Admission]:
    admission = Admission(reading, throttle, running, cores=cores, now=now, limits=limits)
    decision = decide(
        cands, [], running=len(running), max_parallel=max_parallel, now=now, admit=admission
    )
    return decision, admission


# --- the machine throttle -------------------------------------------------------------------


def test_no_start_while_load_is_above_the_threshold_and_starts_resume_when_it_falls() -> None:
    cands = [task(1), task(2, cpus=2), task(3, gpus=0)]
    d, adm = run(cands, machine(load=3.9))
    assert d.start == []
    assert set(d.waiting.values()) == {"throttled: cpu load 3.9 > 1.5"}
    assert adm.throttled == "throttled: cpu load 3.9 > 1.5"
    assert d.transient_waits()  # `run --once` waits for the load to drop

    d, adm = run(cands, machine(load=0.4))
    assert d.start == [1, 2, 3]
    assert adm.throttled is None


def test_low_free_memory_throttles_every_start() -> None:
    d, adm = run([task(1)], machine(free=GiB))
    assert d.waiting == {1: "throttled: free memory 1 GiB < 2 GiB"}
    assert adm.throttled == d.waiting[1]


def test_just_at_the_threshold_still_starts() -> None:
    d, _ = run([task(1)], machine(load=1.5))
    assert d.start == [1]


# --- start storms ---------------------------------------------------------------------------


def test_unseen_load_fades_like_the_kernel_average() -> None:
    assert unseen_cores(2, 0) == 2
    assert unseen_cores(1, 60) == pytest.approx(math.exp(-1))
    assert unseen_cores(1, STORM_WINDOW) == 0
    assert unseen_cores(1, -5) == 1  # a clock step back counts as just started


def test_tasks_started_a_moment_ago_count_as_load() -> None:
    # 4 cores, the load average still reads 0.1 per core: seven tasks started 5 s ago are
    # 7 * e^(-5/60) = 6.4 cores the average does not show yet, so the next start waits.
    running = [Held(i, started=NOW - 5) for i in range(7)]
    d, adm = run([task(10)], machine(load=0.1), running, cores=4)
    assert d.waiting[10] == "throttled: cpu load 1.71 > 1.5 (counting 7 tasks just started)"
    assert adm.throttled == d.waiting[10]
    # Past the storm window the average is trusted alone.
    running = [Held(i, started=NOW - STORM_WINDOW) for i in range(7)]
    d, adm = run([task(10)], machine(load=0.1), running, cores=4)
    assert d.start == [10]


@dataclass
class Machine:
    """A simulated machine: `cores`, the kernel's 1-minute load average (updated every 5 s
    towards the number of runnable processes), tasks that each keep one core busy."""

    cores: int
    load1: float = 0.0
    running: dict[int, float] = field(default_factory=dict)  # task id -> started at
    peak_running: int = 0

    def tick(self, dt: float = 5.0) -> None:
        decay = math.exp(-dt / 60.0)
        self.load1 = self.load1 * decay + len(self.running) * (1 - decay)

    def reading(self) -> Reading:
        return Reading(round(self.load1 / self.cores, 3), 32 * GiB, [], 64 * GiB)


def simulate(cores: int, n: int, duration: float, *, storm_guard: bool = True) -> Machine:
    m = Machine(cores)
    queued = {i: task(i) for i in range(1, n + 1)}
    now = NOW
    first_tick_starts = None
    for _ in range(2000):
        for tid, started in list(m.running.items()):
            if now - started >= duration:
                del m.running[tid]
        held = [Held(t, started=s if storm_guard else None) for t, s in m.running.items()]
        d, _adm = run(list(queued.values()), m.reading(), held, cores=cores, now=now)
        for tid in d.start:
            del queued[tid]
            m.running[tid] = now
        if first_tick_starts is None:
            first_tick_starts = len(d.start)
        m.peak_running = max(m.peak_running, len(m.running))
        if not queued and not m.running:
            break
        m.tick()
        now += 5.0
    assert not queued, "every task eventually starts"
    m.first_tick_starts = first_tick_starts  # type: ignore[attr-defined]
    return m


def test_no_start_storm_twenty_core_heavy_tasks_under_max_parallel_20() -> None:
    """20 queued tasks that each load a core, max_parallel = 20, 8 cores, max_load 1.5: the
    load average reads near 0 for the first minute, yet starts stop once the tasks started
    would load the machine as much as [throttle] allows."""
    guarded = simulate(cores=8, n=20, duration=600)
    assert guarded.first_tick_starts < 20
    # 1.5 per core on 8 cores is 12 busy cores; the last start may land exactly on the line.
    assert guarded.peak_running <= math.floor(1.5 * 8) + 1

    # Forgetting the starts of earlier ticks, the next tick (load still low) starts the rest.
    unguarded = simulate(cores=8, n=20, duration=600, storm_guard=False)
    assert unguarded.peak_running == 20


def test_starts_resume_as_running_tasks_finish() -> None:
    m = simulate(cores=4, n=20, duration=120)
    assert m.peak_running <= math.floor(1.5 * 4) + 1


# --- cpus -----------------------------------------------------------------------------------


def test_running_tasks_cpus_add_up_to_at_most_the_cores() -> None:
    running = [Held(1, cpus=3, started=NOW - 600)]
    d, _ = run([task(2, cpus=2), task(3, cpus=1), task(4, cpus=1)], machine(), running, cores=4)
    assert d.start == [3]
    assert d.waiting == {2: "cpus: 2 wanted, 1 of 4 free", 4: "cpus: 1 wanted, 0 of 4 free"}
    assert d.transient_waits()


def test_tasks_without_cpus_reserve_none() -> None:
    running = [Held(1, started=NOW - 600), Held(2, started=NOW - 600)]
    d, _ = run([task(3, cpus=4)], machine(), running, cores=4)
    assert d.start == [3]


def test_more_cpus_than_the_machine_has_never_starts() -> None:
    d, _ = run([task(1, cpus=16)], machine(), cores=4)
    assert d.waiting == {1: f"{TOO_BIG}: 16 cpus wanted, it has 4"}
    assert not d.transient_waits()


# --- memory ---------------------------------------------------------------------------------


def test_memory_must_be_free_at_start() -> None:
    d, _ = run([task(1, memory=16 * GiB), task(2, memory=4 * GiB)], machine(free=8 * GiB))
    assert d.waiting == {1: "memory: 16GiB wanted, 8GiB free"}
    assert d.start == [2]


def test_memory_admitted_in_one_decision_is_not_given_twice() -> None:
    d, _ = run([task(1, memory=5 * GiB), task(2, memory=5 * GiB)], machine(free=8 * GiB))
    assert d.start == [1]
    assert d.waiting == {2: "memory: 5GiB wanted, 3GiB free (5GiB promised to other tasks)"}


def test_memory_promised_to_running_tasks_is_not_free() -> None:
    running = [Held(1, memory=6 * GiB, rss=1 * GiB, started=NOW - 600)]
    d, _ = run([task(2, memory=4 * GiB)], machine(free=8 * GiB), running)
    assert d.waiting == {2: "memory: 4GiB wanted, 3GiB free (5GiB promised to other tasks)"}
    running = [Held(1, memory=6 * GiB, rss=6 * GiB, started=NOW - 600)]
    d, _ = run([task(2, memory=4 * GiB)], machine(free=8 * GiB), running)
    assert d.start == [2]


def test_more_memory_than_the_machine_has_never_starts() -> None:
    d, _ = run([task(1, memory=128 * GiB)], machine(total=64 * GiB))
    assert d.waiting == {1: f"{TOO_BIG}: 128GiB memory wanted, it has 64GiB"}
    assert not d.transient_waits()


# --- GPUs -----------------------------------------------------------------------------------


def test_each_gpu_task_gets_its_own_gpus() -> None:
    gpus = [gpu(0), gpu(1), gpu(2), gpu(3)]
    cands = [task(i, gpus=1) for i in range(1, 7)]
    d, adm = run(cands, machine(gpus=gpus))
    assert d.start == [1, 2, 3, 4]
    assert sorted(i for got in adm.gpu_assignment.values() for i in got) == [0, 1, 2, 3]
    assert d.waiting[5] == "gpu: no GPU with 4GiB free (0: task 1, 1: task 2, 2: task 3, 3: task 4)"
    assert d.transient_waits()

    # Next tick: they run; the GPUs still read idle (nothing allocated yet) but are taken.
    running = [Held(t, gpus=tuple(g), started=NOW) for t, g in adm.gpu_assignment.items()]
    d, adm = run(cands[4:], machine(gpus=gpus), running, now=NOW + 5)
    assert d.start == [] and adm.gpu_assignment == {}


def test_busy_and_full_gpus_are_skipped() -> None:
    gpus = [gpu(0, util=98), gpu(1), gpu(2, free=GiB // 8), gpu(3)]
    d, adm = run([task(1, gpus=2, gpu_memory=20 * GiB), task(2, gpus=1)], machine(gpus=gpus))
    assert d.start == [1]
    assert adm.gpu_assignment == {1: [1, 3]}
    assert (
        d.waiting[2]
        == "gpu: no GPU with 4GiB free (0: 98% busy, 1: task 1, 2: 128MiB free, 3: task 1)"
    )


def test_gpu_memory_request_names_the_size() -> None:
    d, _ = run([task(1, gpus=1, gpu_memory=20 * GiB)], machine(gpus=[gpu(0, free=10 * GiB)]))
    assert d.waiting == {1: "gpu: no GPU with 20GiB free (0: 10GiB free)"}


def test_several_gpus_wanted_and_too_few_free() -> None:
    d, _ = run([task(1, gpus=3)], machine(gpus=[gpu(0), gpu(1, util=90), gpu(2)]))
    assert d.waiting == {1: "gpu: 3 GPUs with 4GiB free wanted, 2 found (1: 90% busy)"}


def test_a_gpu_without_utilisation_is_judged_on_memory() -> None:
    d, adm = run([task(1, gpus=1)], machine(gpus=[gpu(0, util=None)]))
    assert d.start == [1] and adm.gpu_assignment == {1: [0]}


def test_prefers_the_least_busy_gpu() -> None:
    gpus = [gpu(0, util=20), gpu(1, util=5, free=10 * GiB), gpu(2, util=5)]
    _, adm = run([task(1, gpus=1)], machine(gpus=gpus))
    assert adm.gpu_assignment == {1: [2]}


@pytest.mark.parametrize(
    ("gpus", "res", "reason"),
    [
        ([], {"gpus": 1}, GPU_NEVER),
        ([gpu(0)], {"gpus": 2}, f"{GPU_NEVER} for this task: 2 GPUs wanted, it has 1"),
        (
            [gpu(0), gpu(1)],
            {"gpus": 1, "gpu_memory": 80 * GiB},
            f"{GPU_NEVER} for this task: 80GiB wanted, the largest has 24GiB",
        ),
        (
            [gpu(0, total=80 * GiB), gpu(1)],
            {"gpus": 2, "gpu_memory": 40 * GiB},
            f"{GPU_NEVER} for this task: 40GiB each on 2 GPUs wanted, the largest has 80GiB",
        ),
    ],
)
def test_gpu_requests_the_machine_can_never_satisfy(gpus: list, res: dict, reason: str) -> None:
    d, _ = run([task(1, **res)], machine(gpus=gpus))
    assert d.waiting == {1: reason}
    assert not d.transient_waits()  # `run --once` does not wait for hardware


def test_cpu_tasks_are_never_blocked_by_waiting_gpu_tasks() -> None:
    cands = [task(1, priority=10, gpus=1), task(2), task(3, cpus=1)]
    d, _ = run(cands, machine(gpus=[gpu(0, util=100)]), max_parallel=2)
    assert d.start == [2, 3]
    assert d.waiting[1].startswith("gpu: no GPU with 4GiB free")


def test_tasks_asking_nothing_special_only_see_the_throttle() -> None:
    d, _ = run([task(i) for i in range(1, 6)], machine(free=3 * GiB), cores=2, max_parallel=3)
    assert d.start == [1, 2, 3]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 100), st.integers(0, 24)), min_size=0, max_size=6),
    st.lists(st.tuples(st.integers(1, 3), st.integers(0, 24)), min_size=1, max_size=12),
    st.integers(1, 4),
)
def test_a_gpu_is_never_given_to_two_tasks(
    gpu_specs: list[tuple[int, int]], asks: list[tuple[int, int]], ticks: int
) -> None:
    gpus = [gpu(i, util=u, free=f * GiB) for i, (u, f) in enumerate(gpu_specs)]
    held: list[Held] = []
    queued = [task(i + 1, gpus=n, gpu_memory=m * GiB or None) for i, (n, m) in enumerate(asks)]
    for tick in range(ticks):
        d, adm = run(queued, machine(gpus=gpus), held, now=NOW + 5 * tick)
        for tid in d.start:
            held.append(Held(tid, gpus=tuple(adm.gpu_assignment[tid]), started=NOW))
        queued = [c for c in queued if c.id not in d.start]
        taken = [i for h in held for i in h.gpus]
        assert len(taken) == len(set(taken))
        for h in held:
            assert len(h.gpus) == next(n for i, (n, _) in enumerate(asks) if i + 1 == h.task_id)


# --- rate limits in the decision ------------------------------------------------------------


def limits_view(**limits: Limit) -> LimitsView:
    return LimitsView(limits, {}, NOW)


def test_rate_limit_room_is_reserved_within_one_decision() -> None:
    view = limits_view(llm=Limit("llm", per_minute=None, per_hour=None, concurrent=1))
    cands = [task(1, uses={"llm": 1}), task(2, uses={"llm": 1}), task(3)]
    d, _ = run(cands, machine(), limits=view)
    assert d.start == [1, 3]
    assert d.waiting == {2: "rate limit llm: 1 of 1 in use"}
    assert d.transient_waits()


def test_a_back_off_holds_every_task_using_the_limit() -> None:
    states = {"llm": LimitState(backoff_until=NOW + 30)}
    view = LimitsView({"llm": Limit("llm", 50, None, None)}, states, NOW)
    d, _ = run(
        [task(1, uses={"llm": 1}), task(2, uses={"llm": 1}), task(3)], machine(), limits=view
    )
    assert d.start == [3]
    assert d.waiting[1] == d.waiting[2]
    assert d.waiting[1].startswith("rate limit llm: next at ")


def test_an_unknown_limit_is_not_a_transient_wait() -> None:
    d, _ = run([task(1, uses={"nope": 1})], machine(load=9), limits=limits_view())
    assert d.waiting == {1: "uses: no limit named nope in config.toml"}
    assert not d.transient_waits()
    d, _ = run([task(1, uses={"nope": 1})], machine())
    assert d.waiting == {1: "uses: no limit named nope in config.toml"}
