"""Atom feeds (feedgen): a community's newest topics and stories, and a topic's newest
proposals, stories and comments. Entries link to the pages; their text is the plain
text (feed readers render it escaped)."""

from __future__ import annotations

import datetime as dt
import heapq
import re
from typing import Any

from aiohttp import web
from feedgen.feed import FeedGenerator
from sqlite_utils import Database

from storage import forum
from storage import peers as peer_fns

__all__ = ["atom_response", "community_entries", "topic_entries"]

LIMIT = 30
#: Characters XML 1.0 does not allow that the protocol's text rules let through
#: (noncharacters; control characters are refused at ingest already).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _xml(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _newest(*lists: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(heapq.merge(*lists, key=lambda t: (-t["ts"], t["id"])))[:LIMIT]


def community_entries(db: Database, community: bytes, own: bytes) -> dict[str, Any] | None:
    if community not in peer_fns.held_communities(db, own):
        return None
    profile = forum.community_profile(db, community) or {}
    return {
        "id": community.hex(),
        "title": profile.get("name") or community.hex()[:12],
        "subtitle": profile.get("about") or "",
        "page": f"/c/{community.hex()}",
        "self": f"/c/{community.hex()}/feed.atom",
        "lang": (profile.get("languages") or ["en"])[0],
        "entries": _newest(
            forum.topics(db, community, limit=LIMIT),
            forum.newest_stories(db, community, limit=LIMIT),
        ),
    }


def topic_entries(db: Database, topic: bytes) -> dict[str, Any] | None:
    page = forum.topic_page(db, topic, limit=LIMIT)
    if page is None or page["topic"]["status"] != "visible":
        return None
    t = page["topic"]
    return {
        "id": t["id"],
        "title": t["title"],
        "subtitle": t["text"][:200],
        "page": f"/t/{t['id']}",
        "self": f"/t/{t['id']}/feed.atom",
        "lang": t["lang"],
        "entries": _newest(page["proposals"], page["stories"], page["comments"]),
    }


def _when(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)


def atom_response(request: web.Request, data: dict[str, Any]) -> web.Response:
    base = f"{request.scheme}://{request.host}"
    fg = FeedGenerator()
    fg.id(f"{base}{data['page']}")
    fg.title(_xml(data["title"]))
    fg.subtitle(_xml(data["subtitle"] or data["title"]))
    fg.link(href=f"{base}{data['page']}", rel="alternate")
    fg.link(href=f"{base}{data['self']}", rel="self")
    fg.language(_xml(data["lang"]))
    entries = data["entries"]
    fg.updated(_when(max((e["version_ts"] for e in entries), default=0)))
    for e in reversed(entries):  # feedgen puts the last added first
        fe = fg.add_entry()
        url = f"{base}/{'t' if e['kind'] == 'topic' else 'm'}/{e['id']}"
        fe.id(url)
        fe.title(_xml(e["title"] or e["text"][:80] or e["kind"]))
        fe.link(href=url)
        fe.author({"name": e["author"][:12], "uri": f"{base}/members/{e['author']}"})
        fe.published(_when(e["ts"]))
        fe.updated(_when(e["version_ts"]))
        fe.category(term=e["kind"])
        fe.content(_xml(e["text"]), type="text")
    return web.Response(
        body=fg.atom_str(pretty=False), content_type="application/atom+xml", charset="utf-8"
    )
