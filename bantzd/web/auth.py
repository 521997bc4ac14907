"""Who may talk to the dashboard: the token, the cookie, the same-origin check (SPEC 14).

`bantzd serve` makes a random token at start, prints it in the URL and keeps it in
`HOME/serve.token` (0600). Every request must carry it: as `?token=` (the printed link; the
answer sets a cookie and sends the browser on to the same address without the token, so it
stays out of the history and of Referer headers), as the cookie after that, or as an
`Authorization: Bearer` header (scripts, `curl`). A change is a POST, and a POST must also
come from the dashboard's own origin: its Origin header names this server, or it carries
the token in an Authorization header, which a page of another site cannot send without a
CORS preflight this server never grants.

The middleware is plain ASGI, so the event streams pass through it unbuffered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from bantzd.paths import Home
from bantzd.queue.atomic import write_bytes_atomic

TOKEN_FILE = "serve.token"
TOKEN_BYTES = 24
# Sent with every answer: no framing, no sniffing, no Referer to other sites, scripts from
# this server only. ("no-referrer" would make Chromium send `Origin: null` with our own
# form posts, which the same-origin check then refuses.)
# Mermaid draws with inline styles, hence style-src 'unsafe-inline'; no inline script runs.
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
        b"form-action 'self'; base-uri 'none'; object-src 'none'",
    ),
    (b"cache-control", b"no-store"),
)
SAFE_METHODS = frozenset({"GET", "HEAD"})

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    """A fresh random token (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_path(home: Home) -> Path:
    return home.root / TOKEN_FILE


def write_token(home: Home, token: str) -> Path:
    """Keep `token` in HOME/serve.token, mode 0600, replaced atomically."""
    home.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = token_path(home)
    write_bytes_atomic(path, (token + "\n").encode())
    return path


def remove_token(home: Home, token: str) -> None:
    """Remove serve.token when it still holds `token` (a newer server's is left alone)."""
    path = token_path(home)
    try:
        if path.read_text().strip() == token:
            path.unlink()
    except OSError:
        pass


def cookie_name(home: Home) -> str:
    """The cookie's name, one per home: two dashboards on one host keep their own."""
    digest = hashlib.sha256(str(home.root).encode()).hexdigest()[:10]
    return f"bantzd_{digest}"


def same_token(given: str | None, token: str) -> bool:
    """Whether `given` is the token (in constant time)."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def origin_ok(origin: str | None, host: str | None, scheme: str = "http") -> bool:
    """Whether an Origin header names the server the request was sent to (`Host`)."""
    if not origin or not host:
        return False
    return origin.rstrip("/").lower() == f"{scheme}://{host}".lower()


class TokenGate:
    """ASGI middleware: refuses a request without the token, and a cross-origin POST."""

    def __init__(self, app: ASGIApp, *, token: str, cookie: str) -> None:
        self.app = app
        self.token = token
        self.cookie = cookie

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        from_query = next((v for k, v in query if k == "token"), None)
        bearer = _bearer(headers.get("authorization"))
        from_cookie = _cookie(headers.get("cookie"), self.cookie)
        method = scope["method"]

        if from_query is not None and method in SAFE_METHODS:
            if not same_token(from_query, self.token):
                await _refuse(send, 401, "wrong token")
                return
            # The printed link: set the cookie, then drop the token from the address.
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = quote(scope.get("path", "/")) + (f"?{rest}" if rest else "")
            await _redirect(send, location, self._set_cookie())
            return
        if not (same_token(bearer, self.token) or same_token(from_cookie, self.token)):
            await _refuse(
                send,
                401,
                "this dashboard needs its token: open the link `bantzd serve` printed "
                "(the token is also in serve.token in the bantzd home)",
            )
            return
        if method not in SAFE_METHODS and not same_token(bearer, self.token):
            scheme = scope.get("scheme", "http")
            if not origin_ok(headers.get("origin"), headers.get("host"), scheme):
                await _refuse(send, 403, "refused: this change did not come from the dashboard")
                return
        await self.app(scope, receive, _with_headers(send))

    def _set_cookie(self) -> bytes:
        return f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict".encode()


def _headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        name = key.decode("latin-1").lower()
        text = value.decode("latin-1")
        found[name] = f"{found[name]}; {text}" if name == "cookie" and name in found else text
    return found


def _bearer(value: str | None) -> str | None:
    if not value:
        return None
    kind, _, rest = value.partition(" ")
    return rest.strip() if kind.lower() == "bearer" else None


def _cookie(value: str | None, name: str) -> str | None:
    if not value:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(value)
    except Exception:  # a malformed Cookie header is no token
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
        await send(message)

    return wrapped


async def _refuse(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send: Send, location: str, cookie: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 303,
            "headers": [
                (b"location", location.encode("latin-1", errors="replace")),
                (b"set-cookie", cookie),
                (b"content-length", b"0"),
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def is_loopback(host: str) -> bool:
    """Whether binding to `host` keeps the server on this machine."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
