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
- ``signatures`` / ``petition_counts``: each sign's status and a petition's counts.
- ``survey_answers`` / ``survey_results``: each answer's status and the results.
- ``profiles``: each community's newest profile.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol import kinds
from protocol.messages import Message

from .roles import MODERATOR_ROLES, RoleCache, Verdict

__all__ = [
    "BODY_COLUMNS",
    "BODY_KINDS",
    "CONTENT_KINDS",
    "Dirty",
    "ballots_hash",
    "body_fields",
    "fields_json",
    "fields_text",
    "forget_body",
    "jsonable_fields",
    "lean_fields",
    "refresh",
    "stored_fields",
    "whole_fields",
]

#: Kinds whose decoded body is kept in ``bodies`` (votes go to ``ballots``), except the
#: first version of a thing (a kind of :data:`CONTENT_KINDS`): its ``things`` row shows
#: it, and :func:`stored_fields` decodes it from ``messages.raw`` when needed (m012).
BODY_KINDS = frozenset(kinds.KNOWN_KINDS - {"vote"})
#: Kinds shown as things (with a page, comments, search).
CONTENT_KINDS = frozenset(kinds.EDITABLE_KINDS | {"report"})

_TITLE = ("title", "name")
#: Fields that always come from a thing's first version: an edit cannot move a close,
#: nor change a survey's questions once answers may have been given to them.
_FIXED: dict[str, tuple[str, ...]] = {
    "proposal": ("closes",),
    "petition": ("closes",),
    "survey": ("opens", "closes", "questions"),
}
_TEXT = {
    "proposal": ("problem", "solution"),
    "survey": ("intro",),
    "meeting": ("agenda",),
    "report": ("reason",),
}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


_FLAT = (str, int, bool, type(None))
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True)


def jsonable_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """A body's fields with bin values as lowercase hex (a flat body is not walked)."""
    out: dict[str, Any] = {}
    for k, v in fields.items():
        t = type(v)
        if t is bytes:
            out[k] = v.hex()
        elif t in _FLAT:
            out[k] = v
        else:
            out[k] = _jsonable(v)
    return out


def fields_text(decoded: dict[str, Any]) -> str:
    """JSON text of fields that :func:`jsonable_fields` gave (as ``bodies`` holds it)."""
    return _ENCODER.encode(decoded)


def fields_json(fields: dict[str, Any]) -> str:
    """A body as JSON text: bin values as lowercase hex."""
    return fields_text(jsonable_fields(fields))


def stored_fields(raw: bytes) -> dict[str, Any] | None:
    """The fields of a stored message's body, as :func:`jsonable_fields` gives them
    (None for a skeleton). For the first version of a thing, which has no ``bodies``
    row (m012): its bytes were checked on ingest, so they are decoded unchecked."""
    body = msgpack.unpackb(raw)[2]
    return None if body is None else jsonable_fields(msgpack.unpackb(body))


#: The columns :func:`body_fields` reads, for a query over ``messages m LEFT JOIN
#: bodies b ON b.id = m.id``: the body's JSON text, and the message's bytes only when
#: it has a body but no ``bodies`` row.
BODY_COLUMNS = "b.fields, CASE WHEN b.id IS NULL AND m.has_body = 1 THEN m.raw END"


def body_fields(kind: str, text: str | None, raw: bytes | None) -> dict[str, Any] | None:
    """A message's decoded fields from the :data:`BODY_COLUMNS` of its row: its
    ``bodies`` row, or for the first version of a thing its bytes (m012); None for a
    skeleton, a vote or a kind not known."""
    if text is not None:
        return _fields(text)
    if raw is not None and kind in CONTENT_KINDS:
        return stored_fields(raw)
    return None


#: (id, kind, community, author, ts, refs) of a message
Row = tuple[bytes, str, bytes, bytes, int, tuple[bytes, ...]]


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
    authors: set[bytes] = field(default_factory=set)
    petitions: set[bytes] = field(default_factory=set)
    signers: set[tuple[bytes, bytes]] = field(default_factory=set)
    surveys: set[bytes] = field(default_factory=set)
    respondents: set[tuple[bytes, bytes]] = field(default_factory=set)

    #: vote id -> its choice before an erase dropped it in this transaction
    lost_choices: dict[bytes, str | None] = field(default_factory=dict)
    #: vote id -> (vote_id, proposal, voter, community, ts, choice) of the ballots
    #: stored in this transaction, not written to ``ballots`` yet
    new_ballots: dict[bytes, tuple[Any, ...]] = field(default_factory=dict)
    #: the messages stored in this transaction (as stored: maybe skeletons), and their
    #: bodies: id -> (JSON text as written to ``bodies``, or None when no row is
    #: written; decoded fields; edit_of); what the views need of them is read from here
    #: rather than from the tables
    fresh: dict[bytes, Message] = field(default_factory=dict)
    fresh_bodies: dict[bytes, tuple[str | None, dict[str, Any], bytes | None]] = field(
        default_factory=dict
    )
    #: id -> the verdict given in this transaction (every message stored but grants and
    #: revokes): set by the derivation before :func:`refresh`
    verdicts: Mapping[bytes, Verdict] = field(default_factory=dict)
    #: ids whose body was dropped in this transaction (an erase)
    dropped: set[bytes] = field(default_factory=set)
    #: parent -> change of its count of visible comments right under it
    comment_deltas: dict[bytes, int] = field(default_factory=dict)
    #: things whose row was created in this transaction (their comments are counted)
    created: set[bytes] = field(default_factory=set)
    #: answer id -> its body (JSON) before an erase dropped it in this transaction
    lost_answers: dict[bytes, str] = field(default_factory=dict)

    def message(self, row: Row) -> None:
        """Mark the view rows that message ``row`` feeds."""
        self.messages([row])

    def messages(self, rows: Sequence[Row]) -> None:
        """Mark the view rows that the messages ``rows`` feed (a few queries in all)."""
        edit_of: dict[bytes, bytes | None] = {}
        content: list[bytes] = []
        for row in rows:
            if row[1] not in CONTENT_KINDS:
                continue
            if row[0] in self.dropped:
                continue  # no body held: no edit_of
            body = self.fresh_bodies.get(row[0])
            if body is not None:
                edit_of[row[0]] = body[2]
            else:
                content.append(row[0])
        for chunk in _chunks(content):
            edit_of.update(
                self.conn.execute(
                    f"SELECT id, edit_of FROM bodies WHERE id IN ({_marks(chunk)})",  # noqa: S608
                    chunk,
                ).fetchall()
            )
        tallies: list[tuple[bytes, bytes]] = []
        for message_id, kind, community, author, _ts, refs in rows:
            if kind == "community":
                self.profiles.add(community)
            elif kind in CONTENT_KINDS:
                self.things.add(edit_of.get(message_id) or message_id)
                self.mod_targets.add(message_id)
            elif kind == "vote" and refs:
                self.voters.add((refs[0], author))
            elif kind == "sign" and refs:
                self.signers.add((refs[0], author))
            elif kind == "answer" and refs:
                self.respondents.add((refs[0], author))
            elif kind == "tally" and refs:
                tallies.append((message_id, refs[0]))
                self.tallies.add(refs[0])
            elif kind in ("hide", "unhide") and refs:
                self.mod_targets.add(refs[0])
        if tallies:
            self.conn.executemany(
                "INSERT OR IGNORE INTO tallies (tally_id, proposal, status, detail)"
                " VALUES (?, ?, 'pending', '{}')",
                tallies,
            )


