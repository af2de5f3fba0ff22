"""The web view's building blocks: sessions, CSRF with a real token, Markdown
sanitizing, highlighting and chart geometry."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.app import create_app
from node.folder import load_config
from node.publish import init_node
from web.charts import bar_chart
from web.markdown import render_markdown
from web.render import highlight
from web.sessions import COOKIE, SessionStore, get_session

Client = TestClient[Any, Any]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_sessions_expire_when_idle_and_at_their_age() -> None:
    clock = Clock()
    store = SessionStore(idle_seconds=60, max_age_seconds=300, clock=clock)
    s = store.create()
    assert len(s.id) >= 40 and s.csrf_token and s.csrf_token != s.id
    clock.now += 59
    assert store.get(s.id) is s
    clock.now += 59  # seen 59 s ago: still there
    assert store.get(s.id) is s
    clock.now += 60
    assert store.get(s.id) is None and len(store) == 0
    s2 = store.create()
    for _ in range(5):
        clock.now += 55
        assert store.get(s2.id) is s2
    clock.now += 30  # 305 s after it began: over its age, however active
    assert store.get(s2.id) is None
    assert store.get(None) is None and store.get("nope") is None


def test_sessions_are_bounded_least_recently_used_first() -> None:
    clock = Clock()
    store = SessionStore(max_sessions=3, clock=clock)
    a, b, c = store.create(), store.create(), store.create()
    a.account_id, a.signing_key = 7, object()
    assert store.get(a.id) is a  # a is now the most recently used
    d = store.create()
    assert len(store) == 3
    assert store.get(b.id) is None  # b went first
    assert all(store.get(x.id) is x for x in (a, c, d))
    store.drop(a.id)
    assert a.account_id is None and a.signing_key is None  # the key leaves memory with it


async def session_page(request: web.Request) -> web.Response:
    session = get_session(request, create=True)
    assert session is not None
    return web.json_response({"csrf": session.csrf_token})


async def form_post(request: web.Request) -> web.Response:
    form = await request.post()
    return web.json_response({"said": form.get("said")})


async def app_client(tmp_path: Path, make: Callable[..., Awaitable[Client]]) -> Client:
    init_node(tmp_path / "n", name="Gdańsk", country="PL", languages=["pl"])
    app = create_app(load_config(tmp_path / "n"))
    # A page that starts a session and a form handler, as the forms will be.
    app.router.add_get("/test/session", session_page)
    app.router.add_post("/test/form", form_post)
    return await make(app)


async def test_session_cookie_and_csrf_token(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await app_client(tmp_path, aiohttp_client)
    plain = await client.get("/")
    assert COOKIE not in plain.cookies  # reading never starts a session
    resp = await client.get("/test/session")
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie and "Secure" not in cookie  # plain http here
    token = (await resp.json())["csrf"]
    assert token not in cookie  # the cookie holds only the session id
    ok = await client.post("/test/form", data={"csrf_token": token, "said": "hello"})
    assert ok.status == 200 and (await ok.json())["said"] == "hello"
    header = await client.post("/test/form", data={"said": "hi"}, headers={"X-CSRF-Token": token})
    assert header.status == 200
    assert (await client.post("/test/form", data={"csrf_token": token[:-1] + "x"})).status == 403
    assert (await client.post("/test/form", data={"said": "no token"})).status == 403
    client.session.cookie_jar.clear()
    # The right token without its session is refused too.
    assert (await client.post("/test/form", data={"csrf_token": token})).status == 403


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    """A throwaway certificate for 127.0.0.1, so the test server speaks real TLS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    return ctx


async def test_session_cookie_is_secure_over_https(tmp_path: Path) -> None:
    init_node(tmp_path / "n", name="Gdańsk", country="PL", languages=["pl"])
    app = create_app(load_config(tmp_path / "n"))
    app.router.add_get("/test/session", session_page)
    server = TestServer(app)
    await server.start_server(ssl=self_signed(tmp_path))
    async with TestClient(server) as client:
        assert str(client.make_url("/")).startswith("https://")
        resp = await client.get("/test/session", ssl=False)
        cookie = resp.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        lang = await client.get("/?lang=it", ssl=False)
        assert "Secure" in lang.headers["Set-Cookie"]


def test_markdown_has_no_raw_html_and_safe_links() -> None:
    out = str(render_markdown("Hi <b>there</b> <img src=x onerror=alert(1)>\n\n# Title"))
    assert "<b>" not in out and "<img" not in out and "&lt;b&gt;" in out
    assert "<h3>Title</h3>" in out and "<h1>" not in out
    link = str(render_markdown("[a](javascript:alert(1)) [b](https://example.org/x)"))
    assert "javascript:" not in link.replace("[a](javascript:alert(1))", "")
    assert '<a href="https://example.org/x" rel="nofollow noopener noreferrer ugc">b</a>' in link
    assert str(render_markdown("**bold** _it_ `code`")) == (
        "<p><strong>bold</strong> <em>it</em> <code>code</code></p>\n"
    )


def test_highlight_escapes_and_marks_words() -> None:
    out = str(highlight("Trees <b>and</b> treehouses, TREES.", ["tree"]))
    assert (
        out
        == "<mark>Trees</mark> &lt;b&gt;and&lt;/b&gt; <mark>treehouses</mark>, <mark>TREES</mark>."
    )
    out = str(highlight("a tree is not a treehouse", ["tree", "a"]))
    # Earlier words match whole, the last one as a prefix (like the search).
    assert out == "<mark>a</mark> <mark>tree</mark> is not <mark>a</mark> treehouse"
    long = "x " * 300 + "needle " + "y " * 300
    cut = str(highlight(long, ["needle"]))
    assert cut.startswith("…") and cut.endswith("…") and "<mark>needle</mark>" in cut


def test_bar_chart_geometry() -> None:
    chart = bar_chart([("Yes", 3), ("No", 1), ("Abstain", 0)], css="vote")
    widths = [b["width"] for b in chart["bars"]]
    assert widths[0] > widths[1] > widths[2] == 0
    assert widths[0] == 3 * widths[1] or abs(widths[0] - 3 * widths[1]) <= 2
    assert [b["percent"] for b in chart["bars"]] == [75, 25, 0]
    assert chart["total"] == 4 and [b["css"] for b in chart["bars"]] == [
        "bar-vote0",
        "bar-vote1",
        "bar-vote2",
    ]
    empty = bar_chart([("Yes", 0), ("No", 0)])
    assert [b["width"] for b in empty["bars"]] == [0, 0] and empty["total"] == 0


async def test_static_files_come_from_memory_with_an_etag(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    client = await app_client(tmp_path, aiohttp_client)
    resp = await client.get("/static/fora.css")
    assert resp.status == 200 and resp.content_type == "text/css"
    assert b"focus-visible" in await resp.read()
    etag = resp.headers["ETag"]
    again = await client.get("/static/fora.css", headers={"If-None-Match": etag})
    assert again.status == 304
    for missing in ("/static/nope.css", "/static/..%2Fapp.py", "/static/babel.cfg"):
        assert (await client.get(missing)).status == 404
