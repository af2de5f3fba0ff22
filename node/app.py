"""The node's aiohttp application: ``create_app(config)`` reads like a table of contents."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from protocol import signing
from storage.peers import PeerRefused
from storage.store import Store
from web.app import setup_web

from . import sync_api
from .appkeys import CACHE, COMMUNITY_ID, CONFIG, DISCOVERY, INGESTOR, PEERS, STORE
from .discovery import Discovery, StaticDiscovery, TryLater, ZeroconfDiscovery
from .folder import NodeConfig, read_key
from .guard import BadRequestGuard
from .peers import DEFAULT_INTERVAL, PeerManager
from .sync_client import SyncError
from .syncer import Ingestor, ItemCache

log = logging.getLogger("fora")

ALL_INTERFACES = ("0.0.0.0", "", "::")  # noqa: S104 - names, not a bind

__all__ = ["MAX_REQUEST_BYTES", "create_app"]

#: The largest request body the node reads (a push of messages, a fetch of ids).
MAX_REQUEST_BYTES = 16 * 1024 * 1024


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    key = await asyncio.to_thread(read_key, config.key_path)
    app[COMMUNITY_ID] = signing.public_key_bytes(key)
    store = await Store.open(config.db_path)
    app[STORE] = store
    app[INGESTOR] = Ingestor(store)
    app[CACHE] = ItemCache(store)
    yield
    await asyncio.to_thread(app[INGESTOR].close)
    await store.close()


def peers_ctx(interval: float) -> object:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        manager = PeerManager(
            app[STORE], app[INGESTOR], app[CACHE], app[COMMUNITY_ID], interval=interval
        )
        app[PEERS] = manager
        await manager.start()
        yield
        await manager.stop()

    return ctx


def discovery_ctx(*, mdns: bool, interfaces: list[str] | None = None) -> object:
    """Announce this node on the LAN and add the Fora nodes found there as peers."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        config, manager = app[CONFIG], app[PEERS]

        async def on_found(url: str, community: bytes, name: str) -> None:
            try:
                # The community id is pinned from the node's own /sync/v1/info answer;
                # the TXT record is only a hint.
                await manager.add(url, kind="lan")
            except PeerRefused as exc:
                log.info("LAN node %s (%s) not added: %s", url, name, exc)
            except SyncError as exc:  # not reachable (yet): discovery asks again later
                raise TryLater(str(exc)) from exc

        discovery: Discovery
        if mdns:
            bound = interfaces
            if bound is None and config.host not in ALL_INTERFACES:
                bound = [config.host]  # listening on one address: announce only there
            discovery = ZeroconfDiscovery(
                community=app[COMMUNITY_ID],
                name=config.name,
                port=config.port,
                on_found=on_found,
                interfaces=bound,
            )
        else:
            discovery = StaticDiscovery([], on_found=on_found)
        # Started by start_listening once the node accepts connections: a peer that
        # hears the announcement calls /sync/v1/info at once.
        app[DISCOVERY] = discovery
        yield
        await discovery.stop()

    return ctx


async def start_listening(app: web.Application) -> None:
    """Call once ``app`` accepts connections: announce the node on the LAN and look
    for the others (``node.server.start_site`` does)."""
    discovery = app.get(DISCOVERY)
    if discovery is not None:
        await discovery.start()


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/status", sync_api.status_page)
    app.router.add_get("/sync/v1/info", sync_api.info)
    app.router.add_post("/sync/v1/reconcile/{community}", sync_api.reconcile)
    app.router.add_post("/sync/v1/fetch", sync_api.fetch)
    app.router.add_post("/sync/v1/push", sync_api.push)


def create_app(
    config: NodeConfig,
    *,
    sync_interval: float = DEFAULT_INTERVAL,
    mdns: bool = False,
    mdns_interfaces: list[str] | None = None,
) -> web.Application:
    """The node. ``mdns`` announces it and finds peers on the LAN (``fora serve`` turns
    it on unless ``--no-mdns``; tests and the library default leave it off)."""
    app = web.Application(
        client_max_size=MAX_REQUEST_BYTES, middlewares=[BadRequestGuard().middleware]
    )
    app[CONFIG] = config
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(peers_ctx(sync_interval))  # type: ignore[arg-type]
    app.cleanup_ctx.append(discovery_ctx(mdns=mdns, interfaces=mdns_interfaces))  # type: ignore[arg-type]
    setup_routes(app)
    setup_web(app)
    return app
