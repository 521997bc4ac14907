"""Markdown (morning reports, result.md, transcript.md) as HTML for the dashboard.

CommonMark with tables (markdown-it-py), raw HTML switched off, so whatever a task wrote is
shown as text, never run; links are kept only where markdown-it's own check allows them (no
`javascript:`). A ```mermaid fence becomes `<pre class="mermaid">` with its text escaped, which
the vendored Mermaid draws in the page; without JavaScript it stays readable as text.
The text is masked for secrets before it is parsed, so a masked value cannot be split by
markup.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from html import escape
from typing import Any


@lru_cache(maxsize=1)
def _renderer() -> Any:
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    default_fence = md.renderer.rules["fence"]

    def fence(renderer: Any, tokens: Any, idx: int, options: Any, env: Any) -> str:
        token = tokens[idx]
        if token.info.strip().lower() == "mermaid":
            return f'<pre class="mermaid">{escape(token.content)}</pre>\n'
        return str(default_fence(tokens, idx, options, env))

    md.add_render_rule("fence", fence)
    return md


def render_markdown(text: str, mask: Callable[[str], str] = str) -> str:
    """`text` (Markdown) as safe HTML, secrets masked first."""
    return str(_renderer().render(mask(text)))