def _chunks(items: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(chunk: Sized) -> str:
    return ",".join("?" * len(chunk))


def forget_body(conn: sqlite3.Connection, message_id: bytes, dirty: Dirty | None = None) -> None:
    """A message's body was dropped (erasure): drop what was decoded from it."""
    if dirty is not None and message_id not in dirty.lost_answers:
        answer = conn.execute(
            "SELECT fields FROM bodies WHERE id = ? AND kind = 'answer'", (message_id,)
        ).fetchone()
        if answer is not None:
            dirty.lost_answers[message_id] = answer[0]
    conn.execute("DELETE FROM bodies WHERE id = ?", (message_id,))
    if dirty is not None:
        dirty.dropped.add(message_id)
    if dirty is not None and message_id in dirty.new_ballots:
        # not written yet: it is written without its choice (and never counted)
        dirty.new_ballots[message_id] = (*dirty.new_ballots[message_id][:5], None)
    key = _ballot_key(conn, message_id)
    if key is None:
        return
    if dirty is not None and message_id not in dirty.lost_choices:
        sql = f"SELECT choice FROM ballots WHERE {_BALLOT_KEY}"  # noqa: S608
        held = conn.execute(sql, key).fetchone()
        if held is not None:
            dirty.lost_choices[message_id] = held[0]
    conn.execute(f"UPDATE ballots SET choice = NULL WHERE {_BALLOT_KEY}", key)  # noqa: S608


#: A ballot row by its key (ballots is clustered by it, m009).
_BALLOT_KEY = "proposal = ? AND voter = ? AND ts = ? AND vote_id = ?"


def _ballot_key(conn: sqlite3.Connection, vote_id: bytes) -> tuple[bytes, bytes, int, bytes] | None:
    """The ``ballots`` key of vote ``vote_id`` (from its message), or None if it is not
    a vote held."""
    row = conn.execute(
        "SELECT substr(refs, 1, 32), author, ts FROM messages WHERE id = ? AND kind = 'vote'",
        (vote_id,),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2], vote_id)


def refresh(conn: sqlite3.Connection, roles: RoleCache, dirty: Dirty) -> None:
    """Recompute the view rows ``dirty`` names (its ``fresh`` messages, bodies and
    ``verdicts`` are what this transaction stored and decided)."""
    verdicts = dirty.verdicts
    for target, actions in sorted(_mod_actions(conn, dirty.mod_targets).items()):
        _moderation(conn, roles, target, actions)
        dirty.things.add(target)
    _things(conn, sorted(dirty.things), dirty)
    _comment_counts(conn, dirty.created, dirty.comment_deltas)
    voters: dict[bytes, set[bytes]] = {}
    for proposal, voter in dirty.voters:
        if proposal not in dirty.proposals:
            voters.setdefault(proposal, set()).add(voter)
    # The new ballots of a proposal recounted whole are written first (as pending);
    # the others are judged with the ballots already held of their voters and written
    # with their status.
    new: dict[bytes, list[_Ballot]] = {}
    pending: list[tuple[Any, ...]] = []
    for vote_id, proposal, voter, community, ts, choice in dirty.new_ballots.values():
        if proposal in dirty.proposals:
            pending.append((vote_id, proposal, voter, ts, choice))
            continue
        v = verdicts.get(vote_id)
        new.setdefault(proposal, []).append(
            (
                vote_id,
                voter,
                community,
                ts,
                choice,
                None if v is None else int(v.authorized),
                None if v is None else v.reason,
                _NEW,
                "",
            )
        )
    conn.executemany(
        "INSERT INTO ballots (vote_id, proposal, voter, ts, choice, status)"
        " VALUES (?, ?, ?, ?, ?, 'pending') ON CONFLICT (proposal, voter, ts, vote_id)"
        " DO UPDATE SET choice = excluded.choice",
        pending,
    )
    for proposal in sorted(dirty.proposals):
        _proposal(conn, proposal)
    _ballots(conn, voters, dirty.lost_choices, new)
    with_tallies = _with_tallies(conn, sorted(dirty.tallies | dirty.proposals | voters.keys()))
    for proposal in with_tallies:
        _tallies(conn, proposal)
    for community in sorted(dirty.profiles):
        _profile(conn, community)
    _petitions(conn, dirty.petitions, dirty.signers)
    _surveys(conn, dirty.surveys, dirty.respondents, dirty.lost_answers)


# --------------------------------------------------------------------------- things


