"""Making this node's own messages: sign, check, store; and creating a node folder."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from protocol import kinds, signing
from protocol.errors import ProtocolError, Result
from protocol.messages import Message, create_message
from storage.database import open_database
from storage.messages import store_checked

from .clock import now_ms
from .folder import CONFIG_NAME, NodeConfig, NodeError, write_config, write_key

__all__ = ["init_node", "publish"]


def publish(
    db: Database,
    key: Ed25519PrivateKey,
    community: bytes,
    kind: str,
    fields: dict[str, Any],
    refs: Sequence[bytes] = (),
    ts: int | None = None,
) -> Message:
    """Sign and store one message; raise :class:`NodeError` unless it was stored."""
    now = now_ms()
    message = create_message(
        key, kind=kind, community=community, ts=now if ts is None else ts, fields=fields, refs=refs
    )
    (result,) = store_checked(db, [message], now_ms=now)
    if result.result is not Result.OK:
        raise NodeError(f"message not stored: {result.result.value} {result.detail}".rstrip())
    return message


def init_node(
    directory: Path,
    *,
    name: str,
    country: str,
    region: str = "",
    languages: Sequence[str] = ("en",),
    about: str = "",
    port: int = 8470,
    ts: int | None = None,
) -> tuple[NodeConfig, Ed25519PrivateKey, Message]:
    """Create a node folder: config, community key (0600), database, signed profile.

    The profile is checked before anything is written, so bad input leaves no folder.
    """
    if (directory / CONFIG_NAME).exists():
        raise NodeError(f"{directory} is a Fora node folder already")
    fields = {
        "name": name,
        "country": country,
        "region": region,
        "languages": list(languages),
        "about": about,
    }
    try:
        kinds.check_body("community", fields, ())
    except ProtocolError as exc:
        raise NodeError(f"bad community profile: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    config = NodeConfig(
        dir=directory,
        name=name,
        country=country,
        region=region,
        languages=list(languages),
        port=port,
    )
    key = signing.generate_private_key()
    write_key(config.key_path, key)
    write_config(config)
    db = open_database(config.db_path)
    try:
        profile = publish(db, key, signing.public_key_bytes(key), "community", fields, ts=ts)
    finally:
        db.close()
    return config, key, profile
