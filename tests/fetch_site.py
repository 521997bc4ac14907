"""A small web site on 127.0.0.1 for the `fetch` tool's tests (and the agent examples).

Pages: `/page.html` (an HTML page), `/notes.txt` (plain text), `/to-private` (a redirect to
10.0.0.1, which the fetcher must refuse before connecting -- nothing is ever sent there),
`/to-loopback2` (a redirect to 127.0.0.2 on this port, a loopback address outside a
`fetch_allow` of 127.0.0.1), `/hop` (a redirect to /page.html), `/big` (a 20 MB body,
streamed), `/slow` (headers at once, then a byte every 0.2 s for a minute), `/image.png`.
`hosts` records the Host header of every request, `paths` the paths.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PAGE = b"""<!doctype html>
<html><head><title>AI conferences</title><style>p {color: red}</style>
<script>var secret = "script text";</script></head>
<body><h1>AI conferences in Turkey</h1>
<p>AI Summit Istanbul, 12-14 March 2027.</p>
<ul><li>Ankara ML Days</li><li>Izmir NLP Workshop</li></ul>
</body></html>
"""
BIG = 20 * 1024 * 1024


class Site:
    def __init__(self) -> None:
        self.hosts: list[str] = []
        self.paths: list[str] = []
        self.stop_event = threading.Event()
        site = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                site.hosts.append(self.headers.get("Host", ""))
                site.paths.append(self.path)
                try:
                    site.answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the fetcher stopped reading: that is the point of the cap

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Site:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        redirects = {
            "/to-private": "http://10.0.0.1/admin",
            "/to-loopback2": f"http://127.0.0.2:{self.port}/page.html",
            "/hop": "/page.html",
        }
        if path in redirects:
            h.send_response(302)
            h.send_header("Location", redirects[path])
            h.send_header("Content-Length", "0")
            h.end_headers()
        elif path == "/page.html":
            self._send(h, "text/html; charset=utf-8", PAGE)
        elif path == "/notes.txt":
            self._send(h, "text/plain", b"plain notes\n")
        elif path == "/image.png":
            self._send(h, "image/png", b"\x89PNG\r\n\x1a\n")
        elif path == "/big":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(BIG))
            h.end_headers()
            line = b"x" * 1023 + b"\n"
            for _ in range(BIG // len(line)):
                if self.stop_event.is_set():
                    return
                h.wfile.write(line)
        elif path == "/slow":
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.end_headers()
            for _ in range(300):
                if self.stop_event.wait(0.2):
                    return
                h.wfile.write(b"s")
                h.wfile.flush()
        else:
            h.send_error(404)

    def _send(self, h: BaseHTTPRequestHandler, ctype: str, body: bytes) -> None:
        h.send_response(200)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
