"""The derived views depend on the set of messages held, never on their arrival order."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Database

from protocol import signing, sortition
from protocol.messages import Message
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key, upgrade_again

_VIEW_TABLES = {
    "message_auth": "id",
    "role_grants": "grant_id",
    "things": "id",
    "topic_tags": "tag, topic",
    "ballots": "vote_id",
    "proposal_counts": "proposal",
    "tallies": "tally_id",
    "modlog": "action_id",
    "moderation": "target",
    "profiles": "community",
    "bodies": "id",
    "signatures": "sign_id",
    "petition_counts": "petition",
    "survey_answers": "answer_id",
    "survey_results": "survey",
    "panels": "panel",
    "draws": "draw_id",
}


def _scenario() -> list[Message]:
    f = Factory(seeded_key(1))
    other = Factory(seeded_key(2))
    alice, bob, carol, mod, admin, official = (seeded_key(i) for i in range(10, 16))
    admin_grant = f.grant(admin, "admin")
    out = [admin_grant, f.grant(alice, key=admin), f.grant(bob), f.grant(mod, "moderator")]
    out.append(f.grant(official, "official", key=admin))
    carol_grant = f.grant(carol)
    out.append(carol_grant)
    topic = f.topic("Transport", key=alice)
    proposal = f.proposal(topic.id, closes=NOW - 1_000_000, key=alice)
    out += [topic, proposal]
    votes = [
        f.vote(proposal.id, "no", key=alice),
        f.vote(proposal.id, "yes", key=alice),
        f.vote(proposal.id, "yes", key=bob),
        f.vote(proposal.id, "abstain", key=carol),
    ]
    out += votes
    out.append(f.revoke(carol_grant.id))
    out.append(f.vote(proposal.id, "no", key=carol))  # after her revoke
    out.append(other.vote(proposal.id, "yes", key=seeded_key(40)))
    out.append(other.grant(seeded_key(40)))
    c1 = f.comment(topic.id, "first", key=bob)
    c2 = f.comment(c1.id, "reply", key=alice)
    out += [c1, c2, f.report(c2.id, key=bob), f.hide(c2.id, key=mod), f.hide(c1.id, key=bob)]
    story = f.story(topic.id, key=bob)
    out += [story, f.erase(story.id, key=admin)]
    edit = f.make(
        "topic",
        {
            "title": "Transport v2",
            "text": "",
            "lang": "en",
            "tags": ["bus"],
            "scope": "local",
            "edit_of": topic.id,
        },
        key=alice,
    )
    out.append(edit)
    out.append(f.tally(proposal.id, bytes(32), yes=1, no=0, abstain=0, key=official))
    out.append(
        f.make(
            "community",
            {"name": "X", "country": "IT", "region": "", "languages": ["it"], "about": ""},
        )
    )
    # A petition: duplicate, foreign, late and post-revoke signs; an erased first sign.
    petition = f.make(
        "petition",
        {"title": "Park", "text": "Save it.", "goal": 2, "closes": NOW - 500_000},
        key=bob,
    )
    bob_sign = f.make("sign", {}, refs=(petition.id,), key=bob)
    out += [
        petition,
        bob_sign,
        f.make("sign", {}, refs=(petition.id,), key=bob),
        f.make("sign", {}, refs=(petition.id,), key=alice),
        f.make("sign", {}, refs=(petition.id,), key=carol),  # after her revoke
        f.make("sign", {}, refs=(petition.id,), key=alice, ts=NOW - 500_000),  # late
        other.make("sign", {}, refs=(petition.id,), key=seeded_key(40)),
        f.erase(bob_sign.id, key=bob),
    ]
    # A survey: superseded, mismatching, late and foreign answers; an erased newest one.
    questions = [
        {"text": "Happy?", "type": "scale", "options": ["1", "2", "3"]},
        {"text": "Why?", "type": "text", "options": []},
    ]
    survey = f.make(
        "survey",
        {
            "title": "S",
            "intro": "",
            "questions": questions,
            "opens": NOW - 3_000_000,
            "closes": NOW - 500_000,
        },
        key=official,
    )
    newest = f.make("answer", {"answers": [2, "bus"]}, refs=(survey.id,), key=bob, ts=NOW - 900_000)
    out += [
        survey,
        f.make("answer", {"answers": [0, None]}, refs=(survey.id,), key=bob, ts=NOW - 2_000_000),
        newest,
        f.make("answer", {"answers": [1, None]}, refs=(survey.id,), key=alice, ts=NOW - 1_900_000),
        f.make("answer", {"answers": [5, None]}, refs=(survey.id,), key=alice, ts=NOW - 1_800_000),
        f.make("answer", {"answers": [1]}, refs=(survey.id,), key=alice, ts=NOW - 1_700_000),
        f.make("answer", {"answers": [0, "x"]}, refs=(survey.id,), key=alice, ts=NOW - 400_000),
        other.make(
            "answer",
            {"answers": [0, "x"]},
            refs=(survey.id,),
            key=seeded_key(40),
            ts=NOW - 1_000_000,
        ),
        f.make("answer", {"answers": [2, None]}, refs=(survey.id,), key=alice, ts=NOW - 2_500_000),
        f.erase(newest.id, key=bob),
    ]
    # The admin loses the role: the official's grant (made while admin) still counts.
    out.append(f.revoke(admin_grant.id))
    # Panels: a verified draw and a later one (superseded), a draw waiting for an
    # entropy message never held, a draw whose secret is wrong. On the roll at the
    # panels' ts: alice, bob, the moderator and the official (carol and the admin were
    # revoked before).
    roll = [signing.public_key_bytes(k) for k in (alice, bob, mod, official)]
    secret = hashlib.sha256(b"order secret").digest()

    def panel(ts: int) -> Message:
        fields = {
            "name": "Panel",
            "seats": 2,
            "roll": sortition.roll_hash(roll),
            "commit": sortition.commit_of(secret),
        }
        return f.make("panel", fields, key=official, ts=ts)

    def draw(p: Message, entropy: list[bytes], ts: int, secret: bytes = secret) -> Message:
        selected = list(sortition.draw(roll, secret, entropy, 2).selected)
        return f.make(
            "draw",
            {"secret": secret, "selected": selected},
            refs=(p.id, *entropy),
            key=official,
            ts=ts,
        )

    entropy = other.topic("Peer news", ts=NOW - 95_000)
    verified, pending, invalid = panel(NOW - 100_000), panel(NOW - 99_000), panel(NOW - 98_000)
    never = hashlib.sha256(b"never held").digest()
    out += [entropy, verified, pending, invalid]
    out += [
        draw(verified, [entropy.id], NOW - 80_000),
        draw(verified, [entropy.id], NOW - 70_000),
        draw(pending, sorted([entropy.id, never]), NOW - 80_000),
        draw(invalid, [entropy.id], NOW - 80_000, secret=bytes(32)),
        draw(topic, [entropy.id], NOW - 80_000),  # not a panel
    ]
    return out


SCENARIO = _scenario()


def snapshot(db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for table, key in _VIEW_TABLES.items():
        out[table] = db.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()
    out["raw"] = db.execute("SELECT id, raw FROM messages ORDER BY id").fetchall()
    # The full-text index keeps no text (m013): what it holds is read as (thing, token)
    # pairs, so an entry removed with other words than it was indexed with shows.
    db.execute(
        "CREATE VIRTUAL TABLE IF NOT EXISTS temp.search_tokens"
        " USING fts5vocab('main', 'search', 'instance')"
    )
    out["search"] = db.execute(
        "SELECT DISTINCT t.id, v.term FROM temp.search_tokens v"
        " JOIN things t ON t.rowid = v.doc ORDER BY t.id, v.term"
    ).fetchall()
    return out


def _ingest_in(order: list[int], batch: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "fora.db")
        raws = [SCENARIO[i].raw for i in order]
        for start in range(0, len(raws), batch):
            ingest(db, raws[start : start + batch], now_ms=NOW)
        snap = snapshot(db)
        db.close()
    return snap


REFERENCE = _ingest_in(list(range(len(SCENARIO))), len(SCENARIO))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(SCENARIO))),
    batch=st.integers(min_value=1, max_value=len(SCENARIO)),
)
def test_any_arrival_order_gives_the_same_views(order: list[int], batch: int) -> None:
    assert _ingest_in(order, batch) == REFERENCE


def test_the_reference_is_not_trivial() -> None:
    statuses = {row[6] for row in REFERENCE["things"]}
    assert {"visible", "hidden", "erased"} <= statuses
    assert any(row[1] == 0 for row in REFERENCE["message_auth"])


def rebuilt_by(migration: str, tables: tuple[str, ...]) -> dict[str, Any]:
    """The views after dropping ``tables`` and running ``migration`` again over the
    messages already stored (as an upgrade from before it would)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fora.db"
        db = open_database(path)
        ingest(db, [m.raw for m in SCENARIO], now_ms=NOW)
        for table in tables:
            db.execute(f"DROP TABLE {table}")
        db = upgrade_again(db, migration)
        snap = snapshot(db)
        db.close()
    return snap


