"""``setup_web(app)``: the web view (pages, feeds, static files) and the middlewares
every page relies on (sessions, CSRF, security headers, the 404 page)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from node.appkeys import SESSIONS, STATIC, STORE, TEMPLATES

from . import accounts, admin, forms, me, moderate
from .cache import PAGE_CACHE, DatabaseChanges, PageCache, cached_pages_middleware
from .pages import ROUTES, not_found_middleware
from .render import Templates
from .security import csrf_middleware, headers_middleware
from .sessions import SessionStore, session_middleware

__all__ = ["STATIC_DIR", "add_form_routes", "add_page_routes", "setup_web", "web_middlewares"]

STATIC_DIR = Path(__file__).resolve().parent / "static"


def add_page_routes(app: web.Application) -> None:
    """Each page at its path and its JSON twin at the path + ``.json`` (``/index.json``
    for ``/``), plus the static files.

    The page goes before its twin: aiohttp's router tries the resources under a path's
    first segment (``/t``, ``/m``) in the order they were added, one regex each, and the
    HTML page is what most requests ask for (``/t/{id}`` then matches at the first try;
    no path matches both, so the order changes nothing else)."""
    for path, handler, twin in ROUTES:
        app.router.add_get(path, handler)
        if twin:
            app.router.add_get("/index.json" if path == "/" else path + ".json", handler)
    app.router.add_get("/static/{name}", static_file)


def add_form_routes(app: web.Application) -> None:
    """What residents, moderators and admins do: accounts, forms, moderation, admin."""
    for method, path, handler in [*accounts.ROUTES, *admin.ROUTES, *me.ROUTES]:
        app.router.add_route(method, path, handler)
    for path, handler in [*forms.ROUTES, *moderate.ROUTES]:
        app.router.add_get(path, handler)
        app.router.add_post(path, handler)
    app.router.add_get("/mod/reports", moderate.reports)


def web_middlewares(sessions: SessionStore) -> list[object]:
    """Outermost first: headers on everything (404 pages too), then the 404 page,
    sessions, and the CSRF check closest to the handlers."""
    return [headers_middleware, not_found_middleware, session_middleware(sessions), csrf_middleware]


#: Content types of the static files (the only files served: web/static/*).
STATIC_TYPES = {".css": "text/css", ".svg": "image/svg+xml", ".ico": "image/x-icon"}


def load_static(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, content type, ETag) of every static file."""
    out = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in STATIC_TYPES:
            body = path.read_bytes()
            etag = hashlib.sha256(body).hexdigest()[:16]
            out[path.name] = (body, STATIC_TYPES[path.suffix], etag)
    return out


async def static_file(request: web.Request) -> web.Response:
    """A static file from memory (read at start, like the templates)."""
    found = request.app[STATIC].get(request.match_info["name"])
    if found is None:
        raise web.HTTPNotFound()
    body, content_type, etag = found
    headers = {"Cache-Control": "public, max-age=3600", "ETag": f'"{etag}"'}
    if request.headers.get("If-None-Match") == f'"{etag}"':
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type=content_type, headers=headers)


async def page_cache_ctx(app: web.Application) -> AsyncIterator[None]:
    """The page cache watches the database for commits (web/cache.py)."""
    cache = app.get(PAGE_CACHE)
    if cache is not None:
        cache.changes = DatabaseChanges(app[STORE].path)
    yield
    if cache is not None and cache.changes is not None:
        await cache.changes.close()
        cache.changes = None


async def templates_ctx(app: web.Application) -> AsyncIterator[None]:
    """Templates, catalogs, locale data and static files are read from disk once, at
    start and off the event loop: serving a page or the stylesheet does no file I/O."""
    app[TEMPLATES] = await asyncio.to_thread(Templates)
    app[STATIC] = await asyncio.to_thread(load_static)
    yield


def setup_web(app: web.Application) -> None:
    sessions = SessionStore()
    app[SESSIONS] = sessions
    app[accounts.ACCOUNTS] = accounts.AccountsState()
    app[PAGE_CACHE] = PageCache()
    app.cleanup_ctx.append(templates_ctx)
    app.cleanup_ctx.append(page_cache_ctx)
    app.cleanup_ctx.append(accounts.accounts_ctx)
    app.middlewares.extend(web_middlewares(sessions))  # type: ignore[arg-type]
    # Outermost of all (before node/app.py's guard): a kept page for an anonymous reader
    # is answered before the rest of the stack runs (web/cache.py).
    app.middlewares.insert(0, cached_pages_middleware)
    add_page_routes(app)
    add_form_routes(app)
