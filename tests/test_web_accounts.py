"""``fora account add`` / ``fora account list``: the first admin of a node, who can then
log in to the web view and approve residents."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from node.cli import main
from web import keys

from .webflow import FAST, Client, login, make_node, twin


@pytest.fixture(autouse=True)
def fast_scrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "DEFAULT_PARAMS", FAST)


async def test_account_add_then_log_in_as_admin(
    tmp_path: Path,
    aiohttp_client: Callable[..., Awaitable[Client]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    node = make_node(tmp_path)
    folder = str(node.config.dir)
    pw = tmp_path / "pw"
    pw.write_text("admin password\n", encoding="utf-8")
    assert (
        main(["account", "add", folder, "Anna", "--role", "admin", "--password-file", str(pw)]) == 0
    )
    key = capsys.readouterr().out.strip()
    assert len(key) == 64
    # A taken name, a short password: one Error: line, nothing written.
    assert main(["account", "add", folder, "ANNA", "--password-file", str(pw)]) == 1
    assert capsys.readouterr().err.startswith("Error: the name")
    (tmp_path / "short").write_text("short\n", encoding="utf-8")
    assert main(["account", "add", folder, "Bob", "--password-file", str(tmp_path / "short")]) == 1
    assert "at least 8" in capsys.readouterr().err
    assert main(["account", "list", folder, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["status"], r["key"]) for r in rows] == [("Anna", "approved", key)]
    assert "password" not in rows[0] and "sealed_key" not in rows[0]

    client = await aiohttp_client(node.app)
    await login(client, "Anna", "admin password")
    me = await twin(client, "/me")
    assert me["me"]["roles"] == ["admin"] and me["me"]["key"] == key
    assert (await twin(client, "/admin"))["is_admin"] is True


async def test_demo_nodes_have_accounts_to_log_in_with(
    tmp_path: Path, aiohttp_client: Callable[..., Awaitable[Client]]
) -> None:
    from node.app import create_app
    from node.demo import DEMO_ACCOUNTS, DEMO_COMMUNITIES, DEMO_PASSWORD, create_demo_node
    from web.accounts import ACCOUNTS

    config = create_demo_node(tmp_path / "demo", DEMO_COMMUNITIES[0], 8470)
    app = create_app(config, sync_interval=3600.0)
    app[ACCOUNTS].params = FAST
    first = await aiohttp_client(app)
    for name, role in DEMO_ACCOUNTS:
        client = first if name == "admin" else await aiohttp_client(first.server)
        await login(client, name, DEMO_PASSWORD)
        assert role in (await twin(client, "/me"))["me"]["roles"]
