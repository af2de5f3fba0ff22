"""The derived views, maintained on ingest (docs/civic.md).

Each view row is a function of the messages held and their verdicts
(``message_auth``): a :class:`Dirty` set names what a transaction touched and
:func:`refresh` recomputes exactly those rows from the base tables, so the result is
the same whatever order the messages came in.

- ``things``: one row per topic, proposal, story, comment, report and other editable
  kind, keyed by the first version's id: the newest version's fields, status
  (visible, hidden, erased, skeleton, unauthorized), comment count. ``search`` (FTS5)
  holds the visible ones; ``topic_tags`` their tags.
- ``ballots`` / ``proposal_counts``: each vote's status and the live counts.
- ``tallies``: each published tally checked against the recount.
- ``modlog`` / ``moderation``: hide and unhide actions and the resulting state.
- ``profiles``: each community's newest profile.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from protocol import kinds

from .roles import MODERATOR_ROLES, RoleCache

__all__ = [
    "BODY_KINDS",
    "CONTENT_KINDS",
    "Dirty",
    "ballots_hash",
    "forget_body",
    "refresh",
]

#: Kinds whose decoded body is kept in ``bodies`` (votes go to ``ballots``).
BODY_KINDS = frozenset(kinds.KNOWN_KINDS - {"vote"})
#: Kinds shown as things (with a page, comments, search).
CONTENT_KINDS = frozenset(kinds.EDITABLE_KINDS | {"report"})

_TITLE = ("title", "name")
_TEXT = {
    "proposal": ("problem", "solution"),
    "survey": ("intro",),
    "meeting": ("agenda",),
    "report": ("reason",),
}


@dataclass
class Dirty:
    """What one transaction touched, by view key."""

    conn: sqlite3.Connection
    things: set[bytes] = field(default_factory=set)
    proposals: set[bytes] = field(default_factory=set)
    voters: set[tuple[bytes, bytes]] = field(default_factory=set)
    tallies: set[bytes] = field(default_factory=set)
    mod_targets: set[bytes] = field(default_factory=set)
    profiles: set[bytes] = field(default_factory=set)
    parents: set[bytes] = field(default_factory=set)
    authors: set[bytes] = field(default_factory=set)

    def message(self, row: tuple[bytes, str, bytes, bytes, int, tuple[bytes, ...]]) -> None:
        """Mark the view rows that message ``row`` feeds."""
        message_id, kind, community, author, _ts, refs = row
        if kind == "community":
            self.profiles.add(community)
        elif kind in CONTENT_KINDS:
            found = self.conn.execute(
                "SELECT edit_of FROM bodies WHERE id = ?", (message_id,)
            ).fetchone()
            self.things.add(found[0] if found is not None and found[0] else message_id)
            self.mod_targets.add(message_id)
        elif kind == "vote" and refs:
            self.voters.add((refs[0], author))
        elif kind == "tally" and refs:
            self.conn.execute(
                "INSERT OR IGNORE INTO tallies (tally_id, proposal, status, detail)"
                " VALUES (?, ?, 'pending', '{}')",
                (message_id, refs[0]),
            )
            self.tallies.add(refs[0])
        elif kind in ("hide", "unhide") and refs:
            self.mod_targets.add(refs[0])


def forget_body(conn: sqlite3.Connection, message_id: bytes) -> None:
    """A message's body was dropped (erasure): drop what was decoded from it."""
    conn.execute("DELETE FROM bodies WHERE id = ?", (message_id,))
    conn.execute("UPDATE ballots SET choice = NULL WHERE vote_id = ?", (message_id,))


def refresh(conn: sqlite3.Connection, roles: RoleCache, dirty: Dirty) -> None:
    for target in sorted(dirty.mod_targets):
        if _moderation(conn, roles, target):
            dirty.things.add(target)
    for thing in sorted(dirty.things):
        _thing(conn, thing, dirty)
    for parent in sorted(dirty.parents):
        conn.execute(
            "UPDATE things SET comments = (SELECT count(*) FROM things c WHERE c.parent = ?"
            " AND c.kind = 'comment' AND c.status = 'visible') WHERE id = ?",
            (parent, parent),
        )
    voters: dict[bytes, set[bytes]] = {}
    for proposal, voter in dirty.voters:
        if proposal not in dirty.proposals:
            voters.setdefault(proposal, set()).add(voter)
    for proposal in sorted(dirty.proposals):
        _proposal(conn, proposal, None)
    for proposal, keys in sorted(voters.items()):
        _proposal(conn, proposal, keys)
    for proposal in sorted(dirty.tallies | dirty.proposals | voters.keys()):
        _tallies(conn, proposal)
    for community in sorted(dirty.profiles):
        _profile(conn, community)