def _fields(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _text_key(kind: str) -> str | None:
    """The one key a thing's ``text`` column comes from (None: several keys)."""
    keys = _TEXT.get(kind, ("text",))
    return keys[0] if len(keys) == 1 else None


def lean_fields(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """What ``things.fields`` keeps of a shown thing's ``fields``: the keys that the
    ``title``, ``text`` and ``lang`` columns do not reproduce exactly (m011).

    A key is left out only when :func:`whole_fields` puts it back as it was: a non-empty
    string, the title only when there is no ``name`` (the title would come from it), the
    text only for a kind whose text comes from one key. ``fields`` itself is returned
    when nothing is left out."""
    drop = []
    title = fields.get("title")
    if type(title) is str and title and "name" not in fields:
        drop.append("title")
    key = _text_key(kind)
    if key is not None and type(fields.get(key)) is str and fields[key]:
        drop.append(key)
    lang = fields.get("lang")
    if type(lang) is str and lang:
        drop.append("lang")
    return {k: v for k, v in fields.items() if k not in drop} if drop else fields


def whole_fields(
    kind: str, title: str, text: str, lang: str, stored: dict[str, Any] | None
) -> dict[str, Any] | None:
    """A thing's whole ``fields`` from its row: ``stored`` (``things.fields`` decoded)
    with what :func:`lean_fields` left out taken back from the columns, keys in order
    (as the JSON text of a body has them). None when there is none."""
    out = dict(stored) if stored else {}
    added = False
    if title and "title" not in out and "name" not in out:
        out["title"] = title
        added = True
    key = _text_key(kind)
    if text and key is not None and key not in out:
        out[key] = text
        added = True
    if lang and "lang" not in out:
        out["lang"] = lang
        added = True
    if not out:
        return None
    return dict(sorted(out.items())) if added else out


def _title_text(kind: str, fields: dict[str, Any] | None) -> tuple[str, str]:
    if fields is None:
        return "", ""
    title = next((str(fields[k]) for k in _TITLE if k in fields), "")
    text = "\n\n".join(str(fields[k]) for k in _TEXT.get(kind, ("text",)) if k in fields)
    return title, text


_THING_VALUES = (
    "kind",
    "community",
    "author",
    "ts",
    "parent",
    "status",
    "reason",
    "title",
    "text",
    "lang",
    "fields",
    "version_id",
    "version_ts",
    "versions",
    "closes",
    "scope",
)
_INSERT_THING = "".join(
    (
        "INSERT INTO things (rowid, id, ",
        ", ".join(_THING_VALUES),
        ", comments) VALUES (?, ?, ",
        ", ".join("?" * len(_THING_VALUES)),
        ", 0)",
    )
)
_UPDATE_THING = "".join(
    ("UPDATE things SET ", ", ".join(f"{k} = ?" for k in _THING_VALUES), " WHERE id = ?")
)


def _things(conn: sqlite3.Connection, things: Sequence[bytes], dirty: Dirty) -> None:
    """Recompute the ``things`` rows (and search, tags) of ``things``, per chunk."""
    for chunk in _chunks(things):
        _things_chunk(conn, chunk, dirty)


def _held(
    conn: sqlite3.Connection, chunk: Sequence[bytes], dirty: Dirty
) -> dict[bytes, tuple[Any, ...]]:
    """id -> (kind, community, author, ts, refs, has_body, authorized, reason, edit_of,
    fields as JSON text or None, fields decoded or None) of the messages of ``chunk``
    held: those stored in this transaction from memory, the others from the tables
    (the first version of a thing from its bytes: it has no ``bodies`` row)."""
    held: dict[bytes, tuple[Any, ...]] = {}
    others: list[bytes] = []
    for thing in chunk:
        m = dirty.fresh.get(thing)
        v = dirty.verdicts.get(thing)
        if m is None or v is None:
            others.append(thing)
            continue
        dropped = thing in dirty.dropped
        body = None if dropped else dirty.fresh_bodies.get(thing)
        held[thing] = (
            m.kind,
            m.community,
            m.author,
            m.ts,
            b"".join(m.refs),
            int(m.body is not None and not dropped),
            int(v.authorized),
            v.reason,
            None if body is None else body[2],
            None if body is None else body[0],
            None if body is None else body[1],
        )
    for part in _chunks(others):
        for row in conn.execute(
            "SELECT m.id, m.kind, m.community, m.author, m.ts, m.refs, m.has_body,"  # noqa: S608
            f" m.authorized, m.auth_reason, b.edit_of, {BODY_COLUMNS} FROM messages m"
            f" LEFT JOIN bodies b ON b.id = m.id WHERE m.id IN ({_marks(part)})",
            part,
        ):
            held[row[0]] = (*row[1:11], body_fields(row[1], row[10], row[11]))
    return held


def _decode(dirty: Dirty, message_id: bytes, text: str | None) -> dict[str, Any] | None:
    """A body's fields: as decoded on ingest if it was written in this transaction."""
    if text is None:
        return None
    cached = dirty.fresh_bodies.get(message_id)
    if cached is not None and cached[0] == text:
        return cached[1]
    return _fields(text)


def _things_chunk(conn: sqlite3.Connection, chunk: Sequence[bytes], dirty: Dirty) -> None:
    marks = _marks(chunk)
    held = _held(conn, chunk, dirty)
    #: id -> (rowid, parent, counted: a visible comment, counted in its parent's count)
    old: dict[bytes, tuple[int, bytes | None, bool]] = {}
    #: id -> (rowid, title, text) of those with a search entry (the visible ones): the
    #: full-text index keeps no copy of what it indexed, so it is removed with these
    indexed: dict[bytes, tuple[int, str, str]] = {}
    for thing, rowid, parent, kind, status, title, text in conn.execute(
        "SELECT id, rowid, parent, kind, status, title, text FROM things"  # noqa: S608
        f" WHERE id IN ({marks})",
        chunk,
    ):
        old[thing] = (rowid, parent, kind == "comment" and status == "visible")
        if status == "visible":
            indexed[thing] = (rowid, title, text)
    deltas = dirty.comment_deltas
    versions: dict[bytes, list[tuple[bytes, int, str, bytes, str]]] = {}
    for edit_of, version_id, ts, text, author, kind in conn.execute(
        "SELECT b.edit_of, b.id, b.ts, b.fields, b.author, b.kind FROM bodies b"  # noqa: S608
        f" JOIN message_auth a ON a.id = b.id WHERE b.edit_of IN ({marks}) AND a.authorized = 1",
        chunk,
    ):
        versions.setdefault(edit_of, []).append((version_id, ts, text, author, kind))
    hidden = dict(
        conn.execute(
            f"SELECT target, hidden FROM moderation WHERE target IN ({marks})",  # noqa: S608
            chunk,
        ).fetchall()
    )
    erased = {
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT e.target FROM erasures e JOIN message_auth a"  # noqa: S608
            f" ON a.id = e.erase_id WHERE e.target IN ({marks}) AND a.authorized = 1",
            chunk,
        )
    }
    drops: list[tuple[bytes, int]] = []
    upserts: list[tuple[Any, ...]] = []
    shown_rows: dict[bytes, tuple[str, str, str, str, dict[str, Any] | None]] = {}
    for thing in chunk:
        row = held.get(thing)
        before = old.get(thing)
        if row is None or row[0] not in CONTENT_KINDS or row[8] is not None:
            if before is not None:
                drops.append((thing, before[0]))
                if before[2] and before[1] is not None:
                    deltas[before[1]] = deltas.get(before[1], 0) - 1
            continue
        kind, community, author, ts, refs, has_body, authorized, reason, _, body, fields = row
        parent = refs[:32] if refs else None
        mine = sorted(
            (v for v in versions.get(thing, ()) if v[3] == author and v[4] == kind),
            key=lambda v: (v[1], v[0]),
            reverse=True,
        )
        if not authorized:
            status, why = "unauthorized", reason or "not authorized"
        elif thing in erased:
            status, why = "erased", "erased"
        elif not has_body or fields is None:
            status, why = "skeleton", "body not held"
        elif hidden.get(thing):
            status, why = "hidden", "hidden by a moderator"
        else:
            status, why = "visible", ""
        current, current_ts = thing, ts
        shown_text = body
        if fields is not None and mine and status in ("visible", "hidden"):
            current, current_ts = mine[0][0], mine[0][1]
            edited = _decode(dirty, mine[0][0], mine[0][2]) or {}
            first = fields
            fields = dict(edited)
            fields.pop("edit_of", None)
            for key in _FIXED.get(kind, ()):
                if key in first:
                    fields[key] = first[key]  # never moved by an edit (docs/civic.md)
            shown_text = None
        shown = fields if status in ("visible", "hidden") else None
        title, text = _title_text(kind, shown)
        # things.fields keeps only what the title, text and lang columns do not (m011)
        kept = None
        if shown:
            lean = lean_fields(kind, shown)
            if lean is shown and shown_text is not None:
                kept = shown_text
            elif lean:
                kept = fields_text(lean)
        upserts.append(
            (
                thing,
                kind,
                community,
                author,
                ts,
                parent,
                status,
                why,
                title,
                text,
                str(shown.get("lang", "")) if shown else "",
                kept,
                current,
                current_ts,
                1 + len(mine),
                shown.get("closes") if shown and kind in _FIXED else None,
                shown.get("scope") if shown and kind == "topic" else None,
            )
        )
        shown_rows[thing] = (kind, status, title, text, shown)
        if before is None:
            dirty.created.add(thing)
        if parent is not None:
            counted = kind == "comment" and status == "visible"
            change = int(counted) - int(before is not None and before[2])
            if change:
                deltas[parent] = deltas.get(parent, 0) + change
        if kind == "proposal":
            dirty.proposals.add(thing)
        elif kind == "petition":
            dirty.petitions.add(thing)
        elif kind == "survey":
            dirty.surveys.add(thing)
    if drops:
        _unindex(conn, [indexed[t] for t, _ in drops if t in indexed])
        conn.executemany("DELETE FROM topic_tags WHERE topic = ?", [(t,) for t, _ in drops])
        conn.executemany("DELETE FROM things WHERE id = ?", [(t,) for t, _ in drops])
    if not upserts:
        return
    # Existing rows are updated in place; new rows get the next rowids (as SQLite would
    # give them), so that the search entries can be written without reading them back.
    rowids = {t: before[0] for t, before in old.items() if t in shown_rows}
    conn.executemany(_UPDATE_THING, [(*u[1:], u[0]) for u in upserts if u[0] in rowids])
    inserts = [u for u in upserts if u[0] not in rowids]
    if inserts:
        top = conn.execute("SELECT coalesce(max(rowid), 0) FROM things").fetchone()[0]
        for i, u in enumerate(inserts, start=top + 1):
            rowids[u[0]] = i
        conn.executemany(_INSERT_THING, [(rowids[u[0]], *u) for u in inserts])
    again = [t for t in shown_rows if t in old]
    # A search entry that stays as it was is left alone.
    unchanged = {
        t
        for t in again
        if t in indexed and shown_rows[t][1] == "visible" and indexed[t][1:] == shown_rows[t][2:4]
    }
    _unindex(conn, [indexed[t] for t in again if t in indexed and t not in unchanged])
    conn.executemany("DELETE FROM topic_tags WHERE topic = ?", [(t,) for t in again])
    search: list[tuple[int, str, str]] = []
    tags: list[tuple[str, bytes]] = []
    for thing, (kind, status, title, text, shown) in shown_rows.items():
        if status != "visible":
            continue
        if thing not in unchanged:
            search.append((rowids[thing], title, text))
        if kind == "topic" and shown:
            tags.extend((str(tag).casefold(), thing) for tag in shown.get("tags", []))
    conn.executemany("INSERT INTO search (rowid, title, text) VALUES (?, ?, ?)", search)
    conn.executemany("INSERT OR IGNORE INTO topic_tags (tag, topic) VALUES (?, ?)", tags)


def _unindex(conn: sqlite3.Connection, entries: Sequence[tuple[int, str, str]]) -> None:
    """Remove search entries: (rowid, title, text) as they were indexed. The index keeps
    no copy of the text (m013: contentless), so it is told what to take out; only
    entries that are in it may be removed (a visible thing's row holds what was)."""
    conn.executemany(
        "INSERT INTO search (search, rowid, title, text) VALUES ('delete', ?, ?, ?)", entries
    )


def _comment_counts(
    conn: sqlite3.Connection, created: set[bytes], deltas: Mapping[bytes, int]
) -> None:
    """Keep ``comments`` (visible comments right under a thing) right: count them for
    the things ``created`` in this transaction, and add the change of the others'
    (``deltas``: a comment became visible, or stopped being, under them)."""
    conn.executemany(
        "UPDATE things SET comments = comments + ? WHERE id = ?",
        [
            (change, parent)
            for parent, change in sorted(deltas.items())
            if change and parent not in created
        ],
    )
    # A created row starts at 0: only those with comments held already are updated.
    for chunk in _chunks(sorted(created)):
        conn.executemany(
            "UPDATE things SET comments = ? WHERE id = ?",
            [
                (count, parent)
                for parent, count in conn.execute(
                    "SELECT parent, count(*) FROM things WHERE kind = 'comment'"  # noqa: S608
                    f" AND status = 'visible' AND parent IN ({_marks(chunk)}) GROUP BY parent",
                    chunk,
                )
            ],
        )


# --------------------------------------------------------------------------- moderation


def _mod_actions(
    conn: sqlite3.Connection, targets: set[bytes]
) -> dict[bytes, list[tuple[bytes, str, bytes, int, str | None]]]:
    """The hide and unhide actions held on each of ``targets`` (those with any)."""
    out: dict[bytes, list[tuple[bytes, str, bytes, int, str | None]]] = {}
    for chunk in _chunks(sorted(targets)):
        for target, *action in conn.execute(
            "SELECT r.ref, m.id, m.kind, m.author, m.ts, b.fields FROM message_refs r"  # noqa: S608
            " JOIN messages m ON m.id = r.id LEFT JOIN bodies b ON b.id = m.id"
            f" WHERE r.ref IN ({_marks(chunk)}) AND r.position = 0"
            " AND m.kind IN ('hide', 'unhide')",
            chunk,
        ):
            out.setdefault(target, []).append(tuple(action))
    for actions in out.values():
        actions.sort(key=lambda a: (a[3], a[0]))
    return out


def _moderation(
    conn: sqlite3.Connection,
    roles: RoleCache,
    target: bytes,
    actions: list[tuple[bytes, str, bytes, int, str | None]],
) -> bool:
    """Recompute the moderation log entries and state of ``target``; True if any."""
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


#: The status of a ballot judged before its row is written (see _ballots).
_NEW = "new"

_COUNT_KEYS = ("yes", "no", "abstain", "support_yes", "support_no", "support_abstain")
#: (vote_id, voter, community, ts, choice, authorized, reason, status, ballot reason)
_Ballot = tuple[bytes, bytes, bytes, int, str | None, int | None, str | None, str, str]
_BALLOT_COLUMNS = (
    "b.vote_id, b.voter, m.community, b.ts, b.choice, m.authorized,"
    " iif(m.authorized IS NULL, NULL, m.auth_reason), b.status, b.reason"
)
#: A ballot's vote message (its community and verdict: m010 keeps no copy in ballots).
#: Always held; a LEFT JOIN all the same, so that SQLite looks each ballot's message up
#: rather than starting from ``messages`` (an inner join let it scan ``ballots`` whole
#: for the (proposal, voter) pairs of a batch).
_BALLOT_MESSAGE = " LEFT JOIN messages m ON m.id = b.vote_id"


def _blocked(p: tuple[Any, ...] | None) -> str:
    """Why no ballot of a proposal counts (``p``: its status, community, closes, reason)."""
    if p is None:
        return "pending: the proposal is not held"
    if p[0] not in ("visible", "hidden") or p[2] is None:
        return f"proposal {p[0]}: {p[3]}" if p[3] else f"proposal {p[0]}"
    return ""


def _judge_ballots(
    p: tuple[Any, ...] | None, rows: list[_Ballot]
) -> list[tuple[str, str, _Ballot]]:
    """Each ballot's (status, reason): the newest ballot of each voter before the close
    counts (``rows`` holds every ballot of each voter it names)."""
    blocked = _blocked(p)
    out: list[tuple[str, str, _Ballot]] = []
    seen: set[tuple[bytes, bool]] = set()
    for row in sorted(rows, key=lambda r: (r[1], r[3], r[0]), reverse=True):
        _, voter, community, ts, choice, authorized, reason = row[:7]
        if blocked:
            status, why = "blocked", blocked
        elif choice is None:
            status, why = "erased", "the ballot was erased (or its body is not held)"
        elif not authorized:
            status, why = "unauthorized", reason or "author not a member at ts"
        elif p is not None and ts >= p[2]:
            status, why = "late", "cast at or after the close"
        else:
            home = p is not None and community == p[1]
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
        out.append((status, why, row))
    return out


def _count_key(status: str, choice: str | None) -> str | None:
    if status == "counted":
        return choice
    if status == "support":
        return f"support_{choice}"
    return None


def _proposal(conn: sqlite3.Connection, proposal: bytes) -> None:
    """Recompute every ballot of ``proposal`` and count them again."""
    p = conn.execute(
        "SELECT status, community, closes, reason FROM things WHERE id = ? AND kind = 'proposal'",
        (proposal,),
    ).fetchone()
    rows = conn.execute(
        f"SELECT {_BALLOT_COLUMNS} FROM ballots b"  # noqa: S608
        f"{_BALLOT_MESSAGE} WHERE b.proposal = ?",
        (proposal,),
    ).fetchall()
    conn.executemany(
        f"UPDATE ballots SET status = ?, reason = ? WHERE {_BALLOT_KEY}",  # noqa: S608
        [
            (status, why, proposal, row[1], row[3], row[0])
            for status, why, row in _judge_ballots(p, rows)
            if (status, why) != (row[7], row[8])
        ],
    )
    counts = dict.fromkeys(_COUNT_KEYS, 0)
    for status, choice, n in conn.execute(
        "SELECT status, choice, count(*) FROM ballots WHERE proposal = ?"
        " AND status IN ('counted', 'support') GROUP BY status, choice",
        (proposal,),
    ):
        counts[choice if status == "counted" else f"support_{choice}"] = n
    conn.execute(
        "INSERT OR REPLACE INTO proposal_counts (proposal, yes, no, abstain, support_yes,"
        " support_no, support_abstain, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (proposal, *counts.values(), _blocked(p)),
    )


def _ballots(
    conn: sqlite3.Connection,
    voters: dict[bytes, set[bytes]],
    lost_choices: dict[bytes, str | None],
    new: Mapping[bytes, list[_Ballot]],
) -> None:
    """Judge again the ballots of some voters of some proposals and update the counts
    by what changed (no recount): a few set-based queries for the whole batch. The
    ballots in ``new`` (by proposal; status :data:`_NEW`) are not written yet: they are
    inserted with the status they get."""
    if not voters:
        return
    proposals = sorted(voters)
    info: dict[bytes, tuple[Any, ...]] = {}
    counts: dict[bytes, tuple[Any, ...]] = {}
    for chunk in _chunks(proposals):
        marks = _marks(chunk)
        for row in conn.execute(
            "SELECT id, status, community, closes, reason FROM things"  # noqa: S608
            f" WHERE kind = 'proposal' AND id IN ({marks})",
            chunk,
        ):
            info[row[0]] = row[1:]
        for row in conn.execute(
            "SELECT proposal, yes, no, abstain, support_yes, support_no, support_abstain,"  # noqa: S608
            f" blocked FROM proposal_counts WHERE proposal IN ({marks})",
            chunk,
        ):
            counts[row[0]] = row[1:]
    pairs = [(proposal, voter) for proposal in proposals for voter in sorted(voters[proposal])]
    rows: dict[bytes, list[_Ballot]] = {}
    for chunk in _chunks(pairs, 400):
        values = ", ".join("(?, ?)" for _ in chunk)
        for proposal, *ballot in conn.execute(
            f"WITH v (proposal, voter) AS (VALUES {values})"  # noqa: S608
            f" SELECT b.proposal, {_BALLOT_COLUMNS} FROM v"
            " JOIN ballots b ON b.proposal = v.proposal AND b.voter = v.voter"
            f"{_BALLOT_MESSAGE}",
            [x for pair in chunk for x in pair],
        ):
            rows.setdefault(proposal, []).append(tuple(ballot))
    for proposal, ballots in new.items():
        held = {row[0] for row in rows.get(proposal, ())}
        # a ballot held already (the derivation run again over what is stored) keeps
        # its row, as an insert of it would
        rows.setdefault(proposal, []).extend(b for b in ballots if b[0] not in held)
    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[str, str, bytes, bytes, int, bytes]] = []
    new_counts: list[tuple[Any, ...]] = []
    for proposal in proposals:
        p = info.get(proposal)
        old = counts.get(proposal)
        tally = (
            dict(zip(_COUNT_KEYS, old[:6], strict=True)) if old else dict.fromkeys(_COUNT_KEYS, 0)
        )
        for status, why, row in _judge_ballots(p, rows.get(proposal, [])):
            vote_id, choice, old_status, old_why = row[0], row[4], row[7], row[8]
            if old_status == _NEW:
                inserts.append((vote_id, proposal, row[1], row[3], choice, status, why))
            elif (status, why) == (old_status, old_why):
                if vote_id not in lost_choices:
                    continue
            else:
                updates.append((status, why, proposal, row[1], row[3], vote_id))
            was = _count_key(old_status, lost_choices.get(vote_id, choice))
            now = _count_key(status, choice)
            if was is not None:
                tally[was] -= 1
            if now is not None:
                tally[now] += 1
        row_out = (*tally.values(), _blocked(p))
        if old is None or tuple(old) != row_out:
            new_counts.append((proposal, *row_out))
    conn.executemany(
        "INSERT INTO ballots (vote_id, proposal, voter, ts, choice, status, reason)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        inserts,
    )
    conn.executemany(
        f"UPDATE ballots SET status = ?, reason = ? WHERE {_BALLOT_KEY}",  # noqa: S608
        updates,
    )
    conn.executemany(
        "INSERT OR REPLACE INTO proposal_counts (proposal, yes, no, abstain, support_yes,"
        " support_no, support_abstain, blocked) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        new_counts,
    )


