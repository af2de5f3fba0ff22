"""Petitions and signatures, the info kit, meetings (docs/civic.md)."""

from __future__ import annotations

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

ALICE, BOB, CAROL, OFFICIAL = (seeded_key(i) for i in (10, 11, 12, 15))
STRANGER = seeded_key(40)


def pub(key: object) -> bytes:
    return signing.public_key_bytes(key)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def put(db: Database, *messages: Message) -> None:
    ingest(db, [m.raw for m in messages], now_ms=NOW)


def petition(f: Factory, goal: int = 2, closes: int = NOW + 86_400_000, **kw: Any) -> Message:
    fields = {"title": "Save the park", "text": "Please.", "goal": goal, "closes": closes}
    return f.make("petition", fields, **kw)


def sign(f: Factory, target: bytes, **kw: Any) -> Message:
    return f.make("sign", {}, refs=(target,), **kw)


def sign_status(db: Database, m: Message) -> str:
    shown = forum.show(db, m.id)
    assert shown is not None
    return str(shown["signature"]["status"])


def test_a_sign_counts_once_per_member_and_the_goal(db: Database, factory: Factory) -> None:
    grants = [factory.grant(k) for k in (ALICE, BOB, CAROL)]
    p = petition(factory, goal=2, key=ALICE)
    first = sign(factory, p.id, key=BOB)
    again = sign(factory, p.id, key=BOB)
    put(db, *grants, p, again, first)
    page = forum.petition_page(db, p.id, now_ms=NOW)
    assert page is not None
    assert page["counts"] == {"signatures": 1, "support": 0, "goal": 2, "goal_reached": False}
    assert page["open"] is True
    assert sign_status(db, first) == "counted"
    assert sign_status(db, again) == "duplicate"
    shown = forum.show(db, again.id)
    assert shown is not None and "earlier signature" in shown["not_counted"]
    put(db, sign(factory, p.id, key=CAROL))
    page = forum.petition_page(db, p.id)
    assert page is not None and page["counts"]["goal_reached"] is True
    shown = forum.show(db, p.id)
    assert shown is not None and shown["counts"]["signatures"] == 2


def test_late_unauthorized_foreign_and_erased_signs(db: Database, factory: Factory) -> None:
    other = Factory(seeded_key(2))
    grants = [factory.grant(ALICE), factory.grant(BOB)]
    p = petition(factory, closes=NOW - 1_000_000, key=ALICE)
    late = sign(factory, p.id, key=BOB, ts=NOW - 1_000_000)
    stranger = sign(factory, p.id, key=CAROL, ts=NOW - 2_000_000)
    foreign = sign(other, p.id, key=STRANGER, ts=NOW - 2_000_000)
    early = sign(factory, p.id, key=ALICE, ts=NOW - 2_500_000)
    put(db, *grants, p, late, stranger, foreign, early)
    put(db, other.grant(STRANGER))
    assert sign_status(db, late) == "late"
    assert sign_status(db, stranger) == "unauthorized"
    assert sign_status(db, foreign) == "support"
    assert sign_status(db, early) == "counted"
    page = forum.petition_page(db, p.id, now_ms=NOW)
    assert page is not None and page["open"] is False
    assert page["counts"]["signatures"] == 1 and page["counts"]["support"] == 1
    # The signer erases the counted sign: it no longer counts; the duplicate stays out.
    put(db, factory.erase(early.id, key=ALICE))
    assert sign_status(db, early) == "erased"
    page = forum.petition_page(db, p.id)
    assert page is not None and page["counts"]["signatures"] == 0


def test_an_erased_first_sign_lets_the_next_one_count(db: Database, factory: Factory) -> None:
    grants = [factory.grant(ALICE), factory.grant(BOB)]
    p = petition(factory, key=ALICE)
    s1, s2 = sign(factory, p.id, key=BOB), sign(factory, p.id, key=BOB)
    put(db, *grants, p, s1, s2)
    assert (sign_status(db, s1), sign_status(db, s2)) == ("counted", "duplicate")
    put(db, factory.erase(s1.id, key=BOB))
    assert (sign_status(db, s1), sign_status(db, s2)) == ("erased", "counted")


def test_signs_before_their_petition_and_an_edit_cannot_move_the_close(
    db: Database, factory: Factory
) -> None:
    grants = [factory.grant(ALICE), factory.grant(BOB)]
    p = petition(factory, goal=5, closes=NOW - 1_000_000, key=ALICE)
    s = sign(factory, p.id, key=BOB, ts=NOW - 2_000_000)
    put(db, *grants, s)
    assert sign_status(db, s) == "blocked"
    put(db, p)
    assert sign_status(db, s) == "counted"
    edit = factory.make(
        "petition",
        {"title": "Save it", "text": "Now.", "goal": 1, "closes": NOW + 1, "edit_of": p.id},
        key=ALICE,
    )
    put(db, edit)
    page = forum.petition_page(db, p.id)
    assert page is not None
    assert page["petition"]["closes"] == NOW - 1_000_000
    assert page["petition"]["title"] == "Save it"
    assert page["counts"]["goal"] == 1 and page["counts"]["goal_reached"] is True
    # A petition by a non-member: its signs are blocked.
    bad = petition(factory, key=CAROL)
    s3 = sign(factory, bad.id, key=BOB)
    put(db, bad, s3)
    assert sign_status(db, s3) == "blocked"
    assert forum.show(db, pub(ALICE)) is None