# --------------------------------------------------------------------------- things


def _fields(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _title_text(kind: str, fields: dict[str, Any] | None) -> tuple[str, str]:
    if fields is None:
        return "", ""
    title = next((str(fields[k]) for k in _TITLE if k in fields), "")
    text = "\n\n".join(str(fields[k]) for k in _TEXT.get(kind, ("text",)) if k in fields)
    return title, text


def _valid_erase(conn: sqlite3.Connection, target: bytes) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM erasures e JOIN message_auth a ON a.id = e.erase_id"
            " WHERE e.target = ? AND a.authorized = 1 LIMIT 1",
            (target,),
        ).fetchone()
        is not None
    )


def _thing(conn: sqlite3.Connection, thing: bytes, dirty: Dirty) -> None:
    row = conn.execute(
        "SELECT m.kind, m.community, m.author, m.ts, m.refs, m.has_body, a.authorized,"
        " a.reason, b.edit_of, b.fields FROM messages m"
        " LEFT JOIN message_auth a ON a.id = m.id LEFT JOIN bodies b ON b.id = m.id"
        " WHERE m.id = ?",
        (thing,),
    ).fetchone()
    old = conn.execute("SELECT rowid, parent FROM things WHERE id = ?", (thing,)).fetchone()
    if row is None or row[0] not in CONTENT_KINDS or row[8] is not None:
        if old is not None:
            _drop_thing(conn, thing, old[0])
            if old[1] is not None:
                dirty.parents.add(old[1])
        return
    kind, community, author, ts, refs, has_body, authorized, reason, _, body = row
    parent = refs[:32] if refs else None
    fields = _fields(body)
    versions = conn.execute(
        "SELECT b.id, b.ts, b.fields FROM bodies b JOIN message_auth a ON a.id = b.id"
        " WHERE b.edit_of = ? AND b.author = ? AND b.kind = ? AND a.authorized = 1"
        " ORDER BY b.ts DESC, b.id DESC",
        (thing, author, kind),
    ).fetchall()
    hidden = conn.execute("SELECT hidden FROM moderation WHERE target = ?", (thing,)).fetchone()
    if not authorized:
        status, why = "unauthorized", reason or "not authorized"
    elif _valid_erase(conn, thing):
        status, why = "erased", "erased"
    elif not has_body or fields is None:
        status, why = "skeleton", "body not held"
    elif hidden is not None and hidden[0]:
        status, why = "hidden", "hidden by a moderator"
    else:
        status, why = "visible", ""
    current, current_ts = thing, ts
    if fields is not None and versions and status in ("visible", "hidden"):
        current, current_ts = versions[0][0], versions[0][1]
        edited = _fields(versions[0][2]) or {}
        closes = fields.get("closes")
        fields = dict(edited)
        fields.pop("edit_of", None)
        if kind == "proposal" and closes is not None:
            fields["closes"] = closes  # the close time never moves (docs/civic.md)
    shown = fields if status in ("visible", "hidden") else None
    title, text = _title_text(kind, shown)
    values = {
        "kind": kind,
        "community": community,
        "author": author,
        "ts": ts,
        "parent": parent,
        "status": status,
        "reason": why,
        "title": title,
        "text": text,
        "lang": str(shown.get("lang", "")) if shown else "",
        "fields": json.dumps(shown, ensure_ascii=False, sort_keys=True) if shown else None,
        "version_id": current,
        "version_ts": current_ts,
        "versions": 1 + len(versions),
        "closes": shown.get("closes") if shown and kind == "proposal" else None,
        "scope": shown.get("scope") if shown and kind == "topic" else None,
    }
    columns = ", ".join(values)
    updates = ", ".join(f"{k} = excluded.{k}" for k in values)
    conn.execute(
        f"INSERT INTO things (id, {columns}, comments) VALUES (?, {', '.join('?' * len(values))},"  # noqa: S608
        f" 0) ON CONFLICT (id) DO UPDATE SET {updates}",
        (thing, *values.values()),
    )
    rowid = conn.execute("SELECT rowid FROM things WHERE id = ?", (thing,)).fetchone()[0]
    conn.execute("DELETE FROM search WHERE rowid = ?", (rowid,))
    conn.execute("DELETE FROM topic_tags WHERE topic = ?", (thing,))
    if status == "visible":
        conn.execute(
            "INSERT INTO search (rowid, title, text) VALUES (?, ?, ?)", (rowid, title, text)
        )
        if kind == "topic" and shown:
            conn.executemany(
                "INSERT OR IGNORE INTO topic_tags (tag, topic) VALUES (?, ?)",
                [(str(tag).casefold(), thing) for tag in shown.get("tags", [])],
            )
    dirty.parents.add(thing)
    if parent is not None:
        dirty.parents.add(parent)
    if kind == "proposal":
        dirty.proposals.add(thing)


