"""The node's aiohttp application: ``create_app(config)`` reads like a table of contents."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from protocol import signing
from storage.store import Store

from . import sync_api
from .appkeys import CACHE, COMMUNITY_ID, CONFIG, INGESTOR, PEERS, STORE
from .folder import NodeConfig, read_key
from .peers import DEFAULT_INTERVAL, PeerManager
from .syncer import Ingestor, ItemCache

__all__ = ["MAX_REQUEST_BYTES", "create_app"]

#: The largest request body the node reads (a push of messages, a fetch of ids).
MAX_REQUEST_BYTES = 16 * 1024 * 1024


async def store_ctx(app: web.Application) -> AsyncIterator[None]:
    store = await Store.open(app[CONFIG].db_path)
    app[STORE] = store
    app[INGESTOR] = Ingestor(store)
    app[CACHE] = ItemCache(store)
    yield
    app[INGESTOR].close()
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


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", sync_api.status_page)
    app.router.add_get("/sync/v1/info", sync_api.info)
    app.router.add_post("/sync/v1/reconcile/{community}", sync_api.reconcile)
    app.router.add_post("/sync/v1/fetch", sync_api.fetch)
    app.router.add_post("/sync/v1/push", sync_api.push)


def create_app(config: NodeConfig, *, sync_interval: float = DEFAULT_INTERVAL) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_BYTES)
    app[CONFIG] = config
    app[COMMUNITY_ID] = signing.public_key_bytes(read_key(config.key_path))
    app.cleanup_ctx.append(store_ctx)
    app.cleanup_ctx.append(peers_ctx(sync_interval))  # type: ignore[arg-type]
    setup_routes(app)
    return app
