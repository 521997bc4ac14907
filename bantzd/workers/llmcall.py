"""One chat call to an OpenAI-compatible endpoint, the way an overnight task needs it.

The `openai` client does the HTTP; its own retries are off (`max_retries=0`) because what to
do after a failure is bantzd's business:

- **429 / 503** (the server is busy or we are over its rate): back the task's `uses:` limits
  off for every task of the home, for the server's `Retry-After` when it gives one, else an
  exponential pause; then try again. Other tasks sharing the limit wait out the same pause
  (the scheduler will not start them, their `ctx.take` blocks). Up to RATE_LIMITED_TRIES in a
  row, so a server that says 429 all night still ends the attempt with a reason.
- **404** for a model: the model is not there; go on to the next of `fallback_models` and
  remember for the rest of the attempt.
- **A timeout, a dropped connection, a 5xx other than 503**: try again a few times
  (ERROR_TRIES) with a short pause, then give up: the attempt fails with the reason and the
  task's own `retries:` decide what happens next.
- **Anything else** (400, 401, 403, 422): retrying cannot help; fail at once, saying what the
  server said.

Before every request one unit of each of the task's `uses:` limits is taken (`ctx.take`), so
`per_minute` / `per_hour` count requests, not tasks.

The decisions take their clock and sleep as arguments, so the tests can drive them; the
end-to-end tests run the real client against tests/llm_server.py.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bantzd.errors import BantzError

RATE_LIMITED_TRIES = 30
ERROR_TRIES = 4
MAX_RETRY_AFTER = 900.0  # seconds: a server asking for more is asked again after this
BACKOFF_CAP = 120.0
ERROR_PAUSE = 0.5  # first pause after a timeout or a dropped connection; then doubled


class CallFailed(BantzError):
    """The call cannot succeed in this attempt; the message is the attempt's failure reason."""


@dataclass(frozen=True)
class Reply:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    # The tool calls of a reply to a request with `tools` (`agent:` tasks), as the server
    # sent them: {"id", "name", "arguments"} with arguments the raw text (maybe not JSON).
    tool_calls: tuple[dict[str, Any], ...] = ()


@dataclass
class Caller:
    """Makes chat calls for one attempt: limits, back-off, retries, model fallback.

    `take(name)` and `backoff(name, seconds)` are the task's rate-limit hooks (ctx.take,
    ctx.backoff); `on_reply` sees every successful reply (token accounting).
    """

    client: Any  # openai.OpenAI
    models: Sequence[str]
    uses: Mapping[str, int] = field(default_factory=dict)
    take: Callable[[str], None] = lambda name: None
    backoff: Callable[[str, float], None] = lambda name, seconds: None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.time
    on_reply: Callable[[Reply], None] = lambda reply: None
    on_notice: Callable[[str], None] = lambda text: None
    max_tokens: int | None = None
    temperature: float | None = None
    timeout: float | None = None  # only for messages: the client enforces it
    unavailable: dict[str, str] = field(default_factory=dict)
    # After a 429 with no `uses:` limit to hold: no request of this Caller (every thread of
    # the task's requests in flight) goes out before this wall time.
    quiet_until: float = 0.0

    @property
    def model(self) -> str | None:
        """The model calls go to now: the first one the server has not said is missing."""
        for name in self.models:
            if name not in self.unavailable:
                return name
        return None

    def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        what: str = "request",
        tools: list[dict[str, Any]] | None = None,
    ) -> Reply:
        """One reply; `tools` (OpenAI function schemas) lets the model answer with calls."""
        import openai

        rate_limited = 0
        errors = 0
        while True:
            model = self.model
            if model is None:
                raise CallFailed(self._no_model())
            for name in self.uses:
                self.take(name)
            quiet = self.quiet_until - self.clock()
            if quiet > 0:
                self.sleep(quiet)
            kwargs: dict[str, Any] = {"model": model, "messages": messages}
            if self.max_tokens is not None:
                kwargs["max_tokens"] = self.max_tokens
            if self.temperature is not None:
                kwargs["temperature"] = self.temperature
            if tools:
                kwargs["tools"] = tools
            try:
                response = self.client.chat.completions.create(**kwargs)
            except openai.NotFoundError as e:
                self.unavailable[model] = _server_message(e) or "not found"
                nxt = self.model
                self.on_notice(
                    f"model {model} is not available ({self.unavailable[model]})"
                    + (f"; falling back to {nxt}" if nxt else "")
                )
                continue
            except openai.APIStatusError as e:
                status = e.status_code
                if status in (429, 503):
                    rate_limited += 1
                    if rate_limited > RATE_LIMITED_TRIES:
                        raise CallFailed(
                            f"{what}: the server kept answering {status} "
                            f"({rate_limited - 1} tries in a row): {_server_message(e)}"
                        ) from None
                    wait = retry_after(e.response, self.clock()) or pause(rate_limited)
                    self.on_notice(f"HTTP {status} from the server; waiting {wait:.1f}s")
                    self._back_off(wait)
                    continue
                if status >= 500:
                    errors += 1
                    if errors >= ERROR_TRIES:
                        raise CallFailed(
                            f"{what}: HTTP {status} from the server {errors} times: "
                            f"{_server_message(e)}"
                        ) from None
                    self.on_notice(f"HTTP {status} from the server; trying again")
                    self.sleep(pause(errors, ERROR_PAUSE))
                    continue
                raise CallFailed(_refused(e, model)) from None
            except openai.APIConnectionError as e:  # APITimeoutError included
                errors += 1
                if isinstance(e, openai.APITimeoutError):
                    how = "got no answer within [llm] timeout"
                    if self.timeout:
                        how += f" ({self.timeout:g}s)"
                else:
                    how = f"failed: {_cause(e)}"
                if errors >= ERROR_TRIES:
                    raise CallFailed(f"{what} {how}, {errors} times in a row") from None
                self.on_notice(f"{what} {how}; trying again")
                self.sleep(pause(errors, ERROR_PAUSE))
                continue
            reply = _reply(response, model)
            self.on_reply(reply)
            return reply

    def _back_off(self, seconds: float) -> None:
        """Hold the task's limits for everyone; with no limits to hold, hold this task's
        other requests (`quiet_until`) and wait here."""
        if self.uses:
            for name in self.uses:
                self.backoff(name, seconds)
            # The next take() waits until the back-off ends.
        else:
            self.quiet_until = max(self.quiet_until, self.clock() + seconds)
            self.sleep(seconds)

    def _no_model(self) -> str:
        tried = ", ".join(f"{m} ({why})" for m, why in self.unavailable.items())
        return (
            f"no model available: the server said 404 for {tried}; check [llm] model and "
            "fallback_models (GET <base_url>/models lists what the server has) and that "
            "base_url ends in /v1"
        )


