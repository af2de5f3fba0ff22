"""User text to safe HTML: Markdown through markdown-it-py with raw HTML off, then the
nh3 (ammonia) sanitizer as a second line of defence. The result is marked safe for
Jinja only after both."""

from __future__ import annotations

import functools

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

__all__ = ["render_markdown"]

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
_md.disable("image")  # no third-party images (and the CSP allows none)

_TAGS = {
    "p", "br", "hr", "em", "strong", "code", "pre", "blockquote", "ul", "ol", "li", "a",
    "h1", "h2", "h3", "h4", "h5", "h6",
}  # fmt: skip
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
_SCHEMES = {"http", "https", "mailto", "tel"}


@functools.lru_cache(maxsize=4096)
def render_markdown(text: str) -> Markup:
    """Markdown ``text`` as sanitized HTML; headings are shifted down (h1 -> h3) so a
    resident's text never adds a second h1 to a page. A message's text never changes,
    so the newest few thousand renderings are kept."""
    html = _md.render(text or "")
    for level in range(6, 0, -1):
        shifted = min(level + 2, 6)
        html = html.replace(f"<h{level}>", f"<h{shifted}>").replace(
            f"</h{level}>", f"</h{shifted}>"
        )
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="nofollow noopener noreferrer ugc",
    )
    return Markup(clean)  # noqa: S704 - sanitized just above
