"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from storage.store import Store

from .folder import NodeConfig

__all__ = ["COMMUNITY_ID", "CONFIG", "STORE"]

CONFIG = web.AppKey("config", NodeConfig)
STORE = web.AppKey("store", Store)
COMMUNITY_ID = web.AppKey("community_id", bytes)
