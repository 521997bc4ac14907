"""The dashboard's Schedules page over HTTP: it shows what `bantzd schedules --json` says,
its buttons are `bantzd schedule pause|resume|fire|remove` (token and Origin checked like
every change), removing asks first without JavaScript, names are escaped, and an
instance's task page links back to its schedule.

Schedules are submitted with the real CLI (no supervisor runs: the requests are applied by
the command, or by the page's request, as lock holder); the app runs in process with
Starlette's TestClient, `bantzd serve` as a real process for the live stream.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient

from bantzd.paths import Home
from bantzd.web.app import create_app
from bantzd.web.auth import cookie_name
from tests.conftest import Bantz, config_text
from tests.dashboard import start_serve

pytestmark = pytest.mark.slow

TOKEN = "test-token-0123456789"
ORIGIN = "http://testserver"
# A name a page must show as text, and put in addresses quoted.
NAME = '<b>night & "co" #1?'
WEEKLY = f"""\
name: {json.dumps(NAME)}
schedule:
  cron: "0 23 * * 1-5"
  tz: Europe/Istanbul
run: echo notes
"""
NAME_QUOTED = "%3Cb%3Enight%20%26%20%22co%22%20%231%3F"
POST = {"Origin": ORIGIN}
JSON = {"Origin": ORIGIN, "Accept": "application/json"}


def make_home(tmp_path: Path, label: str) -> Bantz:
    root = tmp_path / label
    Home(root).ensure()
    (root / "config.toml").write_text(config_text())
    bantz = Bantz(root)
    spool_file = tmp_path / f"{label}-weekly.yaml"
    spool_file.write_text(WEEKLY)
    bantz("submit", str(spool_file), check=True)
    return bantz


def schedules_json(bantz: Bantz) -> list[dict]:
    return json.loads(bantz("schedules", "--json", check=True).stdout)


@pytest.fixture
def home(tmp_path: Path) -> Bantz:
    return make_home(tmp_path, "home")


@pytest.fixture
def client(home: Bantz) -> Iterator[TestClient]:
    with TestClient(create_app(Home(home.home), TOKEN), follow_redirects=False) as c:
        c.cookies.set(cookie_name(Home(home.home)), TOKEN)
        yield c


def act(client: TestClient, op: str, headers: dict[str, str] = JSON, **extra: str):
    return client.post(
        "/act", data={"action": "schedule", "op": op, "schedule": NAME, **extra}, headers=headers
    )


def test_the_page_shows_each_schedule_escaped(client: TestClient, home: Bantz) -> None:
    page = client.get("/schedules")
    assert page.status_code == 200
    text = page.text
    (obj,) = schedules_json(home)
    assert "&lt;b&gt;night &amp; &#34;co&#34; #1?" in text
    assert "<b>night" not in text
    assert obj["words"] in text and "Europe/Istanbul" in text
    # The next firing as the CLI has it (the schedule's zone), and how far off it is.
    nxt = obj["next_fire"]
    assert f"{nxt[:10]} {nxt[11:16]} +0300 (in " in text
    assert "none yet" in text  # no instance so far
    assert f'href="/schedules/remove?name={NAME_QUOTED}"' in text
    assert 'value="pause"' in text and 'value="fire"' in text and 'value="resume"' not in text
    assert 'sse-connect="/events/schedules"' in text
    assert 'href="/schedules" aria-current="page"' in client.get("/schedules").text
    # One schedule by name (where a task page links), and a name that is no schedule.
    one = client.get("/schedules", params={"name": NAME}).text
    assert "one of 1" in one and obj["words"] in one
    assert "No schedule named" in client.get("/schedules?name=nope").text


def test_fire_now_is_bantzd_schedule_fire(client: TestClient, home: Bantz, tmp_path) -> None:
    res = act(client, "fire", headers=POST, next="/schedules")
    assert res.status_code == 303 and res.headers["location"] == "/schedules"
    page = client.get("/schedules").text
    assert 'class="flash ok"' in page and "fired: task 1" in page
    web = json.loads(home("show", "1", "--json", check=True).stdout)

    other = make_home(tmp_path, "cli")
    out = other("schedule", "fire", NAME, check=True).stdout
    assert "fired: task 1" in out
    cli = json.loads(other("show", "1", "--json", check=True).stdout)
    for task in (web, cli):
        assert re.fullmatch(re.escape(NAME) + r"@\d{4}-\d\d-\d\dT\d\d:\d\d", task["name"])
        assert task["firing"][:16] == task["name"].rpartition("@")[2]
    same = ("schedule", "status", "reason", "source", "kind", "priority", "attempts", "paused")
    assert {k: web.get(k) for k in same} == {k: cli.get(k) for k in same}
    assert web["schedule"] == NAME and web["status"] == "queued"
    ((w,), (c,)) = schedules_json(home), schedules_json(other)
    assert w["instances"] == c["instances"] == [1] and w["paused"] is c["paused"] is False
    assert w["last_task"]["status"] == c["last_task"]["status"] == "queued"
    assert w["last_fired"][:16] == web["firing"][:16]

    # The page links the instance, and the instance's page links its schedule.
    page = client.get("/schedules").text
    assert '<a href="/tasks/1">#1 &lt;b&gt;night &amp;' in page
    task_page = client.get("/tasks/1").text
    assert "Made by schedule" in task_page
    assert f'href="/schedules?name={NAME_QUOTED}"' in task_page
    assert "&lt;b&gt;night &amp;" in task_page and "<b>night" not in task_page
    # Firing again within the minute finds the same task, as the command would.
    again = act(client, "fire").json()
    assert again["ok"] and "made before" in again["message"] and again["id"] == 1


def test_pause_and_resume(client: TestClient, home: Bantz) -> None:
    reply = act(client, "pause").json()
    assert reply["ok"] and "paused" in reply["message"]
    assert schedules_json(home)[0]["paused"] is True
    page = client.get("/schedules").text
    assert '<span class="status paused">paused</span>' in page and 'value="resume"' in page
    assert "(paused: it does not fire)" in page
    twice = act(client, "pause").json()
    cli = home("schedule", "pause", NAME)
    assert twice["message"] == cli.stdout.strip()  # "already paused", the command's words
    reply = act(client, "resume").json()
    assert reply["ok"] and "next firing" in reply["message"]
    assert schedules_json(home)[0]["paused"] is False
    missing = client.post(
        "/act", data={"action": "schedule", "op": "pause", "schedule": "nope"}, headers=JSON
    )
    cli = home("schedule", "pause", "nope")
    assert missing.status_code == 400 and missing.json()["exit"] == cli.returncode == 3
    assert missing.json()["message"] in cli.stderr
    bad = act(client, "explode")
    assert bad.status_code == 400 and "unknown schedule action" in bad.json()["message"]


def test_changes_need_the_token_and_the_origin(client: TestClient, home: Bantz) -> None:
    for op in ("pause", "fire", "remove"):
        assert act(client, op, headers={}, confirm="yes").status_code == 403  # no Origin
        evil = {"Origin": "http://evil.example"}
        assert act(client, op, headers=evil, confirm="yes").status_code == 403
    client.cookies.clear()
    assert act(client, "fire", headers=POST).status_code == 401
    assert client.get("/schedules").status_code == 401
    assert client.get(f"/schedules/remove?name={NAME_QUOTED}").status_code == 401
    (obj,) = schedules_json(home)  # nothing of that got through
    assert obj["paused"] is False and obj["last_task"] is None
    assert not list((home.home / "tasks").glob("*"))


def test_remove_asks_first_without_javascript(client: TestClient, home: Bantz) -> None:
    assert act(client, "fire").json()["ok"]
    unasked = act(client, "remove")
    assert unasked.status_code == 400 and "confirm=yes" in unasked.json()["message"]
    assert len(schedules_json(home)) == 1
    ask = client.get(f"/schedules/remove?name={NAME_QUOTED}")
    assert ask.status_code == 200
    text = ask.text
    assert "Remove schedule &lt;b&gt;night &amp;" in text and "1 task(s)" in text
    assert '<form method="post" action="/act"' in text
    assert 'name="confirm" value="yes"' in text and "<script" not in text.split("<body>")[1]
    assert f'href="/schedules?name={NAME_QUOTED}">keep it' in text
    assert client.get("/schedules/remove?name=nope").status_code == 404
    res = act(client, "remove", headers=POST, confirm="yes", next="/schedules")
    assert res.status_code == 303
    assert schedules_json(home) == [] and home.status_of(1) == "queued"  # its task stays
    assert "No schedule yet" in client.get("/schedules").text


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """(event, data) of each event in a server-sent-events stream."""
    name, data = "", []
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: ") or line == "data:":
            data.append(line.removeprefix("data:").removeprefix(" "))
        elif line == "" and name:
            yield name, "\n".join(data)
            name, data = "", []


def test_the_page_updates_live(home: Bantz) -> None:
    served = start_serve(home.home, home.env)
    try:
        import httpx

        auth = {"Authorization": f"Bearer {served.token}"}
        with httpx.stream("GET", f"{served.base}/events/schedules", headers=auth, timeout=10) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            events = sse_events(r.iter_lines())
            name, data = next(events)
            assert name == "rows" and "&lt;b&gt;night &amp;" in data and "none yet" in data
            assert "status paused" not in data
            # A pause by the command shows in the stream as the page's next rows.
            home("schedule", "pause", NAME, check=True)
            name, data = next(events)
            assert name == "rows" and "status paused" in data and 'value="resume"' in data
    finally:
        served.stop()
