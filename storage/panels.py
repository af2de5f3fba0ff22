"""Panels drawn by lot: each panel's roll check and its draw, judged on ingest.

A `panel` commits to the eligible roll and to a secret; its first authorized `draw`
reveals the secret and names entropy messages of other communities
(protocol.sortition, docs/protocol.md "Sortition"). This module keeps, per panel id,
a row in ``panels`` (our recount of the roll at the panel's ts against the committed
one, and the status of the draw that counts) and a row per draw in ``draws``.

Everything is recomputed per panel from the base tables (messages, message_auth,
bodies, role_grants), so the rows are a function of the messages held, never of their
order. :class:`Touched` collects what a transaction touched; :func:`refresh` finds the
panels concerned: a panel or draw that arrived or was judged again, an erase of one, an
entropy message that arrived or was judged again, a community whose roles changed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from protocol import sortition

from .roles import MEMBER_ROLES

__all__ = ["ELIGIBLE_ROLES", "Touched", "eligible_keys", "refresh"]

#: Roles that put a key on a panel's roll: every role (each implies member).
ELIGIBLE_ROLES = MEMBER_ROLES

#: (id, kind, community, author, ts, refs)
Row = tuple[bytes, str, bytes, bytes, int, tuple[bytes, ...]]


@dataclass
class Touched:
    """What one transaction touched that panels depend on."""

    panels: set[bytes] = field(default_factory=set)
    ids: set[bytes] = field(default_factory=set)
    erase_targets: set[bytes] = field(default_factory=set)
    communities: set[bytes] = field(default_factory=set)

    def rows(self, rows: Iterable[Row]) -> None:
        for message_id, kind, _community, _author, _ts, refs in rows:
            self.ids.add(message_id)
            if kind == "panel":
                self.panels.add(message_id)
            elif kind == "draw" and refs:
                self.panels.add(refs[0])
            elif kind == "erase" and refs:
                self.erase_targets.add(refs[0])


def _chunks(items: Sequence[bytes], size: int = 500) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(chunk: Sequence[bytes]) -> str:
    return ",".join("?" * len(chunk))


def _split(refs: bytes) -> list[bytes]:
    return [refs[i : i + 32] for i in range(0, len(refs), 32)]


def _concerned(conn: sqlite3.Connection, touched: Touched) -> set[bytes]:
    panels = set(touched.panels)
    for chunk in _chunks(sorted(touched.erase_targets)):
        for message_id, kind, refs in conn.execute(
            f"SELECT id, kind, refs FROM messages WHERE id IN ({_marks(chunk)})"  # noqa: S608
            " AND kind IN ('panel', 'draw')",
            chunk,
        ):
            panels.add(message_id if kind == "panel" else refs[:32])
    # Draws that name a touched message as their panel (which may turn out to be
    # something else) or as entropy.
    for chunk in _chunks(sorted(touched.ids)):
        for (refs,) in conn.execute(
            "SELECT DISTINCT m.refs FROM message_refs r JOIN messages m ON m.id = r.id"  # noqa: S608
            f" WHERE r.ref IN ({_marks(chunk)}) AND m.kind = 'draw'",
            chunk,
        ):
            panels.add(refs[:32])
    for chunk in _chunks(sorted(touched.communities)):
        panels.update(
            row[0]
            for row in conn.execute(
                "SELECT id FROM messages WHERE kind = 'panel'"  # noqa: S608
                f" AND community IN ({_marks(chunk)})",
                chunk,
            )
        )
    return panels


def refresh(conn: sqlite3.Connection, touched: Touched) -> None:
    """Recompute the ``panels`` and ``draws`` rows of every panel ``touched`` concerns."""
    concerned = _concerned(conn, touched)
    if not concerned:
        return
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'panels'").fetchone() is None:
        return  # an older migration's rebuild: m005 builds every panel afterwards
    for panel in sorted(concerned):
        _panel(conn, panel)


def eligible_keys(conn: sqlite3.Connection, community: bytes, ts: int) -> list[bytes]:
    """The keys holding a role (any: each implies member) in ``community`` at ``ts``,
    sorted; the community key itself is not on the roll."""
    marks = ",".join("?" * len(ELIGIBLE_ROLES))
    return [
        row[0]
        for row in conn.execute(
            "SELECT DISTINCT member FROM role_grants WHERE community = ?"  # noqa: S608
            f" AND status = 'valid' AND role IN ({marks}) AND start_ts <= ?"
            " AND (end_ts IS NULL OR ? < end_ts) AND member != ? AND length(member) = 32"
            " ORDER BY member",
            (community, *sorted(ELIGIBLE_ROLES), ts, ts, community),
        )
    ]


def _fields(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else None


def _held(conn: sqlite3.Connection, message_id: bytes) -> tuple[Any, ...] | None:
    row: tuple[Any, ...] | None = conn.execute(
        "SELECT m.community, m.author, m.ts, m.refs, m.has_body, a.authorized, a.reason,"
        " b.fields, EXISTS (SELECT 1 FROM erasures e JOIN message_auth x ON x.id = e.erase_id"
        "  WHERE e.target = m.id AND x.authorized = 1)"
        " FROM messages m LEFT JOIN message_auth a ON a.id = m.id"
        " LEFT JOIN bodies b ON b.id = m.id WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    return row


def _panel_state(row: tuple[Any, ...] | None) -> tuple[str, str]:
    if row is None:
        return "pending", "the panel is not held here"
    _c, _a, _ts, _refs, has_body, authorized, reason, fields, erased = row
    if not authorized:
        return "unauthorized", reason or "not authorized"
    if erased:
        return "erased", "erased"
    if not has_body or fields is None:
        return "skeleton", "the panel's body is not held here"
    return "visible", ""


def _entropy(conn: sqlite3.Connection, ids: Sequence[bytes]) -> dict[bytes, sortition.Entropy]:
    if not ids:
        return {}
    return {
        row[0]: sortition.Entropy(row[0], row[1], row[2], bool(row[3]))
        for row in conn.execute(
            "SELECT m.id, m.community, m.ts, coalesce(a.authorized, 0) FROM messages m"  # noqa: S608
            f" LEFT JOIN message_auth a ON a.id = m.id WHERE m.id IN ({_marks(ids)})",
            list(ids),
        )
    }


def _judge_draw(
    conn: sqlite3.Connection,
    panel_ts: int,
    panel_community: bytes,
    panel_fields: dict[str, Any],
    roll: list[bytes],
    roll_ok: bool,
    draw: tuple[Any, ...],
) -> tuple[str, dict[str, Any]]:
    """(status, detail) of the draw that counts for a visible panel."""
    _id, _c, _a, ts, refs, has_body, _auth, _reason, body, erased = draw
    fields = _fields(body)
    if erased:
        return "erased", {"why": "the draw was erased"}
    if not has_body or fields is None:
        return "pending", {"why": "the draw's body is not held here"}
    problems: list[str] = []
    if ts <= panel_ts:
        problems.append("the draw is not after the panel")
    secret = bytes.fromhex(str(fields.get("secret", "")))
    if sortition.commit_of(secret).hex() != panel_fields.get("commit"):
        problems.append("the secret does not match the panel's commit")
    entropy_ids = _split(refs)[1:]
    more, missing = sortition.entropy_problems(
        panel_community, panel_ts, ts, entropy_ids, _entropy(conn, entropy_ids)
    )
    problems += more
    if problems:
        return "invalid", {"problems": problems}
    if missing:
        return "pending", {"missing_entropy": [m.hex() for m in missing]}
    theirs = [str(k) for k in fields.get("selected", [])]
    if not roll_ok:
        return "mismatch", {
            "roll_differs": True,
            "why": "the roll recounted here differs from the committed one:"
            " the selection cannot be re-run",
            "eligible_here": len(roll),
        }
    selection = sortition.draw(roll, secret, entropy_ids, int(panel_fields["seats"]))
    here = [k.hex() for k in selection.selected]
    if here == theirs:
        return "verified", {"seed": selection.seed.hex(), "selected_count": len(here)}
    return "mismatch", {
        "roll_differs": False,
        "seed": selection.seed.hex(),
        "selected_here": here,
        "missing": [k for k in here if k not in theirs],
        "extra": [k for k in theirs if k not in here],
        "order_differs": sorted(here) == sorted(theirs),
    }


def _panel(conn: sqlite3.Connection, panel: bytes) -> None:
    held = _held(conn, panel)
    status, why = _panel_state(held)
    kind = conn.execute("SELECT kind FROM messages WHERE id = ?", (panel,)).fetchone()
    if kind is not None and kind[0] != "panel":
        # A draw that names something else as its panel: no panel row, draws invalid.
        held, status, why = None, "invalid", f"refs[0] is a {kind[0]}, not a panel"
    draws = [
        (row[0], *_row)
        for row in conn.execute(
            "SELECT m.id FROM message_refs r JOIN messages m ON m.id = r.id"
            " WHERE r.ref = ? AND r.position = 0 AND m.kind = 'draw'",
            (panel,),
        )
        if (_row := _held(conn, row[0])) is not None
    ]
    draws.sort(key=lambda d: (d[3], d[0]))
    results: list[tuple[bytes, str, dict[str, Any]]] = []
    counted: tuple[Any, ...] | None = None
    for d in draws:
        draw_id, community, _author, _ts, _refs, _has_body, authorized, reason = d[:8]
        if not authorized:
            results.append((draw_id, "unauthorized", {"why": reason or "not authorized"}))
        elif held is not None and community != held[0]:
            results.append((draw_id, "invalid", {"problems": ["a draw of another community"]}))
        elif counted is not None:
            results.append((draw_id, "superseded", {"why": "an earlier draw of this panel counts"}))
        else:
            counted = d
            results.append((draw_id, "", {}))
    conn.execute("DELETE FROM draws WHERE panel = ?", (panel,))
    fields = _fields(held[7]) if held is not None and status == "visible" else None
    roll_check, eligible, roll_here = "unknown", None, None
    draw_status, detail = "none", dict[str, Any]()
    if held is not None and fields is not None:
        roll = eligible_keys(conn, held[0], held[2])
        eligible = len(roll)
        roll_here = sortition.roll_hash(roll)
        roll_check = "match" if roll_here.hex() == fields.get("roll") else "mismatch"
        if counted is not None:
            draw_status, detail = _judge_draw(
                conn, held[2], held[0], fields, roll, roll_check == "match", counted
            )
    elif counted is not None:
        if status == "invalid":
            draw_status, detail = "invalid", {"problems": [why]}
        elif held is None or status == "skeleton":
            draw_status, detail = "pending", {"why": why}
        else:
            draw_status, detail = "invalid", {"problems": [f"panel {status}: {why}"]}
    conn.executemany(
        "INSERT INTO draws (draw_id, panel, status, detail) VALUES (?, ?, ?, ?)",
        [
            (draw_id, panel, s or draw_status, json.dumps(d or detail, sort_keys=True))
            for draw_id, s, d in results
        ],
    )
    if held is None:
        conn.execute("DELETE FROM panels WHERE panel = ?", (panel,))
        return
    refs = _split(held[3])
    conn.execute(
        "INSERT OR REPLACE INTO panels (panel, community, author, ts, topic, status, reason,"
        " name, seats, roll_check, eligible, roll_here, draw, draw_status, detail)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            panel,
            held[0],
            held[1],
            held[2],
            refs[0] if refs else None,
            status,
            why,
            str(fields.get("name", "")) if fields else "",
            fields.get("seats") if fields else None,
            roll_check,
            eligible,
            roll_here,
            counted[0] if counted is not None else None,
            draw_status,
            json.dumps(detail, sort_keys=True),
        ),
    )
