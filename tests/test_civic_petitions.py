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


# --------------------------------------------------------------------------- info kit


def infokit_item(f: Factory, title: str, category: str, **kw: Any) -> Message:
    fields = {"title": title, "text": "Call 112.", "category": category, "lang": "en"}
    return f.make("infokit", fields, **kw)


def test_infokit_by_category_newest_version(db: Database, factory: Factory) -> None:
    grant = factory.grant(OFFICIAL, "official")
    water = infokit_item(factory, "Water", "utilities", key=OFFICIAL)
    fire = infokit_item(factory, "Fire", "emergency", key=OFFICIAL)
    doctor = infokit_item(factory, "Doctor", "health", key=OFFICIAL)
    by_member = infokit_item(factory, "Fake", "emergency", key=ALICE)
    edit = factory.make(
        "infokit",
        {
            "title": "Fire brigade",
            "text": "Call 115.",
            "category": "emergency",
            "lang": "en",
            "edit_of": fire.id,
        },
        key=OFFICIAL,
    )
    put(db, edit, grant, factory.grant(ALICE), water, fire, doctor, by_member)
    kit = forum.infokit(db, factory.community)
    assert [c["category"] for c in kit] == ["emergency", "health", "utilities"]
    emergency = kit[0]["items"]
    assert [i["title"] for i in emergency] == ["Fire brigade"]
    assert emergency[0]["edited"] is True and emergency[0]["text"] == "Call 115."
    put(db, factory.hide(doctor.id))
    assert [c["category"] for c in forum.infokit(db, factory.community)] == [
        "emergency",
        "utilities",
    ]


def test_meeting_with_minutes(db: Database, factory: Factory) -> None:
    grant = factory.grant(OFFICIAL, "official")
    meeting = factory.make(
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
    minutes = factory.make("minutes", {"text": "Approved."}, refs=(meeting.id,), key=OFFICIAL)
    fake = factory.make("minutes", {"text": "Rejected."}, refs=(meeting.id,), key=ALICE)
    fixed = factory.make(
        "minutes",
        {"text": "Approved, 7 to 2.", "edit_of": minutes.id},
        refs=(meeting.id,),
        key=OFFICIAL,
    )
    put(db, minutes, fixed, fake, grant, factory.grant(ALICE), meeting)
    page = forum.meeting_page(db, meeting.id)
    assert page is not None
    assert page["meeting"]["title"] == "Council"
    assert [m["text"] for m in page["minutes"]] == ["Approved, 7 to 2."]
    assert [m["title"] for m in forum.meetings(db, factory.community)] == ["Council"]
    shown = forum.show(db, meeting.id)
    assert shown is not None and len(shown["minutes"]) == 1
    assert forum.meeting_page(db, minutes.id) is None


def test_counts_kept_by_difference_equal_a_recount(
    db: Database, factory: Factory, tmp_path: Path
) -> None:
    other = Factory(seeded_key(2))
    bob_grant = factory.grant(BOB)
    messages = [factory.grant(ALICE), bob_grant, factory.grant(CAROL), other.grant(STRANGER)]
    p = petition(factory, key=ALICE)
    s1, s2 = sign(factory, p.id, key=BOB), sign(factory, p.id, key=BOB)
    messages += [p, s1, s2, sign(factory, p.id, key=CAROL), sign(other, p.id, key=STRANGER)]
    messages += [factory.erase(s1.id, key=BOB), factory.revoke(bob_grant.id, ts=NOW - 1)]
    messages.append(sign(factory, p.id, key=ALICE))
    for m in messages:
        put(db, m)
    fresh = open_database(tmp_path / "fresh.db")
    put(fresh, *messages)
    query = "SELECT * FROM petition_counts"
    assert db.execute(query).fetchall() == fresh.execute(query).fetchall()
    assert db.execute(query).fetchone()[1:3] == (3, 1)
    fresh.close()
