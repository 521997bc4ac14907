"""A small OpenAI-compatible server on 127.0.0.1, for the tests and for trying `llm:` tasks
without a model.

It answers `GET /v1/models` and `POST /v1/chat/completions` (not streamed) with short,
deterministic text, and counts tokens the way a real server reports them (`usage`), so the
real `openai` client and bantzd's worker run unchanged against it. Switches, set by the
tests between requests:

- `fail_next(n, status=429, retry_after=2)`: the next n chat requests get that status
  (429 and 503 with a `Retry-After` header when given);
- `drop_next(n)`: the next n chat requests are answered by closing the connection;
- `delay`: seconds every answer waits (a slow server; past the client's timeout, a timeout);
- `models`: the model names that exist; any other gets 404 `model_not_found`;
- `hold(doc)`: requests about that document wait until `release(doc)` (to kill a run at a
  known point);
- `slots`: how many requests it works on at once (llama.cpp `--parallel N`); the others wait
  for a slot, as a real server queues them. None: no limit;
- `per_minute`: a rate limit of its own, kept the way a hosted API keeps it, on a sliding
  60-second window (`window`) of the requests it accepted, by their arrival: one more gets
  429 with a `Retry-After`, counted in `rate_limited`.

`open` is how many chat requests it holds right now (arrived, not yet answered) and
`most_open` the most at any moment, so the tests see how many a worker has in flight.

Every request is logged (`requests`), with the document it was about: the worker names each
document in a line `Document: NAME` (and `(part i of n)` for a chunk), and the final call
that combines the partial answers says `Partial answers`.

Run it by hand: `python tests/llm_server.py --port 8080`, then point `[llm] base_url` at
`http://127.0.0.1:8080/v1` (or `bantzd demo --llm http://127.0.0.1:8080/v1`).
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DOC_LINE = re.compile(
    r"^Document: (?P<doc>.+?)(?: \(part (?P<part>\d+) of (?P<parts>\d+)\))?$", re.M
)
COMBINE_MARK = "Partial answers"


@dataclass
class Request:
    """One chat request as the server saw it."""

    model: str
    doc: str | None  # the document a map call was about
    part: int | None
    combine: bool  # the final call that combines partial answers
    status: int  # what the server answered (0: connection dropped)
    at: float = field(default_factory=time.time)
    max_tokens: int | None = None
    user: str = ""
    prompt_tokens: int = 0  # the usage the answer reported (0 until answered)
    completion_tokens: int = 0
    answered_at: float | None = None  # when the answer went out (a 200 that got a slot)


class FakeLLM:
    """The server's state and switches; `start()` serves it on a free port of 127.0.0.1."""

    handler: type[BaseHTTPRequestHandler]  # set below the class: _Handler

    def __init__(self, models: tuple[str, ...] = ("local",), delay: float = 0.0) -> None:
        self.models = set(models)
        self.delay = delay
        self.requests: list[Request] = []
        self._actions: deque[tuple[str, int, float | None]] = deque()
        self._holds: dict[str, threading.Event] = {}
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.slots: int | None = None
        self._busy = 0  # slots in use
        self.per_minute: int | None = None
        self.window = 60.0
        self.accepted: deque[float] = deque()  # arrivals inside the window (per_minute)
        self.rate_limited = 0
        self.open = 0
        self.most_open = 0

    # switches ---------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 429, retry_after: float | None = 2) -> None:
        with self._cond:
            self._actions.extend([("status", status, retry_after)] * n)

    def drop_next(self, n: int) -> None:
        with self._cond:
            self._actions.extend([("drop", 0, None)] * n)

    def hold(self, doc: str) -> None:
        with self._cond:
            self._holds[doc] = threading.Event()

    def release(self, doc: str) -> None:
        with self._cond:
            event = self._holds.pop(doc, None)
        if event is not None:
            event.set()

    def release_all(self) -> None:
        with self._cond:
            events = list(self._holds.values())
            self._holds.clear()
        for event in events:
            event.set()

    # what it saw ------------------------------------------------------------------------

    def count(self, doc: str, *, status: int | None = None) -> int:
        """Requests about `doc` (answered with `status`, when given)."""
        with self._cond:
            return sum(
                1 for r in self.requests if r.doc == doc and (status is None or r.status == status)
            )

    def per_doc(self) -> Counter[str]:
        with self._cond:
            return Counter(r.doc for r in self.requests if r.doc is not None)

    def seen(self) -> list[Request]:
        with self._cond:
            return list(self.requests)

    def wait_for(self, pred: Any, timeout: float = 30.0) -> None:
        """Block until `pred(self)` holds (re-checked on every request), or raise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the LLM server never saw it; requests: {self.requests}")
                self._cond.wait(min(left, 0.2))

    # serving ----------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        handler = type("Handler", (self.handler,), {"llm": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def stop(self) -> None:
        self.release_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # the answers ------------------------------------------------------------------------

    def _log(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()

    def _next_action(self) -> tuple[str, int, float | None] | None:
        with self._cond:
            return self._actions.popleft() if self._actions else None

    def _over_rate(self, now: float) -> float | None:
        """None when a request arriving at `now` is within `per_minute` (and counts it);
        else the seconds until the window has room."""
        with self._cond:
            if self.per_minute is None:
                return None
            while self.accepted and self.accepted[0] <= now - self.window:
                self.accepted.popleft()
            if len(self.accepted) >= self.per_minute:
                self.rate_limited += 1
                return self.accepted[0] + self.window - now
            self.accepted.append(now)
            return None

    def _enter(self) -> None:
        with self._cond:
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self._cond.notify_all()
            while self.slots is not None and self._busy >= self.slots:
                self._cond.wait()
            self._busy += 1

    def _leave(self, request: Request) -> None:
        with self._cond:
            self.open -= 1
            self._busy -= 1
            request.answered_at = time.time()
            self._cond.notify_all()

    def _hold_for(self, doc: str | None) -> threading.Event | None:
        with self._cond:
            return self._holds.get(doc) if doc is not None else None


def reply_text(model: str, user: str) -> str:
    """What the fake model says: short, deterministic, and traceable to its input."""
    found = DOC_LINE.search(user)
    if COMBINE_MARK in user:
        docs = re.findall(r"^### (.+)$", user, re.M)
        return f"[{model}] Combined answer from {len(docs)} partial answers: " + "; ".join(docs)
    if found:
        body = user[found.end() :].strip()
        words = " ".join(body.split()[:8])
        return f"[{model}] Summary of {found['doc']}: {words}"
    return f"[{model}] Answer to: {' '.join(user.split()[:12])}"


class _Handler(BaseHTTPRequestHandler):
    llm: FakeLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as two writes: without this, Nagle's algorithm and the
        # client's delayed ACK add 40 ms to every answer.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 0, "owned_by": "bantzd-tests"}
                for m in sorted(self.llm.models)
            ]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "body is not JSON", "type": "invalid_request"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        user = "\n".join(
            str(m.get("content", ""))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        )
        found = DOC_LINE.search(user)
        combine = COMBINE_MARK in user
        doc = found["doc"] if found and not combine else None
        part = int(found["part"]) if found and found["part"] and not combine else None
        req = Request(model, doc, part, combine, 200, max_tokens=body.get("max_tokens"), user=user)

        action = self.llm._next_action()
        if action is not None and action[0] == "drop":
            req.status = 0
            self.llm._log(req)
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if action is not None:
            _, status, retry_after = action
            req.status = status
            self.llm._log(req)
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            kind = "rate_limit_exceeded" if status == 429 else "server_busy"
            self._json(status, {"error": {"message": f"{kind} (test)", "type": kind}}, headers)
            return
        if model not in self.llm.models:
            req.status = 404
            self.llm._log(req)
            error = {
                "message": f"The model `{model}` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            }
            self._json(404, {"error": error})
            return
        wait = self.llm._over_rate(req.at)
        if wait is not None:
            req.status = 429
            self.llm._log(req)
            error = {"message": "rate_limit_exceeded (per_minute)", "type": "rate_limit_exceeded"}
            self._json(429, {"error": error}, {"Retry-After": f"{max(wait, 0.001):.3f}"})
            return
        self.llm._log(req)
        self.llm._enter()
        try:
            self._answer(req, model, body, messages, user)
        finally:
            self.llm._leave(req)

    def _answer(
        self, req: Request, model: str, body: dict[str, Any], messages: list[Any], user: str
    ) -> None:
        gate = self.llm._hold_for(req.doc)
        if gate is not None:
            gate.wait(120)
        if self.llm.delay:
            time.sleep(self.llm.delay)
        text = reply_text(model, user)
        finish = "stop"
        max_tokens = body.get("max_tokens")
        if isinstance(max_tokens, int) and len(text) > max_tokens * 4:
            text, finish = text[: max_tokens * 4], "length"
        prompt_chars = sum(len(str(m.get("content", ""))) for m in messages if isinstance(m, dict))
        usage = {
            "prompt_tokens": max(1, prompt_chars // 4),
            "completion_tokens": max(1, len(text) // 4),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        req.prompt_tokens, req.completion_tokens = (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        self._json(
            200,
            {
                "id": f"chatcmpl-{len(self.llm.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": usage,
            },
        )

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout)


FakeLLM.handler = _Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--model", action="append", help="a model name it knows (repeatable; default: local)"
    )
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--slots", type=int, help="requests worked on at once (default: any)")
    parser.add_argument("--per-minute", type=int, help="answer 429 past this many a minute")
    args = parser.parse_args()
    server = FakeLLM(tuple(args.model or ["local"]), delay=args.delay)
    server.slots, server.per_minute = args.slots, args.per_minute
    url = server.start(args.port)
    print(f"OpenAI-compatible test server at {url} (models: {', '.join(sorted(server.models))})")
    print("set [llm] base_url to that in config.toml; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
