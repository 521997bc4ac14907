"""The `fetch` tool of an `agent:` task (SPEC section 12): an HTTP(S) GET, HTML as text.

A page the agent reads must not be able to steer it into the person's own services (a
router's admin page, a database on localhost, a cloud metadata address). So before every
hop, the first and each redirect alike, the host is resolved and EVERY address it resolves
to is checked: loopback, private, link-local, multicast, unspecified and other addresses
that are not globally reachable are refused unless `[agent] fetch_allow` lists the host
name or a network holding the address. The connection then goes to the address that was
checked (the Host header and TLS name stay the host's), so a DNS answer that changes
between the check and the connect cannot slip a local address in.

Caps: `max_bytes` of body read (reading stops there; the text says it was cut), a deadline
over the whole fetch with every redirect (`timeout`), MAX_REDIRECTS hops, FETCH_CHARS of
text given to the model. No compression is asked for, so the cap is on what arrives.
HTML becomes text with html-text (lxml; MIT licence -- html2text is GPL-3, which an MIT
project would rather not depend on); other text types come back as they are.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

FETCH_BYTES = 2 * 1024 * 1024
FETCH_TIMEOUT = 30.0
FETCH_CHARS = 20_000
MAX_REDIRECTS = 5
CHUNK = 64 * 1024
USER_AGENT = "bantzd-agent/0.1 (+https://github.com/bantzd)"
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/xhtml+xml")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]


class FetchError(Exception):
    """What the fetch tool says back instead of a page (the model sees the message)."""


@dataclass(frozen=True)
class Allow:
    """`[agent] fetch_allow`: host names and networks the address check lets through."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Allow:
        """From config entries: a CIDR or address is a network, anything else a host name.
        ValueError for an entry that is neither (config.py reports it by its key)."""
        hosts, networks = set(), []
        for entry in entries:
            text = entry.strip()
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            name = text.lower().rstrip(".")
            labels = name.split(".")
            if not name or not all(
                label and len(label) <= 63 and all(c.isalnum() or c == "-" for c in label)
                for label in labels
            ):
                raise ValueError(
                    f"expected a host name or a network like 10.0.0.0/8, got {entry!r}"
                )
            hosts.add(name)
        return cls(frozenset(hosts), tuple(networks))

    def lets(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def refusal(address: Address) -> str | None:
    """Why `address` is refused without fetch_allow ("loopback", "private", ...), or None."""
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    for what in ("unspecified", "loopback", "link_local", "multicast", "private", "reserved"):
        if getattr(address, f"is_{what}"):
            return what.replace("_", "-")
    if not address.is_global:
        return "not public"
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise FetchError(f"cannot resolve {host}: {e.strerror or e}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def checked_address(host: str, port: int, allow: Allow, resolver: Resolver = resolve) -> str:
    """The address to connect to for `host`, after checking every address it resolves to;
    FetchError naming the first refused one."""
    name = host.lower().rstrip(".").strip("[]")
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(name, port)]
    if not addresses:
        raise FetchError(f"{host} resolves to no address")
    if name not in allow.hosts:
        for address in addresses:
            why = refusal(address)
            if why and not allow.lets(address):
                shown = name if str(address) == name else f"{name} ({address})"
                raise FetchError(
                    f"refused: {shown} is a {why} address; pages on the person's own machine "
                    "or network are fetched only when [agent] fetch_allow lists them"
                )
    return str(addresses[0])


class _Pinned(http.client.HTTPConnection):
    """An HTTP connection to the address that was checked, not to a fresh DNS answer."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address
        self.kept: socket.socket | None = None

    def connect(self) -> None:
        self.sock = self.kept = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedTLS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address
        self.kept: socket.socket | None = None

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.kept = self._context.wrap_socket(sock, server_hostname=self.host)


@dataclass(frozen=True)
class Page:
    url: str
    status: int
    content_type: str
    body: bytes
    cut: bool


class Fetcher:
    """GETs pages under the address check and the caps; `resolver` and `clock` are ports."""

    def __init__(
        self,
        allow: Allow = Allow(),
        *,
        timeout: float = FETCH_TIMEOUT,
        max_bytes: int = FETCH_BYTES,
        resolver: Resolver = resolve,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.allow = allow
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.resolver = resolver
        self.clock = clock

    def text(self, url: str) -> str:
        """The tool's result: where the page came from, then its text."""
        page = self.get(url)
        text = page_text(page)
        head = f"{page.url} ({page.status}, {page.content_type or 'no content type'})"
        if page.cut:
            head += f"\n[cut: only the first {self.max_bytes:,} bytes were read]"
        if len(text) > FETCH_CHARS:
            text = text[:FETCH_CHARS] + f"\n[... cut: {len(text):,} characters in all]"
        return f"{head}\n\n{text}"

    def get(self, url: str) -> Page:
        deadline = self.clock() + self.timeout
        seen: list[str] = []
        for _ in range(MAX_REDIRECTS + 1):
            seen.append(url)
            status, headers, body, cut = self._hop(url, deadline)
            location = headers.get("location")
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if status >= 400:
                raise FetchError(f"{url}: HTTP {status}")
            return Page(url, status, headers.get("content-type", ""), body, cut)
        raise FetchError(f"more than {MAX_REDIRECTS} redirects: {' -> '.join(seen)}")

    def _hop(self, url: str, deadline: float) -> tuple[int, dict[str, str], bytes, bool]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise FetchError(f"only http:// and https:// URLs are fetched, not {url!r}")
        if not parts.hostname:
            raise FetchError(f"no host in {url!r}")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError(f"a bad port in {url!r}") from None
        address = checked_address(parts.hostname, port, self.allow, self.resolver)
        kind = _PinnedTLS if parts.scheme == "https" else _Pinned
        conn = kind(parts.hostname, port, address, self._left(deadline, url))
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.request(
                "GET",
                target,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": "text/html, text/*;q=0.9, */*;q=0.5",
                    "Accept-Encoding": "identity",
                },
            )
            response = conn.getresponse()
            headers = {k.lower(): v for k, v in response.getheaders()}
            chunks: list[bytes] = []
            size, cut = 0, False
            while response.status < 300:
                # http.client drops conn.sock once the response will close; ours stays.
                if conn.kept is not None:
                    conn.kept.settimeout(self._left(deadline, url))
                chunk = response.read1(min(CHUNK, self.max_bytes - size + 1))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_bytes:
                    cut = True
                    break
                self._left(deadline, url)
            body = b"".join(chunks)[: self.max_bytes]
            return response.status, headers, body, cut
        except TimeoutError:
            raise FetchError(f"{url}: gave up after the {self.timeout:g}s time limit") from None
        except (OSError, http.client.HTTPException) as e:
            raise FetchError(f"{url}: {type(e).__name__}: {e}") from None
        finally:
            conn.close()

    def _left(self, deadline: float, url: str) -> float:
        left = deadline - self.clock()
        if left <= 0:
            raise FetchError(f"{url}: gave up after the {self.timeout:g}s time limit")
        return left


