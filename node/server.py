"""Running a node: the aiohttp server with limits suited to untrusted clients."""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from .app import create_app, start_listening
from .folder import NodeConfig

__all__ = ["serve", "start_site", "wait_for_stop"]

log = logging.getLogger("fora")

#: Idle keep-alive connections are closed after this many seconds (aiohttp's default
#: keeps them about an hour).
KEEPALIVE_TIMEOUT = 30.0
#: Waiting for a slow client's request headers: at most this many seconds.
HANDLER_CANCEL_GRACE = 10.0


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(
        app,
        access_log=None,
        keepalive_timeout=KEEPALIVE_TIMEOUT,
        shutdown_timeout=5.0,
        handler_cancellation=True,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        await start_listening(app)
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def wait_for_stop() -> None:
    """Wait until SIGTERM (systemd's stop) or SIGINT (Ctrl-C) arrives."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def serve(config: NodeConfig, *, sync_interval: float = 60.0, mdns: bool = True) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def main() -> None:
        runner = await start_site(
            create_app(config, sync_interval=sync_interval, mdns=mdns), config.host, config.port
        )
        print(
            f"Fora node {config.name!r} on http://{config.host}:{config.port}/ (Ctrl-C stops)",
            flush=True,
        )
        try:
            await wait_for_stop()
        finally:
            await runner.cleanup()
        print("stopped", flush=True)

    asyncio.run(main())
