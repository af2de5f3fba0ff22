"""The read API of the civic forum: what every page (and ``fora show``) shows.

Plain functions over the derived views (storage.views); each returns JSON-ready
dicts (ids and keys as lowercase hex), so a page and its JSON twin share one context.
Only what is *visible* is listed: unauthorized, hidden and erased things never appear
in lists, counts or search; :func:`show` explains any one message, visible or not.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import re
from collections.abc import Iterable
from typing import Any

from sqlite_utils import Database

from . import views
from .database import select_in
from .views import ballots_hash, whole_fields

__all__ = [
    "ballots_of",
    "closing_soon",
    "community_names",
    "community_profile",
    "federation_topics",
    "infokit",
    "meeting_page",
    "meetings",
    "member_activity",
    "moderation_log",
    "newest_stories",
    "panel_page",
    "panels",
    "petition_page",
    "proposal_page",
    "report_queue",
    "search",
    "show",
    "signatures_of",
    "survey_answers_of",
    "survey_results",
    "thing",
    "thread",
    "topic_page",
    "topics",
]

#: The term a query listing things by community and kind adds: ``things_list`` is a
#: partial index without comments (m010), which SQLite uses only for a query whose WHERE
#: names its condition (tests/test_forum_web.py holds every such list to the index).
_LISTED = "kind != 'comment'"

_THING_COLUMNS = (
    "id, kind, community, author, ts, parent, status, reason, title, text, lang, fields,"
    " version_id, version_ts, versions, closes, scope, comments"
)

#: A thing per message by the message's index (``messages m``, then ``things t`` by id:
#: a CROSS JOIN keeps that order).
_THINGS_OF_MESSAGES = (
    ", ".join(f"t.{c.strip()}" for c in _THING_COLUMNS.split(","))
    + " FROM messages m CROSS JOIN things t ON t.id = m.id"
)


def _thing(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        thing_id,
        kind,
        community,
        author,
        ts,
        parent,
        status,
        reason,
        title,
        text,
        lang,
        fields,
        version_id,
        version_ts,
        versions,
        closes,
        scope,
        comments,
    ) = row
    out: dict[str, Any] = {
        "id": thing_id.hex(),
        "kind": kind,
        "community": community.hex(),
        "author": author.hex(),
        "ts": ts,
        "parent": parent.hex() if parent else None,
        "status": status,
        "title": title,
        "text": text,
        "lang": lang,
        # things.fields holds what the title, text and lang columns do not (m011)
        "fields": whole_fields(kind, title, text, lang, json.loads(fields) if fields else None),
        "edited": versions > 1,
        "versions": versions,
        "version_id": version_id.hex(),
        "version_ts": version_ts,
        "comments": comments,
    }
    if reason:
        out["reason"] = reason
    if closes is not None:
        out["closes"] = closes
    if scope is not None:
        out["scope"] = scope
    return out


def _get_thing(db: Database, thing_id: bytes) -> dict[str, Any] | None:
    row = db.execute(
        f"SELECT {_THING_COLUMNS} FROM things WHERE id = ?",  # noqa: S608
        (thing_id,),
    ).fetchone()
    return _thing(row) if row is not None else None


def thing(db: Database, thing_id: bytes) -> dict[str, Any] | None:
    """One thing (topic, proposal, story, comment ...) whatever its status."""
    return _get_thing(db, thing_id)


def community_profile(db: Database, community: bytes) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT profile_id, ts, fields FROM profiles WHERE community = ?", (community,)
    ).fetchone()
    if row is None:
        return None
    return {"community": community.hex(), "id": row[0].hex(), "ts": row[1], **json.loads(row[2])}


def topics(
    db: Database,
    community: bytes,
    *,
    tag: str | None = None,
    scope: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[dict[str, Any]]:
    """A community's visible topics, newest first (optionally with a tag, a scope or
    both; a scope alone walks the ``things_scope`` index)."""
    before = (1 << 63) - 1 if before is None else before
    if tag is None and scope is not None:
        rows = db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'topic'"  # noqa: S608
            " AND scope = ? AND status = 'visible' AND ts < ? ORDER BY ts DESC LIMIT ?",
            (community, scope, before, limit),
        ).fetchall()
    elif tag is None:
        rows = db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'topic'"  # noqa: S608
            f" AND {_LISTED} AND status = 'visible' AND ts < ? ORDER BY ts DESC LIMIT ?",
            (community, before, limit),
        ).fetchall()
    else:
        rows = db.execute(
            f"SELECT {', '.join('t.' + c.strip() for c in _THING_COLUMNS.split(','))}"  # noqa: S608
            " FROM topic_tags g JOIN things t ON t.id = g.topic WHERE g.tag = ?"
            " AND t.community = ? AND t.kind = 'topic' AND t.status = 'visible' AND t.ts < ?"
            " AND (? IS NULL OR t.scope = ?) ORDER BY t.ts DESC LIMIT ?",
            (tag.casefold(), community, before, scope, scope, limit),
        ).fetchall()
    return [_thing(r) for r in rows]


def newest_stories(db: Database, community: bytes, *, limit: int = 10) -> list[dict[str, Any]]:
    """A community's visible stories, newest first (the ``things_list`` index)."""
    return [
        _thing(r)
        for r in db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'story'"  # noqa: S608
            f" AND {_LISTED} AND status = 'visible' ORDER BY ts DESC LIMIT ?",
            (community, limit),
        )
    ]


