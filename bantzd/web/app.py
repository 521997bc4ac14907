"""The dashboard as an ASGI app (Starlette): pages, the live event streams, the actions.

    GET  /                 the night          GET  /tasks[?status=..&name=..]   the tasks
    GET  /tasks/ID         one task           GET  /reports, /reports/DATE      the reports
    GET  /api/status       `bantzd status --json`'s object (secrets masked)
    GET  /events/PAGE?...  server-sent events: that page's fragments, when they change
    GET  /schedules[?name=NAME]            the schedules (web/schedpage.py)
    GET  /schedules/remove?name=NAME       asks before removing one
    POST /act              cancel, retry, pause, resume, approve, reject, answer; and
                           schedule (op=pause|resume|fire|remove, schedule=NAME)

Every request passes the token gate (web/auth.py). Pages are plain HTML that read well
without JavaScript; htmx's SSE extension swaps in the fragments a stream sends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from bantzd.errors import BantzError
from bantzd.paths import Home
from bantzd.web import schedpage
from bantzd.web.auth import TokenGate, cookie_name
from bantzd.web.pages import PAGES, NotFound
from bantzd.web.render import render
from bantzd.web.snapshot import HomeView, mask_json

# How often an open page's stream looks at the home (the snapshot is shared by all of them).
INTERVAL = 1.0
FLASH = "bantzd_flash"
FORM_LIMIT = 64 * 1024
# What the page's buttons may ask, with exactly the CLI commands' effect (SPEC 14).
ACTIONS = frozenset(
    {"cancel", "retry", "pause", "resume", "approve", "reject", "answer", "schedule"}
)
NEEDS_TASK = ACTIONS - {"pause", "resume", "schedule"}


def create_app(home: Home, token: str, *, view: HomeView | None = None) -> Any:
    """The dashboard of `home`, behind the token gate."""
    view = view or HomeView(home)

    async def page(request: Request) -> Response:
        return await _page(request, view, _page_key(request))

    async def api_status(request: Request) -> Response:
        snap = await run_in_threadpool(view.snapshot)
        return JSONResponse(mask_json(snap.status, snap.mask))

    async def events(request: Request) -> Response:
        key = request.path_params["page"]
        if key not in PAGES or not PAGES[key].fragments:
            return Response("no such stream\n", status_code=404, media_type="text/plain")
        params = _query(request)
        try:  # a task that is gone: 204 tells EventSource to stop reconnecting
            await run_in_threadpool(lambda: PAGES[key].build(view, view.snapshot(), params))
        except NotFound:
            return Response(status_code=204)
        return EventSourceResponse(_stream(request, view, key, params), ping=15)

    async def act(request: Request) -> Response:
        fields = await _form(request)
        if fields is None:
            return Response("send the form url-encoded, under 64 KiB\n", status_code=400)
        reply = await run_in_threadpool(perform, home, fields)
        if fields.get("action") == "schedule":
            view.forget_schedules()  # the page it goes back to shows the change
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(reply, status_code=200 if reply.get("ok") else 400)
        response = RedirectResponse(_local(fields.get("next")), status_code=303)
        response.set_cookie(
            FLASH,
            quote(json.dumps({"ok": bool(reply.get("ok")), "message": reply.get("message", "")})),
            max_age=30,
            httponly=True,
            samesite="strict",
        )
        return response

    routes = [
        Route("/", page, name="night"),
        Route("/tasks", page, name="tasks"),
        Route("/tasks/{id:int}", page, name="task"),
        Route("/reports", page, name="reports"),
        Route("/reports/{name:str}", page, name="report"),
        Route("/schedules", page, name="schedules"),
        Route("/schedules/remove", page, name="schedule_remove"),
        Route("/api/status", api_status),
        Route("/events/{page:str}", events),
        Route("/act", act, methods=["POST"]),
        Mount("/static", app=StaticFiles(packages=[("bantzd.web", "static")]), name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.view = view
    return TokenGate(app, token=token, cookie=cookie_name(home))


def _page_key(request: Request) -> str:
    path = request.url.path.rstrip("/")
    if path == "":
        return "night"
    if path == "/tasks":
        return "tasks"
    if path.startswith("/tasks/"):
        return "task"
    if path == "/reports":
        return "reports"
    if path == "/schedules":
        return "schedules"
    if path == "/schedules/remove":
        return "schedule_remove"
    return "report"


async def _page(request: Request, view: HomeView, key: str) -> Response:
    params = {**_query(request), **{k: str(v) for k, v in request.path_params.items()}}
    spec = PAGES[key]

    def build() -> tuple[dict[str, Any], Any]:
        snap = view.snapshot()
        return spec.build(view, snap, params), snap

    try:
        context, snap = await run_in_threadpool(build)
    except NotFound as e:
        return HTMLResponse(
            render("missing.html", {"message": str(e), "page": key, "mask": str}), status_code=404
        )
    flash = _read_flash(request)
    query = {k: v for k, v in _query(request).items() if k != "token"}
    live = ""
    if spec.fragments:
        extra = {"id": params["id"]} if key == "task" else {}
        stream_query = urlencode({**query, **extra})
        live = f"/events/{key}" + (f"?{stream_query}" if stream_query else "")
    context.update(
        page=key,
        mask=snap.mask,
        flash=flash,
        live=live,
        here=request.url.path + (f"?{urlencode(query)}" if query else ""),
        snapshot_at=snap.at,
    )
    response = HTMLResponse(render(spec.template, context))
    if flash is not None:
        response.delete_cookie(FLASH)
    return response


def _query(request: Request) -> dict[str, str]:
    """The query's parameters; a repeated one (`?status=queued&status=held`, as the filter's
    checkboxes send it) joined with commas (`status=queued,held`)."""
    return {k: ",".join(request.query_params.getlist(k)) for k in request.query_params}


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH)
    if not raw:
        return None
    try:
        data = json.loads(unquote(raw))
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def _stream(
    request: Request, view: HomeView, key: str, params: dict[str, str]
) -> AsyncIterator[dict[str, str]]:
    """The page's fragments, each sent when it differs from what was sent last."""
    spec = PAGES[key]
    sent: dict[str, str] = {}

    def fragments() -> dict[str, str] | None:
        snap = view.snapshot()
        try:
            context = spec.build(view, snap, params)
        except NotFound:
            return None
        context.update(page=key, mask=snap.mask, here=_here(key, params))
        return {name: render(f"_{key}_{name}.html", context) for name in spec.fragments}

    while not await request.is_disconnected():
        found = await run_in_threadpool(fragments)
        if found is None:
            return
        for name, html in found.items():
            if sent.get(name) != html:
                sent[name] = html
                yield {"event": name, "data": html}
        await anyio.sleep(INTERVAL)


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form's fields (application/x-www-form-urlencoded, as pages send them);
    None for anything else or anything too big."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            return None
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None
    return dict(pairs)


