"""Syncing with peers: reconcile, fetch what we lack, push what they lack.

:class:`Ingestor` is the one way messages enter a running node (push handler, fetches,
local posts): it checks on worker threads, writes on the store's writer thread, keeps
the reconciliation cache fresh and tells listeners (live push) what is new.

:func:`sync_with_peer` is one full two-way sync of every community both nodes hold
(fetching overlaps the reconciliation's later rounds); the peer manager runs it on an
interval with backoff, ``fora sync`` runs it once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import asdict, dataclass, field
from typing import Any

from protocol.errors import Result
from protocol.reconcile import DEFAULT_FRAME_SIZE_LIMIT, Negentropy, VectorStore
from storage import items as item_fns
from storage import messages as store_fns
from storage import peers as peer_fns
from storage.checking import PRELOAD, default_workers, make_check_pool
from storage.messages import IngestResult
from storage.store import Store

from .clock import now_ms
from .sync_client import PeerClient, SyncError

__all__ = [
    "FETCH_BATCH",
    "NODE_PRELOAD",
    "PUSH_BATCH",
    "Ingestor",
    "ItemCache",
    "SyncProgress",
    "SyncReport",
    "sync_with_peer",
]

log = logging.getLogger("fora.sync")

FETCH_BATCH = 2_000
#: At most this many checked messages wait for the writer; those that wait are stored
#: together (see ``_fetch``).
STORE_MERGE = 4 * FETCH_BATCH
#: Batches checked at once during a fetch: the next is sent to the check workers while
#: the last one's slower part is still being checked.
CHECKS_AHEAD = 2
PUSH_BATCH = 1_000
#: Batches smaller than this are checked on a thread rather than sent to processes.
SMALL_BATCH = 64
#: How far before the last successful sync the "recent" opening starts (seconds):
#: covers clock skew and messages that took a while to reach the peer.
RECENT_MARGIN_S = 15 * 60
#: What the check workers' fork server imports before it forks them: the node's code,
#: so a worker starts in milliseconds. It takes effect in the first pool a process
#: makes (it starts the fork server); a process that makes pools of its own before
#: (a benchmark) passes the same.
NODE_PRELOAD = (*PRELOAD, "node.cli")
#: A first sync of 1,000,000 items takes about 550 rounds of 60 KB frames.
MAX_RECONCILE_ROUNDS = 20_000


class ItemCache:
    """One :class:`VectorStore` per community, rebuilt when the community changed.

    Items are only ever added, so the community's newest arrival number tells whether
    a cached store is current, whichever process wrote to the database.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._cached: dict[bytes, tuple[int, VectorStore]] = {}
        self._locks: dict[bytes, asyncio.Lock] = {}

    async def get(self, community: bytes) -> VectorStore:
        lock = self._locks.setdefault(community, asyncio.Lock())
        async with lock:
            seq = await self.store.read(item_fns.last_seq, community)
            cached = self._cached.get(community)
            if cached is not None and cached[0] == seq:
                return cached[1]
            if cached is not None:
                # Usually the new messages are the newest: append them (milliseconds)
                # rather than rebuild (seconds at a million items).
                newest, added = await self.store.read(item_fns.items_since, community, cached[0])
                grown = await asyncio.to_thread(cached[1].appended, added)
                if grown is not None:
                    self._cached[community] = (newest, grown)
                    return grown

            def build(db: Any) -> tuple[int, VectorStore]:
                # Read the sequence number first: a message arriving meanwhile makes
                # the next call catch up rather than be missed.
                current = item_fns.last_seq(db, community)
                return current, VectorStore(item_fns.load_items(db, community))

            fresh = await self.store.read(build)
            self._cached[community] = fresh
            return fresh[1]


#: Told of messages new to this node: (ids, raws, the peer URL they came from or None).
Listener = Callable[[list[bytes], list[bytes], str | None], None]


