"""The `fetch` tool against a real web site on 127.0.0.1 (tests/fetch_site.py).

Only 127.0.0.1 is ever connected to: the redirects to 10.0.0.1 and 127.0.0.2 must be
refused by the address check before any connection, and the site records every request.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bantzd.workers.agentfetch import Allow, Fetcher, FetchError
from tests.agent_server import ScriptedLLM, calls, text
from tests.conftest import Bantz
from tests.e2e.test_agent import agent_task, journal, use_server
from tests.fetch_site import BIG, Site

pytest.importorskip("html_text")

ALLOW = Allow.parse(["127.0.0.1"])


@pytest.fixture
def site() -> Iterator[Site]:
    server = Site().start()
    yield server
    server.stop()


def test_a_page_redirects_with_the_check_at_every_hop_and_pinned_addresses(site: Site) -> None:
    fetcher = Fetcher(ALLOW, timeout=5)
    out = fetcher.text(f"{site.url}/hop")
    assert out.startswith(f"{site.url}/page.html (200, text/html; charset=utf-8)")
    assert "AI Summit Istanbul, 12-14 March 2027." in out and "Ankara ML Days" in out
    assert "script text" not in out and "color: red" not in out
    for path, refused in (("/to-private", "10.0.0.1 is a private"),
                          ("/to-loopback2", "127.0.0.2 is a loopback")):  # fmt: skip
        with pytest.raises(FetchError, match=refused):
            fetcher.text(site.url + path)
    assert site.paths == ["/hop", "/page.html", "/to-private", "/to-loopback2"]
    with pytest.raises(FetchError, match=r"127\.0\.0\.1 is a loopback"):
        Fetcher(Allow(), timeout=5).text(f"{site.url}/page.html")  # not allowed: not asked
    assert len(site.paths) == 4
    # A name that resolves (by the given resolver) to the checked address: the connection
    # goes to that address, the Host header keeps the name.
    pinned = Fetcher(ALLOW, timeout=5, resolver=lambda host, port: ["127.0.0.1"])
    assert "plain notes" in pinned.text(f"http://site.invalid:{site.port}/notes.txt")
    assert site.hosts[-1] == f"site.invalid:{site.port}"
    with pytest.raises(FetchError, match="image/png, not a text page"):
        fetcher.text(f"{site.url}/image.png")
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.text(f"{site.url}/missing")
    with pytest.raises(FetchError, match="only http:// and https://"):
        fetcher.text("file:///etc/passwd")


def test_a_20_mb_body_is_cut_at_the_cap_and_a_slow_page_at_the_time_limit(site: Site) -> None:
    fetcher = Fetcher(ALLOW, timeout=10, max_bytes=2 * 1024 * 1024)
    started = time.monotonic()
    page = fetcher.get(f"{site.url}/big")
    assert page.cut and len(page.body) == 2 * 1024 * 1024 < BIG
    out = fetcher.text(f"{site.url}/big")
    assert "[cut: only the first 2,097,152 bytes were read]" in out
    assert "[... cut: 2,097,152 characters in all]" in out
    assert time.monotonic() - started < 5
    started = time.monotonic()
    with pytest.raises(FetchError, match="gave up after the 1s time limit"):
        Fetcher(ALLOW, timeout=1).text(f"{site.url}/slow")  # a byte every 0.2 s, for a minute
    assert time.monotonic() - started < 3


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM()
    server.start()
    yield server
    server.stop()


def test_an_agent_fetches_a_page_and_is_refused_a_private_redirect(
    bantz: Bantz, llm: ScriptedLLM, site: Site, tmp_path: Path
) -> None:
    use_server(bantz, llm)
    with open(bantz.home / "config.toml", "a") as f:
        f.write('[agent]\nfetch_allow = ["127.0.0.1"]\nfetch_timeout = "5s"\n')
    llm.scripts["web"] = [
        calls(
            ("fetch", {"url": f"{site.url}/page.html"}),
            ("fetch", {"url": f"{site.url}/to-private"}),
        ),
        text("AI Summit Istanbul, 12-14 March 2027."),
    ]
    bantz.drop("web.yaml", agent_task("web", tmp_path, "tools: [fetch]"))
    res = bantz("run", "--once", timeout=90)
    assert res.returncode == 0, res.stderr
    state = bantz.state(1)
    assert state["status"] == "done", (state, bantz.output(1))
    results = [e for e in journal(bantz, 1) if e["k"] == "result"]
    assert results[0]["ok"] and "AI Summit Istanbul" in results[0]["text"]
    assert not results[1]["ok"] and "10.0.0.1 is a private address" in results[1]["text"]
    assert [e["k"] for e in journal(bantz, 1)].count("begin") == 0  # read-only: no begin
    assert state["agent"]["tool_calls"] == {"fetch": 2}
