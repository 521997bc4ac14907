"""Several requests of an `llm:` task in flight at once, each answer recorded as it arrives.

A local server with 8 slots (llama.cpp `--parallel 8`, vLLM) does an eighth of what it can
while a task sends one request at a time. `in_flight` keeps up to `width` calls going in
threads (a chat call is I/O: the thread waits on the socket, the GIL is free) and hands each
result to `record` in the calling thread, in the order they finish. So everything that
changes the task's files (the answer log, the in-memory state) stays in one thread, and an
answer is durable as soon as it is in: a crash with requests in flight loses only those,
and the next attempt sends them again, and nothing else.

How many at once is `width_for`: the task's `concurrency:` (else `[llm] concurrency`), at
most the units the task holds of every `concurrent` limit it `uses:`, so the limits that
several tasks share keep holding (the `per_minute` / `per_hour` windows are kept by the
take before each request, whichever thread makes it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")


def width_for(concurrency: int, uses: Mapping[str, int], limits: Mapping[str, Any]) -> int:
    """Requests in flight at once: `concurrency`, at most the units held (`uses:`) of each
    limit with `concurrent` (`limits`: config.toml's `[limits.NAME]`, bantzd.config.Limit)."""
    width = max(1, int(concurrency))
    for name, units in uses.items():
        limit = limits.get(name)
        if limit is not None and getattr(limit, "concurrent", None) is not None:
            width = min(width, max(1, int(units)))
    return width


def in_flight(
    jobs: Iterable[Job],
    call: Callable[[Job], Result],
    record: Callable[[Job, Result], None],
    width: int,
) -> None:
    """`call(job)` for every job, up to `width` at once; `record(job, result)` in this
    thread as each finishes (any order).

    `jobs` is read lazily, in this thread, one job per free slot (so a job may do work as it
    is made, such as reading its document). When a call raises, no new job is started; the
    calls still in flight are waited for and the ones that succeed are recorded (they are
    paid for), then the first error is raised. An error from `record` (a full disk) ends it
    at once, after the calls in flight return, unrecorded. With `width` 1 this is a plain
    loop.
    """
    if width <= 1:
        for job in jobs:
            record(job, call(job))
        return
    source = iter(jobs)
    error: BaseException | None = None
    pending: dict[Future[Result], Job] = {}
    with ThreadPoolExecutor(max_workers=width, thread_name_prefix="bantzd-llm") as pool:

        def fill() -> None:
            while error is None and len(pending) < width:
                try:
                    job = next(source)
                except StopIteration:
                    return
                pending[pool.submit(call, job)] = job

        fill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                failure = future.exception()
                if failure is not None:
                    error = error or failure
                    continue
                # The freed slot goes to the next request first: it travels while this
                # answer is made durable (a crash in between sends this one again).
                fill()
                record(job, future.result())
            fill()
    if error is not None:
        raise error
