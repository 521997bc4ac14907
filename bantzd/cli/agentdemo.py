"""The `agent:` examples in `bantzd demo --llm URL` (bantzd/examples/agent/).

The research example fetches saved pages: the demo copies them into its home and serves them
on 127.0.0.1 (a free port) while the examples run, lets the fetch tool reach exactly that
address (`[agent] fetch_allow`), and points the goal at the site. The agenda example works on
a copy of the sample notes and asks one question, so it waits under "Needs you".
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import threading
from collections.abc import Callable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from bantzd.paths import Home

# The address the shipped research example names; the demo puts its own site's in its place.
SHIPPED_SITE = "http://127.0.0.1:8000"


class _QuietPages(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # the demo prints the report only
        pass


def serve_pages(folder: os.PathLike[str] | str) -> tuple[str, Callable[[], None]]:
    """Serve `folder` on 127.0.0.1 at a free port: its base URL and a function to stop it."""
    handler = functools.partial(_QuietPages, directory=os.fspath(folder))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="demo-pages", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def add_agent_examples(home: Home) -> tuple[list[str], Callable[[], None]]:
    """Copy the pages and notes into the demo home, start the pages site, allow the fetch
    tool to reach it, and spool the agent examples. Their names, and the site's stop."""
    folder = resources.files("bantzd").joinpath("examples", "agent")
    pages = home.root / "demo-pages"
    notes = home.root / "demo-agent-notes"
    with resources.as_file(folder.joinpath("pages")) as src:
        shutil.copytree(src, pages)
    with resources.as_file(folder.joinpath("notes")) as src:
        shutil.copytree(src, notes)
    site, stop = serve_pages(pages)
    text = home.config.read_text()
    text, n = re.subn(
        r"^fetch_allow = \[\]", 'fetch_allow = ["127.0.0.1"]', text, count=1, flags=re.M
    )
    if n != 1:
        text += '\n[agent]\nfetch_allow = ["127.0.0.1"]\n'
    home.config.write_text(text)
    names = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith((".yaml", ".yml")):
            continue
        data = entry.read_text(encoding="utf-8").replace(SHIPPED_SITE, site)
        data = re.sub(r"^cwd: .*$", f"cwd: {json_quoted(str(notes))}", data, count=1, flags=re.M)
        tmp = home.spool / f".{entry.name}.tmp"
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, home.spool / entry.name)
        names.append(entry.name)
    return names, stop


def json_quoted(text: str) -> str:
    """A quoted string that YAML reads back as `text`."""
    import json

    return json.dumps(text)