def closing_soon(
    db: Database, community: bytes, *, now_ms: int, limit: int = 10
) -> list[dict[str, Any]]:
    """A community's open proposals (``closes`` after ``now_ms``), the first to close
    first, with their live counts (the ``things_closes`` index)."""
    out = [
        _thing(r)
        for r in db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'proposal'"  # noqa: S608
            " AND status = 'visible' AND closes > ? ORDER BY closes, id LIMIT ?",
            (community, now_ms, limit),
        )
    ]
    for p in out:
        p["counts"] = _counts(db, bytes.fromhex(p["id"]))
    return out


#: The scopes a topic is shown beyond its own community with.
WIDE_SCOPES = ("regional", "national", "european")


def federation_topics(
    db: Database,
    communities: Iterable[bytes],
    *,
    scopes: Iterable[str] = WIDE_SCOPES,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Visible topics of the given scopes from all ``communities``, newest first: one
    indexed query per (community, scope), each stopping at ``limit``, merged."""
    lists = [
        topics(db, community, scope=scope, limit=limit)
        for community in communities
        for scope in scopes
    ]
    merged = heapq.merge(*lists, key=lambda t: (-t["ts"], t["id"]))
    return list(merged)[:limit]


def community_names(db: Database, communities: Iterable[bytes]) -> dict[str, str]:
    """The newest profile name of each community held (hex id -> name)."""
    sql = "SELECT community, fields FROM profiles WHERE community IN ({marks})"
    return {
        community.hex(): str(json.loads(fields).get("name", ""))
        for community, fields in select_in(db, sql, sorted(set(communities)))
    }


def _children(db: Database, parent: bytes, kind: str, limit: int) -> list[dict[str, Any]]:
    return [
        _thing(r)
        for r in db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE parent = ? AND kind = ?"  # noqa: S608
            " AND status = 'visible' ORDER BY ts DESC LIMIT ?",
            (parent, kind, limit),
        )
    ]


def _counts(db: Database, proposal: bytes) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT yes, no, abstain, support_yes, support_no, support_abstain, blocked"
        " FROM proposal_counts WHERE proposal = ?",
        (proposal,),
    ).fetchone()
    if row is None:
        return None
    out: dict[str, Any] = {
        "yes": row[0],
        "no": row[1],
        "abstain": row[2],
        "support": {"yes": row[3], "no": row[4], "abstain": row[5]},
    }
    if row[6]:
        out["not_counted"] = row[6]
    return out


def topic_page(db: Database, topic: bytes, *, limit: int = 50) -> dict[str, Any] | None:
    """A topic with its visible proposals (with live counts), stories and comments."""
    thing = _get_thing(db, topic)
    if thing is None or thing["kind"] != "topic":
        return None
    proposals = _children(db, topic, "proposal", limit)
    for p in proposals:
        p["counts"] = _counts(db, bytes.fromhex(p["id"]))
    return {
        "topic": thing,
        "proposals": proposals,
        "stories": _children(db, topic, "story", limit),
        "comments": _children(db, topic, "comment", limit),
        "panels": panels(db, topic=topic, limit=limit),
    }


_PANEL_COLUMNS = (
    "p.panel, p.community, p.author, p.ts, p.topic, p.status, p.reason, p.name, p.seats,"
    " p.roll_check, p.eligible, p.roll_here, p.draw, p.draw_status, b.fields"
)


def _panel(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        panel_id,
        community,
        author,
        ts,
        topic,
        status,
        reason,
        name,
        seats,
        roll_check,
        eligible,
        roll_here,
        draw,
        draw_status,
        fields,
    ) = row
    body = json.loads(fields) if fields else {}
    out: dict[str, Any] = {
        "id": panel_id.hex(),
        "community": community.hex(),
        "author": author.hex(),
        "ts": ts,
        "topic": topic.hex() if topic else None,
        "status": status,
        "name": name,
        "seats": seats,
        "roll": body.get("roll"),
        "commit": body.get("commit"),
        "roll_check": roll_check,
        "eligible": eligible,
        "roll_here": roll_here.hex() if roll_here else None,
        "draw": draw.hex() if draw else None,
        "draw_status": draw_status,
    }
    if reason:
        out["reason"] = reason
    return out


def panels(
    db: Database,
    community: bytes | None = None,
    *,
    topic: bytes | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Visible panels of a community (or under a topic), newest first."""
    where, params = (
        ("p.topic = ?", [topic]) if topic is not None else ("p.community = ?", [community])
    )
    return [
        _panel(r)
        for r in db.execute(
            f"SELECT {_PANEL_COLUMNS} FROM panels p LEFT JOIN bodies b ON b.id = p.panel"  # noqa: S608
            f" WHERE {where} AND p.status = 'visible' ORDER BY p.ts DESC, p.panel LIMIT ?",
            (*params, limit),
        )
    ]


def _draws(db: Database, panel: bytes) -> list[dict[str, Any]]:
    return [
        {
            "id": draw_id.hex(),
            "ts": ts,
            "author": author.hex(),
            "status": status,
            **json.loads(detail),
        }
        for draw_id, ts, author, status, detail in db.execute(
            "SELECT d.draw_id, m.ts, m.author, d.status, d.detail FROM draws d"
            " JOIN messages m ON m.id = d.draw_id WHERE d.panel = ? ORDER BY m.ts, d.draw_id",
            (panel,),
        )
    ]


def panel_page(db: Database, panel: bytes) -> dict[str, Any] | None:
    """A panel with its roll check (our recount of the eligible keys at its ts against
    the committed roll), the draw that counts (verified, mismatch, pending, invalid …),
    the commit check, the selected keys and every draw held."""
    row = db.execute(
        f"SELECT {_PANEL_COLUMNS} FROM panels p LEFT JOIN bodies b ON b.id = p.panel"  # noqa: S608
        " WHERE p.panel = ?",
        (panel,),
    ).fetchone()
    if row is None:
        return None
    out = _panel(row)
    draws = _draws(db, panel)
    counted = next((d for d in draws if d["id"] == out["draw"]), None)
    fields = None
    if counted is not None:
        body = db.execute("SELECT fields FROM bodies WHERE id = ?", (row[12],)).fetchone()
        fields = json.loads(body[0]) if body is not None else None
    commit_check = "open"
    if fields is not None and out["commit"] is not None:
        secret = bytes.fromhex(fields["secret"])
        matches = hashlib.sha256(secret).hexdigest() == out["commit"]
        commit_check = "matches" if matches else "does not match"
    return {
        "panel": out,
        "commit_check": commit_check,
        "draw": counted,
        "selected": fields.get("selected", []) if fields is not None else [],
        "draws": draws,
    }


def _tallies(db: Database, proposal: bytes) -> list[dict[str, Any]]:
    return [
        {
            "id": tally_id.hex(),
            "ts": ts,
            "author": author.hex(),
            "status": status,
            **json.loads(detail),
        }
        for tally_id, ts, author, status, detail in db.execute(
            "SELECT t.tally_id, m.ts, m.author, t.status, t.detail FROM tallies t"
            " JOIN messages m ON m.id = t.tally_id WHERE t.proposal = ?"
            " ORDER BY m.ts DESC, t.tally_id",
            (proposal,),
        )
    ]


def tally_status(tallies: list[dict[str, Any]]) -> str:
    """The proposal's tally status: that of the newest verified or mismatching tally."""
    for t in tallies:
        if t["status"] in ("verified", "mismatch"):
            return str(t["status"])
    return "none"


def proposal_page(
    db: Database, proposal: bytes, *, now_ms: int | None = None
) -> dict[str, Any] | None:
    thing = _get_thing(db, proposal)
    if thing is None or thing["kind"] != "proposal":
        return None
    tallies = _tallies(db, proposal)
    digest, counted = ballots_hash(db.conn, proposal)
    out = {
        "proposal": thing,
        "counts": _counts(db, proposal),
        "counted_ballots": counted,
        "ballots_hash": digest.hex(),
        "tallies": tallies,
        "tally_status": tally_status(tallies),
        "comments": _children(db, proposal, "comment", 50),
    }
    if now_ms is not None and thing.get("closes") is not None:
        out["open"] = now_ms < thing["closes"]
    return out


def _petition_counts(db: Database, petition: bytes) -> dict[str, Any] | None:
    row = db.execute(
        "SELECT signatures, support, goal, blocked FROM petition_counts WHERE petition = ?",
        (petition,),
    ).fetchone()
    if row is None:
        return None
    out: dict[str, Any] = {
        "signatures": row[0],
        "support": row[1],
        "goal": row[2],
        "goal_reached": row[2] is not None and row[0] >= row[2],
    }
    if row[3]:
        out["not_counted"] = row[3]
    return out


def petition_page(
    db: Database, petition: bytes, *, now_ms: int | None = None
) -> dict[str, Any] | None:
    """A petition with its signature count (members of its community), the support
    from other communities (shown apart, never counted) and whether the goal is reached."""
    thing = _get_thing(db, petition)
    if thing is None or thing["kind"] != "petition":
        return None
    out = {
        "petition": thing,
        "counts": _petition_counts(db, petition),
        "comments": _children(db, petition, "comment", 50),
    }
    if now_ms is not None and thing.get("closes") is not None:
        out["open"] = now_ms < thing["closes"]
    return out


#: The info kit's known categories, shown first in this order; others follow by name.
INFOKIT_CATEGORIES = ("emergency", "health", "contacts")


def infokit(db: Database, community: bytes) -> list[dict[str, Any]]:
    """A community's pinned info kit: its visible ``infokit`` items (newest version of
    each edit chain), by category (known ones first), by title within a category."""
    items = [
        _thing(r)
        for r in db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'infokit'"  # noqa: S608
            f" AND {_LISTED} AND status = 'visible' ORDER BY title, id",
            (community,),
        )
    ]
    by: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        category = str((item["fields"] or {}).get("category", ""))
        by.setdefault(category, []).append(item)
    order = [c for c in INFOKIT_CATEGORIES if c in by] + sorted(
        c for c in by if c not in INFOKIT_CATEGORIES
    )
    return [{"category": c, "items": by[c]} for c in order]


