"""Panels and draws: the roll check and the draw status, re-judged as messages arrive."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from protocol import signing, sortition
from protocol.messages import Message
from storage import forum
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key

SECRET = hashlib.sha256(b"panel secret").digest()
PANEL_TS, ENTROPY_TS, DRAW_TS = NOW - 100_000, NOW - 90_000, NOW - 80_000


def pub(key: Ed25519PrivateKey) -> bytes:
    return signing.public_key_bytes(key)


class World:
    """A community H with five members and an official, and a peer community P."""

    def __init__(self) -> None:
        self.h = Factory(seeded_key(1))
        self.p = Factory(seeded_key(2))
        self.members = [seeded_key(i) for i in range(10, 15)]
        self.official = seeded_key(20)
        self.grants = [self.h.grant(k) for k in self.members]
        self.grants.append(self.h.grant(self.official, "official"))
        self.roll = sorted([pub(k) for k in self.members] + [pub(self.official)])
        self.entropy = self.p.topic("Peer news", ts=ENTROPY_TS)

    def panel(self, roll: list[bytes] | None = None, seats: int = 2, **kw: Any) -> Message:
        fields = {
            "name": "School panel",
            "seats": seats,
            "roll": sortition.roll_hash(self.roll if roll is None else roll),
            "commit": sortition.commit_of(SECRET),
        }
        kw.setdefault("key", self.official)
        kw.setdefault("ts", PANEL_TS)
        return self.h.make("panel", fields, **kw)

    def draw(
        self,
        panel: Message,
        entropy: list[bytes] | None = None,
        secret: bytes = SECRET,
        selected: list[bytes] | None = None,
        **kw: Any,
    ) -> Message:
        entropy = [self.entropy.id] if entropy is None else entropy
        if selected is None:
            selected = list(sortition.draw(self.roll, secret, entropy, 2).selected)
        kw.setdefault("key", self.official)
        kw.setdefault("ts", DRAW_TS)
        return self.h.make(
            "draw",
            {"secret": secret, "selected": selected},
            refs=(panel.id, *entropy),
            **kw,
        )


def fresh(tmp_path: Path, name: str = "fora.db") -> Database:
    return open_database(tmp_path / name)


def put(db: Database, *messages: Message) -> None:
    results = ingest(db, [m.raw for m in messages], now_ms=NOW)
    assert all(r.result.accepted for r in results), results


def page(db: Database, panel: Message) -> dict[str, Any]:
    got = forum.panel_page(db, panel.id)
    assert got is not None
    return got


def test_a_draw_is_verified_and_its_selection_shown(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    draw = w.draw(panel)
    put(db, *w.grants, w.entropy, panel, draw)
    got = page(db, panel)
    assert got["panel"]["roll_check"] == "match" and got["panel"]["eligible"] == 6
    assert got["draw"]["status"] == "verified", got
    assert got["draw"]["id"] == draw.hex_id and got["commit_check"] == "matches"
    expected = sortition.draw(w.roll, SECRET, [w.entropy.id], 2)
    assert got["selected"] == [k.hex() for k in expected.selected]
    assert got["draw"]["seed"] == expected.seed.hex()
    shown = forum.show(db, draw.id)
    assert shown is not None and shown["draw"]["status"] == "verified"


def test_late_entropy_turns_pending_into_verified(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    put(db, *w.grants, panel, w.draw(panel))
    got = page(db, panel)
    assert got["draw"]["status"] == "pending"
    assert got["draw"]["missing_entropy"] == [w.entropy.hex_id]
    assert got["commit_check"] == "matches"
    put(db, w.entropy)
    assert page(db, panel)["draw"]["status"] == "verified"


def test_a_late_grant_before_the_panel_makes_the_roll_mismatch(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    put(db, *w.grants, w.entropy, panel, w.draw(panel))
    assert page(db, panel)["draw"]["status"] == "verified"
    # A grant with a ts before the panel arrives by sync: the roll here gains a key.
    late = w.h.grant(seeded_key(30), ts=PANEL_TS - 50_000)
    put(db, late)
    got = page(db, panel)
    assert got["panel"]["roll_check"] == "mismatch" and got["panel"]["eligible"] == 7
    assert got["draw"]["status"] == "mismatch" and got["draw"]["roll_differs"] is True
    # A grant after the panel (a role held at t starts at or before t) changes nothing.
    db2 = fresh(tmp_path, "two.db")
    put(db2, *w.grants, w.entropy, panel, w.draw(panel), w.h.grant(seeded_key(31), ts=PANEL_TS + 1))
    assert page(db2, panel)["draw"]["status"] == "verified"
    # Revoking a member before the panel also mismatches.
    db3 = fresh(tmp_path, "three.db")
    revoke = w.h.revoke(w.grants[0].id, ts=PANEL_TS - 1)
    put(db3, *w.grants, w.entropy, panel, w.draw(panel), revoke)
    assert page(db3, panel)["panel"]["eligible"] == 5
    assert page(db3, panel)["draw"]["status"] == "mismatch"


def test_a_wrong_selection_is_a_mismatch_that_says_what_differs(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    right = list(sortition.draw(w.roll, SECRET, [w.entropy.id], 2).selected)
    wrong = [right[0], next(k for k in w.roll if k not in right)]
    put(db, *w.grants, w.entropy, panel, w.draw(panel, selected=wrong))
    d = page(db, panel)["draw"]
    assert d["status"] == "mismatch" and d["roll_differs"] is False
    assert d["missing"] == [right[1].hex()] and d["extra"] == [wrong[1].hex()]
    assert d["order_differs"] is False
    db2 = fresh(tmp_path, "two.db")
    put(db2, *w.grants, w.entropy, panel, w.draw(panel, selected=right[::-1]))
    d = page(db2, panel)["draw"]
    assert d["status"] == "mismatch" and d["order_differs"] is True


def test_invalid_draws(tmp_path: Path) -> None:
    w = World()
    panel = w.panel()
    own = w.h.topic("Own news", key=w.members[0], ts=ENTROPY_TS)
    early = w.p.topic("Early", ts=PANEL_TS - 1)
    cases = {
        "the secret does not match the panel's commit": w.draw(panel, secret=bytes(32)),
        "a message of the panel's own community": w.draw(panel, entropy=[own.id]),
        "not after the panel": w.draw(panel, entropy=[early.id]),
        "after the draw": w.draw(panel, ts=ENTROPY_TS - 1),
    }
    for i, (needle, draw) in enumerate(cases.items()):
        db = fresh(tmp_path, f"{i}.db")
        put(db, *w.grants, w.entropy, own, early, panel, draw)
        d = page(db, panel)["draw"]
        assert d["status"] == "invalid", (needle, d)
        assert any(needle in p for p in d["problems"]), (needle, d)


def test_only_the_first_authorized_draw_counts(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    first = w.draw(panel)
    other_entropy = w.p.topic("More peer news", ts=ENTROPY_TS + 1)
    second = w.draw(panel, entropy=[other_entropy.id], ts=DRAW_TS + 1)
    by_member = w.draw(panel, key=w.members[0], ts=DRAW_TS - 1)
    put(db, *w.grants, w.entropy, other_entropy, panel, second, by_member, first)
    got = page(db, panel)
    assert got["draw"]["id"] == first.hex_id and got["draw"]["status"] == "verified"
    statuses = {d["id"]: d["status"] for d in got["draws"]}
    assert statuses == {
        first.hex_id: "verified",
        second.hex_id: "superseded",
        by_member.hex_id: "unauthorized",
    }


def test_erasing_the_draw_and_an_unauthorized_panel(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    draw = w.draw(panel)
    put(db, *w.grants, w.entropy, panel, draw, w.h.erase(draw.id, key=w.official))
    assert page(db, panel)["draw"]["status"] == "erased"
    db2 = fresh(tmp_path, "two.db")
    by_member = w.panel(key=w.members[0])
    put(db2, *w.grants, w.entropy, by_member, w.draw(by_member))
    got = page(db2, by_member)
    assert got["panel"]["status"] == "unauthorized"
    assert got["draw"]["status"] == "invalid"
    # A draw whose panel is not held is pending, and judged when the panel comes.
    db3 = fresh(tmp_path, "three.db")
    put(db3, *w.grants, w.entropy, draw)
    assert forum.panel_page(db3, panel.id) is None
    shown = forum.show(db3, draw.id)
    assert shown is not None and shown["draw"]["status"] == "pending"
    put(db3, panel)
    assert page(db3, panel)["draw"]["status"] == "verified"


def test_panels_under_a_topic(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    topic = w.h.topic("Schools", key=w.members[0])
    panel = w.panel(refs=(topic.id,))
    put(db, *w.grants, topic, w.entropy, panel, w.draw(panel))
    tp = forum.topic_page(db, topic.id)
    assert tp is not None and [p["id"] for p in tp["panels"]] == [panel.hex_id]
    assert tp["panels"][0]["draw_status"] == "verified"
    shown = forum.show(db, panel.id)
    assert shown is not None and shown["panel"]["draw_status"] == "verified"
    assert json.dumps(shown)  # JSON-ready


def test_skeletons_are_pending_until_their_bodies_come(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    panel = w.panel()
    draw = w.draw(panel)
    put(db, *w.grants, w.entropy, panel.skeleton(), draw.skeleton())
    got = page(db, panel)
    assert got["panel"]["status"] == "skeleton" and got["draw"]["status"] == "pending"
    put(db, panel)
    assert page(db, panel)["draw"]["status"] == "pending"
    assert page(db, panel)["draw"]["why"] == "the draw's body is not held here"
    put(db, draw)
    assert page(db, panel)["draw"]["status"] == "verified"
    # An entropy message held as a skeleton is enough: only its id, community and ts
    # are used.
    db2 = fresh(tmp_path, "two.db")
    put(db2, *w.grants, w.entropy.skeleton(), panel, draw)
    assert page(db2, panel)["draw"]["status"] == "verified"


def test_an_entropy_author_whose_grant_arrives_late(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    resident = seeded_key(50)
    entropy = w.p.topic("By a peer resident", key=resident, ts=ENTROPY_TS)
    panel = w.panel()
    draw = w.draw(panel, entropy=[entropy.id])
    put(db, *w.grants, entropy, panel, draw)
    d = page(db, panel)["draw"]
    assert d["status"] == "invalid"
    assert d["problems"] == [
        f"entropy {entropy.hex_id[:16]}: its author holds no role in its community at ts"
    ]
    put(db, w.p.grant(resident, ts=ENTROPY_TS - 1))
    assert page(db, panel)["draw"]["status"] == "verified"
    assert [p["id"] for p in forum.panels(db, w.h.community)] == [panel.hex_id]
    assert forum.panels(db, w.p.community) == []


def test_a_draw_of_something_that_is_not_a_panel(tmp_path: Path) -> None:
    w = World()
    db = fresh(tmp_path)
    topic = w.h.topic("Not a panel", key=w.members[0])
    draw = w.draw(topic)
    put(db, *w.grants, w.entropy, topic, draw)
    assert forum.panel_page(db, topic.id) is None
    shown = forum.show(db, draw.id)
    assert shown is not None and shown["draw"]["status"] == "invalid"
    assert shown["draw"]["problems"] == ["refs[0] is a topic, not a panel"]
    assert db.execute("SELECT count(*) FROM panels").fetchone()[0] == 0
    # The same when the topic arrives after the draw.
    db2 = fresh(tmp_path, "two.db")
    put(db2, *w.grants, w.entropy, draw)
    shown = forum.show(db2, draw.id)
    assert shown is not None and shown["draw"]["status"] == "pending"
    put(db2, topic)
    shown = forum.show(db2, draw.id)
    assert shown is not None and shown["draw"]["problems"] == ["refs[0] is a topic, not a panel"]
