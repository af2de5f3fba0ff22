"""What ingest derives from the messages, in the same transaction (docs/civic.md).

``store_checked`` (storage.messages) hands every message it stores, or fills in, to a
:class:`Derivation`; :meth:`Derivation.finish` then, before the commit:

1. keeps the decoded body of each known kind in ``bodies`` (votes in ``ballots``), but
   for the first version of a thing (its ``things`` row shows it; m012);
2. replays the roles of each community that got a ``grant`` or ``revoke``
   (storage.roles) and re-judges every message of each key whose roles changed;
3. judges each new message (``message_auth``: authorized or why not);
4. applies the erases that are valid (by the target's author, by an admin of the
   target's home community or by that community's key), including erases that became
   valid because a grant arrived late;
5. refreshes the views (storage.views) that any of this touched.

So the derived state depends on the set of messages held, never on their order.
The unknown-author quota (:data:`UNKNOWN_AUTHOR_QUOTA`) is decided here too.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from protocol.messages import Message, decode_message

from . import panels, views
from .roles import ADMIN_ROLES, RoleCache, Verdict, authorize, replay_roles, write_verdicts
from .views import fields_json, fields_text, jsonable_fields

__all__ = [
    "UNKNOWN_AUTHOR_QUOTA",
    "Derivation",
    "Row",
    "fields_json",
    "jsonable_fields",
    "rebuild",
]

#: Bodies kept per author that holds no valid role in any community held here (and is
#: no community key). Beyond it, such an author's messages are kept as skeletons only.
UNKNOWN_AUTHOR_QUOTA = 200

#: (id, kind, community, author, ts, refs)
Row = tuple[bytes, str, bytes, bytes, int, tuple[bytes, ...]]


def split_refs(refs: bytes) -> tuple[bytes, ...]:
    return tuple(refs[i : i + 32] for i in range(0, len(refs), 32))


class Derivation:
    """Collects one transaction's stored messages; :meth:`finish` derives from them."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.roles = RoleCache.shared(conn)
        self._stored: list[Message] = []
        self._pending_known: set[bytes] = set()
        self._bodies_by_author: dict[bytes, int] = {}
        #: id -> (JSON text, decoded fields, edit_of) of the bodies decoded in this
        #: transaction (no JSON text for those with no ``bodies`` row)
        self._fresh_bodies: dict[bytes, tuple[str | None, dict[str, Any], bytes | None]] = {}
        #: ids whose body store_checked dropped (an erase by the same author)
        self._dropped: set[bytes] = set()
        self._panels = panels.Touched()
        self._roles_change: set[bytes] = set()
        #: id -> the verdict written with the row as it was inserted (prejudge)
        self._written: dict[bytes, Verdict] = {}
        #: id -> the verdict finish() gave (every message stored but grants and revokes)
        self._verdicts: dict[bytes, Verdict] = {}

    # -- during store_checked ---------------------------------------------------------

    def admin_erased(self, m: Message, erasers: Iterable[tuple[bytes, int]]) -> bool:
        """True when an erase held for ``m`` is by its community key or an admin."""
        return any(
            author != m.author and self.roles.holds(m.community, author, ts, ADMIN_ROLES)
            for author, ts in erasers
        )

    def over_quota(self, m: Message) -> bool:
        """True when ``m``'s body must not be kept: its author is unknown and has
        :data:`UNKNOWN_AUTHOR_QUOTA` bodies held already."""
        author = m.author
        if author == m.community or author in self._pending_known or self.roles.known(author):
            return False
        held = self._bodies_by_author.get(author)
        if held is None:
            held = int(
                self.conn.execute(
                    "SELECT count(*) FROM (SELECT 1 FROM messages WHERE author = ?"
                    " AND has_body = 1 LIMIT ?)",
                    (author, UNKNOWN_AUTHOR_QUOTA),
                ).fetchone()[0]
            )
            self._bodies_by_author[author] = held
        return held >= UNKNOWN_AUTHOR_QUOTA

    def stored(self, m: Message, *, quota_skeleton: bool = False) -> None:
        """``m`` (as stored: maybe a skeleton) was inserted or had its body filled in."""
        self._stored.append(m)
        if m.body is not None and m.author not in self._pending_known:
            count = self._bodies_by_author.get(m.author)
            if count is not None:
                self._bodies_by_author[m.author] = count + 1
        if m.kind == "grant" and m.fields is not None:
            member = m.fields.get("member")
            if isinstance(member, bytes):
                self._pending_known.add(member)
        if quota_skeleton:
            self.conn.execute(
                "INSERT OR IGNORE INTO quota_skeletons (id, author) VALUES (?, ?)",
                (m.id, m.author),
            )

    def body_dropped(self, message_id: bytes) -> None:
        """``message_id``'s body was dropped in this transaction (by store_checked)."""
        self._dropped.add(message_id)

    def prepare(self, messages: Iterable[Message]) -> None:
        """Load what the batch's derivation needs (its authors' roles) at once."""
        batch = list(messages)
        self.roles.preload((m.community, m.author) for m in batch)
        self._roles_change = {m.community for m in batch if m.kind in ("grant", "revoke")}

    def prejudge(self, m: Message) -> Verdict | None:
        """``m``'s verdict as it will be unless the batch changes its community's roles
        (then None): it goes into the ``messages`` row as it is inserted, and
        :meth:`finish` writes only the verdicts that differ from it."""
        if m.kind in ("grant", "revoke", "erase") or m.community in self._roles_change:
            return None
        verdict = authorize(self.roles, m.kind, m.community, m.author, m.ts)
        self._written[m.id] = verdict
        return verdict

    # -- before the commit ------------------------------------------------------------

    def finish(self) -> None:
        conn = self.conn
        dirty = views.Dirty(conn)
        dirty.dropped.update(self._dropped)
        role_communities: set[bytes] = set()
        rows: dict[bytes, Row] = {}
        bodies: list[tuple[Any, ...]] = []
        ballots: list[tuple[Any, ...]] = []
        signs: list[tuple[Any, ...]] = []
        answers: list[tuple[Any, ...]] = []
        for m in self._stored:
            if m.kind == "sign" and m.refs:
                signs.append((m.id, m.refs[0], m.author, m.community, m.ts))
            elif m.kind == "answer" and m.refs:
                answers.append((m.id, m.refs[0], m.author, m.community, m.ts))
            if m.fields is not None:
                if m.kind == "vote":
                    ballots.append(
                        (m.id, m.refs[0], m.author, m.community, m.ts, m.fields.get("choice"))
                    )
                elif m.kind in views.BODY_KINDS:
                    row = self._body_row(m)
                    if row is not None:
                        bodies.append(row)
            rows[m.id] = (m.id, m.kind, m.community, m.author, m.ts, m.refs)
            if m.kind in ("grant", "revoke"):
                role_communities.add(m.community)
        dirty.fresh = {m.id: m for m in self._stored}
        dirty.fresh_bodies = self._fresh_bodies
        # New ballots are written by views.refresh, with their status (no 'pending' row
        # to update).
        dirty.new_ballots = {row[0]: row for row in ballots}
        if signs:
            conn.executemany(
                "INSERT OR IGNORE INTO signatures (sign_id, petition, signer, community, ts,"
                " status, reason) VALUES (?, ?, ?, ?, ?, 'pending', '')",
                signs,
            )
        if answers:
            conn.executemany(
                "INSERT OR IGNORE INTO survey_answers (answer_id, survey, member, community,"
                " ts, status, reason) VALUES (?, ?, ?, ?, ?, 'pending', '')",
                answers,
            )
        if bodies:
            conn.executemany(
                "INSERT OR REPLACE INTO bodies (id, kind, community, author, ts, ref0, edit_of,"
                " fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                bodies,
            )
        # Erases held for messages that just arrived are judged again (their target
        # is known now).
        self._add_rows(rows, _erases_of(conn, [m.id for m in self._stored]))
        self._settle(rows, role_communities, dirty)
        dirty.verdicts = self._verdicts
        views.refresh(conn, self.roles, dirty)
        panels.refresh(conn, self._panels)
        self.roles.publish()

    def _body_row(self, m: Message) -> tuple[Any, ...] | None:
        """The ``bodies`` row of ``m``, or None when it needs none: the first version of
        a thing (a topic, a comment ...) keeps its body in ``messages.raw`` only, and the
        fields it shows in its ``things`` row (see :func:`views.stored_fields`)."""
        assert m.fields is not None
        decoded = jsonable_fields(m.fields)
        edit_of = m.fields.get("edit_of")
        if not isinstance(edit_of, bytes):
            edit_of = None
        if edit_of is None and m.kind in views.CONTENT_KINDS:
            self._fresh_bodies[m.id] = (None, decoded, None)
            return None
        text = fields_text(decoded)
        self._fresh_bodies[m.id] = (text, decoded, edit_of)
        return (
            m.id,
            m.kind,
            m.community,
            m.author,
            m.ts,
            m.refs[0] if m.refs else None,
            edit_of,
            text,
        )

    def _settle(
        self, rows: dict[bytes, Row], role_communities: set[bytes], dirty: views.Dirty
    ) -> None:
        conn = self.conn
        # In the first round the roles of a prejudged message's community are as they
        # were when it was prejudged (its community's roles are not replayed in this
        # round: prejudge leaves out the communities with a grant or revoke in the batch),
        # so its verdict is taken as is; later rounds replay roles and judge afresh.
        known = self._written
        while rows or role_communities:
            for community in sorted(role_communities):
                changed = replay_roles(conn, community)
                if changed:
                    self._panels.communities.add(community)
                self.roles.forget(community, changed)
                for key in changed:
                    if self.roles.known(key):
                        conn.execute("DELETE FROM quota_skeletons WHERE author = ?", (key,))
                    self._add_rows(rows, _messages_by(conn, key))
                    dirty.authors.add(key)
            role_communities = set()
            judged = [row for row in rows.values() if row[1] not in ("grant", "revoke")]
            self.roles.preload((row[2], row[3]) for row in judged)
            verdicts = {row[0]: known.get(row[0]) or self._judge(row) for row in judged}
            known = {}
            self._verdicts.update(verdicts)
            write_verdicts(conn, verdicts, self._written)
            dirty.messages(judged)
            self._panels.rows(judged)
            erased_grants: set[bytes] = set()
            for row in judged:
                if row[1] == "erase" and verdicts[row[0]].authorized and row[5]:
                    target = _erase_target(conn, row[5][0], dirty)
                    if target is not None and target[1] == "grant":
                        erased_grants.add(target[2])
            rows = {}
            role_communities = erased_grants

    def _add_rows(self, rows: dict[bytes, Row], more: Iterable[Row]) -> None:
        for row in more:
            rows[row[0]] = row

    def _judge(self, row: Row) -> Verdict:
        _, kind, community, author, ts, refs = row
        if kind != "erase":
            return authorize(self.roles, kind, community, author, ts)
        target = self.conn.execute(
            "SELECT author, community FROM messages WHERE id = ?", (refs[0],)
        ).fetchone()
        if target is None:
            return Verdict(False, "pending: the target is not held yet")
        if target[0] == author:
            return Verdict(True)
        if self.roles.holds(target[1], author, ts, ADMIN_ROLES):
            return Verdict(True, "")
        return Verdict(
            False, "author neither the target's author nor an admin of its community at ts"
        )


