"""Sync between real nodes on 127.0.0.1: in-process apps and separate processes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from node.app import create_app
from node.appkeys import COMMUNITY_ID, INGESTOR, PEERS, STORE
from node.folder import load_config
from node.publish import init_node
from node.server import start_site
from node.sync_client import PeerClient, SyncError
from node.syncer import ItemCache, sync_with_peer
from protocol import signing
from protocol.messages import create_message
from storage import messages as store_fns
from storage import peers as peer_fns
from storage.database import open_database

from .conftest import seeded_key

FORA = [sys.executable, "-m", "node"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    dir: Path
    app: web.Application
    runner: web.AppRunner
    url: str

    async def key(self) -> Any:
        data = await asyncio.to_thread((self.dir / "community.key").read_bytes)
        return signing.private_key_from_pem(data)

    @property
    def community(self) -> bytes:
        return self.app[COMMUNITY_ID]

    async def post_topic(self, title: str) -> bytes:
        key = await self.key()
        m = create_message(
            key,
            kind="topic",
            community=self.community,
            ts=int(time.time() * 1000),
            fields={"title": title, "text": "t", "lang": "en", "tags": [], "scope": "local"},
        )
        (result,) = await self.app[INGESTOR].ingest([m.raw])
        assert result.result.value == "ok"
        return m.id

    async def has(self, message_id: bytes) -> bool:
        (raw,) = await self.app[STORE].read(store_fns.get_raw, [message_id])
        return raw is not None

    async def set_hash(self) -> bytes:
        return await self.app[STORE].read(store_fns.set_hash)


@pytest.fixture
def no_blocking() -> Any:
    """Fail on any blocking call made on the event loop from Fora's own code."""
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["node", "storage", "protocol"]) as bb:
        yield bb


@pytest.fixture
async def make_node(tmp_path: Path, no_blocking: Any) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []

    async def make(name: str, interval: float = 3600.0, mdns: bool = False) -> Node:
        port = free_port()
        directory = tmp_path / name
        await asyncio.to_thread(init_node, directory, name=name, country="BE", port=port)
        config = await asyncio.to_thread(load_config, directory)
        app = create_app(
            config,
            sync_interval=interval,
            mdns=mdns,
            mdns_interfaces=["127.0.0.1"] if mdns else None,
        )
        runner = await start_site(app, "127.0.0.1", port)
        runners.append(runner)
        return Node(directory, app, runner, f"http://127.0.0.1:{port}")

    yield make
    for runner in reversed(runners):
        await runner.cleanup()


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> float:
    """Poll an async check until it is true; return how long it took."""
    start = time.monotonic()
    while True:
        if await check():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true after {timeout} s")
        await asyncio.sleep(0.05)


async def first_syncs_done(*nodes: Node) -> bool:
    """Every peer of ``nodes`` has had a sync go through (adding a peer starts one)."""
    for node in nodes:
        if not all(p.last_success for p in await node.app[STORE].read(peer_fns.list_peers)):
            return False
    return True


async def peer_through(a: Node, b: Node, proxy_url: str) -> None:
    """B follows A; A pushes to B through the proxy at ``proxy_url``; both first syncs
    are over (the next ones are an interval away)."""
    await b.app[PEERS].add(a.url)
    await a.app[PEERS].add(proxy_url)
    await eventually(lambda: first_syncs_done(a, b), timeout=30.0)


#: ``intercept(path)``: answer a proxied request itself, or None to let it through.
Intercept = Callable[[str], Awaitable[web.StreamResponse | None]]


@contextlib.asynccontextmanager
async def proxy_in_front(node: Node, intercept: Intercept) -> AsyncIterator[str]:
    """An HTTP proxy on 127.0.0.1 in front of ``node``'s sync API; yields its URL."""

    async def forward(request: web.Request) -> web.StreamResponse:
        path = request.match_info["tail"]
        answer = await intercept(path)
        if answer is not None:
            return answer
        async with session.request(
            request.method, f"{node.url}/sync/v1/{path}", data=await request.read()
        ) as resp:
            return web.Response(
                status=resp.status, body=await resp.read(), content_type=resp.content_type
            )

    proxy = web.Application()
    proxy.router.add_route("*", "/sync/v1/{tail:.*}", forward)
    port = free_port()
    async with aiohttp.ClientSession() as session:
        runner = await start_site(proxy, "127.0.0.1", port)
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            await runner.cleanup()


