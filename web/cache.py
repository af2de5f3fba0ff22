"""Rendered pages kept per page version, so a page read again is not read and rendered
again, and a kept page is answered before the rest of the middleware stack runs.

A page's version is the store's write generation (any write may change any page: a
vote moves counts on the home page, a hide empties a comment) plus its age: an entry
older than :data:`TTL` seconds is rendered again (served once more meanwhile), for what
changes without a write through this process (a proposal closing as time passes, a
``fora post`` from another process, a peer's sync state). Rendering a page the cache
already holds first reads its context again and compares a digest of it with the one
the kept page came from (:func:`render.page` raises :class:`render.Unchanged`): a page a
write did not touch is then kept as it is, without running its template again.

Only anonymous reads are cached: a request with a session (a logged-in resident, or a
form's CSRF token) or a ``?lang=`` (which sets a cookie) is always rendered. The key is
the UI language, whether ``Accept`` asks for JSON, the scheme and Host the page was asked
for (feeds write absolute links) and the request target (path and query) as sent.

Every kept page is answered with the same header set, built once per entry:
:data:`SECURITY_HEADERS`, ``Vary`` (what the page depends on besides its path),
``Cache-Control: no-cache`` with a weak ``ETag`` (a browser asks again each time and
gets a 304 when the page did not change), ``Content-Language`` on HTML, and the body
plain or gzipped. :func:`cached_pages_middleware`, the outermost middleware, answers a
fresh kept page to an anonymous reader from that alone; everything else goes through
the whole stack, where :func:`cached` answers from the very same entries.

The early answer to an HTTP/1.1 keep-alive request is written as bytes built once per
entry (the status line and headers exactly as aiohttp would write them for that
page's ``web.Response``, with its ``Content-Length``, then the current ``Date`` and
``Server``): aiohttp's preparation of a response (its header checks, the Date and
Server defaults, serializing a dozen headers) was a fifth of the CPU of an early
answer. Any other request (HTTP/1.0, ``Connection: close``, an app with
``on_response_prepare`` handlers) is answered with a ``web.Response`` as before.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import gzip
import hashlib
import math
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import SERVER_SOFTWARE, HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

from node.appkeys import STORE
from node.clock import now_ms

from . import i18n, render
from .security import SECURITY_HEADERS
from .sessions import COOKIE as SESSION_COOKIE
from .sessions import get_session

__all__ = [
    "CACHE_CONTROL",
    "MAX_BYTES",
    "MAX_ENTRIES",
    "PAGE_CACHE",
    "TTL",
    "VARY",
    "DatabaseChanges",
    "PageCache",
    "cached",
    "cached_pages_middleware",
    "changes_at",
    "make_entry",
]

TTL = 10.0
MAX_ENTRIES = 2_000
MAX_BYTES = 64 * 1024 * 1024

#: What a kept page depends on besides its URL: JSON or HTML (``Accept``), gzip, the UI
#: language (``Accept-Language``, the language cookie) and whether there is a session.
VARY = "Accept, Accept-Encoding, Accept-Language, Cookie"
#: Browsers may keep a page but ask again before showing it (a 304 when unchanged).
CACHE_CONTROL = "no-cache"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Key = tuple[str, bool, str, str, str]

_READS = frozenset({"GET", "HEAD"})
#: Headers of a rendered response the kept page does not repeat (aiohttp writes these).
_NOT_KEPT = frozenset({"content-length", "date", "server", "set-cookie", "transfer-encoding"})
#: What aiohttp refuses in a header (a header injection): such a page gets no raw head.
_FORBIDDEN = frozenset(chr(c) for c in (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F))


@dataclass(frozen=True, slots=True)
class _Entry:
    generation: int
    born: float
    body: bytes
    #: The body gzipped once (most browsers accept it: a quarter of the bytes to send).
    gzipped: bytes
    #: The digest of the context the page was rendered from (None: not known).
    digest: bytes | None
    etag: str
    #: The headers of the plain and gzipped answers and of a 304, built once.
    plain_headers: CIMultiDictProxy[str]
    gzip_headers: CIMultiDictProxy[str]
    not_modified_headers: CIMultiDictProxy[str]
    #: The database's version (:class:`DatabaseChanges`) read before the page's data.
    version: int | None
    #: When the page may change by the clock alone (ms; -inf: any time, +inf: never).
    clock_until: float
    #: The status line and headers of the gzipped, plain and 304 answers to HTTP/1.1 as
    #: aiohttp writes them, up to the Date's value (:class:`_Early`); None: not made.
    gzip_head: bytes | None = None
    plain_head: bytes | None = None
    not_modified_head: bytes | None = None


def make_entry(
    generation: int,
    born: float,
    body: bytes,
    headers: list[tuple[str, str]],
    *,
    lang: str,
    digest: bytes | None = None,
    version: int | None = None,
    clock_until: float = -math.inf,
) -> _Entry:
    """An entry for ``body``; ``headers`` are the rendered response's own (its
    Content-Type first of all)."""
    etag = 'W/"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    own = [(k, v) for k, v in headers if k.lower() not in _NOT_KEPT]
    html = any(k.lower() == "content-type" and v.startswith("text/html") for k, v in own)
    common = [
        *own,
        *([("Content-Language", lang)] if html else []),
        ("Vary", VARY),
        ("Cache-Control", CACHE_CONTROL),
        ("ETag", etag),
        *SECURITY_HEADERS.items(),
    ]
    plain = CIMultiDict(common)
    gzipped = CIMultiDict(common)
    gzipped["Content-Encoding"] = "gzip"
    validators = {"vary", "cache-control", "etag", *(k.lower() for k in SECURITY_HEADERS)}
    not_modified = CIMultiDict((k, v) for k, v in common if k.lower() in validators)
    squeezed = gzip.compress(body, compresslevel=6, mtime=0)
    return _Entry(
        generation,
        born,
        body,
        squeezed,
        digest,
        etag,
        CIMultiDictProxy(plain),
        CIMultiDictProxy(gzipped),
        CIMultiDictProxy(not_modified),
        version,
        clock_until,
        _head("200 OK", gzipped, len(squeezed)),
        _head("200 OK", plain, len(body)),
        _head("304 Not Modified", not_modified, None),
    )


def _head(status: str, headers: CIMultiDict[str], length: int | None) -> bytes | None:
    """What aiohttp writes before a ``web.Response``'s body for HTTP/1.1 keep-alive, up to
    the Date's value: its status line, ``headers`` in their order, ``Content-Length``
    (``length``; a 304 has none), then ``Date: ``. None where aiohttp would write more or
    other headers than these (no Content-Type or an empty body: it adds or drops some) or
    refuse one (a control character): that answer goes through aiohttp."""
    if length is not None and (length == 0 or "Content-Type" not in headers):
        return None
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items())]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if any(not _FORBIDDEN.isdisjoint(line) for line in lines):
        return None
    return ("\r\n".join(lines) + "\r\nDate: ").encode()


#: What follows the Date's value in a raw head: aiohttp's Server header, the blank line.
_TAIL = f"\r\nServer: {SERVER_SOFTWARE}\r\n\r\n".encode()


@functools.lru_cache(maxsize=1)
def _date_of(second: int) -> bytes:
    return email.utils.formatdate(second, usegmt=True).encode()


def _http_date() -> bytes:
    """The Date header's value now (IMF-fixdate, as aiohttp writes it), made once a second."""
    return _date_of(int(time.time()))


