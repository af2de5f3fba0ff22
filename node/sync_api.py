"""HTTP handlers of the sync API, ``/sync/v1/`` (PROTOCOL.md section 5).

Every body is untrusted: its size is bounded by the application's ``client_max_size``,
its shape by :mod:`node.wire`; a body of the wrong shape gets a 400 with one line
saying why, and nothing already stored is touched.
"""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web
from sqlite_utils import Database

from protocol.messages import VERSION
from storage import messages as store_fns

from . import wire
from .appkeys import COMMUNITY_ID, CONFIG, STORE
from .clock import now_ms

__all__ = ["MAX_FETCH_RESPONSE_BYTES", "fetch", "info", "push", "status_page"]

OCTETS = "application/octet-stream"
MSGPACK = "application/msgpack"
#: A fetch answer stops before this many bytes; the client asks again for the rest.
MAX_FETCH_RESPONSE_BYTES = 8 * 1024 * 1024


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
        if size + len(raw) > MAX_FETCH_RESPONSE_BYTES and out:
            break
        out.append(raw)
        size += len(raw)
    return web.Response(body=wire.join_messages(out), content_type=MSGPACK)


async def push(request: web.Request) -> web.Response:
    try:
        raws = wire.split_messages(await request.read())
    except wire.WireError as exc:
        raise _bad_request(str(exc)) from exc
    results = await request.app[STORE].write(store_fns.ingest, raws, now_ms=now_ms())
    codes = [r.result.value for r in results]
    return web.Response(body=wire.encode_list(codes), content_type=MSGPACK)