async def test_live_push_reaches_a_direct_peer(make_node: Any) -> None:
    """A message posted on A reaches B by A's push: both first syncs are over and the
    next is an hour away. How fast: ``scripts/bench_push`` (no timed assertion here)."""
    a, b = await make_node("A"), await make_node("B")
    await b.app[PEERS].add(a.url)  # B follows A
    await a.app[PEERS].add(b.url)  # A pushes to B

    async def attempts() -> list[int]:
        peers = [
            *await a.app[STORE].read(peer_fns.list_peers),
            *await b.app[STORE].read(peer_fns.list_peers),
        ]
        return [p.last_attempt for p in peers]

    await eventually(lambda: first_syncs_done(a, b), timeout=30.0)
    before = await attempts()
    message_id = await a.post_topic("Live")
    await eventually(lambda: b.has(message_id), timeout=30.0)
    assert await attempts() == before  # no sync ran: the push brought it


async def test_lan_discovery_makes_two_nodes_peers_and_they_sync(make_node: Any) -> None:
    """Real zeroconf on loopback: each node finds the other, adds it as a `lan` peer
    (pinning the id from /sync/v1/info), follows it and syncs. Both ways: the node
    started first hears the second as it starts, and must still reach it (a node
    announces itself only once it listens, and one not reachable yet is tried again)."""
    a = await make_node("A", interval=0.5, mdns=True)
    b = await make_node("B", interval=0.5, mdns=True)
    topic = await a.post_topic("Found on the LAN")
    reply = await b.post_topic("Heard back")

    def peered(x: Node, y: Node) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            peers = await x.app[STORE].read(peer_fns.list_peers)
            return any(
                p.url == y.url and p.kind == "lan" and p.community == y.community for p in peers
            )

        return check

    await eventually(peered(b, a), timeout=30.0)
    await eventually(peered(a, b), timeout=30.0)
    await eventually(lambda: b.has(topic), timeout=30.0)
    await eventually(lambda: a.has(reply), timeout=30.0)


async def test_full_sync_both_ways_and_steady_state(make_node: Any) -> None:
    a, b = await make_node("A"), await make_node("B")
    await a.app[PEERS].add(b.url)
    await b.app[PEERS].add(a.url)
    # Content written while the nodes were not talking (straight into the stores).
    for i in range(40):
        await a.post_topic(f"A{i}")
        await b.post_topic(f"B{i}")
    report = await a.app[PEERS].sync_now(b.url)
    assert await a.set_hash() == await b.set_hash()
    again = await a.app[PEERS].sync_now(b.url)
    # Steady state: per community one round trip of 21 bytes.
    assert again.received == again.sent == 0
    assert again.reconcile_bytes == 21 * len(again.communities)
    assert report.communities == again.communities
    peer = await a.app[STORE].read(peer_fns.get_peer, b.url)
    assert peer is not None and peer.state == "ok" and peer.last_success


async def test_pinned_community_refuses_an_impostor(make_node: Any, tmp_path: Path) -> None:
    a, b = await make_node("A"), await make_node("B")
    await a.app[PEERS].add(b.url)
    # B's address is taken over by another community.
    port = int(b.url.rsplit(":", 1)[1])
    await b.runner.cleanup()
    await asyncio.to_thread(
        init_node, tmp_path / "impostor", name="Impostor", country="XX", port=port
    )
    impostor = create_app(await asyncio.to_thread(load_config, tmp_path / "impostor"))
    runner = await start_site(impostor, "127.0.0.1", port)
    try:
        with pytest.raises(peer_fns.PeerRefused):
            await a.app[PEERS].sync_now(b.url)
        peer = await a.app[STORE].read(peer_fns.get_peer, b.url)
        assert peer is not None and peer.state == "refused"
        with pytest.raises(peer_fns.PeerRefused):
            await a.app[PEERS].add(b.url)
    finally:
        await runner.cleanup()


