"""The web view's page handlers: each builds one context dict from the read API
(storage/forum.py, on the store's reader threads) and hands it to :func:`render.page`,
which answers HTML or the JSON twin from that same dict."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from sqlite_utils import Database

from node.appkeys import COMMUNITY_ID, STORE
from node.clock import now_ms
from storage import forum
from storage import peers as peer_fns

from . import feeds
from .cache import cached, changes_at
from .render import page, wants_json

__all__ = ["ROUTES", "not_found", "public_panel"]

SCOPES = ("local", "regional", "national", "european")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_TAG = re.compile(r"^[\w-]{1,64}$", re.UNICODE)
#: What a non-visible thing keeps in a page: never its content.
_PUBLIC_KEYS = ("id", "kind", "community", "author", "ts", "parent", "status", "reason")


def _id(request: web.Request, name: str) -> bytes:
    value = request.match_info[name].lower()
    if not _HEX64.match(value):
        raise web.HTTPNotFound()
    return bytes.fromhex(value)


def public(thing: dict[str, Any] | None) -> dict[str, Any] | None:
    """A thing as pages may show it: whole when visible, otherwise only who, when and
    why it is not shown (a hidden or erased thing's content never reaches a page)."""
    if thing is None or thing.get("status") == "visible":
        return thing
    return {k: thing[k] for k in _PUBLIC_KEYS if k in thing}


def public_panel(page: dict[str, Any]) -> dict[str, Any]:
    """A panel's page as pages may show it: whole when visible, otherwise only who,
    when and why it is not shown (no name, roll, draw or selection)."""
    if page["panel"]["status"] == "visible":
        return page
    return {"panel": public(page["panel"]), "draw": None, "selected": [], "draws": []}


def _names(db: Database, *groups: Any) -> dict[str, str]:
    """Names of the communities named (``community`` keys) anywhere in ``groups``."""
    ids: set[bytes] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            community = value.get("community")
            if isinstance(community, str) and _HEX64.match(community):
                ids.add(bytes.fromhex(community))
            for v in value.values():
                if isinstance(v, (dict, list)):
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    for group in groups:
        walk(group)
    return forum.community_names(db, ids)


async def _read(request: web.Request, fn: Any, *args: Any, **kw: Any) -> Any:
    return await request.app[STORE].read(fn, *args, **kw)


# -- community home -------------------------------------------------------------------


def _community_context(
    db: Database, community: bytes, own: bytes, *, tag: str | None, scope: str | None, now: int
) -> dict[str, Any] | None:
    held = peer_fns.held_communities(db, own)
    if community not in held:
        return None
    ctx: dict[str, Any] = {
        "community": forum.community_profile(db, community) or {"community": community.hex()},
        "own": community == own,
        "filters": {"tag": tag, "scope": scope},
        "scopes": list(SCOPES),
        "topics": forum.topics(db, community, tag=tag, scope=scope, limit=30),
        "stories": forum.newest_stories(db, community, limit=10),
        "infokit": forum.infokit(db, community),
        "closing_soon": forum.closing_soon(db, community, now_ms=now, limit=10),
        "panels": forum.panels(db, community, limit=10),
    }
    ctx["names"] = _names(db, ctx["community"])
    return ctx


async def _community(request: web.Request, community: bytes) -> web.Response:
    tag = request.query.get("tag", "").strip().casefold() or None
    scope = request.query.get("scope", "").strip() or None
    if tag is not None and not _TAG.match(tag):
        raise web.HTTPBadRequest(text="Error: a tag is 1 to 64 letters, digits, _ or -\n")
    if scope is not None and scope not in SCOPES:
        raise web.HTTPBadRequest(text=f"Error: scope must be one of {', '.join(SCOPES)}\n")
    ctx = await _read(
        request,
        _community_context,
        community,
        request.app[COMMUNITY_ID],
        tag=tag,
        scope=scope,
        now=now_ms(),
    )
    if ctx is None:
        raise web.HTTPNotFound()
    # "Closing soon" drops a proposal when it closes; nothing else here reads the clock.
    changes_at(request, min((p["closes"] for p in ctx["closing_soon"]), default=None))
    return page(request, "community.html", ctx)


async def home(request: web.Request) -> web.Response:
    return await _community(request, request.app[COMMUNITY_ID])


async def community(request: web.Request) -> web.Response:
    return await _community(request, _id(request, "community"))


# -- topic and other messages ---------------------------------------------------------


#: Comments per page (a topic page stays under 50 KB of HTML + CSS), proposals and
#: stories listed on a topic page.
COMMENTS_PER_PAGE = 30
TOPIC_LIST = 20


def _page_number(request: web.Request) -> int:
    raw = request.query.get("page", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 10_000:
        raise web.HTTPBadRequest(text="Error: page must be a number from 1 to 10000\n")
    return int(raw)


def _comments(db: Database, target: bytes, page_number: int) -> dict[str, Any]:
    """One page of a thread: its comments, and whether there are more pages."""
    rows = forum.thread(
        db, target, limit=COMMENTS_PER_PAGE + 1, offset=(page_number - 1) * COMMENTS_PER_PAGE
    )
    return {
        "comments": rows[:COMMENTS_PER_PAGE],
        "comments_page": {
            "page": page_number,
            "previous": page_number - 1 if page_number > 1 else None,
            "next": page_number + 1 if len(rows) > COMMENTS_PER_PAGE else None,
        },
    }


def _topic_context(db: Database, topic: bytes, page_number: int) -> dict[str, Any] | None:
    ctx = forum.topic_page(db, topic, limit=TOPIC_LIST)
    if ctx is None:
        return None
    ctx["topic"] = public(ctx["topic"])
    ctx.update(_comments(db, topic, page_number))
    if ctx["topic"]["status"] != "visible":
        # What hangs under a hidden or erased topic is not listed with it.
        ctx.update(proposals=[], stories=[], comments=[], panels=[])
    ctx["names"] = _names(db, ctx)
    return ctx


async def topic(request: web.Request) -> web.Response:
    ctx = await _read(request, _topic_context, _id(request, "id"), _page_number(request))
    if ctx is None:
        raise web.HTTPNotFound()
    changes_at(request, None)
    return page(request, "topic.html", ctx)


def _message_context(
    db: Database, message: bytes, now: int, page_number: int
) -> dict[str, Any] | None:
    thing = forum.thing(db, message)
    kind = thing["kind"] if thing is not None else None
    ctx: dict[str, Any] | None
    if kind == "proposal":
        ctx = forum.proposal_page(db, message, now_ms=now)
        if ctx is not None:
            ctx["proposal"] = public(ctx["proposal"])
    elif kind == "petition":
        ctx = forum.petition_page(db, message, now_ms=now)
        if ctx is not None:
            ctx["petition"] = public(ctx["petition"])
    elif kind == "survey":
        ctx = forum.survey_results(db, message, now_ms=now)
        if ctx is not None:
            ctx["survey"] = public(ctx["survey"])
    elif kind == "meeting":
        ctx = forum.meeting_page(db, message)
        if ctx is not None:
            ctx["meeting"] = public(ctx["meeting"])
    elif thing is not None:
        ctx = {"thing": public(thing)}
    elif (panel := forum.panel_page(db, message)) is not None:
        ctx = public_panel(panel)
        kind = "panel"
        topic_id = ctx["panel"].get("topic")
        t = forum.thing(db, bytes.fromhex(topic_id)) if topic_id else None
        ctx["parent"] = (
            {"id": t["id"], "kind": t["kind"], "title": t["title"], "status": t["status"]}
            if t is not None and t["status"] == "visible"
            else None
        )
    else:
        shown = forum.show(db, message)
        if shown is None:
            return None
        shown.pop("fields", None)  # a page shows content only through a visible thing
        shown.pop("thing", None)
        ctx = {"message": shown}
        kind = shown["kind"]
    if ctx is None:
        return None
    ctx["kind"] = kind
    if thing is not None:
        ctx.update(_comments(db, message, page_number))
        if thing["status"] != "visible":
            ctx["comments"] = []
        parent = thing.get("parent")
        if parent:
            p = forum.thing(db, bytes.fromhex(parent))
            ctx["parent"] = (
                {"id": p["id"], "kind": p["kind"], "title": p["title"], "status": p["status"]}
                if p is not None and p["status"] == "visible"
                else None
            )
    ctx["names"] = _names(db, ctx)
    return ctx


_TEMPLATES = {
    "proposal": "proposal.html",
    "petition": "petition.html",
    "survey": "survey.html",
    "meeting": "meeting.html",
    "panel": "panel.html",
}


def _clock_moments(ctx: dict[str, Any]) -> list[int]:
    """The moments a message page may change at by the clock alone: a proposal or
    petition closing, a survey opening or closing (what its ``open`` follows)."""
    thing = ctx.get(ctx["kind"]) if ctx["kind"] in ("proposal", "petition", "survey") else None
    if not isinstance(thing, dict):
        return []
    fields = thing.get("fields") or {}
    moments = [thing.get("closes"), fields.get("opens"), fields.get("closes")]
    return [m for m in moments if isinstance(m, int)]


async def message(request: web.Request) -> web.Response:
    message_id = _id(request, "id")
    now = now_ms()
    ctx = await _read(request, _message_context, message_id, now, _page_number(request))
    if ctx is None:
        raise web.HTTPNotFound()
    moments = _clock_moments(ctx)
    if "open" not in ctx or moments:  # else (hidden) its moments are unknown here: TTL
        changes_at(request, min((m for m in moments if m > now), default=None))
    if ctx["kind"] == "topic" and not wants_json(request):
        raise web.HTTPFound(f"/t/{message_id.hex()}")
    name = _TEMPLATES.get(ctx["kind"], "thing.html" if "thing" in ctx else "message.html")
    return page(request, name, ctx)


# -- search, federation, moderation, members ------------------------------------------


def _search_context(db: Database, query: str) -> dict[str, Any]:
    results = forum.search(db, query, limit=30)
    return {
        "query": query,
        "words": [w.casefold() for w in re.findall(r"\w+", query, re.UNICODE)],
        "results": results,
        "names": _names(db, results),
    }


async def search(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()[:200]
    ctx = await _read(request, _search_context, query)
    changes_at(request, None)
    return page(request, "search.html", ctx)


def _held_counts(db: Database, communities: list[bytes]) -> dict[str, int]:
    return {
        c.hex(): db.execute("SELECT count(*) FROM messages WHERE community = ?", (c,)).fetchone()[0]
        for c in communities
    }


def _federation_context(db: Database, own: bytes) -> dict[str, Any]:
    held = peer_fns.held_communities(db, own)
    follows = {
        c: (via, added)
        for c, via, added in db.execute("SELECT community, via, added_at FROM follows")
    }
    counts = _held_counts(db, held)
    peers = [p.as_json() for p in peer_fns.list_peers(db)]
    for p in peers:
        p["messages_held"] = counts.get(p["community"], 0)
    ctx: dict[str, Any] = {
        "community": own.hex(),
        "followed": [
            {
                "community": c.hex(),
                "own": c == own,
                "via": follows[c][0] if c in follows else None,
                "since": follows[c][1] if c in follows else None,
                "messages_held": counts[c.hex()],
            }
            for c in held
        ],
        "peers": peers,
        "topics": forum.federation_topics(db, held, limit=50),
        "scopes": list(forum.WIDE_SCOPES),
    }
    ctx["names"] = _names(db, ctx)
    return ctx


async def federation(request: web.Request) -> web.Response:
    ctx = await _read(request, _federation_context, request.app[COMMUNITY_ID])
    changes_at(request, None)
    return page(request, "federation.html", ctx)


def _moderation_context(db: Database, community: bytes) -> dict[str, Any]:
    log = forum.moderation_log(db, community, limit=100)
    for entry in log:
        target = forum.thing(db, bytes.fromhex(entry["target"]))
        entry["target_kind"] = target["kind"] if target is not None else None
    return {
        "community": community.hex(),
        "log": log,
        "names": _names(db, {"community": community.hex()}),
    }


async def moderation(request: web.Request) -> web.Response:
    ctx = await _read(request, _moderation_context, request.app[COMMUNITY_ID])
    changes_at(request, None)
    return page(request, "moderation.html", ctx)


def _member_context(db: Database, key: bytes) -> dict[str, Any]:
    ctx = forum.member_activity(db, key, limit=50)
    ctx["names"] = _names(db, ctx)
    return ctx


async def member(request: web.Request) -> web.Response:
    ctx = await _read(request, _member_context, _id(request, "key"))
    if not ctx["roles"] and not ctx["things"] and not ctx["ballots"]:
        raise web.HTTPNotFound()
    changes_at(request, None)
    return page(request, "member.html", ctx)


# -- feeds ----------------------------------------------------------------------------


async def community_feed(request: web.Request) -> web.Response:
    community_id = _id(request, "community")
    data = await _read(request, feeds.community_entries, community_id, request.app[COMMUNITY_ID])
    if data is None:
        raise web.HTTPNotFound()
    changes_at(request, None)
    return feeds.atom_response(request, data)


async def topic_feed(request: web.Request) -> web.Response:
    data = await _read(request, feeds.topic_entries, _id(request, "id"))
    if data is None:
        raise web.HTTPNotFound()
    changes_at(request, None)
    return feeds.atom_response(request, data)


# -- errors ---------------------------------------------------------------------------


def not_found(request: web.Request) -> web.Response:
    return page(request, "404.html", {"error": "not_found", "path": request.path}, status=404)


@web.middleware
async def not_found_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Unknown pages and ids get a real 404 page (HTML or JSON); the sync API keeps its
    plain-text errors."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPNotFound:
        if request.path.startswith("/sync/"):
            raise
        return not_found(request)
    return response


#: (path, handler, has a JSON twin)
ROUTES: list[tuple[str, Any, bool]] = [
    ("/", cached(home), True),
    ("/c/{community:[0-9a-fA-F]{64}}", cached(community), True),
    ("/c/{community:[0-9a-fA-F]{64}}/feed.atom", cached(community_feed), False),
    ("/t/{id:[0-9a-fA-F]{64}}", cached(topic), True),
    ("/t/{id:[0-9a-fA-F]{64}}/feed.atom", cached(topic_feed), False),
    ("/m/{id:[0-9a-fA-F]{64}}", cached(message), True),
    ("/search", cached(search), True),
    ("/federation", cached(federation), True),
    ("/moderation", cached(moderation), True),
    ("/members/{key:[0-9a-fA-F]{64}}", cached(member), True),
]
