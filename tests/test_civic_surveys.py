"""Surveys and answers (docs/civic.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from protocol.messages import Message
from storage import forum
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key

ALICE, BOB, CAROL, OFFICIAL = (seeded_key(i) for i in (10, 11, 12, 15))

QUESTIONS = [
    {"text": "How happy?", "type": "scale", "options": ["1", "2", "3"]},
    {"text": "Which day?", "type": "choice", "options": ["Mon", "Tue"]},
    {"text": "Anything else?", "type": "text", "options": []},
]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def put(db: Database, *messages: Message) -> None:
    ingest(db, [m.raw for m in messages], now_ms=NOW)


def survey(f: Factory, opens: int, closes: int, **kw: Any) -> Message:
    fields = {
        "title": "Town survey",
        "intro": "",
        "questions": QUESTIONS,
        "opens": opens,
        "closes": closes,
    }
    return f.make("survey", fields, **kw)


def answer(f: Factory, target: bytes, answers: list[Any], **kw: Any) -> Message:
    return f.make("answer", {"answers": answers}, refs=(target,), **kw)


def answer_status(db: Database, m: Message) -> str:
    shown = forum.show(db, m.id)
    assert shown is not None
    return str(shown["answer"]["status"])


def test_newest_fitting_answer_in_the_window_counts(db: Database, factory: Factory) -> None:
    grants = [factory.grant(OFFICIAL, "official"), factory.grant(ALICE), factory.grant(BOB)]
    s = survey(factory, opens=NOW - 3_000_000, closes=NOW - 1_000_000, key=OFFICIAL)
    old = answer(factory, s.id, [0, 0, None], key=ALICE, ts=NOW - 2_900_000)
    new = answer(factory, s.id, [2, 1, "More buses"], key=ALICE, ts=NOW - 2_800_000)
    bad = answer(factory, s.id, [3, 1, None], key=ALICE, ts=NOW - 2_700_000)
    short = answer(factory, s.id, [1], key=BOB, ts=NOW - 2_700_000)
    wrong_type = answer(factory, s.id, [1, "Mon", None], key=BOB, ts=NOW - 2_600_000)
    bob = answer(factory, s.id, [1, None, None], key=BOB, ts=NOW - 2_650_000)
    late = answer(factory, s.id, [0, 0, None], key=BOB, ts=NOW - 1_000_000)
    early = answer(factory, s.id, [0, 0, None], key=BOB, ts=NOW - 3_100_000)
    stranger = answer(factory, s.id, [0, 0, None], key=CAROL, ts=NOW - 2_000_000)
    put(db, new, bad, late, *grants, early, stranger, short, wrong_type, bob, old, s)
    assert answer_status(db, new) == "counted"
    assert answer_status(db, old) == "superseded"
    assert answer_status(db, bad) == "mismatch"
    shown = forum.show(db, bad.id)
    assert shown is not None and shown["not_counted"] == "question 1: option 3 out of range"
    shown = forum.show(db, short.id)
    assert shown is not None and shown["not_counted"] == "1 answers for 3 questions"
    assert answer_status(db, wrong_type) == "mismatch"
    assert answer_status(db, bob) == "counted"
    assert answer_status(db, late) == "late"
    assert answer_status(db, early) == "early"
    assert answer_status(db, stranger) == "unauthorized"
    page = forum.survey_results(db, s.id, now_ms=NOW)
    assert page is not None and page["open"] is False
    assert page["respondents"] == 2
    r = page["results"]
    assert r[0]["counts"] == [0, 1, 1] and r[0]["options"] == ["1", "2", "3"]
    assert r[1]["counts"] == [0, 1] and r[1]["skipped"] == 1
    assert r[2]["text_answers"] == 1 and r[2]["skipped"] == 1
    # Erasing the counted answer lets the previous fitting one count.
    put(db, factory.erase(new.id, key=ALICE))
    assert answer_status(db, old) == "counted"
    page = forum.survey_results(db, s.id)
    assert page is not None and page["results"][0]["counts"] == [1, 1, 0]


def test_an_edit_keeps_the_questions_and_window(db: Database, factory: Factory) -> None:
    grants = [factory.grant(OFFICIAL, "official"), factory.grant(ALICE)]
    s = survey(factory, opens=NOW - 3_000_000, closes=NOW + 1_000_000, key=OFFICIAL)
    a = answer(factory, s.id, [0, 0, "ok"], key=ALICE, ts=NOW)
    edit = factory.make(
        "survey",
        {
            "title": "Town survey 2",
            "intro": "",
            "questions": [QUESTIONS[2]],
            "opens": NOW + 2_000_000,
            "closes": NOW + 3_000_000,
            "edit_of": s.id,
        },
        key=OFFICIAL,
    )
    put(db, *grants, a, edit)
    assert answer_status(db, a) == "blocked"
    put(db, s)
    assert answer_status(db, a) == "counted"
    page = forum.survey_results(db, s.id)
    assert page is not None and page["survey"]["title"] == "Town survey 2"
    assert len(page["results"]) == 3 and page["respondents"] == 1
    assert page["survey"]["fields"]["opens"] == NOW - 3_000_000
    # A survey by a plain member: nothing counts.
    bad = survey(factory, opens=0, closes=NOW + 1, key=ALICE)
    a2 = answer(factory, bad.id, [0, 0, None], key=ALICE)
    put(db, bad, a2)
    assert answer_status(db, a2) == "blocked"


def test_results_kept_by_difference_equal_a_recount(
    db: Database, factory: Factory, tmp_path: Path
) -> None:
    alice_grant = factory.grant(ALICE)
    grants = [factory.grant(OFFICIAL, "official"), alice_grant, factory.grant(BOB)]
    s = survey(factory, opens=NOW - 3_000_000, closes=NOW + 1_000_000, key=OFFICIAL)
    messages = [*grants, s]
    a1 = answer(factory, s.id, [0, 1, "a"], key=ALICE, ts=NOW - 2_000_000)
    a2 = answer(factory, s.id, [1, None, None], key=ALICE, ts=NOW - 1_500_000)
    b1 = answer(factory, s.id, [2, 0, "b"], key=BOB, ts=NOW - 1_400_000)
    messages += [a1, a2, b1, factory.erase(a2.id, key=ALICE)]
    messages.append(factory.revoke(alice_grant.id, ts=NOW))  # after her answers: counted
    messages.append(answer(factory, s.id, [2, 1, None], key=BOB, ts=NOW - 1_300_000))
    for m in messages:
        put(db, m)
    fresh = open_database(tmp_path / "fresh.db")
    put(fresh, *messages)
    query = "SELECT * FROM survey_results"
    assert db.execute(query).fetchall() == fresh.execute(query).fetchall()
    page = forum.survey_results(db, s.id)
    assert page is not None and page["respondents"] == 2
    assert page["results"][0]["counts"] == [1, 0, 1]
    fresh.close()
