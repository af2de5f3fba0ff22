"""Derived authorization, views, tallies, moderation, erasure, edits, search (issue 4)."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from sqlite_utils import Database

from protocol import signing
from protocol.messages import Message
from storage import forum
from storage.database import open_database
from storage.derive import UNKNOWN_AUTHOR_QUOTA, fields_json, jsonable_fields
from storage.messages import QUOTA_DETAIL, get_raw, ingest, unerased_skeletons

from .conftest import NOW, Factory, seeded_key, upgrade_again

ALICE, BOB, CAROL, MOD, ADMIN, OFFICIAL = (seeded_key(i) for i in range(10, 16))


def pub(key: object) -> bytes:
    return signing.public_key_bytes(key)  # type: ignore[arg-type]


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def put(db: Database, *messages: Message) -> list[str]:
    return [r.result.value for r in ingest(db, [m.raw for m in messages], now_ms=NOW)]


def status(db: Database, message: Message) -> str:
    thing = forum.show(db, message.id)
    assert thing is not None
    return str(thing.get("status"))


# --------------------------------------------------------------------------- roles


def test_members_topics_show_and_strangers_do_not(db: Database, factory: Factory) -> None:
    grant = factory.grant(ALICE)
    mine = factory.topic("Parks", key=ALICE)
    theirs = factory.topic("Spam", key=BOB)
    put(db, grant, mine, theirs)
    assert [t["title"] for t in forum.topics(db, factory.community)] == ["Parks"]
    shown = forum.show(db, theirs.id)
    assert shown is not None and shown["status"] == "unauthorized"
    assert shown["not_counted"] == "author not a member at ts"
    # The community key is always authorized.
    own = factory.topic("Official", ts=NOW)
    put(db, own)
    assert status(db, own) == "visible"


def test_a_late_grant_authorizes_earlier_arrivals(db: Database, factory: Factory) -> None:
    grant = factory.grant(ALICE)
    topic = factory.topic("Parks", key=ALICE)
    put(db, topic)
    assert status(db, topic) == "unauthorized"
    put(db, grant)
    assert status(db, topic) == "visible"


def test_roles_are_judged_at_the_message_ts(db: Database, factory: Factory) -> None:
    before = factory.topic("Too early", key=ALICE)
    grant = factory.grant(ALICE, until=NOW - 1_000_000)
    during = factory.topic("In time", key=ALICE)
    after = factory.topic("Too late", key=ALICE, ts=NOW - 1_000_000)
    put(db, after, during, before, grant)
    assert [status(db, m) for m in (before, during, after)] == [
        "unauthorized",
        "visible",
        "unauthorized",
    ]


def test_revoke_ends_a_role_from_its_ts(db: Database, factory: Factory) -> None:
    grant = factory.grant(ALICE)
    first = factory.topic("First", key=ALICE)
    revoke = factory.revoke(grant.id, "moved away")
    second = factory.topic("Second", key=ALICE)
    put(db, second, revoke, first, grant)
    assert status(db, first) == "visible"
    assert status(db, second) == "unauthorized"
    assert forum.show(db, revoke.id)["authorized"] is True  # type: ignore[index]


def test_admins_grant_and_a_revoked_admin_cannot(db: Database, factory: Factory) -> None:
    admin = factory.grant(ADMIN, "admin")
    by_admin = factory.grant(ALICE, key=ADMIN)
    fire = factory.revoke(admin.id)
    too_late = factory.grant(BOB, key=ADMIN)
    a, b = factory.topic("A", key=ALICE), factory.topic("B", key=BOB)
    put(db, b, a, too_late, by_admin)
    assert status(db, a) == "unauthorized"
    put(db, fire, admin)  # out of order: the admin's grants are re-judged
    assert status(db, a) == "visible"
    assert status(db, b) == "unauthorized"
    grant = forum.show(db, too_late.id)
    assert grant is not None and grant["grant"]["valid"] is False
    # A grant by a plain member grants nothing.
    put(db, factory.grant(CAROL, key=ALICE))
    c = factory.topic("C", key=CAROL)
    put(db, c)
    assert status(db, c) == "unauthorized"


def test_moderator_and_official_imply_member(db: Database, factory: Factory) -> None:
    put(db, factory.grant(MOD, "moderator"), factory.grant(OFFICIAL, "official"))
    t1, t2 = factory.topic("M", key=MOD), factory.topic("O", key=OFFICIAL)
    put(db, t1, t2)
    assert status(db, t1) == status(db, t2) == "visible"


# --------------------------------------------------------------------------- quota


def test_unknown_authors_keep_only_skeletons_over_the_quota(db: Database, factory: Factory) -> None:
    spam = [
        factory.comment(bytes(32), f"spam {i}", key=BOB) for i in range(UNKNOWN_AUTHOR_QUOTA + 3)
    ]
    results = ingest(db, [m.raw for m in spam], now_ms=NOW)
    assert {r.result.value for r in results} == {"ok"}
    assert [r.detail for r in results[-3:]] == [QUOTA_DETAIL] * 3
    assert results[UNKNOWN_AUTHOR_QUOTA - 1].detail == ""
    raws = get_raw(db, [m.id for m in spam[-3:]])
    assert raws == [m.skeleton().raw for m in spam[-3:]]
    # Offered again, the body is still refused; nothing asks peers for it.
    assert put(db, spam[-1]) == ["duplicate"]
    assert not set(unerased_skeletons(db, factory.community)) & {m.id for m in spam}
    # Once the author gets a role, the bodies may be fetched and filled in.
    put(db, factory.grant(BOB, ts=spam[0].ts - 1))
    assert set(unerased_skeletons(db, factory.community)) == {m.id for m in spam[-3:]}
    assert put(db, spam[-1]) == ["ok"]
    assert get_raw(db, [spam[-1].id]) == [spam[-1].raw]


def test_members_have_no_quota(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE))
    many = [
        factory.comment(bytes(32), f"c {i}", key=ALICE) for i in range(UNKNOWN_AUTHOR_QUOTA + 2)
    ]
    results = ingest(db, [m.raw for m in many], now_ms=NOW)
    assert all(r.detail == "" for r in results)


# --------------------------------------------------------------------------- erasure


def test_admin_erase_drops_the_body_in_any_order(tmp_path: Path, factory: Factory) -> None:
    admin = factory.grant(ADMIN, "admin")
    member = factory.grant(ALICE)
    topic = factory.topic("Hate", key=ALICE)
    erase = factory.erase(topic.id, key=ADMIN)
    orders = [
        [admin, member, topic, erase],
        [erase, topic, member, admin],
        [topic, erase, admin, member],
        [member, erase, admin, topic],
    ]
    for i, order in enumerate(orders):
        db = open_database(tmp_path / f"{i}.db")
        for m in order:
            put(db, m)
        assert get_raw(db, [topic.id]) == [topic.skeleton().raw], order
        assert status(db, topic) == "erased"
        # A stale peer cannot bring the body back.
        assert put(db, topic) == ["erased"]
        assert forum.search(db, "Hate") == []
        db.close()


def test_erase_by_a_stranger_or_member_has_no_effect(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE), factory.grant(BOB))
    topic = factory.topic("Mine", key=ALICE)
    erase = factory.erase(topic.id, key=BOB)
    put(db, erase, topic)
    assert get_raw(db, [topic.id]) == [topic.raw]
    shown = forum.show(db, erase.id)
    assert shown is not None and "neither the target's author nor an admin" in shown["not_counted"]


def test_skeleton_fill_in_respects_an_admin_erase(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ADMIN, "admin"), factory.grant(ALICE))
    topic = factory.topic("T", key=ALICE)
    put(db, topic.skeleton(), factory.erase(topic.id, key=ADMIN))
    assert put(db, topic) == ["erased"]
    assert get_raw(db, [topic.id]) == [topic.skeleton().raw]
    assert topic.id not in unerased_skeletons(db, factory.community)


# --------------------------------------------------------------------------- votes


@pytest.fixture
def vote_setup(db: Database, factory: Factory) -> tuple[Message, Message]:
    put(db, *(factory.grant(k) for k in (ALICE, BOB, CAROL)), factory.grant(OFFICIAL, "official"))
    topic = factory.topic("Transport", key=ALICE)
    proposal = factory.proposal(topic.id, closes=NOW, key=ALICE)
    put(db, topic, proposal)
    return topic, proposal


def test_each_members_newest_ballot_before_the_close_counts(
    db: Database, factory: Factory, vote_setup: tuple[Message, Message]
) -> None:
    _, proposal = vote_setup
    a1 = factory.vote(proposal.id, "no", key=ALICE)
    a2 = factory.vote(proposal.id, "yes", key=ALICE)
    b = factory.vote(proposal.id, "no", key=BOB)
    late = factory.vote(proposal.id, "yes", key=CAROL, ts=NOW)
    stranger = factory.vote(proposal.id, "yes", key=seeded_key(77))
    put(db, a2, late, b, stranger, a1)
    page = forum.proposal_page(db, proposal.id)
    assert page is not None
    assert page["counts"] == {
        "yes": 1,
        "no": 1,
        "abstain": 0,
        "support": {"yes": 0, "no": 0, "abstain": 0},
    }
    assert forum.show(db, a1.id)["ballot"]["status"] == "superseded"  # type: ignore[index]
    assert forum.show(db, late.id)["not_counted"] == "cast at or after the close"  # type: ignore[index]
    assert forum.show(db, stranger.id)["not_counted"] == "author not a member at ts"  # type: ignore[index]


def test_counts_kept_by_difference_equal_a_recount(
    db: Database, factory: Factory, vote_setup: tuple[Message, Message]
) -> None:
    """Counts are updated by what changed (docs/civic.md): after ballots, superseding
    ballots, erasures by the voter and by an admin and a revoke, in several batches,
    they equal a recount of the ballots' statuses."""
    _, proposal = vote_setup
    admin, dave = seeded_key(16), seeded_key(17)
    dave_grant = factory.grant(dave)
    put(db, factory.grant(admin, "admin"), dave_grant)
    first = [factory.vote(proposal.id, c, key=k) for k, c in ((ALICE, "yes"), (BOB, "no"))]
    put(db, *first, factory.vote(proposal.id, "abstain", key=dave))
    newer = factory.vote(proposal.id, "no", key=ALICE)
    put(db, newer, factory.erase(first[1].id, key=BOB))
    put(db, factory.erase(newer.id, key=admin), factory.vote(proposal.id, "yes", key=BOB))
    put(db, factory.revoke(dave_grant.id, ts=dave_grant.ts + 1))

    recount = dict.fromkeys(("yes", "no", "abstain"), 0)
    for choice, n in db.execute(
        "SELECT choice, count(*) FROM ballots WHERE proposal = ? AND status = 'counted'"
        " GROUP BY choice",
        (proposal.id,),
    ):
        recount[choice] = n
    counts = forum.proposal_page(db, proposal.id)["counts"]  # type: ignore[index]
    assert {k: counts[k] for k in recount} == recount == {"yes": 2, "no": 0, "abstain": 0}


