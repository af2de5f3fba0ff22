"""The message store: ingest, look up, export, compare and verify.

Plain synchronous functions that take a ``Database``; the node runs them on its writer
thread or its read pool (``storage.store.Store``), the command line calls them directly.

Ingest is two steps so the expensive one can run anywhere: :func:`check_batch` decodes
and checks the bytes (pure CPU, no database), :func:`store_checked` writes the results
in one transaction. :func:`ingest` does both. A checking worker process runs
:func:`check_verdicts` and sends back only whether each message passed (or why not);
:func:`with_verdicts` turns the bytes and the verdicts back into checked messages.
Batch after batch, the next checked while one is stored, is the node's
``Ingestor.ingest_all`` (node/syncer.py), which `fora ingest` uses too.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from protocol.errors import MessageRejected, Result
from protocol.messages import Message, decode_message, rebuild_checked

from .database import select_in, write_transaction
from .derive import Derivation
from .roles import Verdict

__all__ = [
    "CheckVerdict",
    "Checked",
    "IngestResult",
    "VerifyReport",
    "check_all",
    "check_batch",
    "check_verdicts",
    "count_messages",
    "get_raw",
    "has_ids",
    "ingest",
    "iter_raw",
    "max_seq",
    "set_hash",
    "since_seq",
    "stats",
    "store_checked",
    "total_size",
    "unerased_skeletons",
    "verify_store",
    "with_verdicts",
]

Checked = Message | MessageRejected

#: The detail of a message of an unknown author kept as a skeleton (docs/civic.md).
QUOTA_DETAIL = "stored as a skeleton: unknown-author quota"


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What became of one message: its result code, its id when known, and why."""

    result: Result
    id: bytes | None
    detail: str = ""
    community: bytes | None = None

    def as_json(self, index: int) -> dict[str, Any]:
        return {
            "index": index,
            "result": self.result.value,
            "id": self.id.hex() if self.id is not None else None,
        }


def check_all(raws: Sequence[bytes], now_ms: int) -> list[Checked]:
    """Like :func:`check_batch`, with positional arguments for ``Executor.submit``."""
    out: list[Checked] = []
    for raw in raws:
        try:
            out.append(decode_message(raw, now_ms=now_ms))
        except MessageRejected as exc:
            out.append(exc)
    return out


def check_batch(raws: Sequence[bytes], *, now_ms: int) -> list[Checked]:
    """Decode and check each message; a failure is returned, never raised."""
    return check_all(raws, now_ms)


#: What a checking worker says of one message: its id (it passed) or why not.
CheckVerdict = bytes | MessageRejected


def check_verdicts(raws: Sequence[bytes], now_ms: int) -> list[CheckVerdict]:
    """:func:`check_all` without the messages: the id of each one that passed.

    For worker processes: a verdict pickles in ~35 bytes where a checked message took
    about a kilobyte (its bytes again, its decoded body); the caller holds the bytes
    and rebuilds the messages with :func:`with_verdicts`.
    """
    out: list[CheckVerdict] = []
    for raw in raws:
        try:
            out.append(decode_message(raw, now_ms=now_ms).id)
        except MessageRejected as exc:
            out.append(exc)
    return out


def with_verdicts(raws: Sequence[bytes], verdicts: Sequence[CheckVerdict]) -> list[Checked]:
    """What :func:`check_all` gives for ``raws``, from :func:`check_verdicts`' answer
    for the same bytes (the messages that passed are decoded again, unchecked)."""
    return [
        verdict if isinstance(verdict, MessageRejected) else rebuild_checked(raw, verdict)
        for raw, verdict in zip(raws, verdicts, strict=True)
    ]