def meetings(db: Database, community: bytes, *, limit: int = 50) -> list[dict[str, Any]]:
    """A community's visible meetings, the latest start first."""
    rows = db.execute(
        f"SELECT {_THING_COLUMNS} FROM things WHERE community = ? AND kind = 'meeting'"  # noqa: S608
        f" AND {_LISTED} AND status = 'visible'",
        (community,),
    ).fetchall()
    out = [_thing(r) for r in rows]
    out.sort(key=lambda m: (-int((m["fields"] or {}).get("starts", 0)), m["id"]))
    return out[:limit]


def meeting_page(db: Database, meeting: bytes) -> dict[str, Any] | None:
    """A meeting with its minutes (visible ones by officials of the meeting's
    community, newest version each, oldest first) and its comments."""
    thing = _get_thing(db, meeting)
    if thing is None or thing["kind"] != "meeting":
        return None
    minutes = [
        _thing(r)
        for r in db.execute(
            f"SELECT {_THING_COLUMNS} FROM things WHERE parent = ? AND kind = 'minutes'"  # noqa: S608
            " AND status = 'visible' AND community = ? ORDER BY ts, id",
            (meeting, bytes.fromhex(thing["community"])),
        )
    ]
    return {
        "meeting": thing,
        "minutes": minutes,
        "comments": _children(db, meeting, "comment", 50),
    }


