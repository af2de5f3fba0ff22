"""The read API the web view added (storage/forum.py): results and the indexes they use
(the home and topic pages are benchmarked on a 1.2M-message store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from protocol import signing
from protocol.messages import Message
from storage import forum
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key

ALICE = seeded_key(10)
ALICE_KEY = signing.public_key_bytes(ALICE)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def put(db: Database, *messages: Message) -> None:
    ingest(db, [m.raw for m in messages], now_ms=NOW)


def topic(f: Factory, title: str, scope: str, **kw: Any) -> Message:
    fields = {"title": title, "text": "t", "lang": "en", "tags": ["x"], "scope": scope}
    return f.make("topic", fields, key=ALICE, **kw)


def plan(db: Database, sql: str, params: tuple[Any, ...]) -> str:
    return " | ".join(row[3] for row in db.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_closing_soon_newest_stories_and_scopes(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE))
    t = topic(factory, "Roads", "local")
    r = topic(factory, "Rivers", "regional")
    late = factory.proposal(t.id, "Late", closes=NOW + 5_000_000, key=ALICE)
    soon = factory.proposal(t.id, "Soon", closes=NOW + 1_000_000, key=ALICE)
    shut = factory.proposal(t.id, "Shut", closes=NOW - 1_000, key=ALICE, ts=NOW - 2_000_000)
    hidden = factory.proposal(t.id, "Hidden", closes=NOW + 2_000_000, key=ALICE)
    s1, s2 = factory.story(t.id, "One", key=ALICE), factory.story(None, "Two", key=ALICE)
    put(db, t, r, late, soon, shut, hidden, s1, s2, factory.hide(hidden.id))
    put(db, factory.vote(soon.id, "yes", key=ALICE))
    closing = forum.closing_soon(db, factory.community, now_ms=NOW, limit=10)
    assert [p["title"] for p in closing] == ["Soon", "Late"]
    assert closing[0]["counts"]["yes"] == 1
    assert [p["title"] for p in forum.closing_soon(db, factory.community, now_ms=NOW, limit=1)] == [
        "Soon"
    ]
    assert [s["title"] for s in forum.newest_stories(db, factory.community)] == ["Two", "One"]
    assert [x["title"] for x in forum.topics(db, factory.community, scope="regional")] == ["Rivers"]
    assert [x["title"] for x in forum.topics(db, factory.community, tag="x", scope="local")] == [
        "Roads"
    ]
    assert forum.thing(db, hidden.id)["status"] == "hidden"
    assert forum.community_names(db, [factory.community]) == {}  # no profile held
    put(
        db,
        factory.make(
            "community",
            {"name": "Kraków", "country": "PL", "region": "", "languages": ["pl"], "about": ""},
        ),
    )
    assert forum.community_names(db, [factory.community, bytes(32)]) == {
        factory.community.hex(): "Kraków"
    }


def test_federation_topics_merge_communities_newest_first(db: Database, factory: Factory) -> None:
    other = Factory(seeded_key(2), start=NOW - 3_599_500)
    put(db, factory.grant(ALICE), other.grant(ALICE))
    mine = [topic(factory, f"Mine {i}", s) for i, s in enumerate(["local", "european", "national"])]
    theirs = [
        topic(other, f"Theirs {i}", s) for i, s in enumerate(["regional", "local", "european"])
    ]
    put(db, *mine, *theirs)
    got = forum.federation_topics(db, [factory.community, other.community], limit=10)
    assert [t["title"] for t in got] == ["Theirs 2", "Mine 2", "Mine 1", "Theirs 0"]
    assert [t["title"] for t in forum.federation_topics(db, [other.community], limit=1)] == [
        "Theirs 2"
    ]
    assert forum.federation_topics(db, [], limit=5) == []


def test_the_new_lists_walk_indexes(db: Database, factory: Factory) -> None:
    c = factory.community
    closing = plan(
        db,
        "SELECT id FROM things WHERE community = ? AND kind = 'proposal'"
        " AND status = 'visible' AND closes > ? ORDER BY closes, id LIMIT 10",
        (c, NOW),
    )
    assert "things_closes" in closing
    # Only ties on closes are sorted (by id), not the whole list.
    assert "USE TEMP B-TREE FOR ORDER BY" not in closing
    scoped = plan(
        db,
        "SELECT id FROM things WHERE community = ? AND kind = 'topic'"
        " AND scope = ? AND status = 'visible' AND ts < ? ORDER BY ts DESC LIMIT 10",
        (c, "regional", NOW),
    )
    assert "things_scope" in scoped and "TEMP B-TREE" not in scoped


def test_every_list_by_community_and_kind_walks_an_index(db: Database, factory: Factory) -> None:
    """The lists as storage/forum.py runs them (their SQL traced, not copied here): none
    scans ``things``, and those by community and kind alone walk ``things_list``, the
    partial index without comments (m010), newest first without a sort."""
    c = factory.community
    t = topic(factory, "Buses", "local")
    put(db, t, factory.comment(t.id), factory.story(t.id))
    traced: list[str] = []
    db.conn.set_trace_callback(traced.append)
    try:
        forum.topics(db, c)
        forum.topics(db, c, scope="regional")
        forum.topics(db, c, tag="x")
        forum.newest_stories(db, c)
        forum.closing_soon(db, c, now_ms=NOW)
        forum.infokit(db, c)
        forum.meetings(db, c)
    finally:
        db.conn.set_trace_callback(None)
    lists = [sql for sql in traced if "FROM things WHERE community" in sql]
    assert len(lists) == 6, traced
    for sql in lists:
        found = plan(db, sql, ())
        assert "SCAN things" not in found, (sql, found)
        if "scope =" not in sql and "closes >" not in sql:
            assert "USING INDEX things_list" in found, (sql, found)
        if "ORDER BY ts DESC" in sql:
            assert "TEMP B-TREE" not in found, (sql, found)


def test_a_members_things_are_found_through_their_messages(db: Database, factory: Factory) -> None:
    """``things`` keeps no index by author (m011): a member's page walks
    ``messages_author`` newest first and looks each thing up by id."""
    put(db, factory.grant(ALICE))
    t = topic(factory, "Buses", "local")
    older = factory.make("comment", {"text": "Yes", "lang": "en"}, refs=(t.id,), key=ALICE)
    newer = factory.make(
        "comment", {"text": "No", "lang": "en"}, refs=(t.id,), key=ALICE, ts=older.ts + 1
    )
    edit = factory.make(  # an edit is a message by the author, not a thing of its own
        "comment",
        {"text": "Yes!", "lang": "en", "edit_of": older.id},
        refs=(t.id,),
        key=ALICE,
        ts=older.ts + 2,
    )
    put(db, t, older, newer, edit)
    traced: list[str] = []
    db.conn.set_trace_callback(traced.append)
    try:
        activity = forum.member_activity(db, ALICE_KEY)
    finally:
        db.conn.set_trace_callback(None)
    assert [(x["id"], x["text"]) for x in activity["things"]] == [
        (newer.hex_id, "No"),
        (older.hex_id, "Yes!"),
        (t.hex_id, "t"),
    ]
    (sql,) = [s for s in traced if "CROSS JOIN things" in s]
    found = plan(db, sql, ())
    assert "USING INDEX messages_author" in found and "SCAN" not in found, found
    assert "TEMP B-TREE" not in found, found
