"""One context, two faces: a page is rendered as HTML (Jinja, ``base.html`` +
partials) or as its JSON twin from the very same context dict.

JSON is chosen by a ``.json`` suffix on the path (``/t/<id>.json``, ``/index.json``
for ``/``) or by ``Accept: application/json`` without ``text/html``. The template sees
the page's context plus ``ui`` (language, switcher links, CSRF token), which never goes
into the JSON.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from babel.dates import format_datetime
from markupsafe import Markup

from . import i18n
from .charts import bar_chart
from .markdown import render_markdown
from .reasons import reason_filter
from .sessions import get_session

__all__ = ["PAGE_DIGEST", "DigestSlot", "Templates", "Unchanged", "highlight", "page", "wants_json"]

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
HTML = "text/html"


def _datetime_filter(lang: str) -> Any:
    @functools.lru_cache(maxsize=4096)
    def fmt(ms: int | None) -> str:
        if ms is None:
            return ""
        when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
        return format_datetime(when, format="medium", tzinfo=dt.UTC, locale=lang) + " UTC"

    return fmt


def _iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short(key: str | None) -> str:
    return (key or "")[:12]


class Templates:
    """One Jinja environment per UI language (autoescape on everywhere, gettext
    installed from that language's catalog). Building it reads every catalog, compiles
    every template and loads each language's date formats, so serving a page does no
    file I/O on the event loop: build it in a thread (``asyncio.to_thread``)."""

    def __init__(self, directory: Path = TEMPLATE_DIR) -> None:
        self.envs: dict[str, jinja2.Environment] = {}
        loader = jinja2.FileSystemLoader(directory)
        for lang in i18n.LANGUAGES:
            env = jinja2.Environment(
                loader=loader,
                autoescape=True,
                extensions=["jinja2.ext.i18n"],
                auto_reload=False,
                cache_size=-1,
                trim_blocks=True,
                lstrip_blocks=True,
            )
            env.install_gettext_translations(  # type: ignore[attr-defined]
                i18n.translations(lang), newstyle=True
            )
            env.filters["datetime"] = _datetime_filter(lang)
            env.filters["iso"] = _iso
            env.filters["markdown"] = render_markdown
            env.filters["short"] = short
            env.filters["highlight"] = highlight
            env.filters["zip_counts"] = zip_counts
            env.filters["reason"] = reason_filter(lang)
            env.globals["bar_chart"] = bar_chart
            for name in loader.list_templates():
                env.get_template(name)
            env.filters["datetime"](0)  # Babel loads the locale's data on first use
            self.envs[lang] = env

    def render(self, lang: str, name: str, context: dict[str, Any]) -> str:
        return self.envs[lang].get_template(name).render(context)


def zip_counts(options: list[Any], counts: list[int]) -> list[tuple[str, int]]:
    return [(str(o), int(c)) for o, c in zip(options, counts, strict=False)]


def wants_json(request: web.Request) -> bool:
    if request.path.endswith(".json"):
        return True
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and HTML not in accept


@dataclass(slots=True)
class DigestSlot:
    """Put on a request by the page cache before it renders a page it already holds:
    ``known`` is the digest of the context that page was rendered from; :func:`page`
    fills ``digest`` with the new one."""

    known: bytes | None
    digest: bytes | None = None


PAGE_DIGEST = web.RequestKey("fora_page_digest", DigestSlot)


class Unchanged(Exception):
    """Raised by :func:`page` instead of rendering when the page cache asked and the
    context is the very one its kept page was rendered from (same template, status,
    language and data): the kept page is still right, the template need not run."""


def context_digest(template: str, status: int, context: dict[str, Any]) -> bytes | None:
    """A digest of everything a page's HTML is made of (its template, status and the
    context with ``ui``), or None when the context is not plain JSON data."""
    try:
        data = json.dumps(
            [template, status, context], ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError):
        return None
    return hashlib.blake2b(data.encode(), digest_size=16).digest()


def page(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """The page ``template`` with ``context``, or the context itself as JSON."""
    if wants_json(request):
        return web.json_response(context, status=status)
    from node.appkeys import TEMPLATES

    lang, remember = i18n.negotiate(request)
    session = get_session(request)
    base = request.path
    ui = {
        "lang": lang,
        "languages": i18n.LANGUAGES,
        "path": base,
        "query": {k: v for k, v in request.query.items() if k != "lang"},
        "json_url": json_url(request),
        "csrf_token": session.csrf_token if session is not None else "",
        "logged_in": session is not None and session.account_id is not None,
    }
    full = {**context, "ui": ui}
    slot = request.get(PAGE_DIGEST)
    if slot is not None:
        slot.digest = context_digest(template, status, full)
        if slot.digest is not None and slot.digest == slot.known and not remember:
            raise Unchanged
    text = request.app[TEMPLATES].render(lang, template, full)
    response = web.Response(text=text, content_type=HTML, status=status)
    if remember:
        response.set_cookie(
            i18n.COOKIE,
            lang,
            max_age=365 * 86_400,
            samesite="Lax",
            httponly=True,
            secure=request.secure,
            path="/",
        )
    return response


def json_url(request: web.Request) -> str:
    path = request.path
    path = "/index.json" if path == "/" else path.rstrip("/") + ".json"
    qs = request.query_string
    return f"{path}?{qs}" if qs else path


def highlight(text: str, words: list[str], *, width: int = 240) -> Markup:
    """``text`` escaped, cut to about ``width`` characters around the first match, with
    every word of the query (the last as a prefix) wrapped in ``<mark>``."""
    import re

    from markupsafe import escape

    text = text or ""
    if not words:
        return escape(text[:width])
    parts = [
        re.escape(w) + r"\w*" if i == len(words) - 1 else re.escape(w) + r"\b"
        for i, w in enumerate(words)
    ]
    pattern = re.compile(r"\b(?:" + "|".join(parts) + ")", re.IGNORECASE | re.UNICODE)
    first = pattern.search(text)
    start = 0 if first is None or first.start() < width // 2 else first.start() - width // 3
    cut = text[start : start + width]
    prefix = "…" if start > 0 else ""
    suffix = "…" if start + width < len(text) else ""
    out: list[str] = [prefix]
    pos = 0
    for m in pattern.finditer(cut):
        out.append(str(escape(cut[pos : m.start()])))
        out.append(f"<mark>{escape(m.group(0))}</mark>")
        pos = m.end()
    out.append(str(escape(cut[pos:])))
    out.append(suffix)
    return Markup("".join(out))  # noqa: S704 - every piece escaped above
