"""The sync API on a real aiohttp server on 127.0.0.1."""

from __future__ import annotations

import io
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from aiohttp.test_utils import TestClient

from node.app import MAX_REQUEST_BYTES, create_app
from node.folder import load_config
from node.publish import init_node
from node.wire import array_header, encode_list, join_messages
from protocol import signing
from protocol.messages import decode_message

from .conftest import NOW, Factory, seeded_key

Client = TestClient[Any, Any]


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]) -> Client:
    init_node(tmp_path / "n", name="Liepāja", country="LV", languages=["lv"])
    return await aiohttp_client(create_app(load_config(tmp_path / "n")))


async def push(client: Client, raws: list[bytes]) -> list[str]:
    resp = await client.post("/sync/v1/push", data=join_messages(raws))
    assert resp.status == 200
    return msgpack.unpackb(await resp.read())


async def test_info(client: Client, tmp_path: Path) -> None:
    resp = await client.get("/sync/v1/info")
    data = await resp.json()
    key = signing.private_key_from_pem((tmp_path / "n" / "community.key").read_bytes())
    assert data["community"] == signing.public_key_bytes(key).hex()
    assert data["name"] == "Liepāja" and data["protocol"] == 1
    assert data["communities"] == [{"id": data["community"], "messages": 1}]
    page = await client.get("/")
    assert "<h1>Liepāja</h1>" in await page.text()
    status = await client.get("/status")
    assert status.status == 200 and data["community"] in await status.text()


async def test_push_then_fetch(client: Client) -> None:
    f = Factory(seeded_key(3))
    raws = [f.topic(f"T{i}").raw for i in range(4)]
    assert await push(client, raws[:2]) == ["ok", "ok"]
    assert await push(client, [raws[1], b"\x93\xc4\x00\xc4\x00\xc0", raws[2]]) == [
        "duplicate",
        "malformed",
        "ok",
    ]
    ids = [decode_message(r, now_ms=NOW).id for r in raws]
    resp = await client.post("/sync/v1/fetch", data=encode_list([ids[2], ids[3], ids[0]]))
    assert resp.status == 200
    body = await resp.read()
    # Only what the server has, in the order asked, byte for byte.
    assert body == array_header(2) + raws[2] + raws[0]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/sync/v1/fetch", b""),
        ("/sync/v1/fetch", b"\xc1"),
        ("/sync/v1/fetch", msgpack.packb([b"short"])),
        ("/sync/v1/fetch", msgpack.packb({"a": 1})),
        ("/sync/v1/fetch", msgpack.packb([bytes(32)] * 5_001)),
        ("/sync/v1/push", b""),
        ("/sync/v1/push", b"\x01"),
        ("/sync/v1/push", b"\x92\x01"),  # says 2, holds 1
        ("/sync/v1/push", b"\x91\xc1"),  # not msgpack inside
        ("/sync/v1/push", b"\xdd\xff\xff\xff\xff"),
    ],
)
async def test_bad_bodies_get_400(client: Client, path: str, body: bytes) -> None:
    resp = await client.post(path, data=body)
    assert resp.status == 400
    assert (await resp.text()).startswith("Error:")
    # ...and the node is still fine.
    assert (await client.get("/sync/v1/info")).status == 200


async def test_oversized_request_is_refused(client: Client) -> None:
    resp = await client.post(
        "/sync/v1/push", data=io.BytesIO(b"\x90" + bytes(MAX_REQUEST_BYTES + 1))
    )
    assert resp.status == 413


async def test_a_client_that_keeps_sending_garbage_is_backed_off(client: Client) -> None:
    for _ in range(20):
        resp = await client.post("/sync/v1/push", data=b"\x01")
        assert resp.status == 400
    resp = await client.post("/sync/v1/push", data=join_messages([]))
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
    # The status page is not part of the sync API and stays reachable.
    assert (await client.get("/")).status == 200


def test_guard_forgets_after_the_ban() -> None:
    from node.guard import BadRequestGuard

    now = [0.0]
    guard = BadRequestGuard(limit=3, window=10, ban=30, clock=lambda: now[0])
    for _ in range(2):
        guard.record_bad("a")
    now[0] = 11.0  # the first two fall out of the window
    guard.record_bad("a")
    assert guard.banned_for("a") == 0
    guard.record_bad("a")
    guard.record_bad("a")
    assert guard.banned_for("a") == 30
    assert guard.banned_for("b") == 0
    now[0] = 41.5
    assert guard.banned_for("a") == 0
