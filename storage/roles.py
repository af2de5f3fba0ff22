"""Roles and authorization, derived from the signed messages (PROTOCOL.md section 4).

A community grants roles with ``grant`` and withdraws them with ``revoke``. Which roles
a key holds at a time is a pure function of the *set* of a community's grant and revoke
messages, whatever order they arrived in: :func:`replay_roles` sorts them by
``(ts, id)`` and replays them, so a grant or revoke counts only when its author was the
community key or an admin at its own ``ts`` (judged by what came before it in that
order), and a revoke ends a grant that precedes it in that order.

The result is kept in ``role_grants`` (one row per grant message, with its effective
interval ``[start_ts, end_ts)`` or why it has none) and every message's verdict in
``message_auth`` (see :func:`authorize`). Nothing here decides what a view shows; it
answers "was this author allowed to publish this kind, at this time, here".
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ADMIN",
    "KIND_ROLES",
    "MEMBER_ROLES",
    "RoleCache",
    "Verdict",
    "authorize",
    "replay_roles",
    "write_verdicts",
]

ADMIN = "admin"
#: Every role implies membership; admin implies every role.
MEMBER_ROLES = frozenset({"member", "moderator", "official", "admin"})
MODERATOR_ROLES = frozenset({"moderator", "admin"})
OFFICIAL_ROLES = frozenset({"official", "admin"})
ADMIN_ROLES = frozenset({"admin"})
C_ONLY: frozenset[str] = frozenset()

#: kind -> the roles that may publish it (the community key C always may).
KIND_ROLES: dict[str, frozenset[str]] = {
    "community": C_ONLY,
    "grant": ADMIN_ROLES,
    "revoke": ADMIN_ROLES,
    "topic": MEMBER_ROLES,
    "proposal": MEMBER_ROLES,
    "vote": MEMBER_ROLES,
    "tally": OFFICIAL_ROLES,
    "story": MEMBER_ROLES,
    "comment": MEMBER_ROLES,
    "report": MEMBER_ROLES,
    "hide": MODERATOR_ROLES,
    "unhide": MODERATOR_ROLES,
    "petition": MEMBER_ROLES,
    "sign": MEMBER_ROLES,
    "survey": OFFICIAL_ROLES,
    "answer": MEMBER_ROLES,
    "panel": OFFICIAL_ROLES,
    "draw": OFFICIAL_ROLES,
    "meeting": OFFICIAL_ROLES,
    "minutes": OFFICIAL_ROLES,
    "infokit": OFFICIAL_ROLES,
}

_ROLE_NAME = {
    MEMBER_ROLES: "a member",
    MODERATOR_ROLES: "a moderator",
    OFFICIAL_ROLES: "an official",
    ADMIN_ROLES: "an admin",
    C_ONLY: "the community key",
}

_NO_END = (1 << 63) - 1


@dataclass(frozen=True, slots=True)
class Verdict:
    authorized: bool
    reason: str = ""


@dataclass
class RoleCache:
    """Role intervals per (community, key), read from ``role_grants`` on demand.

    ``known`` answers whether a key holds (or held, or will hold) any valid role in any
    community this node holds: keys that do not are *unknown authors* (see the quota).
    """

    conn: sqlite3.Connection
    _intervals: dict[tuple[bytes, bytes], list[tuple[str, int, int]]] = field(default_factory=dict)
    _known: dict[bytes, bool] = field(default_factory=dict)
    #: what earlier transactions read (see :meth:`shared`); never written to here
    _base: _Shared | None = None
    _path: str = ""

    @classmethod
    def shared(cls, conn: sqlite3.Connection) -> RoleCache:
        """A cache for one write transaction that starts from what earlier transactions
        on the same database read, while the roles have not changed since (the roles
        token in ``settings``, which :func:`replay_roles` renews, is the same). Call
        :meth:`publish` at the end of the transaction."""
        path = str(conn.execute("PRAGMA database_list").fetchone()[2])
        row = conn.execute("SELECT value FROM settings WHERE key = ?", (ROLES_STAMP,)).fetchone()
        token = _renew_token(conn) if row is None else str(row[0])
        base = _SHARED.get(path)
        if base is None or base.token != token:
            base = _SHARED[path] = _Shared(token)
        return cls(conn, _base=base, _path=path)

    def publish(self) -> None:
        """Share what this transaction read with the next ones (unless the roles changed
        in it: then the shared cache of this database is dropped)."""
        base = self._base
        if base is None:
            _SHARED.pop(self._path, None)
            return
        if len(base.intervals) + len(self._intervals) > SHARED_LIMIT:
            base.intervals.clear()
            base.known.clear()
        base.intervals.update(self._intervals)
        base.known.update(key for key, known in self._known.items() if known)

    def intervals(self, community: bytes, key: bytes) -> list[tuple[str, int, int]]:
        got = self._intervals.get((community, key))
        if got is None and self._base is not None:
            got = self._base.intervals.get((community, key))
        if got is None:
            got = [
                (role, start, _NO_END if end is None else end)
                for role, start, end in self.conn.execute(
                    "SELECT role, start_ts, end_ts FROM role_grants"
                    " WHERE community = ? AND member = ? AND status = 'valid'",
                    (community, key),
                )
            ]
            self._intervals[(community, key)] = got
        return got

    def holds(self, community: bytes, key: bytes, ts: int, roles: frozenset[str]) -> bool:
        """True when ``key`` is ``community`` itself or holds one of ``roles`` at ``ts``."""
        if key == community:
            return True
        return any(
            role in roles and start <= ts < end
            for role, start, end in self.intervals(community, key)
        )

    def known(self, key: bytes) -> bool:
        got = self._known.get(key)
        if got is None and self._base is not None and key in self._base.known:
            return True
        if got is None:
            got = (
                self.conn.execute(
                    "SELECT 1 FROM role_grants WHERE member = ? AND status = 'valid' LIMIT 1",
                    (key,),
                ).fetchone()
                is not None
                or self.conn.execute(
                    "SELECT 1 FROM messages WHERE community = ? LIMIT 1", (key,)
                ).fetchone()
                is not None
            )
            self._known[key] = got
        return got

    def preload(self, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """Load the intervals of each (community, key) and whether each key is known,
        with a few set-based queries instead of one per key."""
        by_community: dict[bytes, set[bytes]] = {}
        keys: set[bytes] = set()
        base = self._base or _Shared("")
        for community, key in pairs:
            pair = (community, key)
            if key != community and pair not in self._intervals and pair not in base.intervals:
                by_community.setdefault(community, set()).add(key)
            if key not in self._known and key not in base.known:
                keys.add(key)
        for community, members in by_community.items():
            found: dict[bytes, list[tuple[str, int, int]]] = {k: [] for k in members}
            for chunk in _chunks(sorted(members)):
                for member, role, start, end in self.conn.execute(
                    "SELECT member, role, start_ts, end_ts FROM role_grants"  # noqa: S608
                    f" WHERE community = ? AND status = 'valid' AND member IN ({_marks(chunk)})",
                    (community, *chunk),
                ):
                    found[member].append((role, start, _NO_END if end is None else end))
            for member, got in found.items():
                self._intervals[(community, member)] = got
        if not keys:
            return
        known: set[bytes] = set()
        for chunk in _chunks(sorted(keys)):
            known.update(
                row[0]
                for row in self.conn.execute(
                    "SELECT DISTINCT member FROM role_grants"  # noqa: S608
                    f" WHERE status = 'valid' AND member IN ({_marks(chunk)})",
                    chunk,
                )
            )
        for chunk in _chunks(sorted(keys - known)):
            known.update(
                row[0]
                for row in self.conn.execute(
                    "SELECT DISTINCT community FROM messages"  # noqa: S608
                    f" WHERE community IN ({_marks(chunk)})",
                    chunk,
                )
            )
        for key in keys:
            self._known[key] = key in known

    def mark_known(self, key: bytes) -> None:
        self._known[key] = True

    def forget(self, community: bytes, keys: Iterable[bytes]) -> None:
        """``community``'s roles were replayed: forget what changed (and stop using and
        sharing what earlier transactions read)."""
        self._base = None
        for key in keys:
            self._intervals.pop((community, key), None)
            self._known.pop(key, None)


#: The ``settings`` key of the roles stamp: renewed whenever roles are replayed.
ROLES_STAMP = "roles_stamp"
#: How many (community, key) entries the shared cache of a database keeps at most.
SHARED_LIMIT = 200_000


@dataclass
class _Shared:
    """What write transactions on one database read of the roles, as of ``token``."""

    token: str
    intervals: dict[tuple[bytes, bytes], list[tuple[str, int, int]]] = field(default_factory=dict)
    known: set[bytes] = field(default_factory=set)


#: database file -> its shared role cache (the writer of a node, one per process)
_SHARED: dict[str, _Shared] = {}


def _renew_token(conn: sqlite3.Connection) -> str:
    """A new random roles stamp: a cache read under another token is not used again
    (random, so that another database later put at the same path never matches)."""
    token = os.urandom(8).hex()
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (ROLES_STAMP, token))
    return token


def _chunks(items: list[bytes], size: int = 500) -> Iterable[list[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(chunk: list[bytes]) -> str:
    return ",".join("?" * len(chunk))


def role_name(roles: frozenset[str]) -> str:
    return _ROLE_NAME.get(roles, "/".join(sorted(roles)))


def authorize(
    cache: RoleCache,
    kind: str,
    community: bytes,
    author: bytes,
    ts: int,
) -> Verdict:
    """Whether ``author`` could publish ``kind`` in ``community`` at ``ts``.

    ``grant`` and ``revoke`` are judged by :func:`replay_roles`, ``erase`` against its
    target (storage.views); for them this gives the generic answer only.
    """
    roles = KIND_ROLES.get(kind)
    if roles is None:
        return Verdict(False, f"unknown kind {kind!r}: stored, never shown")
    if cache.holds(community, author, ts, roles):
        return Verdict(True)
    return Verdict(False, f"author not {role_name(roles)} at ts")


def _fields(raw_json: str | None) -> dict[str, object]:
    if raw_json is None:
        return {}
    value = json.loads(raw_json)
    return value if isinstance(value, dict) else {}


def replay_roles(conn: sqlite3.Connection, community: bytes) -> set[bytes]:
    """Recompute ``role_grants`` and the verdicts of ``community``'s grants and revokes.

    Returns the keys whose role intervals changed: their messages need a new verdict.
    """
    old = _snapshot(conn, community)
    events = conn.execute(
        "SELECT m.id, m.kind, m.author, m.ts, m.refs, b.fields FROM messages m"
        " LEFT JOIN bodies b ON b.id = m.id"
        " WHERE m.community = ? AND m.kind IN ('grant', 'revoke') ORDER BY m.ts, m.id",
        (community,),
    ).fetchall()
    # grant id -> [member, role, start, end, author, status]
    grants: dict[bytes, list[Any]] = {}
    admins: dict[bytes, list[list[Any]]] = {}
    verdicts: dict[bytes, Verdict] = {}

    def is_admin(key: bytes, ts: int) -> bool:
        if key == community:
            return True
        return any(g[2] <= ts < g[3] for g in admins.get(key, ()))

    for message_id, kind, author, ts, refs, fields_json in events:
        allowed = is_admin(author, ts)
        if kind == "grant":
            fields = _fields(fields_json)
            member, role = fields.get("member"), fields.get("role")
            until = fields.get("until")
            end = until if isinstance(until, int) else _NO_END
            if not allowed:
                status = "author not the community key or an admin at ts"
            elif not isinstance(member, str) or not isinstance(role, str):
                status = "body not held (erased or not yet received)"
            else:
                status = "valid"
            grant: list[Any] = [
                bytes.fromhex(member) if isinstance(member, str) else b"",
                role,
                ts,
                end,
                author,
                status,
            ]
            grants[message_id] = grant
            if status == "valid" and role == ADMIN:
                admins.setdefault(grant[0], []).append(grant)
            verdicts[message_id] = Verdict(status == "valid", "" if status == "valid" else status)
        else:
            target = refs[:32]
            revoked = grants.get(target)
            if not allowed:
                verdicts[message_id] = Verdict(
                    False, "author not the community key or an admin at ts"
                )
            elif revoked is None:
                verdicts[message_id] = Verdict(
                    False, "refers to no earlier grant of this community"
                )
            else:
                revoked[3] = min(revoked[3], ts)
                verdicts[message_id] = Verdict(True)
    conn.execute("DELETE FROM role_grants WHERE community = ?", (community,))
    _renew_token(conn)
    conn.executemany(
        "INSERT INTO role_grants (grant_id, community, member, role, start_ts, end_ts,"
        " author, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (gid, community, g[0], g[1] or "", g[2], None if g[3] == _NO_END else g[3], g[4], g[5])
            for gid, g in grants.items()
        ],
    )
    write_verdicts(conn, verdicts)
    new = _snapshot(conn, community)
    changed = {key for key in old.keys() | new.keys() if old.get(key) != new.get(key)}
    return changed


def write_verdicts(
    conn: sqlite3.Connection,
    verdicts: dict[bytes, Verdict],
    written: Mapping[bytes, Verdict] | None = None,
) -> None:
    """Store each message's verdict in its ``messages`` row (``authorized`` and
    ``auth_reason``; ``message_auth`` is a view of them). A row whose verdict is the
    same already is left as is: those in ``written`` (inserted with that verdict in this
    transaction) are not even looked at."""
    written = written or {}
    conn.executemany(
        "UPDATE messages SET authorized = ?1, auth_reason = ?2 WHERE id = ?3"
        " AND (authorized IS NOT ?1 OR auth_reason IS NOT ?2)",
        [
            (int(v.authorized), v.reason, message_id)
            for message_id, v in sorted(verdicts.items())
            if written.get(message_id) != v
        ],
    )


def _snapshot(
    conn: sqlite3.Connection, community: bytes
) -> dict[bytes, list[tuple[str, int, int]]]:
    out: dict[bytes, list[tuple[str, int, int]]] = {}
    for member, role, start, end in conn.execute(
        "SELECT member, role, start_ts, end_ts FROM role_grants"
        " WHERE community = ? AND status = 'valid' ORDER BY member, role, start_ts, end_ts",
        (community,),
    ):
        out.setdefault(member, []).append((role, start, _NO_END if end is None else end))
    return out