def pause(n: int, base: float = 1.0) -> float:
    """The n-th pause (n >= 1): base, 2 base, 4 base ... seconds, capped, with jitter so
    tasks that failed together do not come back together."""
    return min(BACKOFF_CAP, base * 2.0 ** (n - 1)) * random.uniform(1.0, 1.25)


def retry_after(response: Any, now: float) -> float | None:
    """Seconds the server asked us to wait (`Retry-After`: seconds or an HTTP date), capped;
    None when it did not say (or said something unreadable)."""
    headers = getattr(response, "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if seconds != seconds:  # NaN
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def _reply(response: Any, model: str) -> Reply:
    choice = response.choices[0] if response.choices else None
    text = (choice.message.content if choice is not None and choice.message else None) or ""
    usage = getattr(response, "usage", None)
    calls = getattr(choice.message, "tool_calls", None) if choice is not None else None
    return Reply(
        text=text.strip(),
        model=getattr(response, "model", None) or model,
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        finish_reason=getattr(choice, "finish_reason", None),
        tool_calls=tuple(_tool_call(c) for c in calls or ()),
    )


def _tool_call(call: Any) -> dict[str, Any]:
    """One tool call as plain data, whatever shape the server gave it (a server that
    leaves out the id or the name still gets its call recorded; the agent says what is
    wrong with it to the model)."""
    function = getattr(call, "function", None)
    name = getattr(function, "name", None)
    arguments = getattr(function, "arguments", None)
    if arguments is not None and not isinstance(arguments, str):
        import json

        arguments = json.dumps(arguments)  # some servers send an object, not its text
    return {
        "id": str(getattr(call, "id", None) or ""),
        "name": str(name or ""),
        "arguments": arguments if arguments is not None else "",
    }


def _server_message(e: Any) -> str:
    """The `error.message` of an OpenAI-style error body, else the start of the body."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:200]
        if isinstance(inner, str):
            return inner[:200]
    response = getattr(e, "response", None)
    text = getattr(response, "text", "") if response is not None else ""
    return (text or str(e)).strip()[:200]


def _refused(e: Any, model: str) -> str:
    status = e.status_code
    hint = ""
    if status == 401:
        hint = " (is the API key right? it is read from the variable [llm] api_key_env names)"
    elif status == 403:
        hint = " (the key may lack access to this model)"
    said = _server_message(e)
    return f"the server refused the request for model {model}: HTTP {status}: {said}{hint}"


def _cause(e: BaseException) -> str:
    """The useful part of a connection error: the innermost cause's message (the client's
    own text is only "Connection error.")."""
    inner: BaseException = e
    while inner.__cause__ is not None and inner.__cause__ is not inner:
        inner = inner.__cause__
    text = str(inner).strip() or type(inner).__name__
    return text if inner is e else f"connection error ({text})"