_INSERT = (
    "INSERT INTO messages (id, community, author, kind, ts, sec, refs, has_body, raw,"
    " received_at, authorized, auth_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _erased_by(conn: sqlite3.Connection, target: bytes, author: bytes) -> bool:
    """True when a valid erase for ``target`` (written by ``author``) is held."""
    row = conn.execute(
        "SELECT 1 FROM erasures WHERE target = ? AND author = ? LIMIT 1", (target, author)
    ).fetchone()
    return row is not None


def _apply_erase(conn: sqlite3.Connection, erase: Message) -> None:
    """Record an erase; drop its target's body if the target is held and the erase is
    valid for it (same author). Erasure by an admin is decided by the roles layer."""
    if not erase.refs:
        return
    target = erase.refs[0]
    conn.execute(
        "INSERT OR IGNORE INTO erasures (target, erase_id, author) VALUES (?, ?, ?)",
        (target, erase.id, erase.author),
    )
    row = conn.execute(
        "SELECT author, raw FROM messages WHERE id = ? AND has_body = 1",
        (target,),
    ).fetchone()
    if row is not None and row[0] == erase.author:
        _drop_body(conn, target, row[1])


def _drop_body(conn: sqlite3.Connection, message_id: bytes, raw: bytes) -> None:
    skeleton = decode_message(raw, now_ms=1 << 63, verify=False).skeleton()
    conn.execute(
        "UPDATE messages SET raw = ?, has_body = 0 WHERE id = ?", (skeleton.raw, message_id)
    )


def _lookup_batch(
    conn: sqlite3.Connection, ids: list[bytes]
) -> tuple[dict[bytes, int], dict[bytes, list[tuple[bytes, int]]]]:
    """For a batch of ids: which are held (and with a body), and who erased which when."""
    held: dict[bytes, int] = {}
    erasers: dict[bytes, list[tuple[bytes, int]]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        held.update(
            conn.execute(
                f"SELECT id, has_body FROM messages WHERE id IN ({marks})",  # noqa: S608
                chunk,
            ).fetchall()
        )
        for target, author, ts in conn.execute(
            "SELECT e.target, e.author, m.ts FROM erasures e JOIN messages m"  # noqa: S608
            f" ON m.id = e.erase_id WHERE e.target IN ({marks})",
            chunk,
        ):
            erasers.setdefault(target, []).append((author, ts))
    return held, erasers


def _row(m: Message, now_ms: int, verdict: Verdict | None) -> tuple[Any, ...]:
    return (
        m.id,
        m.community,
        m.author,
        m.kind,
        m.ts,
        m.ts // 1000,
        b"".join(m.refs),
        0 if m.body is None else 1,
        m.raw,
        now_ms,
        None if verdict is None else int(verdict.authorized),
        None if verdict is None else verdict.reason,
    )


def store_checked(db: Database, checked: Sequence[Checked], *, now_ms: int) -> list[IngestResult]:
    """Write checked messages in one transaction and report a result for each.

    - a rejected message gets its failure code and changes nothing;
    - a message already held is ``duplicate`` (a held skeleton is filled in when the
      body comes, unless a valid erase for it is held: then ``erased``);
    - a message with a valid erase held is stored as its skeleton: ``erased``;
    - anything else is stored: ``ok``.

    Lookups are made for the whole batch at once and new rows are written with
    ``executemany``; an ``erase`` in the batch first writes what came before it.
    """
    results: list[IngestResult] = []
    conn = db.conn
    ids = [m.id for m in checked if isinstance(m, Message)]
    rows: list[tuple[Any, ...]] = []
    refs: list[tuple[bytes, bytes, int]] = []

    def flush() -> None:
        if rows:
            conn.executemany(_INSERT, rows)
            rows.clear()
        if refs:
            conn.executemany(
                "INSERT OR IGNORE INTO message_refs (ref, id, position) VALUES (?, ?, ?)", refs
            )
            refs.clear()

    with write_transaction(db):
        derived = Derivation(conn)
        held, erasers = _lookup_batch(conn, ids)
        derived.prepare(m for m in checked if isinstance(m, Message))
        for item in checked:
            if isinstance(item, MessageRejected):
                results.append(IngestResult(item.result, None, str(item)))
                continue
            m = item
            held_erasers = erasers.get(m.id, ())
            erased = bool(held_erasers) and (
                any(author == m.author for author, _ in held_erasers)
                or derived.admin_erased(m, held_erasers)
            )
            has_body = held.get(m.id)
            if has_body is not None:
                if has_body or m.body is None:
                    results.append(IngestResult(Result.DUPLICATE, m.id, community=m.community))
                elif erased:
                    results.append(IngestResult(Result.ERASED, m.id, community=m.community))
                elif derived.over_quota(m):
                    results.append(
                        IngestResult(Result.DUPLICATE, m.id, QUOTA_DETAIL, community=m.community)
                    )
                else:
                    flush()
                    conn.execute(
                        "UPDATE messages SET raw = ?, has_body = 1 WHERE id = ?", (m.raw, m.id)
                    )
                    held[m.id] = 1
                    derived.stored(m)
                    results.append(IngestResult(Result.OK, m.id, "body filled in", m.community))
                continue
            if m.body is not None and erased:
                rows.append(_row(m.skeleton(), now_ms, derived.prejudge(m)))
                held[m.id] = 0
                derived.stored(m.skeleton())
                results.append(IngestResult(Result.ERASED, m.id, community=m.community))
            elif m.body is not None and derived.over_quota(m):
                rows.append(_row(m.skeleton(), now_ms, derived.prejudge(m)))
                held[m.id] = 0
                derived.stored(m.skeleton(), quota_skeleton=True)
                results.append(IngestResult(Result.OK, m.id, QUOTA_DETAIL, m.community))
            else:
                rows.append(_row(m, now_ms, derived.prejudge(m)))
                held[m.id] = 0 if m.body is None else 1
                derived.stored(m)
                results.append(IngestResult(Result.OK, m.id, community=m.community))
            refs.extend((ref, m.id, i) for i, ref in enumerate(m.refs))
            if m.kind == "erase" and m.refs:
                flush()
                _apply_erase(conn, m)
                erasers.setdefault(m.refs[0], []).append((m.author, m.ts))
                if m.refs[0] in held:
                    row = conn.execute(
                        "SELECT has_body FROM messages WHERE id = ?", (m.refs[0],)
                    ).fetchone()
                    held[m.refs[0]] = row[0]
                    if not row[0]:
                        derived.body_dropped(m.refs[0])
        flush()
        derived.finish()
    return results


def ingest(db: Database, raws: Sequence[bytes], *, now_ms: int) -> list[IngestResult]:
    """Check and store a batch of messages (see :func:`store_checked`)."""
    return store_checked(db, check_batch(raws, now_ms=now_ms), now_ms=now_ms)


def get_raw(db: Database, ids: Sequence[bytes]) -> list[bytes | None]:
    """The stored bytes of each id, in the order asked (None where not held)."""
    found = dict(select_in(db, "SELECT id, raw FROM messages WHERE id IN ({marks})", ids))
    return [found.get(i) for i in ids]


def total_size(db: Database, ids: Sequence[bytes]) -> int:
    """How many bytes the stored messages of ``ids`` take (what a push would send)."""
    sql = "SELECT coalesce(sum(length(raw)), 0) FROM messages WHERE id IN ({marks})"
    return sum(int(row[0]) for row in select_in(db, sql, ids))


def has_ids(db: Database, ids: Iterable[bytes]) -> set[bytes]:
    """The subset of ``ids`` this store holds."""
    return {
        row[0] for row in select_in(db, "SELECT id FROM messages WHERE id IN ({marks})", list(ids))
    }


def iter_raw(db: Database, community: bytes | None = None) -> Iterator[bytes]:
    """Every stored message's bytes in arrival order (optionally one community's)."""
    if community is None:
        cursor = db.execute("SELECT raw FROM messages ORDER BY seq")
    else:
        cursor = db.execute(
            "SELECT raw FROM messages WHERE community = ? ORDER BY seq", (community,)
        )
    for (raw,) in cursor:
        yield raw


def unerased_skeletons(db: Database, community: bytes, limit: int = 1_000) -> list[bytes]:
    """Ids of skeletons held without a valid erase: their bodies may be fetched.

    Skeletons kept for the unknown-author quota are left out until their author gets
    a role (docs/civic.md)."""
    return [
        row[0]
        for row in db.execute(
            "SELECT m.id FROM messages m WHERE m.community = ? AND m.has_body = 0"
            " AND NOT EXISTS (SELECT 1 FROM erasures e LEFT JOIN message_auth a"
            " ON a.id = e.erase_id WHERE e.target = m.id"
            " AND (e.author = m.author OR a.authorized = 1))"
            " AND NOT EXISTS (SELECT 1 FROM quota_skeletons q WHERE q.id = m.id) LIMIT ?",
            (community, limit),
        )
    ]


def max_seq(db: Database) -> int:
    """The arrival number of the newest message (0 when none)."""
    return int(db.execute("SELECT coalesce(max(seq), 0) FROM messages").fetchone()[0])


def since_seq(db: Database, seq: int, limit: int) -> list[tuple[int, bytes, bytes]]:
    """(seq, id, raw) of messages that arrived after ``seq``, oldest first."""
    return [
        (row[0], row[1], row[2])
        for row in db.execute(
            "SELECT seq, id, raw FROM messages WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
    ]


def count_messages(db: Database, community: bytes | None = None) -> int:
    if community is None:
        row = db.execute("SELECT count(*) FROM messages").fetchone()
    else:
        row = db.execute(
            "SELECT count(*) FROM messages WHERE community = ?", (community,)
        ).fetchone()
    return int(row[0])


def set_hash(db: Database) -> bytes:
    """SHA-256 over the sorted ids of every message held: equal sets, equal hashes."""
    h = hashlib.sha256()
    for (message_id,) in db.execute("SELECT id FROM messages ORDER BY id"):
        h.update(message_id)
    return h.digest()


def stats(db: Database) -> dict[str, Any]:
    """Counts by community and kind, skeletons, and the set hash."""
    communities: dict[str, dict[str, Any]] = {}
    for community, kind, count, bodies in db.execute(
        "SELECT community, kind, count(*), sum(has_body) FROM messages"
        " GROUP BY community, kind ORDER BY community, kind"
    ):
        entry = communities.setdefault(
            community.hex(), {"messages": 0, "skeletons": 0, "kinds": {}}
        )
        entry["messages"] += count
        entry["skeletons"] += count - bodies
        entry["kinds"][kind] = count
    total = sum(c["messages"] for c in communities.values())
    return {
        "messages": total,
        "skeletons": sum(c["skeletons"] for c in communities.values()),
        "communities": communities,
        "set_hash": set_hash(db).hex(),
    }


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] | None = None
    integrity: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems and self.integrity == "ok"


def verify_store(db: Database) -> VerifyReport:
    """Re-check every stored message (all checks but the clock) and the database.

    Also checks that the indexed columns agree with the bytes, and that no body is
    held for a message that a valid erase covers.
    """
    problems: list[str] = []
    checked = 0
    codes: Counter[str] = Counter()
    for seq, message_id, community, author, kind, ts, refs, has_body, raw in db.execute(
        "SELECT seq, id, community, author, kind, ts, refs, has_body, raw FROM messages"
        " ORDER BY seq"
    ):
        checked += 1
        try:
            m = decode_message(raw, now_ms=1 << 63)
        except MessageRejected as exc:
            codes[exc.code] += 1
            problems.append(f"message #{seq} {message_id.hex()}: {exc.code}: {exc}")
            continue
        columns = (message_id, community, author, kind, ts, refs, bool(has_body))
        derived = (m.id, m.community, m.author, m.kind, m.ts, b"".join(m.refs), m.body is not None)
        if columns != derived:
            problems.append(f"message #{seq} {message_id.hex()}: columns disagree with bytes")
        if m.body is not None and _erased_by(db.conn, m.id, m.author):
            problems.append(f"message #{seq} {message_id.hex()}: body held despite an erase")
    integrity = ", ".join(row[0] for row in db.execute("PRAGMA integrity_check"))
    return VerifyReport(checked=checked, problems=problems, integrity=integrity)
