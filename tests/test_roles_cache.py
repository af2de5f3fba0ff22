"""The writer's role cache outlives a transaction only while the roles stay the same."""

from __future__ import annotations

from pathlib import Path

from storage import roles
from storage.database import open_database
from storage.messages import ingest

from .conftest import NOW, Factory, seeded_key


def _authorized(db: object, message_id: bytes) -> int | None:
    row = db.execute(  # type: ignore[attr-defined]
        "SELECT authorized FROM message_auth WHERE id = ?", [message_id]
    ).fetchone()
    return None if row is None else int(row[0])


def test_a_revoke_written_by_another_process_is_seen_by_the_next_transaction(
    tmp_path: Path,
) -> None:
    f = Factory(seeded_key(1))
    alice = seeded_key(10)
    path = tmp_path / "fora.db"
    node = open_database(path)
    grant = f.grant(alice)
    first = f.topic("Before", key=alice)
    ingest(node, [grant.raw, first.raw], now_ms=NOW)
    second = f.topic("Still a member", key=alice)
    ingest(node, [second.raw], now_ms=NOW)  # alice's roles come from the shared cache
    assert _authorized(node, first.id) == _authorized(node, second.id) == 1
    shared = dict(roles._SHARED)
    assert shared, "the node's writer shares what it read"

    # `fora post` in another process revokes alice: that process has its own cache, so
    # this one's is put back as it was after the revoke is stored.
    cli = open_database(path)
    ingest(cli, [f.revoke(grant.id).raw], now_ms=NOW)
    cli.close()
    roles._SHARED.clear()
    roles._SHARED.update(shared)

    after = f.topic("After the revoke", key=alice)
    ingest(node, [after.raw], now_ms=NOW)
    assert _authorized(node, after.id) == 0
    node.close()


def test_a_grant_in_a_batch_drops_the_shared_cache(tmp_path: Path) -> None:
    f = Factory(seeded_key(1))
    bob = seeded_key(11)
    db = open_database(tmp_path / "fora.db")
    early = f.topic("Too early", key=bob)
    ingest(db, [early.raw], now_ms=NOW)
    assert _authorized(db, early.id) == 0
    cached = roles._SHARED[str(tmp_path / "fora.db")]
    ingest(db, [f.grant(bob).raw], now_ms=NOW)
    assert roles._SHARED.get(str(tmp_path / "fora.db")) is not cached
    late = f.topic("A member now", key=bob)
    ingest(db, [late.raw], now_ms=NOW)
    assert _authorized(db, late.id) == 1
    db.close()