def _with_tallies(conn: sqlite3.Connection, proposals: Sequence[bytes]) -> list[bytes]:
    """Those of ``proposals`` that have a tally held."""
    out: set[bytes] = set()
    for chunk in _chunks(proposals):
        out.update(
            row[0]
            for row in conn.execute(
                f"SELECT DISTINCT proposal FROM tallies WHERE proposal IN ({_marks(chunk)})",  # noqa: S608
                chunk,
            )
        )
    return sorted(out)


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


# --------------------------------------------------------------------------- petitions

#: (sign_id, signer, community, ts, body held, authorized, reason, status, sign reason)
_Sign = tuple[bytes, bytes, bytes, int, int, int | None, str | None, str, str]


def _load_by_target(
    conn: sqlite3.Connection,
    rows: dict[bytes, list[Any]],
    table: str,
    target: str,
    member: str,
    columns: str,
    joins: str,
    whole: set[bytes],
    pairs: set[tuple[bytes, bytes]],
) -> None:
    """Append to ``rows[target]`` the rows of ``table`` (aliased ``s``) of every target
    in ``whole``, and of each (target, member) pair whose target is not in ``whole``:
    what a batch of signatures or answers needs to re-judge, in a few queries."""
    for chunk in _chunks(sorted(whole)):
        for key, *row in conn.execute(
            f"SELECT s.{target}, {columns} FROM {table} s{joins}"  # noqa: S608
            f" WHERE s.{target} IN ({_marks(chunk)})",
            chunk,
        ):
            rows.setdefault(key, []).append(tuple(row))
    rest = sorted(pair for pair in pairs if pair[0] not in whole)
    for part in _chunks(rest, 400):
        values = ", ".join("(?, ?)" for _ in part)
        for key, *row in conn.execute(
            f"WITH v ({target}, {member}) AS (VALUES {values})"  # noqa: S608
            f" SELECT s.{target}, {columns} FROM v JOIN {table} s"
            f" ON s.{target} = v.{target} AND s.{member} = v.{member}{joins}",
            [x for pair in part for x in pair],
        ):
            rows.setdefault(key, []).append(tuple(row))


