"""The web view on aiohttp's test server: every page type, its JSON twin, feeds,
languages, security headers, CSRF and the 404 page."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import feedparser
import pytest
from aiohttp.test_utils import TestClient
from sqlite_utils import Database

from node.app import create_app
from node.clock import now_ms
from node.folder import load_config
from node.publish import init_node
from node.wire import join_messages
from protocol.messages import Message
from storage import peers as peer_fns
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key

Client = TestClient[Any, Any]
ALICE, BOB, CAROL, MOD, OFFICIAL = (seeded_key(i) for i in (10, 11, 12, 13, 14))
DAY = 86_400_000


@dataclass
class World:
    client: Client
    f: Factory
    other: Factory
    m: dict[str, Message]


def put(db: Database, *messages: Message) -> None:
    results = ingest(db, [m.raw for m in messages], now_ms=now_ms())
    assert all(r.result.value == "ok" for r in results), results


def build(db: Database, f: Factory, other: Factory) -> dict[str, Message]:
    m: dict[str, Message] = {}
    put(
        db,
        f.grant(ALICE),
        f.grant(BOB),
        f.grant(MOD, "moderator"),
        f.grant(OFFICIAL, "official"),
    )
    m["topic"] = f.topic("Schools", key=ALICE)
    m["wide"] = f.make(
        "topic",
        {
            "title": "Regional buses",
            "text": "Buses between towns.",
            "lang": "en",
            "tags": ["transport"],
            "scope": "regional",
        },
        key=ALICE,
    )
    t = m["topic"].id
    m["open"] = f.proposal(t, "Electric bus", closes=now_ms() + 30 * DAY, key=ALICE)
    m["closed"] = f.proposal(t, "Bike lanes", closes=NOW - 1_800_000, key=BOB, ts=NOW - 3_000_000)
    m["verified"] = f.proposal(t, "Solar roof", closes=NOW - 1_800_000, key=BOB, ts=NOW - 2_900_000)
    v1 = f.vote(m["closed"].id, "yes", key=ALICE, ts=NOW - 2_000_000)
    v2 = f.vote(m["verified"].id, "no", key=ALICE, ts=NOW - 2_000_000)
    m["mismatch_tally"] = f.tally(m["closed"].id, bytes(32), yes=5, ts=NOW - 1_000_000)
    m["good_tally"] = f.tally(
        m["verified"].id, hashlib.sha256(v2.id).digest(), no=1, ts=NOW - 1_000_000
    )
    m["story"] = f.make(
        "story",
        {
            "title": "Our school garden",
            "text": "We planted **tomatoes**. <script>alert(1)</script>",
            "lang": "en",
        },
        refs=(t,),
        key=BOB,
    )
    m["c1"] = f.comment(t, "First comment about gardens.", key=BOB)
    m["c2"] = f.comment(m["c1"].id, "A reply to the first.", key=ALICE)
    m["c3"] = f.comment(t, "Rude words here.", key=BOB)
    m["hide"] = f.hide(m["c3"].id, "insults", key=MOD)
    m["petition"] = f.make(
        "petition",
        {"title": "Save the park", "text": "Please.", "goal": 2, "closes": now_ms() + DAY},
        refs=(t,),
        key=ALICE,
    )
    m["sign"] = f.make("sign", {}, refs=(m["petition"].id,), key=BOB)
    m["survey"] = f.make(
        "survey",
        {
            "title": "Town survey",
            "intro": "Tell us.",
            "questions": [
                {"text": "How happy?", "type": "scale", "options": ["1", "2", "3"]},
                {"text": "Anything else?", "type": "text", "options": []},
            ],
            "opens": NOW - DAY,
            "closes": now_ms() + DAY,
        },
        key=OFFICIAL,
    )
    m["answer"] = f.make("answer", {"answers": [2, "More trees"]}, refs=(m["survey"].id,), key=BOB)
    m["meeting"] = f.make(
        "meeting",
        {
            "title": "Council",
            "starts": NOW,
            "ends": NOW + 3_600_000,
            "place": "Town hall",
            "agenda": "Budget.",
        },
        key=OFFICIAL,
    )
    m["minutes"] = f.make("minutes", {"text": "Approved."}, refs=(m["meeting"].id,), key=OFFICIAL)
    m["infokit"] = f.make(
        "infokit",
        {"title": "Fire", "text": "Call 112.", "category": "emergency", "lang": "en"},
        key=OFFICIAL,
    )
    put(db, *(v for k, v in m.items()), v1, v2, f.vote(m["open"].id, "yes", key=ALICE))
    put(db, f.vote(m["open"].id, "no", key=BOB))
    # Another community, followed: its profile, a member, a European topic, and that
    # member's comment on our topic (their home community is shown).
    put(
        db,
        other.make(
            "community",
            {"name": "Bomarzo", "country": "IT", "region": "", "languages": ["it"], "about": ""},
        ),
        other.grant(CAROL),
    )
    m["euro"] = other.make(
        "topic",
        {
            "title": "Gemellaggio europeo",
            "text": "Scambi tra scuole.",
            "lang": "it",
            "tags": ["europa"],
            "scope": "european",
        },
        key=CAROL,
    )
    m["carol"] = other.make(
        "comment", {"text": "Saluti da Bomarzo.", "lang": "it"}, refs=(t,), key=CAROL
    )
    put(db, m["euro"], m["carol"])
    peer_fns.follow(db, other.community, via="test", now_ms=NOW)
    return m


@pytest.fixture
async def world(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> World:
    config, key, _ = init_node(tmp_path / "n", name="Liepāja", country="LV", languages=["lv"])
    f = Factory(key, start=NOW - 3_600_000)
    other = Factory(seeded_key(2), start=NOW - 3_500_000)
    db = open_database(config.db_path)
    try:
        m = build(db, f, other)
    finally:
        db.close()
    client = await aiohttp_client(create_app(load_config(tmp_path / "n")))
    return World(client, f, other, m)


async def get_json(client: Client, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, (path, resp.status, await resp.text())
    assert resp.content_type == "application/json"
    return await resp.json()


async def get_html(client: Client, path: str, **headers: str) -> str:
    resp = await client.get(path, headers=headers)
    assert resp.status == 200, (path, resp.status)
    assert resp.content_type == "text/html"
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'self'; script-src")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"]
    text = await resp.text()
    assert len(re.findall(r"<h1[ >]", text)) == 1, path
    assert 'href="#main"' in text and 'id="main"' in text
    assert "<script" not in text and "style=" not in text
    return text


def titles(items: list[dict[str, Any]]) -> list[str]:
    return [i["title"] for i in items]


async def test_home_page_and_its_twin(world: World) -> None:
    c = world.client
    data = await get_json(c, "/index.json")
    assert data == await (await c.get("/", headers={"Accept": "application/json"})).json()
    assert data["community"]["name"] == "Liepāja" and data["own"] is True
    assert titles(data["topics"]) == ["Regional buses", "Schools"]
    assert titles(data["stories"]) == ["Our school garden"]
    assert [g["category"] for g in data["infokit"]] == ["emergency"]
    # Open proposals closing soon: the open one only, with its live counts.
    assert titles(data["closing_soon"]) == ["Electric bus"]
    assert data["closing_soon"][0]["counts"]["yes"] == 1
    assert data["closing_soon"][0]["counts"]["no"] == 1
    by_scope = await get_json(c, "/index.json?scope=regional")
    assert titles(by_scope["topics"]) == ["Regional buses"]
    by_tag = await get_json(c, "/index.json?tag=Education")
    assert titles(by_tag["topics"]) == ["Schools"]
    assert (await c.get("/?scope=galactic")).status == 400
    html = await get_html(c, "/")
    assert '<html lang="en">' in html and "Electric bus" in html and "Fire" in html
    css = await c.get("/static/fora.css")
    assert css.status == 200
    assert len(html.encode()) + len(await css.read()) < 50_000


async def test_topic_page_threads_comments_and_shows_home_communities(world: World) -> None:
    c, m = world.client, world.m
    data = await get_json(c, f"/t/{m['topic'].id.hex()}.json")
    assert data["topic"]["title"] == "Schools"
    assert set(titles(data["proposals"])) == {"Electric bus", "Bike lanes", "Solar roof"}
    assert titles(data["stories"]) == ["Our school garden"]
    thread = [(x["text"], x["depth"]) for x in data["comments"]]
    assert thread == [
        ("First comment about gardens.", 1),
        ("A reply to the first.", 2),
        ("Saluti da Bomarzo.", 1),
    ]
    assert data["names"][world.other.community.hex()] == "Bomarzo"
    html = await get_html(c, f"/t/{m['topic'].id.hex()}")
    assert "Rude words" not in html  # hidden by a moderator
    assert '<div class="text" lang="it">' in html and "Bomarzo</a>" in html
    # The reply is nested inside the first comment's list item.
    first = html.index("First comment")
    reply = html.index("A reply")
    assert '<ul class="thread">' in html[first:reply]
    assert f"/t/{m['topic'].id.hex()}/feed.atom" in html


async def test_proposal_pages_counts_and_tallies(world: World) -> None:
    c, m = world.client, world.m
    live = await get_json(c, f"/m/{m['open'].id.hex()}.json")
    assert live["open"] is True and live["counts"]["yes"] == 1 and live["counts"]["no"] == 1
    assert live["tally_status"] == "none"
    html = await get_html(c, f"/m/{m['open'].id.hex()}")
    assert 'role="img"' in html and "<figcaption" in html and "Yes: 1 (50 %)" in html
    bad = await get_json(c, f"/m/{m['closed'].id.hex()}.json")
    assert bad["open"] is False and bad["tally_status"] == "mismatch"
    html = await get_html(c, f"/m/{m['closed'].id.hex()}")
    assert "does not match the recount" in html
    # The table says what differs: the tally's 5 yes against 1 here.
    row = re.search(
        r"<tr class=\"differs\"><th scope=\"row\">Yes</th><td>(\d+)</td><td>(\d+)</td>", html
    )
    assert row is not None and row.groups() == ("5", "1")
    good = await get_json(c, f"/m/{m['verified'].id.hex()}.json")
    assert good["tally_status"] == "verified"
    assert "matches the recount" in await get_html(c, f"/m/{m['verified'].id.hex()}")


async def test_story_petition_survey_meeting_pages(world: World) -> None:
    c, m = world.client, world.m
    story = await get_json(c, f"/m/{m['story'].id.hex()}.json")
    assert story["kind"] == "story" and story["parent"]["title"] == "Schools"
    html = await get_html(c, f"/m/{m['story'].id.hex()}")
    assert "<strong>tomatoes</strong>" in html and "&lt;script&gt;" in html
    petition = await get_json(c, f"/m/{m['petition'].id.hex()}.json")
    assert petition["counts"]["signatures"] == 1 and petition["counts"]["goal"] == 2
    assert "1 signature" in await get_html(c, f"/m/{m['petition'].id.hex()}")
    survey = await get_json(c, f"/m/{m['survey'].id.hex()}.json")
    assert survey["respondents"] == 1
    assert survey["results"][0]["counts"] == [0, 0, 1]
    assert survey["results"][1]["text_answers"] == 1
    html = await get_html(c, f"/m/{m['survey'].id.hex()}")
    assert "3: 1 (100 %)" in html and "1 written answer" in html
    meeting = await get_json(c, f"/m/{m['meeting'].id.hex()}.json")
    assert [x["text"] for x in meeting["minutes"]] == ["Approved."]
    html = await get_html(c, f"/m/{m['meeting'].id.hex()}")
    assert "Town hall" in html and "Approved." in html
    vote = await get_json(c, f"/m/{m['mismatch_tally'].id.hex()}.json")
    assert vote["kind"] == "tally" and vote["message"]["tally"]["status"] == "mismatch"
    await get_html(c, f"/m/{m['mismatch_tally'].id.hex()}")


async def test_hidden_content_never_reaches_a_page_or_its_twin(world: World) -> None:
    c, m = world.client, world.m
    raw = await (await c.get(f"/m/{m['c3'].id.hex()}.json")).text()
    assert "Rude" not in raw
    data = await get_json(c, f"/m/{m['c3'].id.hex()}.json")
    assert data["thing"]["status"] == "hidden"
    html = await get_html(c, f"/m/{m['c3'].id.hex()}")
    assert "Rude" not in html and "Hidden by a moderator" in html


async def test_search_highlights(world: World) -> None:
    c = world.client
    data = await get_json(c, "/search.json?q=garden")
    assert set(titles(data["results"])) >= {"Our school garden"}
    html = await get_html(c, "/search?q=garden")
    assert "<mark>garden</mark>" in html
    html = await get_html(c, "/search?q=%3Cscript%3E")
    assert "<script>" not in html
    assert (await get_json(c, "/search.json"))["results"] == []


async def test_federation_followed_peers_and_wide_topics(world: World) -> None:
    c = world.client
    data = await get_json(c, "/federation.json")
    held = {f["community"]: f for f in data["followed"]}
    other = world.other.community.hex()
    assert held[other]["messages_held"] == 4 and held[other]["via"] == "test"
    assert held[world.f.community.hex()]["own"] is True
    assert titles(data["topics"]) == ["Gemellaggio europeo", "Regional buses"]
    html = await get_html(c, "/federation")
    assert "Bomarzo" in html and 'lang="it"' in html
    # A followed community has its own home page, feed and JSON twin.
    page = await get_json(c, f"/c/{other}.json")
    assert page["own"] is False and page["community"]["name"] == "Bomarzo"
    assert titles(page["topics"]) == ["Gemellaggio europeo"]
    html = await get_html(c, f"/c/{other}?lang=it")
    assert "<h1>Bomarzo</h1>" in html and "Argomenti" in html
    assert (await c.get(f"/c/{other}/feed.atom")).status == 200


async def test_moderation_log_and_member_page(world: World) -> None:
    c, m = world.client, world.m
    log = (await get_json(c, "/moderation.json"))["log"]
    assert [(e["action"], e["target"], e["reason"]) for e in log] == [
        ("hide", m["c3"].id.hex(), "insults")
    ]
    assert "insults" in await get_html(c, "/moderation")
    alice = seeded_key(10)
    from protocol import signing

    key = signing.public_key_bytes(alice).hex()
    member = await get_json(c, f"/members/{key}.json")
    assert "Schools" in titles(member["things"]) and member["roles"][0]["role"] == "member"
    await get_html(c, f"/members/{key}")
    assert (await c.get(f"/members/{'ab' * 32}")).status == 404


async def test_unknown_ids_get_a_real_404_page(world: World) -> None:
    c = world.client
    for path in [f"/t/{'00' * 32}", f"/m/{'00' * 32}", f"/c/{'00' * 32}", "/no/such/page"]:
        resp = await c.get(path)
        assert resp.status == 404
        text = await resp.text()
        assert "<h1>Not found</h1>" in text and '<html lang="en">' in text
        assert resp.headers["Content-Security-Policy"]
    resp = await c.get(f"/t/{'00' * 32}.json")
    assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    # The sync API keeps its own plain errors.
    resp = await c.post(f"/sync/v1/reconcile/{'00' * 32}", data=b"")
    assert resp.status == 404 and (await resp.text()).startswith("Error:")


async def test_atom_feeds(world: World) -> None:
    c, m = world.client, world.m
    resp = await c.get(f"/c/{world.f.community.hex()}/feed.atom")
    assert resp.status == 200 and resp.content_type == "application/atom+xml"
    feed = feedparser.parse(await resp.read())
    assert not feed.bozo and feed.feed.title == "Liepāja"
    assert [e.title for e in feed.entries][:3] == ["Our school garden", "Regional buses", "Schools"]
    resp = await c.get(f"/t/{m['topic'].id.hex()}/feed.atom")
    feed = feedparser.parse(await resp.read())
    assert not feed.bozo and feed.feed.title == "Schools"
    got = {e.title for e in feed.entries}
    assert {"Electric bus", "Our school garden", "Saluti da Bomarzo."} <= got
    assert not any("Rude" in e.get("summary", "") for e in feed.entries)
    assert (await c.get(f"/t/{'00' * 32}/feed.atom")).status == 404


async def test_language_negotiation_switcher_and_cookie(world: World) -> None:
    c = world.client
    html = await get_html(c, "/federation", **{"Accept-Language": "fr-CH, fr;q=0.9, en;q=0.5"})
    assert '<html lang="fr">' in html and "Pairs" in html
    resp = await c.get("/federation?lang=de")
    assert resp.status == 200 and "fora_lang=de" in resp.headers["Set-Cookie"]
    assert '<html lang="de">' in await resp.text()
    # The cookie now wins over Accept-Language; the switcher keeps the query.
    html = await get_html(c, "/search?q=garden", **{"Accept-Language": "it"})
    assert '<html lang="de">' in html
    assert 'href="/search?q=garden&amp;lang=pl"' in html
    html = await get_html(c, "/", **{"Accept-Language": "xx, pl;q=0.1"})
    assert '<html lang="de">' in html


async def test_csrf_guards_every_post_outside_the_sync_api(world: World) -> None:
    c = world.client
    resp = await c.post("/", data={"x": "1"})
    assert resp.status == 403
    resp = await c.post("/search", data={"csrf_token": "forged"})
    assert resp.status == 403
    # The sync API is not a form: no token needed.
    resp = await c.post("/sync/v1/push", data=b"\x90")
    assert resp.status == 200


async def test_a_long_topic_page_stays_small_and_pages_its_comments(world: World) -> None:
    c, f, m = world.client, world.f, world.m
    t = m["topic"].id
    text = "A considered opinion about the school, with a few details. " * 4
    comments = [f.comment(t, f"{i:03d} {text}", key=ALICE if i % 2 else BOB) for i in range(80)]
    stories = [
        f.story(t, f"Story {i} " + "of the old school building " * 3, key=BOB) for i in range(30)
    ]
    resp = await c.post("/sync/v1/push", data=join_messages([x.raw for x in comments + stories]))
    assert resp.status == 200
    html = await get_html(c, f"/t/{t.hex()}")
    css = await (await c.get("/static/fora.css")).read()
    size = len(html.encode()) + len(css)
    assert size < 50_000, size
    first = await get_json(c, f"/t/{t.hex()}.json")
    assert len(first["comments"]) == 30
    assert first["comments_page"] == {"page": 1, "previous": None, "next": 2}
    assert 'rel="next" href="/t/' in html and "?page=2" in html
    last = await get_json(c, f"/t/{t.hex()}.json?page=3")
    assert last["comments_page"]["next"] is None and last["comments_page"]["previous"] == 2
    shown = [
        x["id"]
        for p in (1, 2, 3)
        for x in (await get_json(c, f"/t/{t.hex()}.json?page={p}"))["comments"]
    ]
    assert len(shown) == len(set(shown)) == 83  # 80 new + 3 visible before
    assert (await c.get(f"/t/{t.hex()}?page=zero")).status == 400


async def test_a_hidden_topic_keeps_its_content_and_children_off_the_pages(world: World) -> None:
    c, f, m = world.client, world.f, world.m
    reply = f.comment(m["wide"].id, "Under the regional topic.", key=BOB)
    resp = await c.post("/sync/v1/push", data=join_messages([reply.raw]))
    assert resp.status == 200
    assert len((await get_json(c, f"/t/{m['wide'].id.hex()}.json"))["comments"]) == 1
    resp = await c.post("/sync/v1/push", data=join_messages([f.hide(m["wide"].id, key=MOD).raw]))
    assert resp.status == 200
    page = await get_json(c, f"/t/{m['wide'].id.hex()}.json")
    assert page["topic"]["status"] == "hidden" and "title" not in page["topic"]
    assert page["comments"] == [] and page["proposals"] == []
    html = await get_html(c, f"/t/{m['wide'].id.hex()}")
    assert "Regional buses" not in html and "Under the regional" not in html
    assert titles((await get_json(c, "/index.json"))["topics"]) == ["Schools"]
    assert (await c.get(f"/t/{m['wide'].id.hex()}/feed.atom")).status == 404


async def test_feeds_survive_text_that_xml_cannot_hold(world: World) -> None:
    c, f, m = world.client, world.f, world.m
    # The protocol already refuses control characters; noncharacters pass it.
    odd = f.comment(m["topic"].id, "odd\uffff and \ufffe too", key=BOB)
    resp = await c.post("/sync/v1/push", data=join_messages([odd.raw]))
    assert resp.status == 200
    resp = await c.get(f"/t/{m['topic'].id.hex()}/feed.atom")
    assert resp.status == 200
    feed = feedparser.parse(await resp.read())
    assert not feed.bozo
    assert any(e.title == "odd\ufffd and \ufffd too" for e in feed.entries)