def survey_results(
    db: Database, survey: bytes, *, now_ms: int | None = None
) -> dict[str, Any] | None:
    """A survey with its results: per question, the counts per option (scale, choice)
    or the number of text answers, and the skipped ones, over the counted answers."""
    thing = _get_thing(db, survey)
    if thing is None or thing["kind"] != "survey":
        return None
    row = db.execute(
        "SELECT respondents, results, blocked FROM survey_results WHERE survey = ?", (survey,)
    ).fetchone()
    questions = (thing["fields"] or {}).get("questions", [])
    results = json.loads(row[1]) if row is not None else []
    for question, result in zip(questions, results, strict=False):
        result["text"] = question.get("text")
        if "counts" in result:
            result["options"] = question.get("options", [])
    out: dict[str, Any] = {
        "survey": thing,
        "respondents": row[0] if row is not None else 0,
        "results": results,
    }
    if row is not None and row[2]:
        out["not_counted"] = row[2]
    if now_ms is not None and thing["fields"]:
        out["open"] = thing["fields"]["opens"] <= now_ms < thing["fields"]["closes"]
    return out


def thread(
    db: Database, target: bytes, *, limit: int = 500, offset: int = 0
) -> list[dict[str, Any]]:
    """The visible comments under ``target``, depth-first, oldest first, with depth
    (``offset`` skips that many rows of this order: pages of a long thread)."""
    rows = db.execute(
        "WITH RECURSIVE t(id, depth, path) AS ("  # noqa: S608
        " SELECT id, 1, printf('%020d', ts) || hex(id) FROM things"
        "  WHERE parent = ? AND kind = 'comment' AND status = 'visible'"
        " UNION ALL SELECT c.id, t.depth + 1, t.path || '/' || printf('%020d', c.ts) || hex(c.id)"
        "  FROM things c JOIN t ON c.parent = t.id"
        "  WHERE c.kind = 'comment' AND c.status = 'visible' AND t.depth < 64)"
        " SELECT t.depth, "
        + ", ".join("x." + c.strip() for c in _THING_COLUMNS.split(","))
        + " FROM t JOIN things x ON x.id = t.id ORDER BY t.path LIMIT ? OFFSET ?",
        (target, limit, offset),
    ).fetchall()
    out = []
    for row in rows:
        item = _thing(row[1:])
        item["depth"] = row[0]
        out.append(item)
    return out