async def test_failing_peer_backs_off(make_node: Any) -> None:
    a = await make_node("A")
    b = await make_node("B")
    await a.app[PEERS].add(b.url)
    await b.runner.cleanup()
    for _ in range(2):
        with pytest.raises(Exception, match=r"info"):
            await a.app[PEERS].sync_now(b.url)
    peer = await a.app[STORE].read(peer_fns.get_peer, b.url)
    # (the scheduler may have tried once more on its own)
    assert peer is not None and peer.state == "failing" and peer.failures >= 2
    assert peer.next_attempt - peer.last_attempt == peer_fns.backoff_ms(peer.failures)
    assert peer_fns.backoff_ms(1) == 5_000 and peer_fns.backoff_ms(2) == 10_000
    assert peer_fns.backoff_ms(100) == peer_fns.BACKOFF_MAX_MS


async def test_erased_body_never_comes_back_from_a_stale_peer(make_node: Any) -> None:
    a, b = await make_node("A"), await make_node("B")
    await a.app[PEERS].add(b.url)
    await b.app[PEERS].add(a.url)
    topic = await a.post_topic("To be erased")
    await a.app[PEERS].sync_now(b.url)
    # A erases its topic; B is stale (still holds the body) when they next talk.
    key = await a.key()
    erase = create_message(
        key,
        kind="erase",
        community=a.community,
        ts=int(time.time() * 1000),
        fields={},
        refs=(topic,),
    )
    await a.app[STORE].write(store_fns.ingest, [erase.raw], now_ms=int(time.time() * 1000))
    stale_body = (await b.app[STORE].read(store_fns.get_raw, [topic]))[0]
    results = await a.app[INGESTOR].ingest([stale_body])
    assert results[0].result.value == "erased"
    await a.app[PEERS].sync_now(b.url)
    for node in (a, b):
        (raw,) = await node.app[STORE].read(store_fns.get_raw, [topic])
        assert raw is not None and raw.endswith(b"\xc0")  # skeleton: body nil
    assert await a.set_hash() == await b.set_hash()


async def test_skeleton_is_filled_in_from_a_peer(make_node: Any) -> None:
    a, b = await make_node("A"), await make_node("B")
    await a.app[PEERS].add(b.url)
    key = await b.key()
    m = create_message(
        key,
        kind="topic",
        community=b.community,
        ts=int(time.time() * 1000),
        fields={"title": "S", "text": "", "lang": "en", "tags": [], "scope": "local"},
    )
    await b.app[INGESTOR].ingest([m.raw])
    await a.app[INGESTOR].ingest([m.skeleton().raw])
    await a.app[PEERS].sync_now(b.url)
    assert (await a.app[STORE].read(store_fns.get_raw, [m.id]))[0] == m.raw


async def test_reconcile_endpoint_rejects_garbage(make_node: Any) -> None:
    a = await make_node("A")
    async with aiohttp.ClientSession() as session:
        url = f"{a.url}/sync/v1/reconcile/{a.community.hex()}"
        async with session.post(url, data=b"\x61\xff\xff") as resp:
            assert resp.status == 400
        async with session.post(f"{a.url}/sync/v1/reconcile/{'00' * 32}", data=b"\x61") as resp:
            assert resp.status == 404
        async with session.post(f"{a.url}/sync/v1/reconcile/zz", data=b"\x61") as resp:
            assert resp.status == 400
        async with session.get(f"{a.url}/sync/v1/info") as resp:
            assert resp.status == 200