_SIGN_COLUMNS = (
    "s.sign_id, s.signer, s.community, s.ts, b.id IS NOT NULL, a.authorized, a.reason,"
    " s.status, s.reason"
)
_SIGN_FROM = " LEFT JOIN bodies b ON b.id = s.sign_id LEFT JOIN message_auth a ON a.id = s.sign_id"


def _judge_signs(p: tuple[Any, ...] | None, rows: list[_Sign]) -> list[tuple[str, str, _Sign]]:
    """Each sign's (status, reason): per signer, the first valid sign by (ts, id) before
    the close counts (``p``: the petition's status, community, closes, reason)."""
    blocked = _blocked(p).replace("proposal", "petition")
    out: list[tuple[str, str, _Sign]] = []
    seen: set[bytes] = set()
    for row in sorted(rows, key=lambda r: (r[1], r[3], r[0])):
        _, signer, community, ts, held, authorized, reason = row[:7]
        if blocked:
            status, why = "blocked", blocked
        elif not held:
            status, why = "erased", "the signature was erased (or its body is not held)"
        elif not authorized:
            status, why = "unauthorized", reason or "author not a member at ts"
        elif p is not None and ts >= p[2]:
            status, why = "late", "signed at or after the close"
        elif signer in seen:
            status, why = "duplicate", "an earlier signature by the same key counts"
        else:
            seen.add(signer)
            if p is not None and community == p[1]:
                status, why = "counted", ""
            else:
                status, why = (
                    "support",
                    "a member of another community: shown as support, not counted",
                )
        out.append((status, why, row))
    return out