def test_other_communities_members_are_support(
    db: Database, factory: Factory, vote_setup: tuple[Message, Message]
) -> None:
    _, proposal = vote_setup
    other = Factory(seeded_key(2))
    put(db, other.grant(seeded_key(30)))
    support = other.vote(proposal.id, "yes", key=seeded_key(30))
    put(db, support, factory.vote(proposal.id, "no", key=BOB))
    counts = forum.proposal_page(db, proposal.id)["counts"]  # type: ignore[index]
    assert (counts["yes"], counts["no"], counts["support"]["yes"]) == (0, 1, 1)


def _counted_hash(*votes: Message) -> bytes:
    return hashlib.sha256(b"".join(sorted(v.id for v in votes))).digest()


def test_tally_verified_and_forged(
    db: Database, factory: Factory, vote_setup: tuple[Message, Message]
) -> None:
    _, proposal = vote_setup
    votes = [
        factory.vote(proposal.id, "yes", key=ALICE),
        factory.vote(proposal.id, "yes", key=BOB),
        factory.vote(proposal.id, "no", key=CAROL),
    ]
    put(db, *votes)
    good = factory.tally(proposal.id, _counted_hash(*votes), yes=2, no=1, key=OFFICIAL, ts=NOW + 1)
    forged = factory.tally(proposal.id, _counted_hash(*votes), yes=1, no=2, ts=NOW + 2)
    by_member = factory.tally(
        proposal.id, _counted_hash(*votes), yes=2, no=1, key=ALICE, ts=NOW + 3
    )
    early = factory.tally(proposal.id, _counted_hash(*votes), yes=2, no=1, ts=NOW - 5)
    put(db, good, forged, by_member, early)
    page = forum.proposal_page(db, proposal.id)
    assert page is not None
    by_id = {t["id"]: t for t in page["tallies"]}
    assert by_id[good.hex_id]["status"] == "verified"
    assert by_id[forged.hex_id]["status"] == "mismatch"
    assert by_id[forged.hex_id]["totals_differ"] == ["yes", "no"]
    assert by_id[by_member.hex_id]["status"] == "unauthorized"
    assert by_id[early.hex_id]["status"] == "early"
    assert page["tally_status"] == "mismatch"  # the newest checked tally (the forged one)