def test_m004_builds_from_messages_already_stored() -> None:
    snap = rebuilt_by(
        "m004_petitions_surveys",
        ("signatures", "petition_counts", "survey_answers", "survey_results"),
    )
    assert snap == REFERENCE
    assert any(row[5] == "counted" for row in snap["signatures"])


def test_m005_builds_from_messages_already_stored() -> None:
    assert rebuilt_by("m005_panels", ("panels", "draws")) == REFERENCE


def test_the_panels_in_the_reference_are_not_trivial() -> None:
    assert sorted(row[13] for row in REFERENCE["panels"]) == ["invalid", "pending", "verified"]
    assert all(row[9] == "match" and row[10] == 4 for row in REFERENCE["panels"])
    statuses = sorted(row[2] for row in REFERENCE["draws"])
    assert statuses == ["invalid", "invalid", "pending", "superseded", "verified"]


def test_the_petition_in_the_reference_is_not_trivial() -> None:
    statuses = {row[5] for row in REFERENCE["signatures"]}
    assert {"counted", "support", "late", "unauthorized", "erased"} <= statuses
    assert REFERENCE["petition_counts"][0][1:3] == (2, 1)


def test_the_survey_in_the_reference_is_not_trivial() -> None:
    statuses = {row[5] for row in REFERENCE["survey_answers"]}
    assert {"counted", "superseded", "mismatch", "late", "erased", "other"} <= statuses
    assert REFERENCE["survey_results"][0][1] == 2