def _erases_of(conn: sqlite3.Connection, ids: list[bytes]) -> list[Row]:
    out: list[Row] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        out.extend(
            (row[0], row[1], row[2], row[3], row[4], split_refs(row[5]))
            for row in conn.execute(
                "SELECT m.id, m.kind, m.community, m.author, m.ts, m.refs FROM erasures e"  # noqa: S608
                f" JOIN messages m ON m.id = e.erase_id WHERE e.target IN ({marks})",
                chunk,
            )
        )
    return out


def _messages_by(conn: sqlite3.Connection, author: bytes) -> list[Row]:
    return [
        (row[0], row[1], row[2], row[3], row[4], split_refs(row[5]))
        for row in conn.execute(
            "SELECT id, kind, community, author, ts, refs FROM messages WHERE author = ?",
            (author,),
        )
    ]


def _erase_target(conn: sqlite3.Connection, target: bytes, dirty: views.Dirty) -> Row | None:
    """Drop ``target``'s body (a valid erase covers it); return its row if held."""
    row = conn.execute(
        "SELECT id, kind, community, author, ts, refs, has_body, raw FROM messages WHERE id = ?",
        (target,),
    ).fetchone()
    if row is None:
        return None
    held: Row = (row[0], row[1], row[2], row[3], row[4], split_refs(row[5]))
    dirty.message(held)  # before the body goes: an edit's thing is found through it
    if row[6]:
        skeleton = decode_message(row[7], now_ms=1 << 63, verify=False).skeleton()
        conn.execute(
            "UPDATE messages SET raw = ?, has_body = 0 WHERE id = ?", (skeleton.raw, target)
        )
    views.forget_body(conn, target, dirty)
    return held


def rebuild(conn: sqlite3.Connection) -> None:
    """Derive everything again from the messages held (used by migrations)."""
    d = Derivation(conn)
    for (raw,) in conn.execute("SELECT raw FROM messages ORDER BY seq").fetchall():
        d.stored(decode_message(raw, now_ms=1 << 63, verify=False))
    d.finish()