def test_tally_made_before_all_ballots_arrived(
    db: Database, factory: Factory, vote_setup: tuple[Message, Message]
) -> None:
    _, proposal = vote_setup
    a = factory.vote(proposal.id, "yes", key=ALICE)
    b = factory.vote(proposal.id, "no", key=BOB)
    c = factory.vote(proposal.id, "no", key=CAROL)  # reached the tallier's node too late
    tally = factory.tally(proposal.id, _counted_hash(a, b), yes=1, no=1, ts=NOW + 10)
    put(db, a, b, tally)
    assert forum.show(db, tally.id)["tally"]["status"] == "verified"  # type: ignore[index]
    put(db, c)
    t = forum.show(db, tally.id)["tally"]  # type: ignore[index]
    assert t["status"] == "mismatch"
    assert t["extra_here"] == 1 and t["missing_here"] == 0
    assert t["ballot_set_differs"] is True and t["totals_differ"] == ["no"]
    # And the other way: a node that lacks c's ballot sees a tally counting 3.
    full = factory.tally(proposal.id, _counted_hash(a, b, c), yes=1, no=2, ts=NOW + 11)
    put(db, full)
    assert forum.show(db, full.id)["tally"]["status"] == "verified"  # type: ignore[index]


# --------------------------------------------------------------------------- moderation


