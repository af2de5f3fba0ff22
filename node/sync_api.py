"""HTTP handlers of the sync API, ``/sync/v1/`` (PROTOCOL.md section 5).

Every body is untrusted: its size is bounded by the application's ``client_max_size``,
its shape by :mod:`node.wire`; a body of the wrong shape gets a 400 with one line
saying why, and nothing already stored is touched.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

from aiohttp import web
from sqlite_utils import Database

from protocol.errors import ReconcileError
from protocol.messages import VERSION
from protocol.reconcile import DEFAULT_FRAME_SIZE_LIMIT, Negentropy
from storage import messages as store_fns
from storage import peers as peer_fns

from . import wire
from .appkeys import CACHE, COMMUNITY_ID, CONFIG, INGESTOR, PEERS, STORE

__all__ = ["fetch", "info", "push", "reconcile", "status_page"]

OCTETS = "application/octet-stream"
MSGPACK = "application/msgpack"
#: A reconcile message larger than this is refused (a frame is at most 60,000 bytes
#: by default; a peer without a frame limit may send more, up to this).
MAX_RECONCILE_REQUEST = 4 * 1024 * 1024


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f"Error: {reason}\n")


def _communities(db: Database) -> list[dict[str, Any]]:
    return [
        {"id": community.hex(), "messages": count}
        for community, count in db.execute(
            "SELECT community, count(*) FROM messages GROUP BY community ORDER BY community"
        )
    ]


async def _info(request: web.Request) -> dict[str, Any]:
    app = request.app
    return {
        "community": app[COMMUNITY_ID].hex(),
        "name": app[CONFIG].name,
        "protocol": VERSION,
        "communities": await app[STORE].read(_communities),
        "syncing": [p.as_json() for p in app[PEERS].progress.values()],
    }


async def info(request: web.Request) -> web.Response:
    return web.json_response(await _info(request))


async def status_page(request: web.Request) -> web.Response:
    data = await _info(request)
    rows = "".join(
        f"<tr><td><code>{html.escape(c['id'])}</code></td><td>{c['messages']}</td></tr>"
        for c in data["communities"]
    )
    body = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(data['name'])} · Fora</title></head><body>"
        f"<h1>{html.escape(data['name'])}</h1>"
        f"<p>Fora node, community <code>{html.escape(data['community'])}</code>,"
        f" protocol v{data['protocol']}.</p>"
        "<table><caption>Communities held</caption>"
        "<tr><th scope=col>Community</th><th scope=col>Messages</th></tr>"
        f"{rows}</table><p><a href=/sync/v1/info>JSON</a></p></body></html>"
    )
    return web.Response(text=body, content_type="text/html")


async def fetch(request: web.Request) -> web.Response:
    try:
        ids = wire.decode_id_list(await request.read())
    except wire.WireError as exc:
        raise _bad_request(str(exc)) from exc
    raws = await request.app[STORE].read(store_fns.get_raw, ids)
    out: list[bytes] = []
    size = 0
    for raw in raws:
        if raw is None:
            continue
        if size + len(raw) > wire.MAX_FETCH_RESPONSE_BYTES and out:
            break
        out.append(raw)
        size += len(raw)
    return web.Response(body=wire.join_messages(out), content_type=MSGPACK)


async def reconcile(request: web.Request) -> web.Response:
    app = request.app
    try:
        community = bytes.fromhex(request.match_info["community"])
    except ValueError:
        community = b""
    if len(community) != 32:
        raise _bad_request("community must be 64 hex characters")
    held = await app[STORE].read(peer_fns.held_communities, app[COMMUNITY_ID])
    if community not in held:
        raise web.HTTPNotFound(text="Error: this node does not hold that community\n")
    body = await request.read()
    if len(body) > MAX_RECONCILE_REQUEST:
        raise _bad_request("reconcile message too large")
    items = await app[CACHE].get(community)
    session = Negentropy(items, frame_size_limit=DEFAULT_FRAME_SIZE_LIMIT)
    try:
        answer = await asyncio.to_thread(session.reconcile, body)
    except ReconcileError as exc:
        raise _bad_request(f"reconcile: {exc}") from exc
    return web.Response(body=answer, content_type=OCTETS)


async def push(request: web.Request) -> web.Response:
    try:
        raws = wire.split_messages(await request.read())
    except wire.WireError as exc:
        raise _bad_request(str(exc)) from exc
    results = await request.app[INGESTOR].ingest(raws)
    codes = [r.result.value for r in results]
    return web.Response(body=wire.encode_list(codes), content_type=MSGPACK)