def page_text(page: Page) -> str:
    """A page's text: HTML through html-text, other text types decoded as they are."""
    ctype = page.content_type.split(";")[0].strip().lower()
    head = page.body[:512].lstrip().lower()
    html = ctype in ("text/html", "application/xhtml+xml") or (
        not ctype and head.startswith((b"<!doctype html", b"<html"))
    )
    if not html and ctype and not ctype.startswith(TEXT_TYPES):
        raise FetchError(f"{page.url} is {ctype}, not a text page")
    text = page.body.decode(_charset(page.content_type), "replace")
    if not html:
        return text
    import html_text  # the `agent` extra; checked when the task starts

    return str(html_text.extract_text(text, guess_layout=True))


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip("\"'")
            try:
                "".encode(name)
                return name
            except LookupError:
                break
    return "utf-8"


def missing_library() -> str | None:
    """What to install when the fetch tool's HTML library is absent, else None."""
    try:
        import html_text  # noqa: F401
    except ImportError:
        return "the fetch tool needs html-text: pip install 'bantzd[agent]'"
    return None


def schema_args() -> tuple[str, dict[str, Any], Sequence[str]]:
    return (
        "Fetch a web page (HTTP GET) and return its text. Pages on the local network are "
        "refused unless allowed.",
        {"url": {"type": "string", "description": "an http:// or https:// URL"}},
        ("url",),
    )