class _Early(web.StreamResponse):
    """A kept page's answer written as one block: its prebuilt head, the Date, the Server
    header and the body (none for a HEAD or a 304). aiohttp calls :meth:`prepare` and
    :meth:`write_eof` on what a handler returns; these write through the connection's
    own writer (``request.writer``) as ``web.Response`` does, so keep-alive, pipelining
    and back-pressure are aiohttp's.

    Its ``headers`` are the page's own, read-only (they were written already: a
    middleware outside :func:`cached_pages_middleware` that set one would fail here,
    not send a page without it), without Content-Length, Date and Server."""

    def __init__(
        self, head: bytes, body: bytes, status: int, headers: CIMultiDictProxy[str]
    ) -> None:
        super().__init__(status=status)
        self._kept_headers = headers
        self._head = head
        self._raw_body = body
        self._writer: AbstractStreamWriter | None = None
        self._done = False
        self._closing = False
        self._sent = 0

    @property
    def headers(self) -> CIMultiDictProxy[str]:  # type: ignore[override]
        return self._kept_headers

    @property
    def keep_alive(self) -> bool:
        return not self._closing  # only HTTP/1.1 keep-alive requests get one

    def force_close(self) -> None:
        self._closing = True

    @property
    def prepared(self) -> bool:
        return self._done or self._writer is not None

    @property
    def body_length(self) -> int:
        return self._sent

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self._done:
            return None
        if self._writer is None:
            self._writer = request.writer
        return self._writer

    async def write_eof(self, data: bytes = b"") -> None:
        if self._done:
            return
        writer = self._writer
        assert writer is not None and not data, "prepare() first; no data"
        self._done, self._writer = True, None
        block = b"".join((self._head, _http_date(), _TAIL, self._raw_body))
        self._sent = len(block)
        await writer.write_eof(block)