def test_hide_by_moderator_unhide_log_and_queue(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE), factory.grant(BOB), factory.grant(MOD, "moderator"))
    topic = factory.topic("Rude words", key=ALICE)
    report = factory.report(topic.id, key=BOB)
    put(db, topic, report)
    queue = forum.report_queue(db, factory.community)
    assert [q["target"] for q in queue] == [topic.hex_id]
    fake = factory.hide(topic.id, key=BOB)
    put(db, fake)
    assert status(db, topic) == "visible"
    assert "not a moderator" in forum.show(db, fake.id)["not_counted"]  # type: ignore[index]
    hide = factory.hide(topic.id, "insults", key=MOD)
    put(db, hide)
    assert status(db, topic) == "hidden"
    assert forum.topics(db, factory.community) == []
    assert forum.search(db, "rude") == []
    assert forum.report_queue(db, factory.community) == []
    shown = forum.show(db, topic.id)
    assert shown is not None and shown["moderation"]["reason"] == "insults"
    log = forum.moderation_log(db, factory.community)
    assert [(e["action"], e["moderator"]) for e in log] == [("hide", pub(MOD).hex())]
    put(db, factory.unhide(topic.id, key=MOD))
    assert status(db, topic) == "visible"
    assert [e["action"] for e in forum.moderation_log(db, factory.community)] == ["unhide", "hide"]


# --------------------------------------------------------------------------- content


def test_topic_page_thread_and_counts(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE), factory.grant(BOB))
    topic = factory.topic("Schools", key=ALICE)
    proposal = factory.proposal(topic.id, key=ALICE)
    story = factory.story(topic.id, key=BOB)
    c1 = factory.comment(topic.id, "first", key=BOB)
    c2 = factory.comment(c1.id, "reply", key=ALICE)
    c3 = factory.comment(c1.id, "by a stranger", key=CAROL)
    put(db, c2, c3, c1, story, proposal, topic)
    page = forum.topic_page(db, topic.id)
    assert page is not None
    assert [p["id"] for p in page["proposals"]] == [proposal.hex_id]
    assert [s["id"] for s in page["stories"]] == [story.hex_id]
    assert [c["comments"] for c in page["comments"]] == [1]
    assert [(c["text"], c["depth"]) for c in forum.thread(db, topic.id)] == [
        ("first", 1),
        ("reply", 2),
    ]
    activity = forum.member_activity(db, pub(BOB))
    assert {t["id"] for t in activity["things"]} == {story.hex_id, c1.hex_id}