def _here(key: str, params: dict[str, str]) -> str:
    """The address of the page a stream belongs to (where its buttons come back to)."""
    if key == "task":
        return f"/tasks/{params.get('id', '')}"
    if key == "tasks":
        query = {k: v for k, v in params.items() if k in ("status", "name")}
        return "/tasks" + (f"?{urlencode(query)}" if query else "")
    if key == "schedules":
        query = {k: v for k, v in params.items() if k == "name"}
        return "/schedules" + (f"?{urlencode(query)}" if query else "")
    return "/"


def _local(target: str | None) -> str:
    """Where to go after an action: a path of this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def perform(home: Home, fields: dict[str, str]) -> dict[str, Any]:
    """Apply one action from the page's form fields, exactly as the CLI command would:
    the task named by id or unique name (queue.lookup.resolve), the request sent through
    supervisor/control.py. Returns the reply `{"ok", "message", "exit"}`."""
    from bantzd.queue.lookup import resolve
    from bantzd.supervisor import control

    action = fields.get("action", "")
    if action not in ACTIONS:
        return {"ok": False, "exit": 2, "message": f"unknown action {action!r}"}
    if action == "schedule":
        return schedpage.perform(home, fields)
    ref = (fields.get("task") or "").strip() or None
    if ref is None and action in NEEDS_TASK:
        return {"ok": False, "exit": 2, "message": f"{action} needs a task"}
    params: dict[str, Any] = {}
    if action == "answer":
        text = fields.get("text", "")
        if not text.strip():
            return {"ok": False, "exit": 2, "message": "the answer is empty"}
        params = {"text": text, "key": (fields.get("key") or "").strip() or None}
    elif action == "reject":
        params = {"reason": (fields.get("reason") or "").strip() or None}
    try:
        task_id = resolve(home, ref).id if ref is not None else None
        return control.send(home, action, task_id, **params)
    except BantzError as e:
        return {"ok": False, "exit": e.exit_code, "message": str(e)}