class DatabaseChanges:
    """Whether anyone committed to the database since a moment: SQLite's
    ``PRAGMA data_version`` on a read-only connection of its own, used from a thread of
    its own. It changes on every commit by another connection: this node's writer, and
    another process (``fora post``, ``fora account add``) too, which the store's write
    generation does not see."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fora-cache-changes")
        self._db: sqlite3.Connection | None = None

    def _version(self) -> int:
        if self._db is None:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    async def version(self) -> int:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._version)

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
        self._pool.shutdown()


#: When the page being rendered may change by the clock alone (see :func:`changes_at`).
_CLOCK = web.RequestKey("fora_page_clock", float)


def changes_at(request: web.Request, when_ms: int | None) -> None:
    """Declared by a page handler: the page it renders may change by the clock alone at
    ``when_ms`` (a proposal closing), or never (None). A page whose handler declares
    nothing is read again every :data:`TTL` seconds; a declared one only when the
    database changed (any process) or that moment has passed."""
    request[_CLOCK] = math.inf if when_ms is None else float(when_ms)


def _size(entry: _Entry) -> int:
    heads = (entry.gzip_head, entry.plain_head, entry.not_modified_head)
    return len(entry.body) + len(entry.gzipped) + sum(len(h) for h in heads if h is not None)


class PageCache:
    """A bounded LRU of rendered pages (entries and bytes both bounded)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._bytes = 0
        #: Keys being rendered now: a request for one waits for that render (one
        #: render per page version, however many readers ask at once).
        self.pending: dict[Key, asyncio.Event] = {}
        #: Background renders of pages older than TTL (held so they are not collected).
        self.refreshing: set[asyncio.Task[web.StreamResponse]] = set()
        self.hits = 0
        self.misses = 0
        #: Hits answered by :func:`cached_pages_middleware`, before the rest of the stack.
        self.early = 0
        #: Renders that found the context unchanged and kept the page without its template.
        self.unchanged = 0
        #: Old pages renewed without reading (nothing committed, not due by the clock).
        self.unread = 0
        #: Set when the app starts (``setup_web``): the database's version.
        self.changes: DatabaseChanges | None = None

    def get(self, key: Key, generation: int) -> _Entry | None:
        """The entry of ``key`` for this generation, however old (see :func:`cached`)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def fresh(self, key: Key, generation: int) -> _Entry | None:
        """The entry of ``key`` when it is of this generation and younger than TTL
        (counted as a hit); otherwise None, and nothing counted (the whole stack will)."""
        entry = self._entries.get(key)
        if entry is None or entry.generation != generation or time.monotonic() - entry.born >= TTL:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry

    def peek(self, key: Key) -> _Entry | None:
        """The entry of ``key`` of any generation (what a render compares with)."""
        return self._entries.get(key)

    def put(self, key: Key, entry: _Entry) -> None:
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

    def drop(self, key: Key) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= _size(old)

    def __len__(self) -> int:
        return len(self._entries)


#: The app's page cache (``setup_web`` puts one there).
PAGE_CACHE = web.AppKey("page_cache", PageCache)


def _key(request: web.Request) -> Key | None:
    """The cache key of an anonymous read, or None when this request must be rendered
    (not a GET or HEAD, or a ``?lang=``, which sets a cookie). Sessions are checked by
    the callers.

    The key is the UI language (:func:`i18n.negotiate`'s), whether ``Accept`` asks for
    JSON rather than HTML, the scheme, ``Host`` and the request target as sent (path and
    query, not decoded: decoding was most of what a key cost; a path spelled two ways,
    ``/t/ab`` and ``/t/%61b``, is kept twice, as two query strings always were). A
    ``.json`` target is JSON whatever ``Accept`` says: the target is in the key."""
    if request.method not in _READS:
        return None
    target = request.raw_path
    headers = request.headers
    if "?" in target:
        if "lang" in request.query:
            return None
        lang, _ = i18n.negotiate(request)
    else:
        lang = _negotiated(request)
    accept = headers.get("Accept", "")
    return (
        lang,
        "application/json" in accept and render.HTML not in accept,
        request.scheme,
        headers.get("Host", ""),
        target,
    )


def _negotiated(request: web.Request) -> str:
    """:func:`i18n.negotiate`'s language for a request with no query string (so no
    ``?lang=``): the language cookie, else Accept-Language; without parsing an empty
    query (``tests/test_web_cache.py`` compares the two)."""
    headers = request.headers
    if "Cookie" in headers:
        cookie = request.cookies.get(i18n.COOKIE, "")
        if cookie in i18n.LANGUAGES:
            return cookie
    return i18n.accepted_language(headers.get("Accept-Language", ""))


def _etag_matches(header: str, etag: str) -> bool:
    """Whether If-None-Match ``header`` names ``etag`` (weak comparison, RFC 9110)."""
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in header.split(","))


def respond(entry: _Entry, request: web.Request) -> web.Response:
    """A kept page's answer: a 304 to a reader who holds it, else its body, gzipped
    for a reader who accepts gzip."""
    if_none_match = request.headers.get("If-None-Match")
    if if_none_match is not None and _etag_matches(if_none_match, entry.etag):
        return web.Response(status=304, headers=entry.not_modified_headers)
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=entry.gzipped, headers=entry.gzip_headers)
    return web.Response(body=entry.body, headers=entry.plain_headers)


def respond_early(entry: _Entry, request: web.Request) -> web.StreamResponse:
    """:func:`respond`'s answer, written from the entry's prebuilt heads (:class:`_Early`)
    where aiohttp would write exactly those: an HTTP/1.1 keep-alive request, and no
    ``on_response_prepare`` handler that might change a response's headers."""
    if request.version != HttpVersion11 or not request.keep_alive:
        return respond(entry, request)
    for app in request.match_info.apps:
        if app.on_response_prepare:
            return respond(entry, request)
    headers = request.headers
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None and _etag_matches(if_none_match, entry.etag):
        head, body, kept, status = entry.not_modified_head, b"", entry.not_modified_headers, 304
    elif "gzip" in headers.get("Accept-Encoding", ""):
        head, body, kept, status = entry.gzip_head, entry.gzipped, entry.gzip_headers, 200
    else:
        head, body, kept, status = entry.plain_head, entry.body, entry.plain_headers, 200
    if head is None:
        return respond(entry, request)
    return _Early(head, b"" if request.method == "HEAD" else body, status, kept)