def test_edits_show_the_newest_version_with_history(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE), factory.grant(BOB))
    topic = factory.topic("Parks", key=ALICE)
    proposal = factory.proposal(topic.id, closes=NOW, key=ALICE)
    fields = {
        "title": "Electric bus, v2",
        "problem": "Old bus.",
        "solution": "Two buses.",
        "lang": "en",
        "closes": NOW + 10**9,
        "edit_of": proposal.id,
    }
    edit = factory.make("proposal", fields, refs=(topic.id,), key=ALICE)
    hijack = factory.make("proposal", {**fields, "title": "Hijacked"}, refs=(topic.id,), key=BOB)
    put(db, hijack, edit, proposal, topic)
    page = forum.proposal_page(db, proposal.id)
    assert page is not None
    p = page["proposal"]
    assert (p["title"], p["edited"], p["versions"], p["version_id"]) == (
        "Electric bus, v2",
        True,
        2,
        edit.hex_id,
    )
    assert p["closes"] == NOW  # the close time never moves
    assert [t["title"] for t in forum.topic_page(db, topic.id)["proposals"]] == [  # type: ignore[index]
        "Electric bus, v2"
    ]
    assert forum.search(db, "hijacked") == []


def test_search_honours_erasure_and_diacritics(db: Database, factory: Factory) -> None:
    put(db, factory.grant(ALICE))
    topic = factory.make(
        "topic",
        {
            "title": "Città più verde",
            "text": "Alberi nelle piazze",
            "lang": "it",
            "tags": [],
            "scope": "local",
        },
        key=ALICE,
    )
    put(db, topic)
    assert [t["id"] for t in forum.search(db, "citta")] == [topic.hex_id]
    assert [t["id"] for t in forum.search(db, "piazz")] == [topic.hex_id]
    put(db, factory.erase(topic.id, key=ALICE))
    assert forum.search(db, "citta") == []
    assert status(db, topic) == "erased"


def _search_tokens(db: Database) -> list[tuple[bytes, str]]:
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_tokens"
        " USING fts5vocab('main', 'search', 'instance')"
    )
    return db.execute(
        "SELECT DISTINCT t.id, v.term FROM temp.search_tokens v"
        " JOIN things t ON t.rowid = v.doc ORDER BY t.id, v.term"
    ).fetchall()


def test_search_index_follows_edits_hides_and_words(db: Database, factory: Factory) -> None:
    """m013: the index keeps no text; an entry is taken out with what it was indexed
    with, so after edits, hides and unhides it holds exactly the visible words."""
    put(db, factory.grant(ALICE), factory.grant(MOD, "moderator"))
    topic = factory.topic("Parks", key=ALICE)
    comment = factory.comment(topic.id, "green_bench needed", key=ALICE)
    put(db, topic, comment)
    assert [t["id"] for t in forum.search(db, "green_bench")] == [comment.hex_id]
    assert [t["id"] for t in forum.search(db, "bench need")] == [comment.hex_id]
    edit = factory.comment_edit(topic.id, comment.id, "fountain needed", key=ALICE)
    put(db, edit)
    assert forum.search(db, "bench") == []
    assert [t["id"] for t in forum.search(db, "fountain")] == [comment.hex_id]
    hide = factory.hide(comment.id, key=MOD)
    put(db, hide)
    assert forum.search(db, "fountain") == []
    put(db, factory.unhide(comment.id, key=MOD))
    assert [t["id"] for t in forum.search(db, "fountain")] == [comment.hex_id]
    expected = [(comment.id, "fountain"), (comment.id, "needed")]
    expected += [(topic.id, word) for word in _words(topic)]
    assert sorted(_search_tokens(db)) == sorted(expected)


def _words(message: Message) -> list[str]:
    assert message.fields is not None
    text = f"{message.fields.get('title', '')} {message.fields.get('text', '')}"
    return sorted({w.casefold() for w in re.findall(r"[^\W_]+", text)})


