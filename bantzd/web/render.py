"""The Jinja2 templates of the dashboard, with secret masking built in.

Autoescape is on for every template, so any text a task wrote (a name, a log line with
`<script>`, a question) is shown as text. And every `{{ value }}` that is a string goes
through the page's `mask` (the report's redaction of the tasks' env secrets) before it is
escaped: a template cannot forget to mask. HTML made by our own code (the charts, rendered
Markdown) comes in as `Markup`, masked at its source.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup


@pass_context
def _finalize(ctx: Context, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and not isinstance(value, Markup):
        mask = ctx.get("mask")
        return mask(value) if callable(mask) else value
    return value


def _clock(value: object) -> str:
    if not isinstance(value, int | float):
        return ""
    return datetime.fromtimestamp(value).strftime("%H:%M:%S")


def _pct(value: object) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "0"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bantzd.web", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pct"] = _pct
    env.filters["clock"] = _clock
    return env


def render(template: str, context: dict[str, Any]) -> str:
    """`template` rendered with `context` (which should hold `mask`)."""
    return environment().get_template(template).render(context)
