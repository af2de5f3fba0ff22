"""Typed keys for what the aiohttp application holds."""

from __future__ import annotations

from aiohttp import web

from storage.store import Store
from web.render import Templates
from web.sessions import SessionStore

from .discovery import Discovery
from .folder import NodeConfig
from .peers import PeerManager
from .syncer import Ingestor, ItemCache

__all__ = [
    "CACHE",
    "COMMUNITY_ID",
    "CONFIG",
    "DISCOVERY",
    "INGESTOR",
    "PEERS",
    "SESSIONS",
    "STATIC",
    "STORE",
    "TEMPLATES",
]

CONFIG = web.AppKey("config", NodeConfig)
COMMUNITY_ID = web.AppKey("community_id", bytes)
STORE = web.AppKey("store", Store)
INGESTOR = web.AppKey("ingestor", Ingestor)
CACHE = web.AppKey("item_cache", ItemCache)
PEERS = web.AppKey("peers", PeerManager)
DISCOVERY = web.AppKey("discovery", Discovery)  # type: ignore[type-abstract]
#: The web view's template environment (web/render.py) and its sessions (web/sessions.py).
TEMPLATES = web.AppKey("templates", Templates)
SESSIONS = web.AppKey("sessions", SessionStore)
#: The web view's static files, read at start: name -> (bytes, content type, ETag).
STATIC = web.AppKey("static", dict[str, tuple[bytes, str, str]])