#: Joins a vote's ``messages`` row ``m`` to its ``ballots`` row ``b`` (by the key that
#: ballots is clustered by, m009).
_BALLOT_OF_MESSAGE = (
    "b.proposal = substr(m.refs, 1, 32) AND b.voter = m.author AND b.ts = m.ts AND b.vote_id = m.id"
)


def member_activity(db: Database, key: bytes, *, limit: int = 50) -> dict[str, Any]:
    """What a key published that is visible, and its ballots (newest first)."""
    things = [
        _thing(r)
        for r in db.execute(
            # through messages_author: a thing's id and author are its first version's,
            # and things keeps no index by author (m011)
            f"SELECT {_THINGS_OF_MESSAGES} WHERE m.author = ? AND t.status = 'visible'"
            " ORDER BY m.ts DESC LIMIT ?",
            (key, limit),
        )
    ]
    ballots = [
        {"id": v.hex(), "proposal": p.hex(), "ts": ts, "choice": choice, "status": status}
        for v, p, ts, choice, status in db.execute(
            "SELECT b.vote_id, b.proposal, b.ts, b.choice, b.status FROM messages m"  # noqa: S608
            f" JOIN ballots b ON {_BALLOT_OF_MESSAGE} WHERE m.author = ? AND m.kind = 'vote'"
            " ORDER BY m.ts DESC LIMIT ?",
            (key, limit),
        )
    ]
    roles = [
        {"community": c.hex(), "role": role, "from": start, "until": end, "grant": g.hex()}
        for g, c, role, start, end in db.execute(
            "SELECT grant_id, community, role, start_ts, end_ts FROM role_grants"
            " WHERE member = ? AND status = 'valid' ORDER BY start_ts",
            (key,),
        )
    ]
    return {"key": key.hex(), "roles": roles, "things": things, "ballots": ballots}


