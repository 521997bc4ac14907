"""The dashboard's Tonight page over HTTP: `bantzd plan`'s forecast (the same JSON), the
reason a task is held back, `?until=` honoured, the token, escaped names, no live stream,
at most one forecast a minute, and the home untouched by a page view.

The queue is taken in by the real `bantzd submit` (no supervisor runs); the app is driven
in process with Starlette's TestClient.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient

from bantzd.paths import Home
from bantzd.web.app import create_app
from bantzd.web.planpage import plan_cache
from bantzd.web.snapshot import HomeView
from tests.conftest import Bantz, config_text

pytestmark = pytest.mark.slow

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FILES = {
    "a.yaml": "name: big\nrun: 'true'\nestimate: 2h\n",
    "b.yaml": "name: small\nrun: 'true'\nestimate: 20m\nafter: [big]\n",
    "c.yaml": "name: huge\nrun: 'true'\nestimate: 3d\n",
    "d.yaml": "name: 'x<img src=x onerror=alert(1)>'\nrun: 'true'\nestimate: 5m\n",
}


def _until(hours: float) -> str:
    return (datetime.now() + timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")


def _manifest(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under `root`: its mode and the hash of its bytes."""
    return {
        str(p.relative_to(root)): (p.stat().st_mode, hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def queue(tmp_path_factory: pytest.TempPathFactory) -> Bantz:
    root = tmp_path_factory.mktemp("tonight") / "home"
    Home(root).ensure()
    (root / "config.toml").write_text(config_text("max_parallel = 1"))
    bantz = Bantz(root)
    staged = root.parent / "files"
    staged.mkdir()
    for name, text in FILES.items():
        (staged / name).write_text(text)
    bantz("submit", *(str(staged / n) for n in sorted(FILES)), check=True)
    assert {bantz.status_of(i) for i in (1, 2, 3, 4)} == {"queued"}
    return bantz


@pytest.fixture
def view(queue: Bantz) -> HomeView:
    return HomeView(Home(queue.home))


@pytest.fixture
def client(queue: Bantz, view: HomeView) -> TestClient:
    with TestClient(create_app(Home(queue.home), TOKEN, view=view)) as c:
        yield c


def test_the_page_shows_the_plan_and_why_a_task_waits(client: TestClient, queue: Bantz) -> None:
    until = _until(10)  # ten hours: the 2h task fits whatever the time of day
    page = client.get("/tonight", params={"until": until}, headers=AUTH)
    assert page.status_code == 200, page.text
    text = page.text
    plan = json.loads(queue("plan", "--json", "--until", until, check=True).stdout)
    assert {t["name"] for t in plan["tasks"]} == {"big", "small", "x<img src=x onerror=alert(1)>"}
    for t in plan["tasks"]:  # each planned task: its row, start, end and estimate
        start = datetime.fromisoformat(t["start"]).astimezone().strftime("%H:%M")
        end = datetime.fromisoformat(t["end"]).astimezone().strftime("%H:%M")
        row = text[text.index(f'<tr id="p-{t["id"]}">') :].split("</tr>")[0]
        assert f'<a href="/tasks/{t["id"]}">' in row
        assert start in row and end in row and t["estimate"] in row
    assert "2h from the task file" in text
    [held] = plan["not_fitting"]
    assert held["name"] == "huge"
    row = text[text.index(f'<tr id="w-{held["id"]}">') :].split("</tr>")[0]
    assert "huge" in row and held["reason"] in row
    assert held["reason"].startswith(f"would not finish before {until[-5:]}")
    # the gantt, as `bantzd plan --mermaid` has it, for Mermaid to draw in the page
    assert '<pre class="mermaid">gantt' in text and "night ends :milestone" in text
    assert "/static/vendor/mermaid.min.js" in text and f'value="{until}"' in text


def test_until_is_honoured_and_defaults_to_seven(client: TestClient) -> None:
    short = client.get("/tonight", params={"until": _until(1)}, headers=AUTH).text
    waits = short[short.index('id="waiting"') :]
    assert "big" in waits and "huge" in waits  # a 2h task does not fit in an hour
    assert "would not finish before" in waits
    default = client.get("/tonight", headers=AUTH).text
    assert 'value="07:00"' in default and " 07:00, planned at" in default
    bad = client.get("/tonight", params={"until": "soon"}, headers=AUTH)
    assert bad.status_code == 400 and "until:" in bad.text and 'value="soon"' in bad.text


def test_the_page_needs_the_token(client: TestClient) -> None:
    res = client.get("/tonight")
    assert res.status_code == 401 and "serve.token" in res.text
    assert (
        client.get("/tonight", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    )


def test_names_are_escaped(client: TestClient) -> None:
    text = client.get("/tonight", params={"until": _until(10)}, headers=AUTH).text
    assert "<img src=x" not in text
    assert "x&lt;img src=x onerror=alert(1)&gt;" in text


def test_no_stream_and_one_forecast_a_minute(client: TestClient, view: HomeView) -> None:
    assert client.get("/events/tonight", headers=AUTH).status_code == 404
    until = _until(10)
    for _ in range(3):
        assert client.get("/tonight", params={"until": until}, headers=AUTH).status_code == 200
    assert plan_cache(view).runs == 1
    client.get("/tonight", params={"until": _until(9)}, headers=AUTH)
    assert plan_cache(view).runs == 2  # another end of night is another forecast


def test_a_page_view_leaves_the_home_untouched(queue: Bantz) -> None:
    root = Path(queue.home)
    before = _manifest(root)
    with TestClient(create_app(Home(root), TOKEN)) as c:
        for until in (_until(10), _until(1), "07:00"):
            assert c.get("/tonight", params={"until": until}, headers=AUTH).status_code == 200
    assert _manifest(root) == before
