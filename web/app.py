"""``setup_web(app)``: the web view (pages, feeds, static files) and the middlewares
every page relies on (sessions, CSRF, security headers, the 404 page)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from node.appkeys import SESSIONS, TEMPLATES

from .pages import ROUTES, not_found_middleware
from .render import Templates
from .security import csrf_middleware, headers_middleware
from .sessions import SessionStore, session_middleware

__all__ = ["STATIC_DIR", "add_page_routes", "setup_web", "web_middlewares"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_page_routes(app: web.Application) -> None:
    """Each page at its path and its JSON twin at the path + ``.json`` (``/index.json``
    for ``/``), plus the static files."""
    for path, handler, twin in ROUTES:
        if twin:
            app.router.add_get("/index.json" if path == "/" else path + ".json", handler)
        app.router.add_get(path, handler)
    app.router.add_static("/static/", STATIC_DIR, append_version=False)


def web_middlewares(sessions: SessionStore) -> list[object]:
    """Outermost first: headers on everything (404 pages too), then the 404 page,
    sessions, and the CSRF check closest to the handlers."""
    return [headers_middleware, not_found_middleware, session_middleware(sessions), csrf_middleware]


def setup_web(app: web.Application) -> None:
    sessions = SessionStore()
    app[SESSIONS] = sessions
    app[TEMPLATES] = Templates()
    app.middlewares.extend(web_middlewares(sessions))  # type: ignore[arg-type]
    add_page_routes(app)