class Ingestor:
    """Check in worker processes, store on the writer thread, then tell listeners.

    A small batch (a live push, a post) is checked on a thread; a large one (a fetch
    during sync) is split among worker processes, started on first use or ahead of it
    by :meth:`warm_up`.
    """

    def __init__(self, store: Store, workers: int | None = None) -> None:
        self.store = store
        self.workers = default_workers() if workers is None else workers
        self._pool: Executor | None = None
        self._starting: asyncio.Future[Executor] | None = None
        self._background: set[asyncio.Future[Executor]] = set()
        self._lock = threading.Lock()
        self._closes = 0
        self.listeners: list[Listener] = []

    async def _check_pool(self) -> Executor:
        if self._pool is not None:
            return self._pool
        if self._starting is None:
            # Starting worker processes blocks: not on the event loop.
            self._starting = asyncio.ensure_future(asyncio.to_thread(self._start_pool))
        starting = self._starting
        try:
            return await asyncio.shield(starting)
        finally:
            if starting.done() and self._starting is starting:
                self._starting = None

    def _start_pool(self) -> Executor:
        closes = self._closes
        # The fork server loads the node's modules once, so the workers forked from it
        # need not (multiprocessing re-imports the `fora` script in each worker).
        pool = make_check_pool(self.workers, NODE_PRELOAD)
        with self._lock:
            if closes == self._closes:
                self._pool = pool
                return pool
        pool.shutdown(wait=True, cancel_futures=True)
        raise RuntimeError("the ingestor was closed while its workers started")

    def warm_up(self) -> None:
        """Start the worker processes in the background: a sync expecting many messages
        calls this before it reconciles, so they are ready for the first fetch."""
        if self._pool is None and self._starting is None and self.workers > 1:
            task = asyncio.ensure_future(self._check_pool())
            self._background.add(task)
            task.add_done_callback(self._warmed)

    def _warmed(self, task: asyncio.Future[Executor]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # Asked for again when the first batch is checked: the error shows there.
            log.warning("check workers did not start: %s", task.exception())

    async def ingest(self, raws: Sequence[bytes], source: str | None = None) -> list[IngestResult]:
        """Check and store ``raws``; tell listeners what was new."""
        if not raws:
            return []
        checked, now = await self.check(raws)
        return await self.store_checked(raws, checked, now, source)

    async def ingest_all(
        self, batches: AsyncIterator[Sequence[bytes]], source: str | None = None
    ) -> AsyncIterator[list[IngestResult]]:
        """Check and store batch after batch: while one batch is stored, the next is
        read and checked (the writer, the one stage that cannot run in parallel, is
        kept busy), but a batch is never held back waiting for the next one to come.
        Yields each batch's results, in order, once its transaction has committed. A
        caller that may stop early closes it (``contextlib.aclosing``): the check then
        under way is cancelled."""

        async def ahead() -> tuple[Sequence[bytes], tuple[list[store_fns.Checked], int]] | None:
            following = await anext(batches, None)
            return None if following is None else (following, await self.check(following))

        current = await ahead()
        if current is None:
            return
        pending = asyncio.ensure_future(ahead())
        try:
            while current is not None:
                batch, (checked, now) = current
                yield await self.store_checked(batch, checked, now, source)
                current = await pending
                if current is not None:
                    pending = asyncio.ensure_future(ahead())
        finally:
            if not pending.done():  # the caller stopped early, or a store failed
                pending.cancel()
                await asyncio.wait([pending])  # its outcome is not wanted; ours stands
            elif not pending.cancelled():
                pending.exception()  # seen: asyncio would log it as never retrieved

    async def check(self, raws: Sequence[bytes]) -> tuple[list[store_fns.Checked], int]:
        """Only the checking half (so a caller can check one batch while storing the
        previous one)."""
        loop = asyncio.get_running_loop()
        now = now_ms()
        if len(raws) < SMALL_BATCH or self.workers <= 1:
            return await asyncio.to_thread(store_fns.check_all, raws, now), now
        pool = await self._check_pool()
        step = -(-len(raws) // self.workers)
        parts = await asyncio.gather(
            *(
                loop.run_in_executor(pool, store_fns.check_verdicts, raws[i : i + step], now)
                for i in range(0, len(raws), step)
            )
        )
        # The workers say which messages passed; the messages are rebuilt here from the
        # bytes (cheaper than pickling each one back), off the event loop.
        verdicts = [verdict for part in parts for verdict in part]
        return await asyncio.to_thread(store_fns.with_verdicts, raws, verdicts), now

    async def store_checked(
        self,
        raws: Sequence[bytes],
        checked: list[store_fns.Checked],
        now: int,
        source: str | None = None,
    ) -> list[IngestResult]:
        """The storing half: one transaction on the writer thread, then the listeners."""
        results = await self.store.write(store_fns.store_checked, checked, now_ms=now)
        fresh = [
            (result.id, raw)
            for raw, result in zip(raws, results, strict=True)
            if result.result is Result.OK and result.id is not None
        ]
        if fresh:
            ids, fresh_raws = [i for i, _ in fresh], [r for _, r in fresh]
            for listener in self.listeners:
                listener(ids, fresh_raws, source)
        return results

    def close(self) -> None:
        """Stop the worker processes (blocks: call it off the event loop). Workers still
        starting are stopped as soon as they are up."""
        with self._lock:
            pool, self._pool = self._pool, None
            self._closes += 1
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class SyncProgress:
    """What a running sync is doing; shown in ``/sync/v1/info`` and by ``fora sync``."""

    url: str
    phase: str = "starting"
    community: str = ""
    to_fetch: int = 0
    fetched: int = 0
    bytes_received: int = 0
    to_push: int = 0
    pushed: int = 0
    bytes_to_push: int = 0
    bytes_pushed: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SyncReport:
    url: str
    peer_community: bytes
    peer_name: str
    communities: list[bytes] = field(default_factory=list)
    received: int = 0
    sent: int = 0
    rejected: int = 0
    round_trips: int = 0
    reconcile_round_trips: int = 0
    reconcile_bytes: int = 0
    message_bytes_received: int = 0
    message_bytes_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["peer_community"] = self.peer_community.hex()
        data["communities"] = [c.hex() for c in self.communities]
        return data


async def reconcile_community(
    client: PeerClient,
    cache: ItemCache,
    community: bytes,
    *,
    peer_count: int | None = None,
    recent_since_ms: int | None = None,
    frame_size_limit: int = DEFAULT_FRAME_SIZE_LIMIT,
    on_need: Callable[[list[bytes]], None] | None = None,
) -> tuple[list[bytes], list[bytes], int, int]:
    """Run Negentropy as the initiator; return (have, need, reconcile bytes, rounds).

    ``on_need`` is told the ids we lack after each round, so fetching them can start
    while later rounds go on.

    The opening is chosen from what we know (every choice is valid Negentropy v1):
    - the peer holds as many messages as we do: one whole-set fingerprint (equal sets
      cost one round trip of 21 bytes);
    - we synced with this peer before: a fingerprint of everything older than the last
      sync (less a margin) and the ids since then, so recent differences settle in one
      round trip;
    - otherwise the reference's opening (16 fingerprints).
    """
    items = await cache.get(community)
    session = Negentropy(items, frame_size_limit=frame_size_limit)
    if peer_count is not None and peer_count == items.size():
        message: bytes | None = session.initiate(whole_set_fingerprint=True)
    elif recent_since_ms is not None:
        since = max(0, recent_since_ms // 1000 - RECENT_MARGIN_S)
        message = session.initiate(recent_since=since)
    else:
        message = session.initiate()
    have: list[bytes] = []
    need: list[bytes] = []
    wire_bytes = 0
    rounds = 0
    while message is not None:
        rounds += 1
        if rounds > MAX_RECONCILE_ROUNDS:
            raise SyncError(f"reconcile: no convergence after {MAX_RECONCILE_ROUNDS} rounds")
        reply = await client.reconcile(community, message)
        wire_bytes += len(message) + len(reply)
        step = await asyncio.to_thread(session.reconcile_client, reply)
        have.extend(step.have_ids)
        need.extend(step.need_ids)
        if on_need is not None and step.need_ids:
            on_need(list(step.need_ids))
        message = step.message
    return have, need, wire_bytes, rounds


async def sync_with_peer(
    client: PeerClient,
    store: Store,
    cache: ItemCache,
    ingestor: Ingestor,
    own_community: bytes,
    *,
    pinned: bytes | None = None,
    last_success_ms: int | None = None,
    progress: SyncProgress | None = None,
    on_progress: Callable[[SyncProgress], None] | None = None,
) -> SyncReport:
    """One full two-way sync with the peer behind ``client``.

    Raises :class:`SyncError` (network, bad answers) and
    :class:`storage.peers.PeerRefused` when the peer's community id is not ``pinned``.
    """
    progress = progress or SyncProgress(client.url)

    def tick(**changes: Any) -> None:
        for key, value in changes.items():
            setattr(progress, key, value)
        if on_progress is not None:
            on_progress(progress)

    info = await client.info()
    if pinned is not None and info["community"] != pinned:
        raise peer_fns.PeerRefused(
            f"{client.url} presents community {info['community'].hex()}, pinned {pinned.hex()}"
        )
    report = SyncReport(client.url, info["community"], info["name"])
    ours = set(await store.read(peer_fns.held_communities, own_community))
    theirs = dict(info["communities"])
    for community in sorted(ours & theirs.keys()):
        report.communities.append(community)
        if theirs[community] - (await cache.get(community)).size() >= SMALL_BATCH:
            ingestor.warm_up()
        tick(phase="reconciling", community=community.hex())
        needs = _Needs(lambda n: tick(to_fetch=progress.to_fetch + n))
        # Fetching starts as soon as the first rounds name what we lack.
        reconciling = asyncio.create_task(
            reconcile_community(
                client,
                cache,
                community,
                peer_count=theirs[community],
                recent_since_ms=last_success_ms,
                on_need=needs.add,
            )
        )
        reconciling.add_done_callback(needs.finish)
        try:
            await _fetch(client, ingestor, needs, report, progress, tick)
            have, _, wire_bytes, rounds = await reconciling
        finally:
            if not reconciling.done():
                reconciling.cancel()
            elif not reconciling.cancelled():
                reconciling.exception()  # retrieved: the fetch's error is the one raised
        report.reconcile_bytes += wire_bytes
        report.reconcile_round_trips += rounds
        tick(phase="fetching")
        # Skeletons held without an erase: the peer may have their bodies.
        skeletons = await store.read(store_fns.unerased_skeletons, community)
        if skeletons:
            raws = await client.fetch(skeletons)
            results = await ingestor.ingest(raws, source=client.url)
            report.received += sum(1 for r in results if r.detail == "body filled in")
        bytes_to_push = await store.read(store_fns.total_size, have)
        tick(
            phase="pushing",
            to_push=progress.to_push + len(have),
            bytes_to_push=progress.bytes_to_push + bytes_to_push,
        )
        await _push(client, store, have, report, progress, tick)
    tick(phase="done")
    report.round_trips = client.round_trips
    report.bytes_sent = client.bytes_sent
    report.bytes_received = client.bytes_received
    return report


class _Needs:
    """Ids to fetch, as the reconciliation finds them."""

    def __init__(self, on_add: Callable[[int], None]) -> None:
        self.ids: list[bytes] = []
        self.done = False
        self.failed = False
        self.changed = asyncio.Event()
        self._on_add = on_add

    def add(self, ids: list[bytes]) -> None:
        self.ids.extend(ids)
        self._on_add(len(ids))
        self.changed.set()

    def finish(self, task: asyncio.Task[Any]) -> None:
        self.done = True
        self.failed = task.cancelled() or task.exception() is not None
        self.changed.set()


async def _fetch(
    client: PeerClient,
    ingestor: Ingestor,
    needs: _Needs,
    report: SyncReport,
    progress: SyncProgress,
    tick: Callable[..., None],
) -> None:
    """Fetch in batches as a pipeline of three stages that run at once: one batch on its
    way, up to :data:`CHECKS_AHEAD` batches being checked (so the check workers never
    wait for the next batch, nor for the slower half of the last one), and one
    transaction being stored. Batches checked while the writer is busy are stored
    together, in one transaction, when it is free (up to :data:`STORE_MERGE` messages
    wait; beyond that no new check starts): a page that several batches touch is then
    written once, and the log is synced once. Until the reconciliation is done, only
    full batches are fetched; returns early if it failed."""
    fetching: asyncio.Task[list[bytes]] | None = None
    fetching_ids: list[bytes] = []
    #: A fetched batch waiting for a check to start: (ids asked, raws).
    fetched: tuple[list[bytes], list[bytes]] | None = None
    #: Batches being checked: (ids asked, raws, the check).
    checking: list[tuple[list[bytes], list[bytes], asyncio.Task[Any]]] = []
    storing: asyncio.Task[list[IngestResult]] | None = None
    #: (ids asked, bytes received) of each batch the writer is storing.
    storing_batches: list[tuple[list[bytes], int]] = []
    #: Checked batches waiting for the writer: (ids asked, raws, checked, when checked).
    ready: list[tuple[list[bytes], list[bytes], list[store_fns.Checked], int]] = []
    new_ids: asyncio.Task[Any] | None = None

    def waiting() -> int:
        return sum(len(batch) for _, batch, _, _ in ready)

    def next_fetch() -> None:
        nonlocal fetching, fetching_ids
        queue = needs.ids
        if (
            fetching is None
            and fetched is None
            and (len(queue) >= FETCH_BATCH or (queue and needs.done))
        ):
            fetching_ids = queue[:FETCH_BATCH]
            del queue[:FETCH_BATCH]
            fetching = asyncio.create_task(client.fetch(fetching_ids))
            if progress.phase != "fetching":
                tick(phase="fetching")  # the later rounds go on meanwhile

    def next_check() -> None:
        nonlocal fetched
        if fetched is not None and len(checking) < CHECKS_AHEAD and waiting() < STORE_MERGE:
            asked, raws = fetched
            fetched = None
            checking.append((asked, raws, asyncio.create_task(ingestor.check(raws))))

    def store_ready() -> None:
        """Hand every checked batch waiting to the writer, as one transaction."""
        nonlocal storing, storing_batches
        storing_batches = [(asked, sum(len(r) for r in raws)) for asked, raws, _, _ in ready]
        raws = [raw for _, batch, _, _ in ready for raw in batch]
        checked = [item for _, _, batch, _ in ready for item in batch]
        now = max(when for _, _, _, when in ready)
        ready.clear()
        storing = asyncio.create_task(ingestor.store_checked(raws, checked, now, source=client.url))

    def settle(results: list[IngestResult]) -> None:
        """Account for the batches just stored."""
        got = {r.id for r in results if r.id is not None}
        size = sum(n for _, n in storing_batches)
        report.received += sum(1 for r in results if r.result is Result.OK)
        report.rejected += sum(1 for r in results if not r.result.accepted)
        report.message_bytes_received += size
        # A fetch answer may stop short (size cap): ask again for the rest.
        missing = []
        for asked, _ in storing_batches:
            left = [i for i in asked if i not in got]
            if len(left) == len(asked):
                raise SyncError("fetch: the peer answered with other messages than asked")
            missing.extend(left)
        needs.ids[:0] = missing
        tick(
            fetched=progress.fetched + len(results),
            bytes_received=progress.bytes_received + size,
        )

    try:
        while not needs.failed:
            needs.changed.clear()
            next_fetch()
            next_check()
            if storing is None and ready:
                store_ready()
            busy: list[asyncio.Future[Any]] = [t for _, _, t in checking]
            busy += [t for t in (fetching, storing) if t is not None]
            if not busy and fetched is None and needs.done and not needs.ids:
                return
            if fetching is None and fetched is None and not needs.done:
                # Wake up when the reconciliation names more ids (or ends).
                new_ids = asyncio.ensure_future(needs.changed.wait())
                busy.append(new_ids)
            await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
            if new_ids is not None:
                new_ids.cancel()
                new_ids = None
            if fetching is not None and fetching.done():
                raws = fetching.result()
                fetching = None
                if not raws:
                    raise SyncError("fetch: the peer sent none of the messages asked for")
                fetched = (fetching_ids, raws)
            for entry in [c for c in checking if c[2].done()]:
                checking.remove(entry)
                asked, raws, task = entry
                checked, now = task.result()
                ready.append((asked, raws, checked, now))
            if storing is not None and storing.done():
                results = storing.result()
                storing = None
                settle(results)
    finally:
        for task in (fetching, storing, new_ids, *(t for _, _, t in checking)):
            if task is not None:
                task.cancel()


async def _push(
    client: PeerClient,
    store: Store,
    have: list[bytes],
    report: SyncReport,
    progress: SyncProgress,
    tick: Callable[..., None],
) -> None:
    for start in range(0, len(have), PUSH_BATCH):
        batch = have[start : start + PUSH_BATCH]
        raws = [raw for raw in await store.read(store_fns.get_raw, batch) if raw is not None]
        if not raws:
            continue
        codes = await client.push(raws)
        report.sent += sum(1 for code in codes if code == "ok")
        report.message_bytes_sent += sum(len(r) for r in raws)
        tick(
            pushed=progress.pushed + len(raws),
            bytes_pushed=progress.bytes_pushed + sum(len(r) for r in raws),
        )
