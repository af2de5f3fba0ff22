"""Peers and followed communities (local-only tables, never synced)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from .database import write_transaction

__all__ = [
    "Peer",
    "PeerRefused",
    "add_peer",
    "due_now",
    "follow",
    "followed",
    "get_peer",
    "held_communities",
    "list_peers",
    "record_failure",
    "record_success",
    "remove_peer",
    "unfollow",
]

#: Backoff after failures: 5 s, doubling, at most 30 minutes.
BACKOFF_BASE_MS = 5_000
BACKOFF_MAX_MS = 30 * 60 * 1000


class PeerRefused(Exception):
    """A peer presented another community id than the one pinned for it."""


@dataclass(frozen=True)
class Peer:
    url: str
    community: bytes
    name: str
    kind: str
    added_at: int
    last_attempt: int | None
    last_success: int | None
    state: str
    last_error: str
    failures: int
    next_attempt: int
    received: int
    sent: int

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "community": self.community.hex(),
            "name": self.name,
            "kind": self.kind,
            "state": self.state,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "last_error": self.last_error,
            "failures": self.failures,
            "next_attempt": self.next_attempt,
            "received": self.received,
            "sent": self.sent,
        }


_COLUMNS = (
    "url, community, name, kind, added_at, last_attempt, last_success, state, last_error,"
    " failures, next_attempt, received, sent"
)


def _peer(row: tuple[Any, ...]) -> Peer:
    return Peer(*row)


def normalize_url(url: str) -> str:
    return url.rstrip("/")


def get_peer(db: Database, url: str) -> Peer | None:
    row = db.execute(
        f"SELECT {_COLUMNS} FROM peers WHERE url = ?",  # noqa: S608 - constant columns
        (normalize_url(url),),
    ).fetchone()
    return _peer(row) if row else None


def list_peers(db: Database) -> list[Peer]:
    return [
        _peer(row)
        for row in db.execute(f"SELECT {_COLUMNS} FROM peers ORDER BY url")  # noqa: S608
    ]


def add_peer(
    db: Database, url: str, community: bytes, name: str, kind: str, *, now_ms: int
) -> Peer:
    """Add a peer (pinning its community id) and follow its community.

    Adding a peer that is known already keeps its pin: a different id is refused.
    """
    url = normalize_url(url)
    with write_transaction(db):
        existing = get_peer(db, url)
        if existing is not None:
            if existing.community != community:
                raise PeerRefused(
                    f"{url} presents community {community.hex()}, pinned {existing.community.hex()}"
                )
            db.execute("UPDATE peers SET name = ? WHERE url = ?", (name, url))
        else:
            db.execute(
                "INSERT INTO peers (url, community, name, kind, added_at) VALUES (?, ?, ?, ?, ?)",
                (url, community, name, kind, now_ms),
            )
        follow(db, community, via=f"peer {url}", now_ms=now_ms)
    peer = get_peer(db, url)
    assert peer is not None
    return peer


def remove_peer(db: Database, url: str) -> bool:
    with write_transaction(db):
        cur = db.execute("DELETE FROM peers WHERE url = ?", (normalize_url(url),))
    return cur.rowcount > 0


def record_success(
    db: Database, url: str, *, now_ms: int, received: int, sent: int, interval_ms: int
) -> None:
    with write_transaction(db):
        db.execute(
            "UPDATE peers SET last_attempt = ?, last_success = ?, state = 'ok', last_error = '',"
            " failures = 0, next_attempt = ?, received = received + ?, sent = sent + ?"
            " WHERE url = ?",
            (now_ms, now_ms, now_ms + interval_ms, received, sent, normalize_url(url)),
        )


def due_now(db: Database, url: str, *, now_ms: int) -> None:
    """Make ``url`` due for a sync at ``now_ms`` (a live push to it failed)."""
    with write_transaction(db):
        db.execute(
            "UPDATE peers SET next_attempt = min(next_attempt, ?) WHERE url = ?",
            (now_ms, normalize_url(url)),
        )


def backoff_ms(failures: int) -> int:
    return int(min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** max(0, failures - 1)))


def record_failure(
    db: Database, url: str, error: str, *, now_ms: int, refused: bool = False
) -> int:
    """Note a failed sync; returns the backoff in ms before the next attempt."""
    url = normalize_url(url)
    with write_transaction(db):
        peer = get_peer(db, url)
        if peer is None:
            return 0
        failures = peer.failures + 1
        delay = backoff_ms(failures)
        db.execute(
            "UPDATE peers SET last_attempt = ?, state = ?, last_error = ?, failures = ?,"
            " next_attempt = ? WHERE url = ?",
            (
                now_ms,
                "refused" if refused else "failing",
                error[:500],
                failures,
                now_ms + delay,
                url,
            ),
        )
    return delay


def follow(db: Database, community: bytes, *, via: str, now_ms: int) -> bool:
    """Follow a community; False when it was followed already."""
    with write_transaction(db):
        cur = db.execute(
            "INSERT OR IGNORE INTO follows (community, added_at, via) VALUES (?, ?, ?)",
            (community, now_ms, via),
        )
    return cur.rowcount > 0


def unfollow(db: Database, community: bytes) -> bool:
    with write_transaction(db):
        cur = db.execute("DELETE FROM follows WHERE community = ?", (community,))
    return cur.rowcount > 0


def followed(db: Database) -> list[bytes]:
    return [row[0] for row in db.execute("SELECT community FROM follows ORDER BY community")]


def held_communities(db: Database, own: bytes) -> list[bytes]:
    """The communities this node holds: its own and those it follows."""
    return sorted({own, *followed(db)})