def test_profiles_newest_wins(db: Database, factory: Factory) -> None:
    fields = {
        "name": "Bomarzo",
        "country": "IT",
        "region": "Lazio",
        "languages": ["it"],
        "about": "",
    }
    old = factory.make("community", fields)
    new = factory.make("community", {**fields, "name": "Bomarzo (VT)"})
    fake = factory.make("community", {**fields, "name": "Fake"}, key=ALICE)
    put(db, new, fake, old)
    profile = forum.community_profile(db, factory.community)
    assert profile is not None and profile["name"] == "Bomarzo (VT)"


# --------------------------------------------------------------------------- lean rows (m011)


def _whole(message: Message) -> dict[str, object]:
    assert message.fields is not None
    fields = jsonable_fields(message.fields)
    fields.pop("edit_of", None)
    return fields


def test_things_rows_keep_no_copy_of_the_columns_and_show_whole_fields(
    tmp_path: Path, factory: Factory
) -> None:
    db = open_database(tmp_path / "fora.db")
    put(db, factory.grant(ALICE), factory.grant(BOB), factory.grant(MOD, "moderator"))
    put(db, factory.grant(ADMIN, "admin"))
    topic = factory.topic("Parks", key=ALICE)
    proposal = factory.proposal(topic.id, key=ALICE)
    comment = factory.comment(topic.id, "Firts!", key=BOB)
    edit = factory.comment_edit(topic.id, comment.id, "First!", key=BOB)
    hidden = factory.comment(topic.id, "Rude words", key=BOB)
    erased = factory.comment(topic.id, "Oops", key=ALICE)
    report = factory.report(topic.id, key=BOB)
    survey = factory.make(
        "survey",
        {
            "title": "Benches",
            "intro": "Tell us.",
            "questions": [{"text": "How many?", "type": "scale", "options": ["1", "2"]}],
            "opens": NOW - 1_000,
            "closes": NOW + 10**9,
        },
    )
    put(db, topic, proposal, comment, edit, hidden, erased, report, survey)
    put(db, factory.hide(hidden.id, key=MOD), factory.erase(erased.id, key=ALICE))
    expected = {
        topic: _whole(topic),
        proposal: _whole(proposal),
        comment: _whole(edit),  # the newest version
        hidden: _whole(hidden),  # a moderator still sees it whole
        report: _whole(report),
        survey: _whole(survey),
    }
    for message, fields in expected.items():
        shown = forum.thing(db, message.id)
        assert shown is not None, message.kind
        assert shown["fields"] == fields, message.kind
        assert list(shown["fields"]) == sorted(fields), message.kind  # keys as a body has them
    assert forum.thing(db, hidden.id)["status"] == "hidden"  # type: ignore[index]
    gone = forum.thing(db, erased.id)
    assert gone is not None
    assert (gone["status"], gone["fields"], gone["text"]) == ("erased", None, "")
    page = forum.topic_page(db, topic.id)
    assert page is not None
    assert page["topic"]["fields"] == _whole(topic)
    assert [t["text"] for t in forum.thread(db, topic.id)] == ["First!"]
    # What is kept: no key that the title, text and lang columns give back.
    kept = dict(db.execute("SELECT id, fields FROM things").fetchall())
    assert kept[comment.id] is None and kept[hidden.id] is None and kept[report.id] is None
    assert set(json.loads(kept[topic.id])) == {"scope", "tags"}
    assert set(json.loads(kept[proposal.id])) == {"problem", "solution", "closes"}
    assert set(json.loads(kept[survey.id])) == {"questions", "opens", "closes"}
    db.close()