def _petitions(
    conn: sqlite3.Connection, petitions: set[bytes], signers: set[tuple[bytes, bytes]]
) -> None:
    """Judge again the signs of whole petitions (those that changed: recounted) and of
    some signers (counts updated by the signs whose status changed, no recount): a few
    set-based queries for the whole batch."""
    if not petitions and not signers:
        return
    touched = sorted(petitions | {p for p, _ in signers})
    info: dict[bytes, tuple[Any, ...]] = {}
    rows: dict[bytes, list[_Sign]] = {}
    old: dict[bytes, dict[str, int]] = {}
    for chunk in _chunks(touched):
        marks = _marks(chunk)
        for row in conn.execute(
            "SELECT id, status, community, closes, reason, fields FROM things"  # noqa: S608
            f" WHERE kind = 'petition' AND id IN ({marks})",
            chunk,
        ):
            info[row[0]] = row[1:]
        for petition, signatures, support in conn.execute(
            "SELECT petition, signatures, support FROM petition_counts"  # noqa: S608
            f" WHERE petition IN ({marks})",
            chunk,
        ):
            old[petition] = {"counted": signatures, "support": support}
    _load_by_target(
        conn,
        rows,
        "signatures",
        "petition",
        "signer",
        _SIGN_COLUMNS,
        _SIGN_FROM,
        petitions,
        signers,
    )
    recount = [p for p in touched if p in petitions or p not in old]
    counts: dict[bytes, dict[str, int]] = {p: dict(n) for p, n in old.items()}
    updates: list[tuple[str, str, bytes]] = []
    for petition, signs in rows.items():
        n = counts.get(petition, {})
        for status, why, row in _judge_signs(info.get(petition), signs):
            if (status, why) == (row[7], row[8]):
                continue
            updates.append((status, why, row[0]))
            if row[7] in n:
                n[row[7]] -= 1
            if status in n:
                n[status] += 1
    conn.executemany("UPDATE signatures SET status = ?, reason = ? WHERE sign_id = ?", updates)
    for petition in recount:
        counts[petition] = {}
    for chunk in _chunks(recount):
        for petition, status, total in conn.execute(
            "SELECT petition, status, count(*) FROM signatures"  # noqa: S608
            f" WHERE petition IN ({_marks(chunk)}) AND status IN ('counted', 'support')"
            " GROUP BY petition, status",
            chunk,
        ):
            counts[petition][status] = total
    out: list[tuple[Any, ...]] = []
    for petition in touched:
        p = info.get(petition)
        fields = _fields(p[4]) if p is not None else None
        goal = fields.get("goal") if fields else None
        n = counts.get(petition, {})
        blocked = _blocked(p).replace("proposal", "petition")
        out.append(
            (petition, n.get("counted", 0), n.get("support", 0), goal, blocked),
        )
    conn.executemany(
        "INSERT OR REPLACE INTO petition_counts (petition, signatures, support, goal, blocked)"
        " VALUES (?, ?, ?, ?, ?)",
        out,
    )


