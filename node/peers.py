"""The peer manager: keeps this node in sync with its peers.

- every peer is synced on an interval (all communities both hold), with exponential
  backoff after failures (5 s doubling to 30 min; ``storage.peers.backoff_ms``);
- a message that is new to this node (posted here, pushed or fetched) is pushed to
  every other peer at once; a push that fails to a peer that was syncing well makes
  that peer due for a sync now (or right after the one running), and the periodic
  reconcile repairs anything else a push missed;
- a peer whose community id differs from the one pinned when it was added is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import aiohttp

from storage import items as item_fns
from storage import messages as store_fns
from storage import peers as peer_fns
from storage.store import Store

from .clock import now_ms
from .sync_client import PeerClient, SyncError
from .syncer import Ingestor, ItemCache, SyncProgress, SyncReport, sync_with_peer

__all__ = ["DEFAULT_INTERVAL", "PeerManager"]

log = logging.getLogger("fora.peers")

#: Seconds between two full syncs with a healthy peer.
DEFAULT_INTERVAL = 60.0
LIVE_PUSH_BATCH = 500
#: How often the database is checked for messages written by other processes.
TAIL_INTERVAL = 0.5
#: How many recently ingested ids are remembered so the tail does not push them twice.
ANNOUNCED_MEMORY = 200_000


class PeerManager:
    def __init__(
        self,
        store: Store,
        ingestor: Ingestor,
        cache: ItemCache,
        own_community: bytes,
        *,
        interval: float = DEFAULT_INTERVAL,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.cache = cache
        self.own = own_community
        self.interval = interval
        self.session: aiohttp.ClientSession | None = None
        self.progress: dict[str, SyncProgress] = {}
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[Any]] = {}
        #: Peers to sync with again once their running sync ends (a push failed).
        self._again: set[str] = set()
        # (id, raw) pairs of new messages, and the peer they came from
        self._push_queue: asyncio.Queue[tuple[list[tuple[bytes, bytes]], str | None]] = (
            asyncio.Queue()
        )
        self._tasks: list[asyncio.Task[Any]] = []
        self._sync_locks: dict[str, asyncio.Lock] = {}
        self._announced: deque[bytes] = deque()
        self._announced_set: set[bytes] = set()
        ingestor.listeners.append(self._on_new_messages)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=60, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=16),
        )
        self._tasks = [
            asyncio.create_task(self._scheduler(), name="fora-peer-scheduler"),
            asyncio.create_task(self._pusher(), name="fora-live-push"),
            asyncio.create_task(self._tail(), name="fora-tail"),
        ]

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._running.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session is not None:
            await self.session.close()

    def wake(self) -> None:
        """Look at the peer list again now (a peer was added, or a sync is wanted)."""
        self._wake.set()

    # -- peers -----------------------------------------------------------------------

    async def add(self, url: str, kind: str = "manual") -> peer_fns.Peer:
        """Contact ``url``, pin its community id, follow its community, sync soon."""
        assert self.session is not None
        info = await PeerClient(self.session, url).info()
        if info["community"] == self.own:
            raise SyncError(f"{url} is this node's own community")
        peer = await self.store.write(
            peer_fns.add_peer, url, info["community"], info["name"], kind, now_ms=now_ms()
        )
        self.wake()
        return peer

    async def sync_now(self, url: str) -> SyncReport:
        assert self.session is not None
        peer = await self.store.read(peer_fns.get_peer, url)
        if peer is None:
            raise SyncError(f"{url} is not a peer")
        return await self._sync(peer)

    async def _sync(self, peer: peer_fns.Peer) -> SyncReport:
        """One sync with ``peer``; never two at once with the same peer."""
        lock = self._sync_locks.setdefault(peer.url, asyncio.Lock())
        async with lock:
            return await self._sync_locked(peer)

    async def _sync_locked(self, peer: peer_fns.Peer) -> SyncReport:
        assert self.session is not None
        progress = SyncProgress(peer.url)
        self.progress[peer.url] = progress
        client = PeerClient(self.session, peer.url)
        try:
            report = await sync_with_peer(
                client,
                self.store,
                self.cache,
                self.ingestor,
                self.own,
                pinned=peer.community,
                last_success_ms=peer.last_success,
                progress=progress,
            )
        except peer_fns.PeerRefused as exc:
            await self.store.write(
                peer_fns.record_failure, peer.url, str(exc), now_ms=now_ms(), refused=True
            )
            log.warning("peer refused: %s", exc)
            raise
        except SyncError as exc:
            delay = await self.store.write(
                peer_fns.record_failure, peer.url, str(exc), now_ms=now_ms()
            )
            log.info("sync with %s failed (%s); next try in %.0f s", peer.url, exc, delay / 1000)
            raise
        finally:
            self.progress.pop(peer.url, None)
        await self.store.write(
            peer_fns.record_success,
            peer.url,
            now_ms=now_ms(),
            received=report.received,
            sent=report.sent,
            interval_ms=int(self.interval * 1000),
        )
        if report.received or report.sent:
            log.info("synced with %s: received %d, sent %d", peer.url, report.received, report.sent)
        return report

    async def _scheduler(self) -> None:
        while True:
            # Cleared before the list is read: a wake() while it is read (a peer just
            # added) comes round again instead of waiting for the interval.
            self._wake.clear()
            peers = await self.store.read(peer_fns.list_peers)
            now = now_ms()
            next_due = now + int(self.interval * 1000)
            for peer in peers:
                if peer.url in self._running:
                    continue
                if peer.state == "refused":
                    continue
                if peer.next_attempt <= now:
                    task = asyncio.create_task(self._sync_quietly(peer))
                    self._running[peer.url] = task
                    task.add_done_callback(lambda _t, url=peer.url: self._running.pop(url, None))
                else:
                    next_due = min(next_due, peer.next_attempt)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, (next_due - now) / 1000))

    async def _sync_quietly(self, peer: peer_fns.Peer) -> None:
        with contextlib.suppress(SyncError, peer_fns.PeerRefused):
            await self._sync(peer)
        if peer.url in self._again:  # a push failed while it ran: maybe after its reconcile
            self._again.discard(peer.url)
            await self._make_due(peer.url)
        self.wake()

    async def _sync_again(self, url: str) -> None:
        """Sync with ``url`` now (a live push to it failed), or right after the sync
        running with it, which may have reconciled before the message was stored."""
        if url in self._running:
            self._again.add(url)
        else:
            await self._make_due(url)
            self.wake()

    async def _make_due(self, url: str) -> None:
        try:
            await self.store.write(peer_fns.due_now, url, now_ms=now_ms())
        except Exception:  # the pusher must live on: the interval repairs it then
            log.exception("could not make %s due for a sync", url)

    # -- live push -------------------------------------------------------------------

    def _on_new_messages(self, ids: list[bytes], raws: list[bytes], source: str | None) -> None:
        self._announced.extend(ids)
        self._announced_set.update(ids)
        while len(self._announced) > ANNOUNCED_MEMORY:
            self._announced_set.discard(self._announced.popleft())
        self._push_queue.put_nowait((list(zip(ids, raws, strict=True)), source))

    async def _tail(self) -> None:
        """Push messages that another process (``fora post``) wrote to the database."""
        cursor = await self.store.read(store_fns.max_seq)
        while True:
            await asyncio.sleep(TAIL_INTERVAL)
            rows = await self.store.read(store_fns.since_seq, cursor, LIVE_PUSH_BATCH)
            if not rows:
                continue
            cursor = rows[-1][0]
            fresh = [(i, raw) for _, i, raw in rows if i not in self._announced_set]
            if fresh:
                self._push_queue.put_nowait((fresh, None))

    async def _pusher(self) -> None:
        assert self.session is not None
        while True:
            raws, source = await self._push_queue.get()
            # Coalesce whatever else is waiting into the same pushes.
            while not self._push_queue.empty() and len(raws) < LIVE_PUSH_BATCH:
                more, more_source = self._push_queue.get_nowait()
                if more_source != source:
                    await self._push_to_all(raws, source)
                    raws, source = more, more_source
                else:
                    raws = raws + more
            await self._push_to_all(raws, source)

    async def _push_to_all(self, items: list[tuple[bytes, bytes]], source: str | None) -> None:
        """Push new messages to every peer but their source. Messages whose author was
        not authorized are not relayed as content (reconciliation still carries them,
        so every node converges on the same set)."""
        assert self.session is not None
        unauthorized = await self.store.read(item_fns.unauthorized, [i for i, _ in items])
        raws = [raw for i, raw in items if i not in unauthorized]
        if not raws:
            return
        peers = await self.store.read(peer_fns.list_peers)
        targets = [p for p in peers if p.url != source and p.state != "refused"]

        async def push(peer: peer_fns.Peer) -> None:
            client = PeerClient(self.session, peer.url, timeout=10.0)  # type: ignore[arg-type]
            try:
                for start in range(0, len(raws), LIVE_PUSH_BATCH):
                    await client.push(raws[start : start + LIVE_PUSH_BATCH])
            except SyncError as exc:
                # Not fatal: a reconcile with this peer repairs it. A peer that was
                # syncing well gets that reconcile now rather than an interval later;
                # one failing already stays on its back-off.
                log.info("live push to %s failed: %s", peer.url, exc)
                if peer.failures == 0:
                    await self._sync_again(peer.url)

        await asyncio.gather(*(push(p) for p in targets))
