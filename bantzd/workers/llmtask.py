"""What `llm:` and `agent:` tasks share around the chat call: the client and the Caller made
from config.toml's `[llm]`, tokens summed into tokens.json, and rate-limit waits shown in
`bantzd status`. One implementation, so both kinds count, wait and fall back alike.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from bantzd.errors import BantzError
from bantzd.queue.atomic import read_json, write_json_atomic
from bantzd.workers.llmcall import Caller, Reply
from bantzd.workers.taskapi import Context


class SetupProblem(BantzError):
    """The task cannot reach its model as configured (no openai package, a bad config)."""


class Tokens:
    """Prompt and completion tokens of the whole task, kept in tokens.json across attempts
    (the supervisor copies the file into state.json). Safe to call from the threads of the
    requests in flight: an atomic write goes through one temp file per process."""

    def __init__(self, ctx: Context) -> None:
        self.path = ctx.paths.tokens
        self._lock = threading.Lock()
        data = read_json(self.path, default=None)
        self.counts = {"prompt": 0, "completion": 0}
        if isinstance(data, dict):
            for key in self.counts:
                value = data.get(key)
                if isinstance(value, int) and value >= 0:
                    self.counts[key] = value

    @property
    def total(self) -> int:
        return self.counts["prompt"] + self.counts["completion"]

    def count(self, reply: Reply) -> None:
        with self._lock:
            self.counts["prompt"] += reply.prompt_tokens
            self.counts["completion"] += reply.completion_tokens
            write_json_atomic(self.path, self.counts, compact=True)


class LimitTaker:
    """`Caller.take`: one unit of a limit for the next request. A wait longer than a moment
    is shown in `bantzd status` (a per_hour limit can hold a task for a long time), then the
    task's own progress message comes back. Called from the threads of the requests in
    flight too: progress.json is written by one of them at a time."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.shown: tuple[float, str] = (0.0, "")
        self._lock = threading.Lock()
        self._waiting = 0  # requests waiting for a unit longer than a moment

    def progress(self, fraction: float, message: str) -> None:
        with self._lock:
            self.shown = (fraction, message)
            if not self._waiting:
                self.ctx.progress(fraction, message)

    def _show(self, message: str | None, waiting: int) -> None:
        with self._lock:
            self._waiting += waiting
            fraction, own = self.shown
            if message is not None:
                self.ctx.progress(fraction, message)
            elif not self._waiting:
                self.ctx.progress(fraction, own)

    def __call__(self, name: str) -> None:
        from bantzd.ratelimit import LimitTimeout

        try:
            self.ctx.take(name, timeout=1.0)
            return
        except LimitTimeout:
            pass
        wait = self.ctx.limit_wait(name)
        if wait > 0:
            until = time.strftime("%H:%M:%S", time.localtime(time.time() + wait))
            why = f"waiting for rate limit {name} until {until}"
        else:
            why = f"waiting for rate limit {name} (every unit in use)"
        self._show(why, +1)
        try:
            self.ctx.take(name)
        finally:
            self._show(None, -1)


def openai_client(llm: Any) -> Any:
    """The `openai` client for `[llm]`, its own retries off (the Caller decides)."""
    try:
        import openai
    except ImportError:
        raise SetupProblem(
            "llm: and agent: tasks need the openai package: pip install 'bantzd[llm]'"
        ) from None
    api_key = os.environ.get(llm.api_key_env) if llm.api_key_env else None
    # Local servers (llama.cpp, vLLM, Ollama) need no key, but the client insists on one.
    return openai.OpenAI(
        base_url=llm.base_url,
        api_key=api_key or "not-needed",
        timeout=llm.timeout,
        max_retries=0,
    )


def make_caller(
    ctx: Context,
    llm: Any,  # config.LlmConfig
    *,
    model: str | None,
    uses: Mapping[str, int],
    on_notice: Callable[[str], None],
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> tuple[Caller, Sequence[str]]:
    """The Caller for this task on `[llm]` (model, then fallback_models), and that list."""
    client = openai_client(llm)
    models = list(dict.fromkeys([str(model or llm.model), *llm.fallback_models]))
    caller = Caller(
        client=client,
        models=models,
        uses=dict(uses),
        backoff=ctx.backoff,
        on_notice=on_notice,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout=llm.timeout,
    )
    return caller, models