def _entry(
    response: web.StreamResponse,
    generation: int,
    now: float,
    lang: str,
    digest: bytes | None,
    version: int | None,
    clock_until: float,
) -> _Entry | None:
    """What to keep of a rendered page: only a plain 200 without cookies."""
    if (
        type(response) is not web.Response
        or response.status != 200
        or response.cookies
        or not isinstance(response.body, bytes)
        or "Content-Encoding" in response.headers
    ):
        return None
    return make_entry(
        generation,
        now,
        response.body,
        list(response.headers.items()),
        lang=lang,
        digest=digest,
        version=version,
        clock_until=clock_until,
    )


async def _render(
    cache: PageCache,
    key: Key,
    handler: Handler,
    request: web.Request,
    rendering: asyncio.Event | None = None,
) -> web.StreamResponse:
    """Render ``key`` once (other readers of it wait for this render) and keep it.
    ``rendering``: the event a caller already put in ``cache.pending`` for it.

    When the cache holds an older page of ``key``: of this generation, with nothing
    committed to the database since it was read and not due by the clock, it is renewed
    without reading; otherwise its data is read again and, unchanged, the kept page is
    renewed without running its template."""
    generation = request.app[STORE].generation  # before reading: a later write renews it
    rendering = cache.pending[key] = rendering or asyncio.Event()
    previous = cache.peek(key)
    try:
        version = await cache.changes.version() if cache.changes is not None else None
        if (
            previous is not None
            and version is not None
            and previous.version == version
            and previous.generation == generation
            and now_ms() < previous.clock_until
        ):
            renewed = dataclasses.replace(previous, born=time.monotonic())
            cache.put(key, renewed)
            cache.unread += 1
            return respond(renewed, request)
        slot = request[render.PAGE_DIGEST] = render.DigestSlot(
            previous.digest if previous is not None else None
        )
        try:
            response = await handler(request)
        except render.Unchanged:
            # The digest covers the CSRF token the page would show: a page whose handler
            # started a session never matches an anonymous page's digest.
            assert previous is not None
            renewed = dataclasses.replace(
                previous,
                generation=generation,
                born=time.monotonic(),
                version=version,
                clock_until=request.get(_CLOCK, -math.inf),
            )
            cache.put(key, renewed)
            cache.unchanged += 1
            return respond(renewed, request)
        # A page whose handler started a session carries that session's CSRF token:
        # it is that reader's alone (its cookie is set later, by the session middleware).
        entry = (
            None
            if get_session(request) is not None
            else _entry(
                response,
                generation,
                time.monotonic(),
                key[0],
                slot.digest,
                version,
                request.get(_CLOCK, -math.inf),
            )
        )
        if entry is None:
            return response
        cache.put(key, entry)
        return respond(entry, request)
    finally:
        if cache.pending.get(key) is rendering:
            del cache.pending[key]
        rendering.set()