# --------------------------------------------------------------------------- surveys

#: (answer_id, member, community, ts, fields, authorized, reason, status, answer reason)
_Answer = tuple[bytes, bytes, bytes, int, str | None, int | None, str | None, str, str]
_ANSWER_COLUMNS = (
    "s.answer_id, s.member, s.community, s.ts, b.fields, a.authorized, a.reason, s.status, s.reason"
)
_ANSWER_FROM = (
    " LEFT JOIN bodies b ON b.id = s.answer_id LEFT JOIN message_auth a ON a.id = s.answer_id"
)


def answers_mismatch(questions: list[Any], answers: Any) -> str:
    """Why ``answers`` do not fit ``questions`` ("" when they do)."""
    if not isinstance(answers, list) or len(answers) != len(questions):
        n = len(answers) if isinstance(answers, list) else 0
        return f"{n} answers for {len(questions)} questions"
    for i, (q, a) in enumerate(zip(questions, answers, strict=True)):
        if a is None:
            continue
        if q.get("type") == "text":
            if not isinstance(a, str):
                return f"question {i + 1}: a text question needs a text answer"
        elif not isinstance(a, int) or isinstance(a, bool):
            return f"question {i + 1}: needs an option index"
        elif not 0 <= a < len(q.get("options", [])):
            return f"question {i + 1}: option {a} out of range"
    return ""


