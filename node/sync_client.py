"""The client side of the sync API: talk to one peer over HTTP.

Everything a peer answers is untrusted: sizes are bounded while reading, shapes are
checked by :mod:`node.wire`, and any problem becomes a :class:`SyncError`.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from . import wire

__all__ = ["PeerClient", "SyncError"]

#: The largest answer read from a peer (a fetch answer is at most 8 MiB plus one message).
MAX_RESPONSE_BYTES = wire.MAX_FETCH_RESPONSE_BYTES + 256 * 1024
MAX_INFO_BYTES = 1024 * 1024
MAX_RECONCILE_BYTES = 4 * 1024 * 1024


class SyncError(Exception):
    """Talking to a peer failed (network, HTTP status, or a bad answer)."""


class PeerClient:
    """Requests to one peer's ``/sync/v1/`` API over a shared ``ClientSession``."""

    def __init__(self, session: aiohttp.ClientSession, url: str, timeout: float = 30.0) -> None:
        self.session = session
        self.url = url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=10)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.round_trips = 0

    async def _request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        limit: int,
        content_type: str = "application/msgpack",
    ) -> bytes:
        headers = {"Content-Type": content_type} if body is not None else {}
        try:
            async with self.session.request(
                method, f"{self.url}{path}", data=body, headers=headers, timeout=self.timeout
            ) as resp:
                if resp.content_length is not None and resp.content_length > limit:
                    raise SyncError(f"{path}: answer larger than {limit} bytes")
                buf = bytearray()
                async for chunk in resp.content.iter_any():
                    buf += chunk
                    if len(buf) > limit:
                        raise SyncError(f"{path}: answer larger than {limit} bytes")
                data = bytes(buf)
                if resp.status != 200:
                    text = data[:200].decode("utf-8", "replace").strip()
                    raise SyncError(f"{path}: HTTP {resp.status} {text}".rstrip())
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SyncError(f"{path}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        self.round_trips += 1
        self.bytes_sent += len(body or b"")
        self.bytes_received += len(data)
        return data

    async def info(self) -> dict[str, Any]:
        data = await self._request("GET", "/sync/v1/info", None, MAX_INFO_BYTES)
        try:
            info = json.loads(data)
            community = bytes.fromhex(info["community"])
            if len(community) != 32 or not isinstance(info.get("name", ""), str):
                raise ValueError("bad community id")
            communities = [
                (bytes.fromhex(c["id"]), int(c["messages"])) for c in info.get("communities", [])
            ]
        except (ValueError, KeyError, TypeError) as exc:
            raise SyncError(f"info: not a Fora node's answer ({exc})") from exc
        if info.get("protocol") != 1:
            raise SyncError(f"info: unsupported protocol {info.get('protocol')!r}")
        return {
            "community": community,
            "name": info.get("name", ""),
            "communities": communities,
        }

    async def reconcile(self, community: bytes, message: bytes) -> bytes:
        return await self._request(
            "POST",
            f"/sync/v1/reconcile/{community.hex()}",
            message,
            MAX_RECONCILE_BYTES,
            "application/octet-stream",
        )

    async def fetch(self, ids: list[bytes]) -> list[bytes]:
        data = await self._request(
            "POST", "/sync/v1/fetch", wire.encode_list(ids), MAX_RESPONSE_BYTES
        )
        try:
            return wire.split_messages(data, max_items=len(ids))
        except wire.WireError as exc:
            raise SyncError(f"fetch: {exc}") from exc

    async def push(self, raws: list[bytes]) -> list[str]:
        data = await self._request(
            "POST", "/sync/v1/push", wire.join_messages(raws), 4096 + 16 * len(raws)
        )
        try:
            return wire.decode_result_list(data, len(raws))
        except wire.WireError as exc:
            raise SyncError(f"push: {exc}") from exc
