"""The page cache: rendered pages kept per page version (the store's write generation),
anonymous GETs only, bounded in entries and bytes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, make_mocked_request

from node.app import create_app
from node.appkeys import SESSIONS, STORE, TEMPLATES
from node.clock import now_ms
from node.folder import load_config
from node.publish import init_node
from storage.database import open_database
from storage.messages import ingest
from web import cache as web_cache
from web import pages as web_pages
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
    cache = PageCache(max_entries=2, max_bytes=100_000)
    for name in ("a", "b", "c"):
        cache.put(key(name), entry(b"x" * 10))
    assert len(cache) == 2 and cache.get(key("a"), 0) is None
    assert cache.get(key("c"), 0) is not None
    # Another generation (a write happened) is a miss.
    assert cache.get(key("c"), 1) is None
    # Bytes (plain, gzipped and the prebuilt heads) are bounded too, and a page larger
    # than an eighth of them is not kept.
    size = len(entry(b"x" * 100).body) + len(entry(b"x" * 100).gzipped)
    heads = entry(b"x" * 100).gzip_head, entry(b"x" * 100).plain_head
    size += sum(len(h) for h in (*heads, entry(b"x" * 100).not_modified_head) if h is not None)
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


# -- answered before the stack, exactly as the stack answers ----------------------------


async def _node_with_pages(tmp_path: Path) -> tuple[Any, list[bytes], list[str]]:
    """A node holding a topic with a comment and a proposal; its app and page paths."""
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    f = Factory(key, start=now_ms() - 60_000)
    topic = f.topic("Night buses")
    comment = f.comment(topic.id, "Every half hour, please.")
    proposal = f.proposal(topic.id)
    raws = [topic.raw, comment.raw, proposal.raw]
    return (
        app,
        raws,
        [
            "/",
            "/index.json",
            f"/t/{topic.id.hex()}",
            f"/t/{topic.id.hex()}.json",
            f"/m/{proposal.id.hex()}",
            "/federation",
            "/search?q=night",
        ],
    )


def _headers(resp: Any) -> list[tuple[str, str]]:
    """A response's headers but Date (its second may tick between two answers)."""
    return sorted((k.lower(), v) for k, v in resp.headers.items() if k.lower() != "date")