def _judge_answers(
    s: tuple[Any, ...] | None, questions: list[Any], rows: list[_Answer]
) -> list[tuple[str, str, _Answer]]:
    """Each answer's (status, reason): per member, the newest answer that fits the
    questions and lies in [opens, closes) counts (``s``: the survey's status, community,
    closes, reason, fields)."""
    blocked = _blocked(s).replace("proposal", "survey")
    fields = _fields(s[4]) if s is not None else None
    opens = int(fields.get("opens", 0)) if fields else 0
    out: list[tuple[str, str, _Answer]] = []
    seen: set[bytes] = set()
    for row in sorted(rows, key=lambda r: (r[1], r[3], r[0]), reverse=True):
        _, member, community, ts, body, authorized, reason = row[:7]
        decoded = _fields(body)
        if blocked:
            status, why = "blocked", blocked
        elif decoded is None:
            status, why = "erased", "the answer was erased (or its body is not held)"
        elif not authorized:
            status, why = "unauthorized", reason or "author not a member at ts"
        elif ts < opens:
            status, why = "early", "answered before the survey opened"
        elif s is not None and ts >= s[2]:
            status, why = "late", "answered at or after the close"
        elif mismatch := answers_mismatch(questions, decoded.get("answers")):
            status, why = "mismatch", mismatch
        elif s is not None and community != s[1]:
            status, why = "other", "a member of another community: not counted"
        elif member in seen:
            status, why = "superseded", "a newer answer by the same member counts"
        else:
            seen.add(member)
            status, why = "counted", ""
        out.append((status, why, row))
    return out


def _empty_results(questions: list[Any]) -> list[dict[str, Any]]:
    return [
        {"type": q.get("type"), "skipped": 0}
        | (
            {"text_answers": 0}
            if q.get("type") == "text"
            else {"counts": [0] * len(q.get("options", []))}
        )
        for q in questions
    ]


def _add_answer(results: list[dict[str, Any]], body: str | None, sign: int) -> None:
    """Add (``sign`` 1) or take out (-1) a counted answer's contribution."""
    decoded = _fields(body) or {}
    for result, answer in zip(results, decoded.get("answers", []), strict=False):
        if answer is None:
            result["skipped"] += sign
        elif "text_answers" in result:
            result["text_answers"] += sign
        else:
            result["counts"][answer] += sign


def _surveys(
    conn: sqlite3.Connection,
    surveys: set[bytes],
    respondents: set[tuple[bytes, bytes]],
    lost_answers: Mapping[bytes, str],
) -> None:
    """Judge again the answers of whole surveys (those that changed: recounted) and of
    some members (results updated by the answers whose status changed, no recount)."""
    if not surveys and not respondents:
        return
    touched = sorted(surveys | {s for s, _ in respondents})
    info: dict[bytes, tuple[Any, ...]] = {}
    old: dict[bytes, tuple[int, str]] = {}
    rows: dict[bytes, list[_Answer]] = {}
    for chunk in _chunks(touched):
        marks = _marks(chunk)
        for row in conn.execute(
            "SELECT id, status, community, closes, reason, fields FROM things"  # noqa: S608
            f" WHERE kind = 'survey' AND id IN ({marks})",
            chunk,
        ):
            info[row[0]] = row[1:]
        for row in conn.execute(
            "SELECT survey, respondents, results FROM survey_results"  # noqa: S608
            f" WHERE survey IN ({marks})",
            chunk,
        ):
            old[row[0]] = (row[1], row[2])
    _load_by_target(
        conn,
        rows,
        "survey_answers",
        "survey",
        "member",
        _ANSWER_COLUMNS,
        _ANSWER_FROM,
        surveys,
        respondents,
    )
    questions: dict[bytes, list[Any]] = {}
    for survey in touched:
        fields = _fields(info[survey][4]) if survey in info else None
        qs = fields.get("questions") if fields else None
        questions[survey] = qs if isinstance(qs, list) else []
    results: dict[bytes, list[dict[str, Any]]] = {}
    counted: dict[bytes, int] = {}
    for survey in touched:
        before = old.get(survey)
        if survey in surveys or before is None:
            results[survey], counted[survey] = _empty_results(questions[survey]), 0
        else:
            results[survey], counted[survey] = json.loads(before[1]), before[0]
    updates: list[tuple[str, str, bytes]] = []
    for survey, answers in rows.items():
        for status, why, row in _judge_answers(info.get(survey), questions[survey], answers):
            answer_id, body, old_status = row[0], row[4], row[7]
            if (status, why) != (row[7], row[8]):
                updates.append((status, why, answer_id))
            elif answer_id not in lost_answers:
                continue
            if survey in surveys or old.get(survey) is None:
                continue  # recounted below
            if old_status == "counted":
                _add_answer(results[survey], lost_answers.get(answer_id, body), -1)
                counted[survey] -= 1
            if status == "counted":
                _add_answer(results[survey], body, 1)
                counted[survey] += 1
    conn.executemany(
        "UPDATE survey_answers SET status = ?, reason = ? WHERE answer_id = ?", updates
    )
    recount = [s for s in touched if s in surveys or s not in old]
    for chunk in _chunks(recount):
        for survey, body in conn.execute(
            "SELECT s.survey, b.fields FROM survey_answers s JOIN bodies b"  # noqa: S608
            f" ON b.id = s.answer_id WHERE s.survey IN ({_marks(chunk)})"
            " AND s.status = 'counted'",
            chunk,
        ):
            counted[survey] += 1
            _add_answer(results[survey], body, 1)
    out: list[tuple[Any, ...]] = []
    for survey in touched:
        row_out = (
            counted[survey],
            json.dumps(results[survey], sort_keys=True),
            _blocked(info.get(survey)).replace("proposal", "survey"),
        )
        out.append((survey, *row_out))
    conn.executemany(
        "INSERT OR REPLACE INTO survey_results (survey, respondents, results, blocked)"
        " VALUES (?, ?, ?, ?)",
        out,
    )
