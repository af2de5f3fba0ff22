"""The page cache: rendered pages kept per page version (the store's write generation),
anonymous GETs only, bounded in entries and bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from node.app import create_app
from node.appkeys import SESSIONS, STORE
from node.clock import now_ms
from node.folder import load_config
from node.publish import init_node
from storage.messages import ingest
from web import cache as web_cache
from web.cache import CACHE_CONTROL, PAGE_CACHE, VARY, PageCache, make_entry
from web.sessions import COOKIE

from .conftest import Factory

Client = TestClient[Any, Any]


async def test_a_write_through_the_store_renews_every_page(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    first = await (await client.get("/")).text()
    assert "Night buses" not in first and cache.misses == 1 and cache.hits == 0
    again = await client.get("/")
    assert await again.text() == first and cache.hits == 1
    # Served from the cache, the page keeps its headers and content type.
    assert again.content_type == "text/html" and again.charset == "utf-8"
    # Gzipped once for the clients that accept it (the test client does, and unzips).
    assert again.headers["Content-Encoding"] == "gzip"
    assert again.headers["Vary"] == VARY
    plain = await client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and await plain.text() == first
    assert again.headers["Content-Security-Policy"].startswith("default-src 'self'")
    json_twin = await client.get("/index.json")
    assert json_twin.content_type == "application/json"  # its own entry, not the HTML
    # A topic arrives through the store (as sync or a form would write it).
    f = Factory(key, start=now_ms() - 60_000)
    topic = f.topic("Night buses")
    results = await app[STORE].write(ingest, [topic.raw], now_ms=now_ms())
    assert results[0].result.value == "ok"
    assert "Night buses" in await (await client.get("/")).text()
    assert (await (await client.get("/index.json")).json())["topics"][0]["title"] == "Night buses"


async def test_sessions_and_language_choices_are_never_cached(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    german = await client.get("/?lang=de")
    assert german.cookies["fora_lang"].value == "de"  # the cookie is set every time
    await client.get("/?lang=de")
    assert (cache.hits, cache.misses, len(cache)) == (0, 0, 0)
    # The cookie now picks German: cached apart from the English page.
    de = await (await client.get("/")).text()
    client.session.cookie_jar.clear()
    en = await (await client.get("/")).text()
    assert '<html lang="de">' in de and '<html lang="en">' in en and len(cache) == 2
    # A request with a session (a logged-in resident, a form's token) is always rendered.
    session = app[SESSIONS].create()
    await client.get("/", cookies={COOKIE: session.id})
    assert (cache.hits, cache.misses) == (0, 2)
    # Unknown pages are not cached either.
    assert (await client.get(f"/t/{'0' * 64}")).status == 404
    assert len(cache) == 2


async def test_an_old_page_is_served_once_more_while_it_is_rendered_again(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    first = await (await client.get("/federation")).text()
    key = ("en", False, "http", client.host + ":" + str(client.port), "/federation")
    born = cache.get(key, app[STORE].generation).born  # type: ignore[union-attr]
    monkeypatch.setattr(web_cache, "TTL", 0.0)  # every entry is now old
    assert await (await client.get("/federation")).text() == first
    assert len(cache.refreshing) == 1
    await asyncio.gather(*cache.refreshing)
    renewed = cache.get(key, app[STORE].generation)
    assert renewed is not None and renewed.born > born and not cache.refreshing


def entry(body: bytes, generation: int = 0) -> Any:
    return make_entry(generation, 0.0, body, [("Content-Type", "text/html")], lang="en")


def key(name: str) -> Any:
    return ("en", False, "http", "h", name)


def test_the_cache_is_bounded_and_versioned() -> None:
    cache = PageCache(max_entries=2, max_bytes=1000)
    for name in ("a", "b", "c"):
        cache.put(key(name), entry(b"x" * 10))
    assert len(cache) == 2 and cache.get(key("a"), 0) is None
    assert cache.get(key("c"), 0) is not None
    # Another generation (a write happened) is a miss.
    assert cache.get(key("c"), 1) is None
    # Bytes (plain and gzipped) are bounded too, and a page larger than an eighth of
    # them is not kept.
    size = len(entry(b"x" * 100).body) + len(entry(b"x" * 100).gzipped)
    sized = PageCache(max_entries=100, max_bytes=size * 8)
    sized.put(key("big"), entry(b"x" * 101 + bytes(range(256))))
    assert len(sized) == 0
    for i in range(9):
        sized.put(key(str(i)), entry(b"x" * 100))
    assert len(sized) == 8 and sized.get(key("0"), 0) is None


async def test_a_page_that_starts_a_session_is_never_kept(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """Its HTML holds that session's CSRF token: another reader must never get it."""
    from aiohttp import web

    from web.sessions import get_session

    init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))

    async def form_page(request: web.Request) -> web.Response:
        session = get_session(request, create=True)
        assert session is not None
        return web.Response(text=f"token {session.csrf_token}", content_type="text/html")

    app.router.add_get("/a-form", web_cache.cached(form_page))
    client = await aiohttp_client(app)
    first = await client.get("/a-form")
    assert COOKIE in first.cookies
    client.session.cookie_jar.clear()  # another, anonymous reader
    second = await client.get("/a-form")
    assert await second.text() != await first.text()
    assert len(app[PAGE_CACHE]) == 0