def _drop_thing(conn: sqlite3.Connection, thing: bytes, rowid: int) -> None:
    conn.execute("DELETE FROM search WHERE rowid = ?", (rowid,))
    conn.execute("DELETE FROM topic_tags WHERE topic = ?", (thing,))
    conn.execute("DELETE FROM things WHERE id = ?", (thing,))


# --------------------------------------------------------------------------- moderation


def _moderation(conn: sqlite3.Connection, roles: RoleCache, target: bytes) -> bool:
    """Recompute the moderation log entries and state of ``target``; True if any."""
    actions = conn.execute(
        "SELECT m.id, m.kind, m.author, m.ts, b.fields FROM message_refs r"
        " JOIN messages m ON m.id = r.id LEFT JOIN bodies b ON b.id = m.id"
        " WHERE r.ref = ? AND r.position = 0 AND m.kind IN ('hide', 'unhide')"
        " ORDER BY m.ts, m.id",
        (target,),
    ).fetchall()
    if not actions:
        return False
    held = conn.execute("SELECT community FROM messages WHERE id = ?", (target,)).fetchone()
    community = held[0] if held is not None else None
    hidden, last = 0, None
    for action_id, kind, author, ts, body in actions:
        if community is None:
            effective, why = 0, "pending: the target is not held yet"
        elif roles.holds(community, author, ts, MODERATOR_ROLES):
            effective, why = 1, ""
            hidden, last = int(kind == "hide"), action_id
        else:
            effective, why = 0, "author not a moderator of the target's community at ts"
        fields = _fields(body) or {}
        conn.execute(
            "INSERT OR REPLACE INTO modlog (action_id, target, community, moderator, action,"
            " reason, ts, effective, why) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                action_id,
                target,
                community,
                author,
                kind,
                str(fields.get("reason", "")) if body is not None else None,
                ts,
                effective,
                why,
            ),
        )
    conn.execute(
        "INSERT OR REPLACE INTO moderation (target, hidden, action_id) VALUES (?, ?, ?)",
        (target, hidden, last),
    )
    return True


# --------------------------------------------------------------------------- votes


def _proposal(conn: sqlite3.Connection, proposal: bytes, voters: set[bytes] | None) -> None:
    """Recompute the ballots of ``voters`` (all when None) and the counts."""
    p = conn.execute(
        "SELECT status, community, closes, reason FROM things WHERE id = ? AND kind = 'proposal'",
        (proposal,),
    ).fetchone()
    if p is None:
        blocked = "pending: the proposal is not held"
    elif p[0] not in ("visible", "hidden") or p[2] is None:
        blocked = f"proposal {p[0]}: {p[3]}" if p[3] else f"proposal {p[0]}"
    else:
        blocked = ""
    if voters is None:
        rows = conn.execute(
            "SELECT b.vote_id, b.voter, b.community, b.ts, b.choice, a.authorized, a.reason"
            " FROM ballots b LEFT JOIN message_auth a ON a.id = b.vote_id WHERE b.proposal = ?",
            (proposal,),
        ).fetchall()
    else:
        rows = []
        for voter in sorted(voters):
            rows += conn.execute(
                "SELECT b.vote_id, b.voter, b.community, b.ts, b.choice, a.authorized,"
                " a.reason FROM ballots b LEFT JOIN message_auth a ON a.id = b.vote_id"
                " WHERE b.proposal = ? AND b.voter = ?",
                (proposal, voter),
            ).fetchall()
    rows.sort(key=lambda r: (r[1], -r[3], r[0]), reverse=False)
    updates: list[tuple[str, str, bytes]] = []
    seen: set[tuple[bytes, bool]] = set()
    for vote_id, voter, community, ts, choice, authorized, reason in sorted(
        rows, key=lambda r: (r[1], r[3], r[0]), reverse=True
    ):
        if blocked:
            status, why = "blocked", blocked
        elif choice is None:
            status, why = "erased", "the ballot was erased (or its body is not held)"
        elif not authorized:
            status, why = "unauthorized", reason or "author not a member at ts"
        elif ts >= p[2]:
            status, why = "late", "cast at or after the close"
        else:
            home = community == p[1]
            if (voter, home) in seen:
                status, why = "superseded", "a newer ballot by the same voter counts"
            else:
                seen.add((voter, home))
                status, why = (
                    ("counted", "")
                    if home
                    else (
                        "support",
                        "a member of another community: shown as support, not counted",
                    )
                )
        updates.append((status, why, vote_id))
    conn.executemany("UPDATE ballots SET status = ?, reason = ? WHERE vote_id = ?", updates)
    counts = dict.fromkeys(
        ("yes", "no", "abstain", "support_yes", "support_no", "support_abstain"), 0
    )
    for status, choice, n in conn.execute(
        "SELECT status, choice, count(*) FROM ballots WHERE proposal = ?"
        " AND status IN ('counted', 'support') GROUP BY status, choice",
        (proposal,),
    ):
        counts[choice if status == "counted" else f"support_{choice}"] = n
    conn.execute(
        "INSERT OR REPLACE INTO proposal_counts (proposal, yes, no, abstain, support_yes,"
        " support_no, support_abstain, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (proposal, *counts.values(), blocked),
    )