async def _b_holds_comments_a_follows(a: Any, b: Any, n: int) -> None:
    """B holds ``n`` comments of its community, a few seconds apart in the past; A
    follows B's community without making B a peer (the peer manager would sync too)."""
    key = await b.key()
    now = int(time.time() * 1000)
    raws = [
        create_message(
            key,
            kind="comment",
            community=b.community,
            ts=now - 1_500 * n + i * 7,
            fields={"text": f"c{i}", "lang": "en"},
            refs=(bytes(32),),
        ).raw
        for i in range(n)
    ]
    await b.app[STORE].write(store_fns.ingest, raws, now_ms=now)
    await a.app[STORE].write(peer_fns.follow, b.community, via="test", now_ms=now)


async def test_frame_limited_first_sync_of_many_items(make_node: Any, tmp_path: Path) -> None:
    """A first sync bigger than one frame and one fetch batch converges."""
    a, b = await make_node("A"), await make_node("B")
    await _b_holds_comments_a_follows(a, b, 3_000)
    async with aiohttp.ClientSession() as session:
        client = PeerClient(session, b.url)
        report = await sync_with_peer(
            client, a.app[STORE], ItemCache(a.app[STORE]), a.app[INGESTOR], a.community
        )
    assert report.received == 3_001  # the comments and B's profile
    assert await a.app[STORE].read(store_fns.count_messages, b.community) == 3_001


# --------------------------------------------------------------------------- processes


class Proc:
    """A `fora serve` process."""

    def __init__(self, directory: Path, port: int) -> None:
        self.dir, self.port = directory, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                *FORA,
                "serve",
                str(self.dir),
                "--port",
                str(self.port),
                "--interval",
                "0.5",
                "--no-mdns",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"{self.dir.name} did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
            self.proc = None


