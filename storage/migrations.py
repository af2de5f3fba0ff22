"""The schema, as numbered migrations (sqlite-utils ``Migrations``).

Never edit a migration that has shipped: add the next one. ``fora`` applies pending
migrations when it opens a node's database, so upgrading is: stop, install, start.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

__all__ = ["migrations"]

migrations = Migrations("fora")


@migrations()
def m001_messages(db: Database) -> None:
    # Every message this node holds, as its exact bytes plus the columns that the
    # views, sync and queries need. seq is arrival order on this node (exports and
    # pushes follow it); sec is ts // 1000, the reconciliation timestamp.
    db.table("messages").create(
        {
            "seq": int,
            "id": bytes,
            "community": bytes,
            "author": bytes,
            "kind": str,
            "ts": int,
            "sec": int,
            "refs": bytes,
            "has_body": int,
            "raw": bytes,
            "received_at": int,
        },
        pk="seq",
        not_null={
            "id",
            "community",
            "author",
            "kind",
            "ts",
            "sec",
            "refs",
            "has_body",
            "raw",
            "received_at",
        },
        strict=True,
    )
    db.table("messages").create_index(["id"], unique=True, index_name="messages_id")
    # Ordered exactly like Negentropy items: (timestamp in seconds, id), per community.
    db.table("messages").create_index(["community", "sec", "id"], index_name="messages_reconcile")
    db.table("messages").create_index(["community", "kind", "ts"], index_name="messages_kind")
    db.table("messages").create_index(["author", "ts"], index_name="messages_author")
    # Which message refers to which (refs[0] is the primary target, position 0).
    db.table("message_refs").create(
        {"ref": bytes, "id": bytes, "position": int},
        pk=("ref", "id", "position"),
        strict=True,
    )
    # Erase messages by target, kept even when the target has not arrived yet, so the
    # target's body is dropped on arrival and never comes back through sync.
    db.table("erasures").create(
        {"target": bytes, "erase_id": bytes, "author": bytes},
        pk=("target", "erase_id"),
        strict=True,
    )
    # Local-only node settings (never synced).
    db.table("settings").create({"key": str, "value": str}, pk="key", strict=True)


@migrations()
def m002_peers_and_follows(db: Database) -> None:
    # Per-community newest arrival: tells the in-memory reconciliation cache whether it
    # is stale, in O(log n), whichever process wrote.
    db.table("messages").create_index(["community", "seq"], index_name="messages_community_seq")
    # Communities this node holds besides its own (local-only, never synced).
    db.table("follows").create(
        {"community": bytes, "added_at": int, "via": str},
        pk="community",
        not_null={"added_at", "via"},
        strict=True,
    )
    # Peers: other nodes this one syncs with. community is pinned when the peer is
    # added; a peer that later presents another id is refused.
    db.table("peers").create(
        {
            "url": str,
            "community": bytes,
            "name": str,
            "kind": str,  # manual | lan
            "added_at": int,
            "last_attempt": int,
            "last_success": int,
            "state": str,  # new | ok | failing | refused
            "last_error": str,
            "failures": int,
            "next_attempt": int,
            "received": int,
            "sent": int,
        },
        pk="url",
        not_null={"kind", "added_at", "state", "failures", "next_attempt", "received", "sent"},
        defaults={
            "state": "new",
            "failures": 0,
            "next_attempt": 0,
            "received": 0,
            "sent": 0,
            "name": "",
            "last_error": "",
        },
        strict=True,
    )