def ballots_hash(conn: sqlite3.Connection, proposal: bytes) -> tuple[bytes, int]:
    """SHA-256 of the sorted counted vote ids, and how many there are."""
    h = hashlib.sha256()
    n = 0
    for (vote_id,) in conn.execute(
        "SELECT vote_id FROM ballots WHERE proposal = ? AND status = 'counted' ORDER BY vote_id",
        (proposal,),
    ):
        h.update(vote_id)
        n += 1
    return h.digest(), n


def _tallies(conn: sqlite3.Connection, proposal: bytes) -> None:
    tallies = conn.execute(
        "SELECT t.tally_id, m.community, m.ts, a.authorized, a.reason, b.fields"
        " FROM tallies t JOIN messages m ON m.id = t.tally_id"
        " LEFT JOIN message_auth a ON a.id = t.tally_id LEFT JOIN bodies b ON b.id = t.tally_id"
        " WHERE t.proposal = ?",
        (proposal,),
    ).fetchall()
    if not tallies:
        return
    p = conn.execute(
        "SELECT t.community, t.closes, c.yes, c.no, c.abstain, c.blocked FROM things t"
        " JOIN proposal_counts c ON c.proposal = t.id WHERE t.id = ?",
        (proposal,),
    ).fetchone()
    digest, n = ballots_hash(conn, proposal)
    for tally_id, community, ts, authorized, reason, body in tallies:
        fields = _fields(body)
        detail: dict[str, Any] = {}
        if not authorized:
            status, detail["why"] = "unauthorized", reason or "not authorized"
        elif fields is None:
            status, detail["why"] = "erased", "the tally's body is not held"
        elif p is None or p[5]:
            status, detail["why"] = "pending", (p[5] if p else "") or "the proposal is not held"
        elif community != p[0]:
            status, detail["why"] = "unauthorized", "a tally from another community"
        elif ts < p[1]:
            status, detail["why"] = "early", "published before the proposal closed"
        else:
            here = {"yes": p[2], "no": p[3], "abstain": p[4], "ballots": n}
            theirs = {k: int(fields[k]) for k in ("yes", "no", "abstain")}
            theirs["ballots"] = sum(theirs.values())
            same_set = fields.get("ballots") == digest.hex()
            if same_set and all(here[k] == theirs[k] for k in ("yes", "no", "abstain")):
                status = "verified"
                detail = {"here": here}
            else:
                status = "mismatch"
                detail = {
                    "here": here,
                    "tally": theirs,
                    "totals_differ": [k for k in ("yes", "no", "abstain") if here[k] != theirs[k]],
                    "ballot_set_differs": not same_set,
                    "missing_here": max(0, theirs["ballots"] - n),
                    "extra_here": max(0, n - theirs["ballots"]),
                }
        conn.execute(
            "UPDATE tallies SET status = ?, detail = ? WHERE tally_id = ?",
            (status, json.dumps(detail, sort_keys=True), tally_id),
        )


# --------------------------------------------------------------------------- profiles


def _profile(conn: sqlite3.Connection, community: bytes) -> None:
    row = conn.execute(
        "SELECT m.id, m.ts, b.fields FROM messages m JOIN message_auth a ON a.id = m.id"
        " JOIN bodies b ON b.id = m.id WHERE m.community = ? AND m.kind = 'community'"
        " AND a.authorized = 1 ORDER BY m.ts DESC, m.id DESC LIMIT 1",
        (community,),
    ).fetchone()
    if row is None:
        conn.execute("DELETE FROM profiles WHERE community = ?", (community,))
        return
    conn.execute(
        "INSERT OR REPLACE INTO profiles (community, profile_id, ts, fields) VALUES (?, ?, ?, ?)",
        (community, row[0], row[1], row[2]),
    )