def fora(*args: str) -> str:
    proc = subprocess.run([*FORA, *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def set_hash_of(directory: Path) -> str:
    return json.loads(fora("stats", str(directory), "--json"))["set_hash"]


def post(directory: Path, title: str) -> str:
    body = {"title": title, "text": "t", "lang": "en", "tags": [], "scope": "local"}
    return fora("post", str(directory), "topic", "--body", json.dumps(body)).strip()


def wait_converged(dirs: list[Path], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        hashes = {set_hash_of(d) for d in dirs}
        if len(hashes) == 1:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"no convergence: {hashes}")
        time.sleep(0.3)


def test_three_processes_in_a_line_survive_a_partition(tmp_path: Path) -> None:
    """A–B–C: a message on A reaches C; stop B, write everywhere, restart: converge."""
    names = ["a", "b", "c"]
    procs = {}
    for name in names:
        port = free_port()
        fora(
            "init",
            str(tmp_path / name),
            "--name",
            name.upper(),
            "--country",
            "LV",
            "--port",
            str(port),
        )
        procs[name] = Proc(tmp_path / name, port)
    ids = {name: fora("id", str(tmp_path / name)).strip() for name in names}
    for p in procs.values():
        p.start()
    try:
        a, b, c = procs["a"], procs["b"], procs["c"]
        fora("peer", "add", str(a.dir), b.url)
        fora("peer", "add", str(b.dir), a.url)
        fora("peer", "add", str(b.dir), c.url)
        fora("peer", "add", str(c.dir), b.url)
        # Everyone holds every community (A and C are not peers: they follow).
        fora("follow", str(a.dir), ids["c"])
        fora("follow", str(c.dir), ids["a"])
        post(a.dir, "from A")
        wait_converged([a.dir, b.dir, c.dir])
        exported = subprocess.run(
            [*FORA, "export", str(c.dir), "--community", ids["a"]], capture_output=True, check=True
        ).stdout
        assert len(exported) > 0
        assert (
            json.loads(fora("stats", str(c.dir), "--json"))["communities"][ids["a"]]["kinds"][
                "topic"
            ]
            == 1
        )
        # Partition: B goes down; A and C keep writing.
        b.stop()
        written = [post(a.dir, f"A{i}") for i in range(3)] + [
            post(c.dir, f"C{i}") for i in range(3)
        ]
        time.sleep(1.0)
        b.start()
        post(b.dir, "B is back")
        wait_converged([a.dir, b.dir, c.dir])
        for d in (a.dir, b.dir, c.dir):
            stats = json.loads(fora("stats", str(d), "--json"))
            # 3 profiles, the first topic, 6 written during the partition, B's topic
            assert stats["messages"] == 3 + 1 + 6 + 1
            assert fora("verify", str(d)).count("0 problems") == 1
        assert len(set(written)) == 6
    finally:
        for p in procs.values():
            if p.proc is not None:
                p.stop()


def _messages_held(node: Path) -> int:
    """How many messages the node's file holds, read as another process would."""
    conn = sqlite3.connect(f"file:{node / 'fora.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def test_kill_during_a_large_sync_then_resume(tmp_path: Path) -> None:
    """kill -9 `fora sync` mid-transfer; the next sync resumes and converges."""
    source, target = tmp_path / "source", tmp_path / "target"
    port = free_port()
    fora("init", str(source), "--name", "Source", "--country", "IT", "--port", str(port))
    fora("init", str(target), "--name", "Target", "--country", "FR")
    key = signing.private_key_from_pem((source / "community.key").read_bytes())
    community = signing.public_key_bytes(key)
    now = int(time.time() * 1000)
    raws = [
        create_message(
            seeded_key(9),
            kind="comment",
            community=community,
            ts=now - 10_000_000 + i * 100,
            fields={"text": f"c{i}" * 20, "lang": "en"},
            refs=(bytes(32),),
        ).raw
        for i in range(15_000)
    ]
    db = open_database(source / "fora.db")
    store_fns.ingest(db, raws, now_ms=now)
    db.close()
    server = Proc(source, port)
    server.start()
    try:
        fora("follow", str(target), community.hex())
        proc = subprocess.Popen(
            [*FORA, "sync", str(target), server.url, "--progress"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Polled straight from the file (a `fora stats` process takes up to a second or
        # two on a busy machine, and the whole sync about three).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and _messages_held(target) <= 2_000:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = json.loads(fora("stats", str(target), "--json"))["messages"]
        assert 2_000 < partial < 15_002, "the sync was not cut in the middle"
        out = fora("sync", str(target), server.url)
        assert "received" in out
        src = json.loads(fora("stats", str(source), "--json"))["communities"][community.hex()]
        dst = json.loads(fora("stats", str(target), "--json"))["communities"][community.hex()]
        assert src == dst
        assert "0 problems" in fora("verify", str(target))
    finally:
        server.stop()


async def test_live_push_does_not_relay_unauthorized_messages(make_node: Any) -> None:
    a, b = await make_node("A"), await make_node("B")
    await b.app[PEERS].add(a.url)
    await a.app[PEERS].add(b.url)

    # Adding a peer starts a sync at once; the next one is an hour away (interval).
    await eventually(lambda: first_syncs_done(a, b), timeout=30.0)
    stranger = seeded_key(77)  # holds no role in A's community
    now = int(time.time() * 1000)
    spam = create_message(
        stranger,
        kind="topic",
        community=a.community,
        ts=now,
        fields={"title": "Buy now", "text": "", "lang": "en", "tags": [], "scope": "local"},
    )
    (result,) = await a.app[INGESTOR].ingest([spam.raw])
    assert result.result.value == "ok"
    good = await a.post_topic("Real topic")  # by the community key: authorized
    await eventually(lambda: b.has(good), timeout=30.0)
    assert not await b.has(spam.id)
    # Reconciliation still carries it, so both nodes hold the same set.
    await b.app[PEERS].sync_now(a.url)
    assert await b.has(spam.id)
    assert await a.set_hash() == await b.set_hash()


async def test_a_failed_live_push_is_repaired_by_a_sync_at_once(make_node: Any) -> None:
    """A live push that fails (here a proxy in front of B answers 500 to one push)
    makes that peer due for a sync now: the message reaches B through that sync, not an
    interval (an hour here) later."""
    a, b = await make_node("A"), await make_node("B")
    paths: list[str] = []
    fail_push = asyncio.Event()

    async def intercept(path: str) -> web.StreamResponse | None:
        paths.append(path.split("/", maxsplit=1)[0])
        if path == "push" and fail_push.is_set():
            fail_push.clear()
            return web.Response(status=500, text="Error: proxy failure\n")
        return None

    async with proxy_in_front(b, intercept) as proxy_url:
        await peer_through(a, b, proxy_url)
        reconciles = paths.count("reconcile")
        fail_push.set()
        message_id = await a.post_topic("Pushed, failed, synced")
        await eventually(lambda: b.has(message_id), timeout=30.0)
        assert not fail_push.is_set()  # the push came, and failed
        assert paths.count("reconcile") > reconciles  # it came by a sync


async def test_a_push_failing_during_a_sync_with_that_peer_brings_another_sync(
    make_node: Any,
) -> None:
    """A's scheduled sync with B has begun reconciling when a post on A fails to push
    to B: that sync may not carry the message, and its success sets the next sync an
    interval away. A syncs with B again right after it."""
    a, b = await make_node("A"), await make_node("B")
    hold, held, push_failed = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def intercept(path: str) -> web.StreamResponse | None:
        if path.startswith("reconcile") and hold.is_set():
            hold.clear()
            held.set()
            await asyncio.wait_for(push_failed.wait(), timeout=30)
        if path == "push" and held.is_set() and not push_failed.is_set():
            push_failed.set()
            return web.Response(status=500, text="Error: proxy failure\n")
        return None

    async with proxy_in_front(b, intercept) as proxy_url:
        await peer_through(a, b, proxy_url)
        hold.set()
        await a.app[STORE].write(peer_fns.due_now, proxy_url, now_ms=int(time.time() * 1000))
        a.app[PEERS].wake()
        await asyncio.wait_for(held.wait(), timeout=30)
        message_id = await a.post_topic("Pushed while syncing")
        await eventually(lambda: b.has(message_id), timeout=30.0)
        assert push_failed.is_set()


async def test_fetching_starts_while_reconciling_and_a_failed_round_ends_the_sync(
    make_node: Any,
) -> None:
    """A first sync of 6,000 ids takes four reconcile rounds (frames of 1,869 ids); the
    fetch of the first batch starts before the last round. That round fails: the sync
    ends with SyncError, and the next sync converges."""
    a, b = await make_node("A"), await make_node("B")
    await _b_holds_comments_a_follows(a, b, 6_000)

    # A proxy in front of B that holds the fourth reconcile round until a fetch has
    # come, then fails it.
    seen: list[str] = []
    fetched = asyncio.Event()

    async def intercept(path: str) -> web.StreamResponse | None:
        seen.append(path.split("/", maxsplit=1)[0])
        if path.startswith("fetch"):
            fetched.set()
        if path.startswith("reconcile") and seen.count("reconcile") == 4:
            # Without fetching during the reconciliation no fetch comes: after
            # 20 s (the client waits 30) the round goes through and the sync succeeds.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(fetched.wait(), timeout=20)
            if fetched.is_set():
                return web.Response(status=500, text="Error: proxy failure\n")
        return None

    async with aiohttp.ClientSession() as session, proxy_in_front(b, intercept) as proxy_url:
        with pytest.raises(SyncError, match="HTTP 500"):
            await sync_with_peer(
                PeerClient(session, proxy_url),
                a.app[STORE],
                ItemCache(a.app[STORE]),
                a.app[INGESTOR],
                a.community,
            )
    assert seen.count("reconcile") == 4
    async with aiohttp.ClientSession() as session:
        report = await sync_with_peer(
            PeerClient(session, b.url),
            a.app[STORE],
            ItemCache(a.app[STORE]),
            a.app[INGESTOR],
            a.community,
        )
    assert report.rejected == 0
    assert await a.app[STORE].read(store_fns.count_messages, b.community) == 6_001