def ballots_of(
    db: Database, voter: bytes, *, proposal: bytes | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """A voter's ballots (of one ``proposal``, or of all), newest first, each with its
    proposal's title and language (None when the proposal's body is not shown), status
    and reason. An erased ballot stays in the list with ``choice`` None and status
    ``erased``: it no longer counts, and erasing it again would do nothing."""
    select = (
        "SELECT b.vote_id, b.proposal, b.ts, b.choice, b.status, b.reason, t.title, t.lang"
        " FROM ballots b LEFT JOIN things t ON t.id = b.proposal AND t.status = 'visible'"
    )
    order = " ORDER BY b.ts DESC, b.vote_id DESC LIMIT ?"
    if proposal is None:
        # through messages_author: ballots is keyed by proposal first (m009)
        select = select.replace(
            " FROM ballots b", f" FROM messages m JOIN ballots b ON {_BALLOT_OF_MESSAGE}"
        )
        where = " WHERE m.author = ? AND m.kind = 'vote'"
        rows = db.execute(select + where + order, (voter, limit))
    else:
        where = " WHERE b.voter = ? AND b.proposal = ?"
        rows = db.execute(select + where + order, (voter, proposal, limit))
    return [
        {
            "id": vote_id.hex(),
            "proposal": p.hex(),
            "ts": ts,
            "choice": choice,
            "status": status,
            "reason": reason,
            "title": title,
            "lang": lang,
        }
        for vote_id, p, ts, choice, status, reason, title, lang in rows
    ]


def signatures_of(db: Database, signer: bytes, *, limit: int = 100) -> list[dict[str, Any]]:
    """A key's petition signatures, newest first (index ``signatures_by_signer``), each
    with its petition's title and language (None when the petition's body is not shown),
    its status and reason. An erased signature stays in the list with ``erased`` True and
    status ``erased`` (or ``blocked`` when the petition is): it no longer counts."""
    rows = db.execute(
        "SELECT s.sign_id, s.petition, s.ts, s.status, s.reason, m.has_body, t.title, t.lang"
        " FROM signatures s JOIN messages m ON m.id = s.sign_id"
        " LEFT JOIN things t ON t.id = s.petition AND t.status = 'visible'"
        " WHERE s.signer = ? ORDER BY s.ts DESC, s.sign_id DESC LIMIT ?",
        (signer, limit),
    )
    return [
        {
            "id": sign_id.hex(),
            "petition": petition.hex(),
            "ts": ts,
            "status": status,
            "reason": reason,
            "erased": not has_body,
            "title": title,
            "lang": lang,
        }
        for sign_id, petition, ts, status, reason, has_body, title, lang in rows
    ]


def survey_answers_of(db: Database, member: bytes, *, limit: int = 100) -> list[dict[str, Any]]:
    """A key's survey answers, newest first, each with its survey's title and language
    (None when the survey's body is not shown), its status and reason. Read through
    ``messages_author`` (survey_answers is indexed by survey first), like
    :func:`ballots_of`. An erased answer stays in the list with ``erased`` True: it no
    longer counts, and the member's answer before it (if any) counts again."""
    rows = db.execute(
        "SELECT a.answer_id, a.survey, a.ts, a.status, a.reason, m.has_body, t.title, t.lang"
        " FROM messages m JOIN survey_answers a ON a.answer_id = m.id"
        " LEFT JOIN things t ON t.id = a.survey AND t.status = 'visible'"
        " WHERE m.author = ? AND m.kind = 'answer' ORDER BY m.ts DESC, m.id DESC LIMIT ?",
        (member, limit),
    )
    return [
        {
            "id": answer_id.hex(),
            "survey": survey.hex(),
            "ts": ts,
            "status": status,
            "reason": reason,
            "erased": not has_body,
            "title": title,
            "lang": lang,
        }
        for answer_id, survey, ts, status, reason, has_body, title, lang in rows
    ]


def _modlog_entry(row: tuple[Any, ...]) -> dict[str, Any]:
    action_id, target, community, moderator, action, reason, ts, effective, why = row
    out = {
        "id": action_id.hex(),
        "target": target.hex(),
        "community": community.hex() if community else None,
        "moderator": moderator.hex(),
        "action": action,
        "reason": reason,
        "ts": ts,
        "effective": bool(effective),
    }
    if why:
        out["why"] = why
    return out


_MODLOG = "action_id, target, community, moderator, action, reason, ts, effective, why"


def moderation_log(db: Database, community: bytes, *, limit: int = 100) -> list[dict[str, Any]]:
    """Who hid or unhid what, why and when, in a community (effective actions)."""
    return [
        _modlog_entry(r)
        for r in db.execute(
            f"SELECT {_MODLOG} FROM modlog WHERE community = ? AND effective = 1"  # noqa: S608
            " ORDER BY ts DESC LIMIT ?",
            (community, limit),
        )
    ]


def report_queue(db: Database, community: bytes, *, limit: int = 100) -> list[dict[str, Any]]:
    """Reports on a community's things that no moderator acted on since."""
    rows = db.execute(
        "SELECT r.id, r.author, r.ts, r.text, r.parent, t.kind, t.title, t.status FROM things r"
        " JOIN things t ON t.id = r.parent WHERE r.kind = 'report' AND r.status = 'visible'"
        " AND t.community = ? AND NOT EXISTS (SELECT 1 FROM modlog l WHERE l.target = r.parent"
        " AND l.effective = 1 AND l.ts >= r.ts) ORDER BY r.ts LIMIT ?",
        (community, limit),
    ).fetchall()
    return [
        {
            "report": rid.hex(),
            "author": author.hex(),
            "ts": ts,
            "reason": text,
            "target": target.hex(),
            "target_kind": kind,
            "target_title": title,
            "target_status": status,
        }
        for rid, author, ts, text, target, kind, title, status in rows
    ]


#: A word of a search: letters and digits (not "_", which the index's tokenizer splits
#: on), so that each quoted word is one token.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def search(
    db: Database, query: str, *, community: bytes | None = None, limit: int = 20
) -> list[dict[str, Any]]:
    """Visible things matching every word of ``query`` (prefix match on the last),
    the most recently indexed first: FTS5 walks its matches in rowid order and stops at
    ``limit``, where ranking by relevance would score every match first."""
    words = _WORD.findall(query)
    if not words:
        return []
    match = " ".join(f'"{w}"' for w in words[:-1]) + f' "{words[-1]}"*'
    where = "search MATCH ?"
    params: list[Any] = [match.strip()]
    sql = (
        "SELECT "  # noqa: S608
        + ", ".join("t." + c.strip() for c in _THING_COLUMNS.split(","))
        + " FROM search s JOIN things t ON t.rowid = s.rowid WHERE "
        + where
        + " AND t.status = 'visible'"
    )
    if community is not None:
        sql += " AND t.community = ?"
        params.append(community)
    sql += " ORDER BY s.rowid DESC LIMIT ?"
    params.append(limit)
    return [_thing(r) for r in db.execute(sql, params)]


