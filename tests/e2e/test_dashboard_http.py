"""The dashboard over HTTP: the token on every request, the same-origin check on changes,
escaped log lines, masked secrets, `GET /api/status` = `bantzd status --json`, every page,
the event stream and the `bantzd serve` process itself (token file, warnings, stop).

One home is made once for the module by a real `bantzd run --once`; the app is driven in
process with Starlette's TestClient, and `bantzd serve` as a real process where the
process itself is what is tested.
"""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the dashboard needs the web extra")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")

from starlette.testclient import TestClient

from bantzd.paths import Home
from bantzd.web.app import create_app
from bantzd.web.auth import cookie_name
from tests.conftest import Bantz, config_text, wait_for
from tests.dashboard import start_serve

pytestmark = pytest.mark.slow

SECRET = "tok-9f8e7d6c5b4a"
XSS = textwrap.dedent(f"""\
    name: shouty
    env: {{API_TOKEN: {SECRET}}}
    run: |
      echo '<script>alert("x")</script> & <b>bold</b>'
      echo "the key is $API_TOKEN"
""")
HELD = "name: needs-ok\napproval: true\nrun: echo approved\n"
TOKEN = "test-token-0123456789"
ORIGIN = "http://testserver"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Bantz:
    root = tmp_path_factory.mktemp("dash") / "home"
    Home(root).ensure()
    (root / "config.toml").write_text(config_text("max_parallel = 2"))
    bantz = Bantz(root)
    bantz.drop("1-shouty.yaml", XSS)
    bantz.drop("2-held.yaml", HELD)
    res = bantz("run", "--once")
    assert res.returncode == 0, res.stderr
    assert bantz.status_of(1) == "done" and bantz.status_of(2) == "held"
    bantz("report", check=True)
    return bantz


@pytest.fixture
def client(night: Bantz) -> Iterator[TestClient]:
    with TestClient(create_app(Home(night.home), TOKEN), follow_redirects=False) as c:
        yield c


@pytest.fixture
def authed(client: TestClient, night: Bantz) -> TestClient:
    client.cookies.set(cookie_name(Home(night.home)), TOKEN)
    return client


