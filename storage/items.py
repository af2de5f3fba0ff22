"""Reconciliation items: one community's (ts // 1000, id) pairs in Negentropy order."""

from __future__ import annotations

from sqlite_utils import Database

from .database import select_in

__all__ = ["items_since", "last_seq", "load_items", "unauthorized"]


def load_items(db: Database, community: bytes) -> list[tuple[int, bytes]]:
    """Every message of ``community`` held (skeletons included) as (seconds, id),
    sorted by seconds then id: read straight off the ``messages_reconcile`` index."""
    return [
        (sec, message_id)
        for sec, message_id in db.execute(
            "SELECT sec, id FROM messages INDEXED BY messages_reconcile"
            " WHERE community = ? ORDER BY sec, id",
            (community,),
        )
    ]


def last_seq(db: Database, community: bytes) -> int:
    """The arrival number of the community's newest message (0 when none): items only
    ever get added, so an unchanged number means an unchanged item set."""
    row = db.execute("SELECT max(seq) FROM messages WHERE community = ?", (community,)).fetchone()
    return int(row[0] or 0)


def unauthorized(db: Database, ids: list[bytes]) -> set[bytes]:
    """Those of ``ids`` whose author was not authorized for them (never relayed as
    content by live push)."""
    sql = "SELECT id FROM message_auth WHERE authorized = 0 AND id IN ({marks})"
    return {row[0] for row in select_in(db, sql, ids)}


def items_since(db: Database, community: bytes, seq: int) -> tuple[int, list[tuple[int, bytes]]]:
    """The community's items that arrived after ``seq``, sorted, and the newest seq."""
    rows = db.execute(
        "SELECT seq, sec, id FROM messages WHERE community = ? AND seq > ?", (community, seq)
    ).fetchall()
    newest = max((row[0] for row in rows), default=seq)
    return newest, sorted((row[1], row[2]) for row in rows)