def cached(handler: Handler) -> Handler:
    """``handler`` behind the page cache (anonymous GETs and HEADs only).

    A page of the current generation younger than :data:`TTL` is served as is. An older
    one is still served once more while one background render replaces it (so a page
    everyone reads never makes them all wait at once); a write (a new generation) is
    never served stale: the first reader renders, the others wait for that render.
    """

    async def wrapper(request: web.Request) -> web.StreamResponse:
        cache = request.app.get(PAGE_CACHE)
        key = _key(request) if cache is not None else None
        if cache is None or key is None or get_session(request) is not None:
            return await handler(request)
        generation = request.app[STORE].generation
        entry = cache.get(key, generation)
        if entry is None and key in cache.pending:
            await cache.pending[key].wait()
            entry = cache.get(key, generation)
        if entry is None:
            return await _render(cache, key, handler, request)
        if time.monotonic() - entry.born >= TTL and key not in cache.pending:
            # Pending from now, not from when the task first runs: the other readers
            # of this old page in the same turn of the loop start no render of their own.
            rendering = cache.pending[key] = asyncio.Event()
            task = asyncio.create_task(_render(cache, key, handler, request, rendering))
            cache.refreshing.add(task)
            task.add_done_callback(_refreshed(cache, key, rendering))
        return respond(entry, request)

    wrapper.__name__ = getattr(handler, "__name__", "page")
    wrapper.__doc__ = handler.__doc__
    wrapper.page_cache = True  # type: ignore[attr-defined]
    return wrapper


@web.middleware
async def cached_pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: a fresh kept page asked for by a reader with no session
    cookie is answered here, with the headers the whole stack would give it (the test
    ``test_a_kept_page_is_answered_as_the_whole_stack_answers_it`` compares them).
    Anything else (a session cookie, a page to render or to renew, a form, the sync API)
    goes on through the stack."""
    if (
        request.method in _READS
        and getattr(request.match_info.handler, "page_cache", False)
        and ("Cookie" not in request.headers or SESSION_COOKIE not in request.cookies)
    ):
        cache = request.app.get(PAGE_CACHE)
        key = _key(request) if cache is not None else None
        if cache is not None and key is not None:
            entry = cache.fresh(key, request.app[STORE].generation)
            if entry is not None:
                cache.early += 1
                return respond_early(entry, request)
    return await handler(request)


def _refreshed(
    cache: PageCache, key: Key, rendering: asyncio.Event
) -> Callable[[asyncio.Task[web.StreamResponse]], None]:
    def done(task: asyncio.Task[web.StreamResponse]) -> None:
        cache.refreshing.discard(task)
        if cache.pending.get(key) is rendering:  # a task cancelled before it ran
            del cache.pending[key]
            rendering.set()
        if task.cancelled() or task.exception() is not None:
            # A page that now fails (or a render cut short) is rendered by its next reader.
            cache.drop(key)

    return done