def test_m009_keeps_every_view_of_a_database_from_before_it() -> None:
    """A database whose schema stops before m009 (verdicts in a ``message_auth`` table,
    ballots as a table with four indexes), holding the reference's messages and views,
    ends with exactly the reference's views once m009 has run."""
    from storage.migrations import migrations

    with tempfile.TemporaryDirectory() as tmp:
        ref_path = Path(tmp) / "reference.db"
        ref = open_database(ref_path)
        ingest(ref, [m.raw for m in SCENARIO], now_ms=NOW)
        ref.close()
        old_path = Path(tmp) / "old.db"
        old = open_database(old_path, migrate=False)
        migrations.apply(old, stop_before="m009_lean_writes")
        conn = old.conn
        conn.execute("ATTACH DATABASE ? AS ref", (str(ref_path),))
        conn.execute("BEGIN")
        columns = "seq, id, community, author, kind, ts, sec, refs, has_body, raw, received_at"
        conn.execute(f"INSERT INTO messages ({columns}) SELECT {columns} FROM ref.messages")
        copied = 0
        for table in (*_VIEW_TABLES, "message_refs", "erasures", "quota_skeletons"):
            names = [row[1] for row in conn.execute(f"PRAGMA ref.table_info({table})")]
            listed = ", ".join(names)
            if table == "ballots":  # before m010 a ballot kept its vote's community
                conn.execute(
                    f"INSERT INTO main.ballots ({listed}, community)"
                    f" SELECT {', '.join('b.' + n for n in names)}, m.community"
                    " FROM ref.ballots b JOIN ref.messages m ON m.id = b.vote_id"
                )
            else:
                conn.execute(
                    f"INSERT INTO main.{table} ({listed}) SELECT {listed} FROM ref.{table}"
                )
            copied += conn.execute(f"SELECT count(*) FROM main.{table}").fetchone()[0]
        conn.execute("COMMIT")
        conn.execute("DETACH DATABASE ref")
        assert "ballots_by_voter" in {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        }
        old.close()
        assert copied > 100
        db = open_database(old_path)
        snap = snapshot(db)
        kinds = dict(db.execute("SELECT name, type FROM sqlite_master").fetchall())
        ballot_columns = {row[1] for row in db.execute("PRAGMA table_info(ballots)")}
        db.close()
    assert snap == REFERENCE
    assert "community" not in ballot_columns  # m010
    assert "sqlite_autoindex_proposal_counts_1" not in kinds  # m010: one b-tree
    assert kinds["message_auth"] == "view"
    assert "ballots_by_voter" not in kinds