def test_first_versions_keep_their_body_in_their_bytes_only(
    tmp_path: Path, factory: Factory
) -> None:
    """m012: a thing's first version has no ``bodies`` row (its things row shows it);
    a thing derived again in a later transaction gets its fields from its bytes."""
    db = open_database(tmp_path / "fora.db")
    put(db, factory.grant(ALICE), factory.grant(MOD, "moderator"))
    bob = factory.grant(BOB)  # made first (its ts is earlier), stored last
    topic = factory.topic("Parks", key=ALICE)
    early = factory.comment(topic.id, "Benches, please", key=BOB)
    hidden = factory.comment(topic.id, "Shouting", key=ALICE)
    edit = factory.comment_edit(topic.id, hidden.id, "Shouting less", key=ALICE)
    put(db, topic, early, hidden)
    put(db, edit)
    bodies = dict(db.execute("SELECT id, kind FROM bodies").fetchall())
    assert topic.id not in bodies and early.id not in bodies and hidden.id not in bodies
    assert bodies[edit.id] == "comment"  # an edit keeps its row: found by edit_of
    assert status(db, early) == "unauthorized"
    # Later transactions derive the things again from the tables.
    put(db, bob)
    put(db, factory.hide(hidden.id, key=MOD))
    shown = forum.thing(db, early.id)
    assert shown is not None
    assert (shown["status"], shown["text"], shown["fields"]) == (
        "visible",
        "Benches, please",
        _whole(early),
    )
    again = forum.thing(db, hidden.id)
    assert again is not None
    assert (again["status"], again["text"], again["versions"]) == ("hidden", "Shouting less", 2)
    assert [r["id"] for r in forum.search(db, "benches")] == [early.id.hex()]
    # `fora show` gives the fields of a first version from its bytes, of an edit from
    # its row, and none once erased.
    assert forum.show(db, early.id)["fields"] == _whole(early)  # type: ignore[index]
    assert forum.show(db, edit.id)["fields"]["text"] == "Shouting less"  # type: ignore[index]
    put(db, factory.erase(early.id, key=BOB))
    gone = forum.show(db, early.id)
    assert gone is not None and "fields" not in gone and gone["skeleton"]
    db.close()


def test_m012_drops_the_bodies_of_first_versions_only(tmp_path: Path, factory: Factory) -> None:
    db = open_database(tmp_path / "fora.db")
    put(db, factory.grant(ALICE), factory.grant(BOB))
    topic = factory.topic("Parks", key=ALICE)
    comment = factory.comment(topic.id, "Yes.", key=BOB)
    edit = factory.comment_edit(topic.id, comment.id, "Yes!", key=BOB)
    put(db, topic, comment, edit)
    before = db.execute("SELECT * FROM bodies ORDER BY id").fetchall()
    things = db.execute("SELECT * FROM things ORDER BY id").fetchall()
    # Back to what m011 wrote: a bodies row for every body of a known kind.
    for message in (topic, comment):
        assert message.fields is not None
        db.execute(
            "INSERT INTO bodies (id, kind, community, author, ts, ref0, edit_of, fields)"
            " VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
            (
                message.id,
                message.kind,
                message.community,
                message.author,
                message.ts,
                message.refs[0] if message.refs else None,
                fields_json(message.fields),
            ),
        )
    db = upgrade_again(db, "m012_bodies_of_edits_and_events")
    assert db.execute("SELECT * FROM bodies ORDER BY id").fetchall() == before
    assert db.execute("SELECT * FROM things ORDER BY id").fetchall() == things
    kept = {row[0] for row in before}
    assert edit.id in kept and comment.id not in kept
    db.close()


def test_m011_leaves_rows_as_ingest_writes_them(tmp_path: Path, factory: Factory) -> None:
    db = open_database(tmp_path / "fora.db")
    put(db, factory.grant(ALICE), factory.grant(BOB))
    topic = factory.topic("Parks", key=ALICE)
    proposal = factory.proposal(topic.id, key=ALICE)
    named = factory.make(  # an empty text is kept: the column cannot tell it from none
        "topic",
        {"title": "T", "text": "", "lang": "en", "tags": [], "scope": "local"},
        key=BOB,
    )
    comment = factory.comment(topic.id, "Yes.", key=BOB)
    put(db, topic, proposal, comment, named)
    lean = db.execute("SELECT id, fields FROM things ORDER BY id").fetchall()
    shown = {m.id: forum.thing(db, m.id) for m in (topic, proposal, comment, named)}
    # Back to what m010 wrote: the whole fields in every row.
    for thing_id, thing in shown.items():
        assert thing is not None
        whole = json.dumps(thing["fields"], ensure_ascii=False, sort_keys=True)
        db.execute("UPDATE things SET fields = ? WHERE id = ?", (whole, thing_id))
    db.execute("CREATE INDEX things_author ON things (author, ts)")
    db = upgrade_again(db, "m011_lean_things")
    assert db.execute("SELECT id, fields FROM things ORDER BY id").fetchall() == lean
    assert {m: forum.thing(db, m) for m in shown} == shown
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'things_author'").fetchone() is None
    assert json.loads(dict(lean)[named.id]) == {"scope": "local", "tags": [], "text": ""}
    db.close()