async def test_a_kept_page_is_answered_as_the_whole_stack_answers_it(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    app, raws, paths = await _node_with_pages(tmp_path)
    client = await aiohttp_client(app)
    await app[STORE].write(ingest, raws, now_ms=now_ms())
    cache = app[PAGE_CACHE]
    for path in paths:
        for encoding in ("gzip, deflate, br", "identity"):
            asked = {"Accept-Encoding": encoding, "Accept-Language": "fr-CH, fr;q=0.9"}
            rendered = await client.get(path, headers=asked, auto_decompress=False)
            early = cache.early
            fast = await client.get(path, headers=asked, auto_decompress=False)
            assert cache.early == early + 1, path  # answered before the stack
            # A session cookie the node does not know: the whole stack runs (sessions,
            # CSRF, headers, the 404 page, the guard) and the page comes from the cache.
            hits = cache.hits
            whole = await client.get(
                path, headers={**asked, "Cookie": f"{COOKIE}=unknown"}, auto_decompress=False
            )
            assert cache.early == early + 1 and cache.hits == hits + 1, path
            body = await rendered.read()
            assert rendered.status == fast.status == whole.status == 200, path
            assert await fast.read() == await whole.read() == body, path
            assert _headers(fast) == _headers(whole) == _headers(rendered), path
            assert fast.headers["Vary"] == VARY and fast.headers["Cache-Control"] == CACHE_CONTROL
            assert fast.headers["ETag"].startswith('W/"')
            assert fast.headers["X-Content-Type-Options"] == "nosniff"
            assert fast.headers["Referrer-Policy"] == "same-origin"
            assert fast.headers["Content-Security-Policy"].startswith("default-src 'self'")
            assert fast.headers.get("Content-Encoding") == (
                "gzip" if encoding.startswith("gzip") else None
            )
            if not path.endswith(".json"):
                assert fast.headers["Content-Language"] == "fr" and fast.content_type == "text/html"
            else:
                assert "Content-Language" not in fast.headers
                assert fast.content_type == "application/json"


async def _wire(client: Client, *requests: str) -> list[tuple[bytes, bytes]]:
    """Send ``requests`` (HTTP/1.x, pipelined in one write) on one connection; each
    answer as it came on the wire: its status line and headers (the Date's value blanked:
    its second may tick) and its body."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write("".join(requests).encode())
        answers = []
        for request in requests:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = 0
            for i, line in enumerate(lines):
                name, _, value = line.partition(b": ")
                if name.lower() == b"date":
                    lines[i] = name + b": -"
                elif name.lower() == b"content-length":
                    length = int(value)
            bodiless = request.startswith("HEAD ") or lines[0].split()[1] == b"304"
            body = b"" if bodiless else await reader.readexactly(length)
            answers.append((b"\r\n".join(lines), body))
        return answers
    finally:
        writer.close()
        await writer.wait_closed()


async def test_an_early_answer_is_byte_for_byte_the_whole_stacks(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the wire, in order: status line, every header (name, case, value, order) and
    body of an early answer written from the entry's prebuilt head are what aiohttp
    writes for the same page through the whole stack: GET and HEAD, gzipped and plain,
    HTML and JSON, a 304, pipelined requests; and HTTP/1.0 or ``Connection: close``
    (answered through aiohttp) too."""
    written: list[int] = []

    class Counted(web_cache._Early):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            written.append(self.status)

    monkeypatch.setattr(web_cache, "_Early", Counted)
    app, raws, paths = await _node_with_pages(tmp_path)
    client = await aiohttp_client(app)
    await app[STORE].write(ingest, raws, now_ms=now_ms())
    host = f"Host: {client.host}:{client.port}\r\n"
    whole = f"Cookie: {COOKIE}=unknown\r\n"  # a session the node does not know
    cache = app[PAGE_CACHE]
    for path in paths:
        for encoding in ("gzip, deflate, br", "identity"):
            asked = f"{host}Accept-Encoding: {encoding}\r\nAccept-Language: fr\r\n"
            await _wire(client, f"GET {path} HTTP/1.1\r\n{asked}\r\n")  # rendered
            (etag,) = [
                line.partition(b": ")[2].decode()
                for line in (await _wire(client, f"GET {path} HTTP/1.1\r\n{asked}\r\n"))[0][
                    0
                ].split(b"\r\n")
                if line.lower().startswith(b"etag:")
            ]
            for request in (
                f"GET {path} HTTP/1.1\r\n{asked}",
                f"HEAD {path} HTTP/1.1\r\n{asked}",
                f"GET {path} HTTP/1.1\r\n{asked}If-None-Match: {etag}\r\n",
                f"GET {path} HTTP/1.0\r\n{asked}",
                f"GET {path} HTTP/1.1\r\n{asked}Connection: close\r\n",
            ):
                early, before = cache.early, len(written)
                (fast,) = await _wire(client, request + "\r\n")
                assert cache.early == early + 1, request
                raw = "HTTP/1.1" in request and "close" not in request
                assert len(written) == before + raw, request
                (slow,) = await _wire(client, request + whole + "\r\n")
                assert fast == slow, request
                assert cache.early == early + 1 and len(written) == before + raw, request
    # Pipelined: three early answers written one after the other on one connection.
    three = [f"GET {path} HTTP/1.1\r\n{host}\r\n" for path in paths[:3]]
    assert await _wire(client, *three) == [
        (await _wire(client, request[:-2] + whole + "\r\n"))[0] for request in three
    ]


async def test_a_page_is_kept_per_target_as_sent(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """The key holds the request target undecoded: one page spelled two ways is kept
    twice, each answered early with the same page; a JSON twin is JSON whatever
    Accept says, and a page asked for as JSON through Accept is kept apart."""
    from yarl import URL

    app, raws, paths = await _node_with_pages(tmp_path)
    client = await aiohttp_client(app)
    await app[STORE].write(ingest, raws, now_ms=now_ms())
    cache = app[PAGE_CACHE]
    topic = paths[2]
    spelled = topic[:3] + "%" + format(ord(topic[3]), "02x") + topic[4:]
    bodies = []
    for path in (topic, spelled, topic, spelled):
        resp = await client.get(URL(path, encoded=True))
        assert resp.status == 200 and resp.content_type == "text/html", path
        bodies.append(await resp.read())
    assert len(set(bodies)) == 1 and cache.early == 2 and len(cache) == 2
    for accept in ("text/html", "application/json"):
        twin = await client.get(topic + ".json", headers={"Accept": accept})
        assert twin.content_type == "application/json", accept
    asked = await client.get(topic, headers={"Accept": "application/json"})
    assert asked.content_type == "application/json" and len(cache) == 5


def test_the_early_answers_date_and_language_are_aiohttps_and_negotiates() -> None:
    from aiohttp.helpers import rfc822_formatted_time
    from aiohttp.test_utils import make_mocked_request
    from multidict import CIMultiDict

    from web import i18n

    while True:  # the same second for both
        ours, theirs = web_cache._http_date(), rfc822_formatted_time()
        if ours == web_cache._http_date():
            break
    assert ours.decode() == theirs
    for headers in (
        {},
        {"Accept-Language": "fr-CH, fr;q=0.9"},
        {"Accept-Language": "xx, pl;q=0.5"},
        {"Cookie": "fora_lang=lv", "Accept-Language": "de"},
        {"Cookie": "fora_lang=xx; other=1", "Accept-Language": "it"},
        {"Cookie": "unrelated=1"},
    ):
        request = make_mocked_request("GET", "/t/abc", headers=CIMultiDict(headers))
        assert web_cache._negotiated(request) == i18n.negotiate(request)[0], headers


async def test_a_kept_page_holds_what_the_page_renders_without_a_cache(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """The same pages from a node without a page cache: the same bytes, and every header
    it sends the cached node sends too, with the same value."""
    app, raws, paths = await _node_with_pages(tmp_path)
    uncached = create_app(load_config(tmp_path / "n"))
    del uncached[PAGE_CACHE]
    client = await aiohttp_client(app)
    plain = await aiohttp_client(uncached)
    await app[STORE].write(ingest, raws, now_ms=now_ms())
    for path in paths:
        for _ in range(2):  # rendered, then kept
            ours = await client.get(path, headers={"Accept-Encoding": "identity"})
            theirs = await plain.get(path, headers={"Accept-Encoding": "identity"})
            assert await ours.read() == await theirs.read(), path
            added = dict(_headers(ours))
            for name, value in _headers(theirs):
                if name != "content-length":
                    assert added.pop(name) == value, (path, name)
            assert set(added) == {"vary", "cache-control", "etag", "content-length"} | (
                set() if path.endswith(".json") else {"content-language"}
            )
    assert app[PAGE_CACHE].early == len(paths)


async def test_a_head_and_a_reader_with_a_language_cookie_are_answered_early(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    get = await client.get("/federation", headers={"Accept-Encoding": "identity"})
    head = await client.head("/federation", headers={"Accept-Encoding": "identity"})
    assert head.status == 200 and await head.read() == b"" and cache.early == 1
    assert _headers(head) == _headers(get)
    assert int(head.headers["Content-Length"]) == len(await get.read())
    # The language a reader chose (the cookie ?lang= set) picks the kept page.
    await client.get("/federation?lang=de")
    assert cache.early == 1
    await client.get("/federation")
    german = await client.get("/federation")
    assert cache.early == 2 and german.headers["Content-Language"] == "de"
    assert '<html lang="de">' in await german.text()


async def test_a_reader_who_holds_the_page_gets_a_304_until_it_changes(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    first = await client.get("/")
    etag = first.headers["ETag"]
    for held in (etag, f'W/"other", {etag}', "*", etag.removeprefix("W/")):
        early = cache.early
        fast = await client.get("/", headers={"If-None-Match": held})
        assert fast.status == 304 and await fast.read() == b"" and cache.early == early + 1
        whole = await client.get(
            "/", headers={"If-None-Match": held, "Cookie": f"{COOKIE}=unknown"}
        )
        assert whole.status == 304 and _headers(whole) == _headers(fast)
        assert fast.headers["ETag"] == etag and fast.headers["Vary"] == VARY
        assert "Content-Type" not in fast.headers and "Content-Encoding" not in fast.headers
    other = await client.get("/", headers={"If-None-Match": 'W/"other"'})
    assert other.status == 200 and other.headers["ETag"] == etag
    # A new topic changes the page: the reader holding the old one gets the new one.
    f = Factory(key, start=now_ms() - 60_000)
    await app[STORE].write(ingest, [f.topic("Night buses").raw], now_ms=now_ms())
    changed = await client.get("/", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert "Night buses" in await changed.text()


async def test_a_write_that_leaves_a_page_as_it_was_does_not_render_it_again(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    f = Factory(key, start=now_ms() - 60_000)
    topic = f.topic("Night buses")
    await app[STORE].write(ingest, [topic.raw], now_ms=now_ms())
    topic_page = f"/t/{topic.id.hex()}"
    before = {p: await client.get(p) for p in ("/moderation", topic_page, "/")}
    rendered: list[str] = []
    templates = app[TEMPLATES]
    real_render = templates.render

    def counting_render(lang: str, name: str, context: dict[str, Any]) -> str:
        rendered.append(name)
        return real_render(lang, name, context)

    monkeypatch.setattr(templates, "render", counting_render)
    # A comment on the topic: its page and the home page (the topic's comment count)
    # change and are rendered again at once; the moderation log does not change.
    comment = f.comment(topic.id, "Every half hour, please.")
    await app[STORE].write(ingest, [comment.raw], now_ms=now_ms())
    after = {p: await client.get(p) for p in before}
    assert "Every half hour, please." in await after[topic_page].text()
    assert after[topic_page].headers["ETag"] != before[topic_page].headers["ETag"]
    assert after["/moderation"].headers["ETag"] == before["/moderation"].headers["ETag"]
    assert await after["/moderation"].text() == await before["/moderation"].text()
    assert "moderation.html" not in rendered and "topic.html" in rendered
    assert cache.unchanged == 1 + ("community.html" not in rendered)
    # An old page with nothing committed since it was read is renewed without reading.
    monkeypatch.setattr(web_cache, "TTL", 0.0)
    rendered.clear()
    await client.get("/moderation")
    await asyncio.gather(*cache.refreshing)
    assert rendered == [] and cache.unread == 1


async def test_an_old_page_is_read_again_after_another_process_wrote(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ``fora post`` from another process commits without this node's store: the
    page is read again at its age and shows it (the store's generation cannot tell)."""
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    config = load_config(tmp_path / "n")
    app = create_app(config)
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    f = Factory(key, start=now_ms() - 60_000)
    topic = f.topic("Night buses")
    await app[STORE].write(ingest, [topic.raw], now_ms=now_ms())
    page = f"/t/{topic.id.hex()}"
    before = await (await client.get(page)).text()
    generation = app[STORE].generation
    other = open_database(config.db_path)  # another process's connection
    try:
        with other.conn:
            results = ingest(other, [f.comment(topic.id, "Every half hour.").raw], now_ms=now_ms())
        assert results[0].result.value == "ok"
    finally:
        other.close()
    assert app[STORE].generation == generation
    # Younger than TTL, the kept page is still served (the bound the TTL sets).
    assert await (await client.get(page)).text() == before
    monkeypatch.setattr(web_cache, "TTL", 0.0)
    await client.get(page)  # served once more while it is read again
    await asyncio.gather(*cache.refreshing)
    assert cache.unread == 0
    monkeypatch.setattr(web_cache, "TTL", 60.0)
    assert "Every half hour." in await (await client.get(page)).text()


async def test_a_page_is_read_again_when_the_clock_changes_it(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A proposal page says whether voting is open: once it closes, the kept page is
    read again at its age though nothing was written; before, it is renewed unread."""
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    start = now_ms()
    f = Factory(key, start=start - 60_000)
    topic = f.topic("Night buses")
    proposal = f.proposal(topic.id, closes=start + 3_600_000)
    await app[STORE].write(ingest, [topic.raw, proposal.raw], now_ms=start)
    page = f"/m/{proposal.id.hex()}.json"
    assert (await (await client.get(page)).json())["open"] is True
    monkeypatch.setattr(web_cache, "TTL", 0.0)
    await client.get(page)
    await asyncio.gather(*cache.refreshing)
    assert cache.unread == 1  # an hour before it closes, nothing to read again
    # Two hours later (the pages' clock and the cache's).
    later = start + 7_200_000
    monkeypatch.setattr(web_pages, "now_ms", lambda: later)
    monkeypatch.setattr(web_cache, "now_ms", lambda: later)
    await client.get(page)
    await asyncio.gather(*cache.refreshing)
    assert cache.unread == 1
    monkeypatch.setattr(web_cache, "TTL", 60.0)
    assert (await (await client.get(page)).json())["open"] is False


async def test_the_host_a_page_was_asked_for_is_part_of_its_key(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    """A feed's links are absolute, made from the Host header: a feed asked for with
    another Host must never be answered to readers of this one."""
    _config, key, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    f = Factory(key, start=now_ms() - 60_000)
    await app[STORE].write(ingest, [f.topic("Night buses").raw], now_ms=now_ms())
    feed = f"/c/{f.community.hex()}/feed.atom"
    forged = await client.get(feed, headers={"Host": "evil.example"})
    assert "http://evil.example/" in await forged.text()
    own = await (await client.get(feed)).text()
    assert "evil.example" not in own and f"http://{client.host}:{client.port}/" in own


def test_each_page_is_tried_before_its_json_twin() -> None:
    """aiohttp's router tries the resources under a path's first segment in the order
    they were added: the page most requests ask for comes first, and both it and its
    twin still resolve to the page's handler."""
    from aiohttp import web
    from aiohttp.test_utils import make_mocked_request

    from web.app import add_form_routes, add_page_routes

    app = web.Application()
    add_page_routes(app)
    add_form_routes(app)
    canonical = [resource.canonical for resource in app.router.resources()]
    for prefix in ("/t/", "/m/", "/c/", "/members/"):
        under = [c for c in canonical if c.startswith(prefix)]
        assert under[0].endswith("}"), under
        assert under[1] == under[0] + ".json", under

    async def resolve(path: str) -> str:
        info = await app.router.resolve(make_mocked_request("GET", path, app=app))
        return str(info.route.resource.canonical)

    hex_id = "ab" * 32
    assert asyncio.run(resolve(f"/t/{hex_id}")).endswith("{id}")
    assert asyncio.run(resolve(f"/t/{hex_id}.json")).endswith("{id}.json")
    assert asyncio.run(resolve(f"/m/{hex_id}")).endswith("{id}")


async def test_readers_of_an_old_page_start_one_render_between_them(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """However many readers ask for an old page at once, one render renews it (each
    is served the old page meanwhile)."""
    init_node(tmp_path / "n", name="Bomarzo", country="IT")
    app = create_app(load_config(tmp_path / "n"))
    client = await aiohttp_client(app)
    cache = app[PAGE_CACHE]
    first = await (await client.get("/federation")).text()
    assert cache.changes is not None
    release = asyncio.Event()
    real_version = cache.changes.version

    async def held_version() -> int:
        await release.wait()
        return await real_version()

    monkeypatch.setattr(cache.changes, "version", held_version)
    monkeypatch.setattr(web_cache, "TTL", 0.0)  # every entry is now old
    # Twenty readers in the same turn of the loop (as a busy server reads them), through
    # the page's own handler, then more through the whole stack while it renders.
    page = next(h for p, h, _ in web_pages.ROUTES if p == "/federation")
    host = {"Host": f"{client.host}:{client.port}"}
    same_turn = await asyncio.gather(
        *(page(make_mocked_request("GET", "/federation", headers=host, app=app)) for _ in range(20))
    )
    assert {a.body for a in same_turn} == {first.encode()}  # type: ignore[attr-defined]
    answers = await asyncio.gather(*(client.get("/federation") for _ in range(5)))
    assert [await a.text() for a in answers] == [first] * 5
    assert len(cache.refreshing) == 1
    release.set()
    await asyncio.gather(*cache.refreshing)
    assert cache.unread == 1 and not cache.pending
