"""The fetch tool's address check and page text: pure, with a resolver given by the test."""

from __future__ import annotations

import ipaddress

import pytest

from bantzd.config import ConfigError, config_from_mapping
from bantzd.workers.agentfetch import Allow, FetchError, Page, checked_address, page_text, refusal


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    return lambda host, port: table[host]


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("fd00::5", "private"),
        ("100.64.0.1", "not public"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
        ("::ffff:10.1.2.3", "private"),
        ("93.184.215.14", None),
        ("2606:2800:220:1::1", None),
    ],
)
def test_refused_addresses(address: str, why: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == why


def test_every_resolved_address_is_checked_and_the_checked_one_is_used() -> None:
    table = {
        "public.example": ["93.184.215.14"],
        "rebind.example": ["93.184.215.14", "127.0.0.1"],  # one good, one local: refused
        "intranet": ["10.1.2.3"],
        "localhost": ["127.0.0.1", "::1"],
    }
    look = resolver(table)
    assert checked_address("public.example", 80, Allow(), look) == "93.184.215.14"
    with pytest.raises(FetchError, match=r"rebind.example \(127.0.0.1\) is a loopback address"):
        checked_address("rebind.example", 80, Allow(), look)
    with pytest.raises(FetchError, match="is a private address"):
        checked_address("intranet", 80, Allow(), look)
    with pytest.raises(FetchError, match=r"refused: 127.0.0.1 is a loopback address"):
        checked_address("127.0.0.1", 80, Allow(), look)
    with pytest.raises(FetchError, match="::1 is a loopback"):
        checked_address("[::1]", 80, Allow(), look)
    allow = Allow.parse(["10.0.0.0/8", "LocalHost."])
    assert checked_address("intranet", 80, allow, look) == "10.1.2.3"
    assert checked_address("localhost", 80, allow, look) == "127.0.0.1"
    assert checked_address("10.9.9.9", 80, allow, look) == "10.9.9.9"
    with pytest.raises(FetchError, match="loopback"):
        checked_address("127.0.0.1", 80, allow, look)  # the name is allowed, not the address
    narrow = Allow.parse(["127.0.0.1"])
    assert checked_address("127.0.0.1", 80, narrow, look) == "127.0.0.1"
    with pytest.raises(FetchError, match=r"127\.0\.0\.2 is a loopback"):
        checked_address("127.0.0.2", 80, narrow, look)


def test_fetch_allow_is_checked_in_the_config_with_the_entry_named() -> None:
    config = config_from_mapping({"agent": {"fetch_allow": ["127.0.0.1", "intranet.local"]}})
    assert config.agent.fetch_allow == ("127.0.0.1", "intranet.local")
    assert config.agent.fetch_max_bytes == 2 * 1024 * 1024 and config.agent.fetch_timeout == 30
    with pytest.raises(ConfigError) as e:
        config_from_mapping({"agent": {"fetch_allow": ["10.0.0.0/8", "bad host!"]}})
    assert "agent.fetch_allow" in str(e.value) and "'bad host!'" in str(e.value)
    with pytest.raises(ConfigError, match="did you mean 'fetch_allow'"):
        config_from_mapping({"agent": {"fetch_alow": []}})


def test_html_becomes_text_without_scripts_and_other_types_are_checked() -> None:
    pytest.importorskip("html_text")
    html = b"<html><head><script>var x = 1;</script></head><body><h1>Title</h1><p>Body</p>"
    text = page_text(Page("u", 200, "text/html", html, False))
    assert "Title" in text and "Body" in text and "var x" not in text
    latin = page_text(
        Page("u", 200, "text/plain; charset=latin-1", "café".encode("latin-1"), False)
    )
    assert latin == "café"
    with pytest.raises(FetchError, match="image/png, not a text page"):
        page_text(Page("u", 200, "image/png", b"\x89PNG", False))
