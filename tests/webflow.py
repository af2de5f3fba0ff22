"""Helpers for the tests of the web view's accounts and forms: a node served by
aiohttp's test client, with low-cost scrypt so a login takes milliseconds."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from node.app import create_app
from node.appkeys import STORE
from node.folder import NodeConfig
from node.publish import add_account, init_node
from web.accounts import ACCOUNTS
from web.keys import ScryptParams

Client = TestClient[Any, Any]
#: The cheapest scrypt keys.py accepts: tests only (the node uses n = 2**17).
FAST = ScryptParams(n=2**10, r=8, p=1)
PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Node:
    config: NodeConfig
    key: Ed25519PrivateKey
    app: Any

    @property
    def community(self) -> str:
        from protocol import signing

        return signing.public_key_bytes(self.key).hex()


def make_node(tmp_path: Path, name: str = "Bomarzo", sub: str = "n") -> Node:
    config, key, _ = init_node(tmp_path / sub, name=name, country="IT", languages=("it", "en"))
    app = create_app(config, sync_interval=3600.0)
    app[ACCOUNTS].params = FAST
    return Node(config, key, app)


async def add_user(node: Node, name: str, role: str = "member") -> Any:
    """An approved account with ``role``, made the way ``fora account add`` does."""
    account, _ = await node.app[STORE].write(
        add_account, node.key, name=name, password=PASSWORD, role=role, params=FAST
    )
    return account


async def token(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, (path, response.status, await response.text())
    match = _TOKEN.search(await response.text())
    assert match, f"no CSRF token in {path}"
    return match.group(1)


async def post(client: Client, path: str, data: dict[str, str], *, form: str | None = None) -> Any:
    """POST ``data`` to ``path`` with the CSRF token of the page ``form`` (default:
    ``path``), not following the redirect."""
    data = {**data, "csrf_token": await token(client, form or path)}
    return await client.post(path, data=data, allow_redirects=False)


async def login(client: Client, name: str, password: str = PASSWORD) -> None:
    response = await post(client, "/login", {"name": name, "password": password})
    assert response.status == 303, await response.text()


async def logged_in(client: Client, node: Node, name: str, role: str = "member") -> Client:
    """``client``, logged in as a new account ``name`` holding ``role``."""
    await add_user(node, name, role)
    await login(client, name)
    return client


async def twin(client: Client, path: str) -> Any:
    response = await client.get(path, headers={"Accept": "application/json"})
    assert response.status == 200, (path, response.status)
    return await response.json()
