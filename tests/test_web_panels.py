"""The panel page (``/m/{panel}`` and its twin) for each draw status: mismatch with
what differs, invalid with its problems (verified and pending are driven in a real
browser by tests/browser/test_pages.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from node.app import create_app
from node.folder import load_config
from node.publish import init_node
from protocol import sortition
from storage.database import open_database

from .test_civic_panels import SECRET, World, put

Client = TestClient[Any, Any]


async def client_with(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]], *messages: Any
) -> Client:
    config, _, _ = init_node(tmp_path / "n", name="Bomarzo", country="IT")
    db = open_database(config.db_path)
    try:
        put(db, *messages)
    finally:
        db.close()
    return await aiohttp_client(create_app(load_config(tmp_path / "n")))


async def test_a_mismatched_draw_says_who_differs(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    w = World()
    panel = w.panel()
    right = list(sortition.draw(w.roll, SECRET, [w.entropy.id], 2).selected)
    wrong = [right[0], next(k for k in w.roll if k not in right)]
    client = await client_with(
        tmp_path, aiohttp_client, *w.grants, w.entropy, panel, w.draw(panel, selected=wrong)
    )
    twin = await (await client.get(f"/m/{panel.hex_id}.json")).json()
    assert twin["kind"] == "panel" and twin["draw"]["status"] == "mismatch"
    html = await (await client.get(f"/m/{panel.hex_id}")).text()
    assert "The published draw does not match the draw re-run on this node." in html
    missing = html.index("Selected here, missing from the published draw:")
    extra = html.index("In the published draw, not selected here:")
    assert f'href="/members/{right[1].hex()}"' in html[missing:extra]
    assert f'href="/members/{wrong[1].hex()}"' in html[extra:]
    assert "As the draw published them, not verified on this node." in html
    assert 'role="alert"' in html and "<h1>School panel</h1>" in html


async def test_an_invalid_draw_lists_its_problems(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    w = World()
    panel = w.panel()
    client = await client_with(
        tmp_path, aiohttp_client, *w.grants, w.entropy, panel, w.draw(panel, secret=bytes(32))
    )
    html = await (await client.get(f"/m/{panel.hex_id}")).text()
    assert "The draw is invalid:" in html
    assert "<li>the secret does not match the panel&#39;s commit</li>" in html
    assert "the published secret does not match it." in html


async def test_a_panel_not_drawn_yet(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    w = World()
    panel = w.panel()
    client = await client_with(tmp_path, aiohttp_client, *w.grants, panel)
    html = await (await client.get(f"/m/{panel.hex_id}")).text()
    assert "Not drawn yet." in html and "No one selected yet." in html
    assert "The committed roll matches the 6 members eligible here." in html
    assert "the secret is published with the draw." in html