def test_every_request_needs_the_token(client: TestClient, night: Bantz) -> None:
    for path in ("/", "/tasks", "/tasks/1", "/api/status", "/static/app.css", "/events/night"):
        res = client.get(path)
        assert res.status_code == 401, path
        assert "serve.token" in res.text
    assert client.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/?token=nope").status_code == 401
    client.cookies.set(cookie_name(Home(night.home)), "nope")
    assert client.get("/").status_code == 401
    client.cookies.clear()

    # The printed link: a cookie, and the token leaves the address.
    res = client.get(f"/tasks?status=held&token={TOKEN}")
    assert res.status_code == 303
    assert res.headers["location"] == "/tasks?status=held"
    cookie = res.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(Home(night.home))}={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = client.get("/tasks?status=held")
    assert page.status_code == 200 and "needs-ok" in page.text and "shouty" not in page.text
    headers = page.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    # Scripts use a header instead of the cookie.
    client.cookies.clear()
    api = client.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert api.status_code == 200


def test_a_change_needs_the_dashboards_own_origin(authed: TestClient, night: Bantz) -> None:
    form = {"action": "approve", "task": "2", "next": "/"}
    assert authed.post("/act", data=form).status_code == 403  # no Origin
    evil = authed.post("/act", data=form, headers={"Origin": "http://evil.example"})
    assert evil.status_code == 403
    assert authed.post("/act", data=form, headers={"Origin": "null"}).status_code == 403
    authed.cookies.clear()
    res = authed.post("/act", data=form, headers={"Origin": ORIGIN})
    assert res.status_code == 401  # the origin alone is no token
    assert night.status_of(2) == "held"  # nothing of that got through


def test_an_approval_from_the_page_is_the_cli_commands(night: Bantz, tmp_path: Path) -> None:
    # A home of its own: this one changes a task.
    root = tmp_path / "home"
    Home(root).ensure()
    (root / "config.toml").write_text(config_text())
    bantz = Bantz(root)
    bantz.drop("held.yaml", HELD)
    bantz.drop("held2.yaml", HELD.replace("needs-ok", "other"))
    assert bantz("run", "--once").returncode == 0
    with TestClient(create_app(Home(root), TOKEN), follow_redirects=False) as c:
        c.cookies.set(cookie_name(Home(root)), TOKEN)
        res = c.post(
            "/act",
            data={"action": "approve", "task": "needs-ok", "next": "/tasks/1"},
            headers={"Origin": ORIGIN},
        )
        assert res.status_code == 303 and res.headers["location"] == "/tasks/1"
        assert "approved" in res.headers["set-cookie"]
        assert bantz.status_of(1) == "queued"
        # The reply is shown once, on the page it went back to.
        page = c.get("/tasks/1")
        assert 'class="flash ok"' in page.text and "approved" in page.text
        # A refusal says why, as the CLI does (exit 1: it is not held any more).
        again = c.post(
            "/act",
            data={"action": "approve", "task": "1"},
            headers={"Origin": ORIGIN, "Accept": "application/json"},
        )
        assert again.status_code == 400
        cli = bantz("approve", "1")
        assert again.json()["exit"] == cli.returncode == 1
        assert again.json()["message"] in cli.stderr
        # Reject with a reason, by bearer token (a script): no Origin needed.
        res = c.post(
            "/act",
            data={"action": "reject", "task": "2", "reason": "not tonight"},
            headers={"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"},
        )
        assert res.status_code == 200, res.text
    assert bantz.status_of(2) == "cancelled"


def test_log_lines_are_escaped_and_env_secrets_never_appear(authed: TestClient) -> None:
    page = authed.get("/tasks/1").text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert" not in page and "<b>bold" not in page
    assert "the key is ***" in page
    for path in ("/", "/tasks", "/tasks/1", "/tasks/2", "/api/status", "/reports"):
        assert SECRET not in authed.get(path).text, path


def test_api_status_is_the_status_json_object(authed: TestClient, night: Bantz) -> None:
    api = authed.get("/api/status").json()
    cli = json.loads(night("status", "--json", check=True).stdout)
    api.pop("load")
    cli.pop("load")
    assert api == cli


def test_every_page(authed: TestClient, night: Bantz) -> None:
    night_page = authed.get("/").text
    assert "Supervisor" in night_page and "down" in night_page
    assert "needs-ok" in night_page and "is held for approval" in night_page
    assert 'sse-connect="/events/night"' in night_page
    assert "<svg" in night_page or "No load samples" in night_page
    tasks = authed.get("/tasks?name=SHOUT").text
    assert "shouty" in tasks and "needs-ok" not in tasks
    both = authed.get("/tasks?status=done&status=held").text  # the filter's checkboxes
    assert "shouty" in both and "needs-ok" in both
    assert 'sse-connect="/events/tasks?status=done%2Cheld"' in both
    assert "needs-ok" not in authed.get("/tasks?status=done").text
    task = authed.get("/tasks/2").text
    assert "waiting for approval" in task and 'value="approve"' in task
    assert authed.get("/tasks/99").status_code == 404
    reports = authed.get("/reports").text
    (name,) = [p.stem for p in (night.home / "reports").glob("*.md")]
    assert f'href="/reports/{name}"' in reports
    report = authed.get(f"/reports/{name}").text
    assert '<pre class="mermaid">gantt' in report and "/static/vendor/mermaid.min.js" in report
    assert authed.get("/reports/..%2F..%2Fconfig").status_code == 404
    assert authed.get("/static/vendor/htmx.min.js").status_code == 200
    assert authed.get("/events/nope").status_code == 404
    assert authed.get("/events/task?id=99").status_code == 204  # EventSource: stop trying


def test_bantzd_serve_itself(night: Bantz) -> None:
    served = start_serve(night.home, night.env, "--host", "0.0.0.0")
    try:
        token_file = night.home / "serve.token"
        assert token_file.read_text().strip() == served.token
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert served.base.startswith("http://0.0.0.0:")
        base = served.base.replace("0.0.0.0", "127.0.0.1")
        import httpx

        auth = {"Authorization": f"Bearer {served.token}"}
        assert httpx.get(f"{base}/api/status", timeout=10).status_code == 401
        assert httpx.get(f"{base}/api/status", headers=auth, timeout=10).status_code == 200
        # The live stream sends the night's fragments, then only what changes.
        seen: list[str] = []
        with httpx.stream("GET", f"{base}/events/night", headers=auth, timeout=10) as res:
            assert res.headers["content-type"].startswith("text/event-stream")
            for line in res.iter_lines():
                if line.startswith("event: "):
                    seen.append(line.removeprefix("event: "))
                if len(seen) == 5:
                    break
        assert sorted(seen) == ["chart", "counts", "needs", "running", "supervisor"]
    finally:
        rc = served.stop()
    err = served.proc.stderr.read() if served.proc.stderr else ""
    assert "warning: serving on 0.0.0.0" in err and "plain HTTP" in err
    assert rc == 0, err
    assert not (night.home / "serve.token").exists()


def test_a_port_in_use_and_a_missing_extra_are_clear(night: Bantz) -> None:
    served = start_serve(night.home, night.env)
    try:
        port = served.base.rsplit(":", 1)[1]
        res = night("serve", "--port", port, timeout=30)
        assert res.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "--port" in res.stderr
    finally:
        served.stop()
    # Without the extra installed: the command says how to get it.
    code = (
        "import sys; sys.modules['starlette'] = None; sys.argv = ['bantzd'] + sys.argv[1:];"
        "from bantzd.cli import main; main()"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, "--home", str(night.home), "serve"],
        capture_output=True,
        text=True,
        env=night.env,
        timeout=30,
    )
    assert res.returncode == 1
    assert "pip install 'bantzd[web]'" in res.stderr and "starlette" in res.stderr


def test_the_stream_of_a_task_page_follows_its_log(tmp_path: Path) -> None:
    root = tmp_path / "home"
    Home(root).ensure()
    (root / "config.toml").write_text(config_text())
    bantz = Bantz(root)
    bantz.drop(
        "t.yaml",
        "name: ticker\nrun: |\n  for i in 1 2 3 4 5 6 7 8; do echo tick-$i; sleep 0.4; done\n",
    )
    bantz.start("run", "--once")
    wait_for(lambda: bantz.status_of(1) == "running", 20, what="the task to start")
    served = start_serve(root, bantz.env)
    try:
        import httpx

        auth = {"Authorization": f"Bearer {served.token}"}
        logs: list[str] = []
        started = time.monotonic()
        with httpx.stream("GET", f"{served.base}/events/task?id=1", headers=auth, timeout=20) as r:
            event = None
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "log":
                    logs.append(line)
                    if "tick-8" in line or time.monotonic() - started > 15:
                        break
        joined = "\n".join(logs)
        assert "tick-1" in joined and "tick-8" in joined
    finally:
        served.stop()
