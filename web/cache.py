"""Rendered pages kept per page version, so a page read again is not read and rendered
again.

A page's version is the store's write generation (any write may change any page: a
vote moves counts on the home page, a hide empties a comment) plus its age: an entry
older than :data:`TTL` seconds is rendered again (served once more meanwhile), for what
changes without a write through this process (a proposal closing as time passes, a
``fora post`` from another process, a peer's sync state). Only anonymous reads are
cached: a request with a session (a logged-in resident, or a form's CSRF token) or a
``?lang=`` (which sets a cookie) is always rendered. The key is the UI language, HTML
or JSON, and the path with its query string.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from node.appkeys import STORE

from . import i18n
from .render import wants_json
from .sessions import get_session

__all__ = ["MAX_BYTES", "MAX_ENTRIES", "PAGE_CACHE", "TTL", "PageCache", "cached"]

TTL = 10.0
MAX_ENTRIES = 2_000
MAX_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: int
    born: float
    status: int
    content_type: str
    charset: str | None
    body: bytes
    #: The body gzipped once (most browsers accept it: a quarter of the bytes to send).
    gzipped: bytes


def _size(entry: _Entry) -> int:
    return len(entry.body) + len(entry.gzipped)


class PageCache:
    """A bounded LRU of rendered pages (entries and bytes both bounded)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, bool, str], _Entry] = OrderedDict()
        self._bytes = 0
        #: Keys being rendered now: a request for one waits for that render (one
        #: render per page version, however many readers ask at once).
        self.pending: dict[tuple[str, bool, str], asyncio.Event] = {}
        #: Background renders of pages older than TTL (held so they are not collected).
        self.refreshing: set[asyncio.Task[web.StreamResponse]] = set()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[str, bool, str], generation: int) -> _Entry | None:
        """The entry of ``key`` for this generation, however old (see :func:`cached`)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def put(self, key: tuple[str, bool, str], entry: _Entry) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _size(old)
        if _size(entry) > self.max_bytes // 8:
            return
        self._entries[key] = entry
        self._bytes += _size(entry)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= _size(dropped)

    def drop(self, key: tuple[str, bool, str]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _size(old)

    def __len__(self) -> int:
        return len(self._entries)


#: The app's page cache (``setup_web`` puts one there).
PAGE_CACHE = web.AppKey("page_cache", PageCache)


_VARY = {"Vary": "Accept-Encoding"}
_GZIP = {"Vary": "Accept-Encoding", "Content-Encoding": "gzip"}


def _entry(response: web.StreamResponse, generation: int, now: float) -> _Entry | None:
    """What to keep of a rendered page: only a plain 200 without cookies."""
    if (
        type(response) is not web.Response
        or response.status != 200
        or response.cookies
        or not isinstance(response.body, bytes)
    ):
        return None
    body = response.body
    return _Entry(
        generation,
        now,
        response.status,
        response.content_type,
        response.charset,
        body,
        gzip.compress(body, compresslevel=6, mtime=0),
    )


async def _render(
    cache: PageCache, key: tuple[str, bool, str], handler: Handler, request: web.Request
) -> web.StreamResponse:
    """Render ``key`` once (other readers of it wait for this render) and keep it."""
    generation = request.app[STORE].generation  # before reading: a later write renews it
    rendering = cache.pending[key] = asyncio.Event()
    try:
        response = await handler(request)
        # A page whose handler started a session carries that session's CSRF token:
        # it is that reader's alone (its cookie is set later, by the session middleware).
        entry = (
            None
            if get_session(request) is not None
            else _entry(response, generation, time.monotonic())
        )
        if entry is not None:
            cache.put(key, entry)
        return response
    finally:
        if cache.pending.get(key) is rendering:
            del cache.pending[key]
        rendering.set()


def cached(handler: Handler) -> Handler:
    """``handler`` behind the page cache (anonymous GETs only).

    A page of the current generation younger than :data:`TTL` is served as is. An older
    one is still served once more while one background render replaces it (so a page
    everyone reads never makes them all wait at once); a write (a new generation) is
    never served stale: the first reader renders, the others wait for that render.
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.method != "GET" or "lang" in request.query or get_session(request) is not None:
            return await handler(request)
        cache = request.app.get(PAGE_CACHE)
        if cache is None:
            return await handler(request)
        lang, _ = i18n.negotiate(request)
        key = (lang, wants_json(request), request.path_qs)
        generation = request.app[STORE].generation
        entry = cache.get(key, generation)
        if entry is None and key in cache.pending:
            await cache.pending[key].wait()
            entry = cache.get(key, generation)
        if entry is None:
            return await _render(cache, key, handler, request)
        if time.monotonic() - entry.born >= TTL and key not in cache.pending:
            task = asyncio.create_task(_render(cache, key, handler, request))
            cache.refreshing.add(task)
            task.add_done_callback(_refreshed(cache, key))
        gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
        response = web.Response(
            body=entry.gzipped if gzipped else entry.body,
            status=entry.status,
            content_type=entry.content_type,
            charset=entry.charset,
            headers=_GZIP if gzipped else _VARY,
        )
        return response

    wrapper.__name__ = getattr(handler, "__name__", "page")
    wrapper.__doc__ = handler.__doc__
    return wrapper


def _refreshed(
    cache: PageCache, key: tuple[str, bool, str]
) -> Callable[[asyncio.Task[web.StreamResponse]], None]:
    def done(task: asyncio.Task[web.StreamResponse]) -> None:
        cache.refreshing.discard(task)
        if task.cancelled() or task.exception() is not None:
            # A page that now fails (or a render cut short) is rendered by its next reader.
            cache.drop(key)

    return done
