"""The dashboard's pure parts: the token and origin checks, the charts, Markdown, masking in
templates, where an action may send the browser, and the one-read-a-second snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")

from bantzd.clock import epoch
from bantzd.paths import Home
from bantzd.reports.secrets import Masker
from bantzd.supervisor.probes import Reading
from bantzd.web.app import _local, perform
from bantzd.web.auth import _cookie, cookie_name, is_loopback, origin_ok, same_token
from bantzd.web.chart import attempts_chart, load_chart
from bantzd.web.mdview import render_markdown
from bantzd.web.render import environment
from bantzd.web.snapshot import HomeView, mask_json


def test_tokens_and_origins() -> None:
    assert same_token("abc", "abc") and not same_token("abd", "abc") and not same_token(None, "a")
    assert origin_ok("http://127.0.0.1:8765", "127.0.0.1:8765")
    assert not origin_ok("http://127.0.0.1:8766", "127.0.0.1:8765")
    assert not origin_ok("null", "127.0.0.1:8765")
    assert not origin_ok(None, "127.0.0.1:8765")
    assert not origin_ok("https://127.0.0.1:8765", "127.0.0.1:8765")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert _cookie("a=1; bantzd_x=tok", "bantzd_x") == "tok"
    assert _cookie('broken="', "bantzd_x") is None
    assert cookie_name(Home(Path("/a"))) != cookie_name(Home(Path("/b")))


def test_an_action_only_sends_the_browser_to_this_server() -> None:
    assert _local("/tasks/3") == "/tasks/3"
    assert _local("/tasks?status=held") == "/tasks?status=held"
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil", "", None, "tasks"):
        assert _local(bad) == "/"


def test_a_bad_action_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    assert perform(home, {"action": "rm"})["exit"] == 2
    assert "needs a task" in perform(home, {"action": "approve"})["message"]
    assert perform(home, {"action": "answer", "task": "1", "text": " "})["message"] == (
        "the answer is empty"
    )
    assert perform(home, {"action": "approve", "task": "7"})["exit"] == 3  # no such task
    assert not (tmp_path / "home" / "control").exists() or not list(
        (tmp_path / "home" / "control").iterdir()
    )


def _samples(n: int, *, start: float = 1_000_000.0, step: float = 5.0, gap_at: int = -1):
    out = []
    for i in range(n):
        t = start + i * step + (3600 if gap_at >= 0 and i >= gap_at else 0)
        out.append(
            {
                "t": t,
                "load_per_core": 0.5 + (i % 3) / 10,
                "free_memory": 8 * 2**30,
                "gpus": [{"index": 0, "util": 40 + i % 5, "free_memory": 2**30}],
                "throttled": "cpu load 3.9 > 1.6" if 10 <= i < 20 else None,
            }
        )
    return out


def test_the_load_chart_draws_every_series_with_gaps_and_throttled_spans() -> None:
    samples = _samples(60, gap_at=30)
    svg = load_chart(samples, now=samples[-1]["t"] + 5, span=12 * 3600, total_memory=16 * 2**30)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    for title in ("CPU load per core", "memory in use", "GPU 0 busy"):
        assert title in svg
    assert svg.count('class="throttled"') == 3  # one span, in each of the three panels
    # The hour without samples breaks each line in two.
    assert svg.count("<polyline") == 6
    assert "average 50%" in svg  # memory: 8 of 16 GiB in use


def test_a_long_night_is_bucketed_and_a_bad_sample_is_skipped() -> None:
    samples = _samples(5000)
    samples[7]["load_per_core"] = "high"
    samples[8] = {"t": "soon"}
    svg = load_chart(samples, now=samples[-1]["t"], span=12 * 3600)
    points = svg.split('points="')[1].split('"')[0].split()
    assert 100 < len(points) <= 480
    assert "memory free" in svg  # no total known: free memory instead of a percent


def test_no_samples_says_where_they_come_from() -> None:
    assert "load.jsonl" in load_chart([], now=0, span=3600)


def test_attempts_chart() -> None:
    log = [
        {
            "attempt": 1,
            "start": "2026-11-22T23:00:00",
            "end": "2026-11-22T23:10:00",
            "outcome": "failed",
        },
        {"attempt": 2, "start": "2026-11-22T23:11:00", "end": None, "outcome": None},
        "junk",
    ]
    svg = attempts_chart(log, now=epoch("2026-11-22T23:20:00") or 0)
    assert svg is not None
    assert 'class="bar failed"' in svg and 'class="bar running"' in svg
    assert "#1 failed 10m" in svg
    assert attempts_chart([], now=0) is None


def test_markdown_keeps_html_out_and_draws_mermaid_fences() -> None:
    html = render_markdown(
        "# Hi <script>alert(1)</script>\n\n[x](javascript:alert(1))\n\n"
        "```mermaid\ngantt\n    section a<b\n```\n",
        Masker(["topsecret-value"]),
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert "javascript:" not in html.replace("[x](javascript:alert(1))", "")
    assert '<pre class="mermaid">gantt\n    section a&lt;b\n</pre>' in html
    assert "***" in render_markdown("key topsecret-value", Masker(["topsecret-value"]))


def test_every_printed_value_is_masked_and_escaped() -> None:
    template = environment().from_string("{{ a }}|{{ b }}|{{ n }}|{{ none }}")
    out = template.render(
        a="<i>hunter2-password</i>", b="fine", n=3, none=None, mask=Masker(["hunter2-password"])
    )
    assert out == "&lt;i&gt;***&lt;/i&gt;|fine|3|"


def test_mask_json_masks_keys_and_values() -> None:
    mask = Masker(["s3cret-token"])
    data = {"a": ["x s3cret-token"], "s3cret-token": 1, "n": 2}
    assert mask_json(data, mask) == {"a": ["x ***"], "***": 1, "n": 2}


def test_the_home_is_read_at_most_once_a_second(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.ensure()
    now = [100.0]
    view = HomeView(
        home,
        probe=lambda: Reading(load_per_core=0.1, free_memory=2**30),
        monotonic=lambda: now[0],
        environ={},
    )
    for _ in range(50):  # fifty page loads and stream ticks within one second
        view.snapshot()
        now[0] += 0.019
    assert view.reads == 1
    now[0] += 0.1
    view.snapshot()
    assert view.reads == 2