def show(db: Database, message_id: bytes) -> dict[str, Any] | None:
    """One message with its derived state and, when it has no effect, why."""
    row = db.execute(
        "SELECT m.kind, m.community, m.author, m.ts, m.refs, m.has_body, a.authorized, a.reason"
        " FROM messages m LEFT JOIN message_auth a ON a.id = m.id WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    if row is None:
        return None
    kind, community, author, ts, refs, has_body, authorized, reason = row
    out: dict[str, Any] = {
        "id": message_id.hex(),
        "kind": kind,
        "community": community.hex(),
        "author": author.hex(),
        "ts": ts,
        "refs": [refs[i : i + 32].hex() for i in range(0, len(refs), 32)],
        "skeleton": not has_body,
        "authorized": bool(authorized),
    }
    if not authorized:
        out["not_counted"] = reason
    text, raw = db.execute(
        f"SELECT {views.BODY_COLUMNS} FROM messages m"  # noqa: S608
        " LEFT JOIN bodies b ON b.id = m.id WHERE m.id = ?",
        (message_id,),
    ).fetchone()
    fields = views.body_fields(kind, text, raw)
    if fields is not None:
        out["fields"] = fields
    thing = _get_thing(db, message_id)
    if thing is not None:
        out["status"] = thing["status"]
        out["thing"] = thing
        if thing["status"] == "hidden":
            entry = db.execute(
                f"SELECT {_MODLOG} FROM modlog WHERE target = ? AND effective = 1"  # noqa: S608
                " ORDER BY ts DESC, action_id DESC LIMIT 1",
                (message_id,),
            ).fetchone()
            if entry is not None:
                out["moderation"] = _modlog_entry(entry)
    if kind == "proposal":
        page = proposal_page(db, message_id)
        if page is not None:
            out.update(
                {k: page[k] for k in ("counts", "tallies", "tally_status", "counted_ballots")}
            )
    elif kind == "topic":
        page = topic_page(db, message_id)
        if page is not None:
            out["proposals"] = page["proposals"]
            out["stories"] = page["stories"]
            out["comments"] = len(page["comments"])
    elif kind == "petition":
        out["counts"] = _petition_counts(db, message_id)
    elif kind == "panel":
        panel = panel_page(db, message_id)
        if panel is not None:
            out.update(panel)
    elif kind == "draw":
        draw = db.execute(
            "SELECT status, detail, panel FROM draws WHERE draw_id = ?", (message_id,)
        ).fetchone()
        if draw is not None:
            out["draw"] = {"status": draw[0], "panel": draw[2].hex(), **json.loads(draw[1])}
            if draw[0] != "verified":
                out["not_counted"] = draw[0]
    elif kind == "survey":
        results = survey_results(db, message_id)
        if results is not None:
            out["respondents"] = results["respondents"]
            out["results"] = results["results"]
    elif kind == "answer":
        answer = db.execute(
            "SELECT status, reason, survey FROM survey_answers WHERE answer_id = ?",
            (message_id,),
        ).fetchone()
        if answer is not None:
            out["answer"] = {"status": answer[0], "survey": answer[2].hex()}
            if answer[0] != "counted":
                out["not_counted"] = answer[1]
    elif kind == "meeting":
        meeting = meeting_page(db, message_id)
        if meeting is not None:
            out["minutes"] = meeting["minutes"]
    elif kind == "sign":
        sign = db.execute(
            "SELECT status, reason, petition FROM signatures WHERE sign_id = ?", (message_id,)
        ).fetchone()
        if sign is not None:
            out["signature"] = {"status": sign[0], "petition": sign[2].hex()}
            if sign[0] not in ("counted", "support"):
                out["not_counted"] = sign[1]
            elif sign[0] == "support":
                out["note"] = sign[1]
    elif kind == "vote":
        ballot = db.execute(
            "SELECT b.status, b.reason, b.choice FROM messages m"  # noqa: S608
            f" JOIN ballots b ON {_BALLOT_OF_MESSAGE} WHERE m.id = ?",
            (message_id,),
        ).fetchone()
        if ballot is not None:
            out["ballot"] = {"status": ballot[0], "choice": ballot[2]}
            if ballot[0] not in ("counted", "support"):
                out["not_counted"] = ballot[1]
            elif ballot[0] == "support":
                out["note"] = ballot[1]
    elif kind == "tally":
        tally = db.execute(
            "SELECT status, detail FROM tallies WHERE tally_id = ?", (message_id,)
        ).fetchone()
        if tally is not None:
            out["tally"] = {"status": tally[0], **json.loads(tally[1])}
    elif kind in ("hide", "unhide"):
        entry = db.execute(
            f"SELECT {_MODLOG} FROM modlog WHERE action_id = ?",  # noqa: S608
            (message_id,),
        ).fetchone()
        if entry is not None:
            out["moderation"] = _modlog_entry(entry)
            if not entry[7]:
                out["not_counted"] = entry[8]
    elif kind == "grant":
        grant = db.execute(
            "SELECT member, role, start_ts, end_ts, status FROM role_grants WHERE grant_id = ?",
            (message_id,),
        ).fetchone()
        if grant is not None:
            out["grant"] = {
                "member": grant[0].hex(),
                "role": grant[1],
                "from": grant[2],
                "until": grant[3],
                "valid": grant[4] == "valid",
            }
    erase = db.execute(
        "SELECT e.erase_id FROM erasures e JOIN message_auth a ON a.id = e.erase_id"
        " WHERE e.target = ? AND a.authorized = 1 LIMIT 1",
        (message_id,),
    ).fetchone()
    if erase is not None:
        out["erased_by"] = erase[0].hex()
    return out
