"""Running the dashboard: the listening socket, the token, uvicorn (`bantzd serve`)."""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

# Imported here, not when serving: `bantzd serve` catches the ImportError of a missing
# `web` extra when it imports this module.
import uvicorn

from bantzd.errors import BantzError
from bantzd.paths import Home
from bantzd.web.app import create_app
from bantzd.web.auth import is_loopback, new_token, remove_token, write_token

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

GRACEFUL = 3.0  # seconds uvicorn gives open pages to close at a stop


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free one), or a BantzError saying why."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, family, socket.SOCK_STREAM)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(infos[0][4])
        sock.listen(128)
    except OSError as e:
        raise BantzError(
            f"cannot listen on {host}:{port}: {e.strerror or e}"
            + ("; choose another port with --port" if port else "")
        ) from e
    return sock


def url_of(host: str, port: int, token: str) -> str:
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"http://{shown}:{port}/?token={token}"


def serve(home: Home, host: str, port: int, say: Callable[[str], None]) -> None:
    """Serve `home`'s dashboard until SIGINT/SIGTERM; `say` prints the address line.

    uvicorn stops gracefully on either signal, then raises it again with the handlers it
    found in place; ours turns it into a clean exit (status 0) that removes serve.token.
    """
    sock = bind(host, port)
    token = new_token()
    before = {sig: signal.signal(sig, _stopped) for sig in STOP_SIGNALS}
    try:
        write_token(home, token)
        actual = sock.getsockname()[1]
        if not is_loopback(host):
            print(
                f"bantzd: warning: serving on {host}, not only on this machine: anyone who can "
                f"reach port {actual} here and learns the token can change your tasks, and the "
                "traffic is plain HTTP (not encrypted); the default --host 127.0.0.1 stays local",
                file=sys.stderr,
                flush=True,
            )
        say(url_of(host, actual, token))
        config = uvicorn.Config(
            create_app(home, token),
            log_level="warning",
            access_log=False,  # the first request's address holds the token
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        sock.close()
        remove_token(home, token)


def _stopped(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
