"""What the writer runs walks indexes: every statement that storing and deriving a batch
makes is traced and explained, and none scans a table whole. A scan costs nothing on a
test's store and seconds on a store of a million messages, so only the query plan shows
it in a test (SQLite's planner has no statistics here: it plans as on any store)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from sqlite_utils import Database

from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key
from .test_civic_order import SCENARIO

#: Plan steps that read no stored table whole: constant rows, a CTE of bound values,
#: the full-text index by rowid, the schema (a few rows).
_HARMLESS = re.compile(
    r"^SCAN (\d+ CONSTANT ROWS?|CONSTANT ROW|v|sqlite_master)$"
    r"|^SCAN search VIRTUAL TABLE INDEX \d+:=$"
)


def scans(db: Database, batches: Sequence[Sequence[bytes]]) -> list[tuple[str, str]]:
    """The whole-table scans in the plans of what ingesting ``batches`` runs."""
    traced: list[str] = []
    db.conn.set_trace_callback(traced.append)
    try:
        for batch in batches:
            ingest(db, batch, now_ms=NOW)
    finally:
        db.conn.set_trace_callback(None)
    found: list[tuple[str, str]] = []
    statements = [s for s in traced if re.match(r"\s*(SELECT|WITH|INSERT|UPDATE|DELETE)", s, re.I)]
    assert len(statements) > 20
    for sql in statements:
        for row in db.conn.execute("EXPLAIN QUERY PLAN " + sql):
            if row[3].startswith("SCAN") and not _HARMLESS.match(row[3]):
                found.append((sql[:300], row[3]))
    return found


def test_the_reference_scenario_scans_no_table(tmp_path: Path) -> None:
    db = open_database(tmp_path / "fora.db")
    raws = [m.raw for m in SCENARIO]
    half = len(raws) // 2
    ingest(db, raws[:half], now_ms=NOW)
    # the rest, then every message again (the duplicates' path)
    assert scans(db, [raws[half:], raws]) == []
    db.close()


def test_a_batch_of_many_votes_scans_no_table(tmp_path: Path, factory: Factory) -> None:
    """Hundreds of (proposal, voter) pairs in one batch, voters with ballots held: the
    batch's ballots are judged with one set-based query per chunk of pairs, which must
    look them up by key (an inner join to ``messages`` once let SQLite scan ``ballots``
    instead)."""
    db = open_database(tmp_path / "fora.db")
    members = [seeded_key(100 + i) for i in range(60)]
    topic = factory.topic()
    proposals = [factory.proposal(topic.id, f"Plan {i}") for i in range(4)]
    setup = [factory.grant(m) for m in members] + [topic, *proposals]
    first = [factory.vote(p.id, "yes", key=m) for p in proposals for m in members]
    ingest(db, [m.raw for m in setup + first], now_ms=NOW)
    again = [factory.vote(p.id, "no", key=m) for p in proposals for m in members]
    comments = [factory.comment(topic.id, f"Comment {i}", key=m) for i, m in enumerate(members)]
    assert scans(db, [[m.raw for m in again + comments]]) == []
    db.close()
