"""LAN discovery: real python-zeroconf on loopback (mDNS multicast works on lo here).

Every instance binds to ``127.0.0.1`` only, so no packet leaves this host. Other test runs
may browse the same loopback at the same time: each test uses fresh random community ids
and looks only at those. blockbuster watches every test for calls that would block the
event loop (from this module, node/discovery.py and zeroconf).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from blockbuster import BlockBuster, blockbuster_ctx
from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from node import discovery
from node.discovery import (
    SERVICE_TYPE,
    Discovery,
    StaticDiscovery,
    TryLater,
    ZeroconfDiscovery,
    default_instance_name,
    parse_txt,
    txt_records,
)

LOOPBACK = ["127.0.0.1"]
DEADLINE = 30.0  # generous: mDNS timing, and a loaded machine

Found = tuple[str, bytes, str]


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    with blockbuster_ctx([__name__, "node.discovery", "zeroconf"]) as bb:
        yield bb


@pytest.fixture(autouse=True)
def no_asyncio_complaints(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """No "Task was destroyed but it is pending", "Task exception was never retrieved"..."""
    yield
    gc.collect()
    complaints = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not complaints


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll until ``predicate()`` holds; fail after a generous deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.05)


def community() -> bytes:
    return secrets.token_bytes(32)


def free_port() -> int:
    # Only announced, never bound: any number will do, unique enough per test.
    return 20000 + secrets.randbelow(40000)


class Recorder:
    def __init__(self) -> None:
        self.found: list[Found] = []

    async def __call__(self, url: str, community: bytes, name: str) -> None:
        self.found.append((url, community, name))

    def of(self, community: bytes) -> list[Found]:
        return [f for f in self.found if f[1] == community]


class Unreachable(Recorder):
    """Records what is found, and raises TryLater for the first ``failures`` reports of
    ``community`` (all of them if None): a node found that does not answer yet."""

    def __init__(self, community: bytes, failures: int | None = None) -> None:
        super().__init__()
        self.community, self.failures = community, failures

    async def __call__(self, url: str, community: bytes, name: str) -> None:
        await super().__call__(url, community, name)
        failed = len(self.of(self.community))
        if community == self.community and (self.failures is None or failed <= self.failures):
            raise TryLater("connection refused")

    def urls(self) -> list[str]:
        return [url for url, _, _ in self.of(self.community)]


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., ZeroconfDiscovery]]:
    """Make started-later ZeroconfDiscovery instances on loopback; stop them all at the end."""
    made: list[ZeroconfDiscovery] = []

    def make(**kwargs: Any) -> ZeroconfDiscovery:
        kwargs.setdefault("community", community())
        kwargs.setdefault("name", "Testville")
        kwargs.setdefault("port", free_port())
        kwargs.setdefault("on_found", Recorder())
        kwargs.setdefault("interfaces", LOOPBACK)
        node = ZeroconfDiscovery(**kwargs)
        made.append(node)
        return node

    yield make
    for node in made:
        await node.stop()


@pytest.fixture
async def raw_zc() -> AsyncIterator[AsyncZeroconf]:
    """A bare zeroconf on loopback, for hand-made (and hostile) announcements."""
    aiozc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    yield aiozc
    await aiozc.async_close()


def raw_info(instance: str, properties: dict[str, str] | bytes, port: int) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        SERVICE_TYPE,
        f"{instance}.{SERVICE_TYPE}",
        port=port,
        properties=properties,
        server=f"raw-{secrets.token_hex(4)}.local.",
        parsed_addresses=["127.0.0.1"],
    )


async def register(aiozc: AsyncZeroconf, *infos: AsyncServiceInfo) -> None:
    """Register hand-made services without probing (their names are unique already)."""

    async def one(info: AsyncServiceInfo) -> None:
        await (await aiozc.async_register_service(info, cooperating_responders=True))

    await asyncio.gather(*(one(info) for info in infos))


# -- on the wire ---------------------------------------------------------------------------


async def test_two_nodes_find_each_other_and_not_themselves(
    nodes: Callable[..., ZeroconfDiscovery],
) -> None:
    a = nodes(name="Bomarzo", port=18471)
    b = nodes(name="Viterbo — città dei papi", port=18472)
    await asyncio.gather(a.start(), b.start())
    got_a: Recorder = a._on_found  # type: ignore[assignment]
    got_b: Recorder = b._on_found  # type: ignore[assignment]

    await eventually(lambda: bool(got_a.of(b.community) and got_b.of(a.community)), "both found")

    assert got_a.of(b.community) == [("http://127.0.0.1:18472", b.community, b.name)]
    assert got_b.of(a.community) == [("http://127.0.0.1:18471", a.community, a.name)]
    assert not got_a.of(a.community)
    assert not got_b.of(b.community)
    assert a.service_name == f"{default_instance_name('Bomarzo', a.community)}.{SERVICE_TYPE}"


async def test_announced_txt_records_are_exactly_the_three(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    a = nodes(name="Ñuñoa")
    await a.start()
    assert a.service_name is not None
    info = AsyncServiceInfo(SERVICE_TYPE, a.service_name)
    assert await info.async_request(raw_zc.zeroconf, 5000)
    assert info.properties == {
        b"v": b"1",
        b"community": a.community.hex().encode(),
        b"name": "Ñuñoa".encode(),
    }
    assert info.port == a.port
    assert info.parsed_addresses() == ["127.0.0.1"]


async def test_bad_txt_records_are_ignored(
    nodes: Callable[..., ZeroconfDiscovery],
    raw_zc: AsyncZeroconf,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=discovery.__name__)
    good, other = community(), community()
    tag = secrets.token_hex(4)
    bad: dict[str, dict[str, str] | bytes] = {
        f"v2-{tag}": {"v": "2", "community": other.hex(), "name": "Future"},
        f"no-v-{tag}": {"community": other.hex(), "name": "Nov"},
        f"short-{tag}": {"v": "1", "community": other.hex()[:62], "name": "Short"},
        f"upper-{tag}": {"v": "1", "community": other.hex().upper(), "name": "Upper"},
        f"nothex-{tag}": {"v": "1", "community": "zz" * 32, "name": "Zed"},
        f"noname-{tag}": {"v": "1", "community": other.hex()},
        f"long-{tag}": {"v": "1", "community": other.hex(), "name": "x" * 201},
        f"ctrl-{tag}": {"v": "1", "community": other.hex(), "name": "bad\x1b[2Jname"},
        f"dup-{tag}": b"\x03v=1\x45community=" + other.hex().encode() + b"\x03v=2\x06name=D",
        f"utf8-{tag}": b"\x03v=1\x45community=" + other.hex().encode() + b"\x07name=\xff\xfe",
    }
    a = nodes()
    await asyncio.gather(
        a.start(),
        register(
            raw_zc,
            raw_info(f"good-{tag}", txt_records(good, "Good"), 9999),
            *(raw_info(instance, props, 9) for instance, props in bad.items()),
        ),
    )
    got: Recorder = a._on_found  # type: ignore[assignment]

    def ignored(instance: str) -> bool:
        return any(
            r.levelno == logging.DEBUG and "ignoring" in r.getMessage() and instance in r.message
            for r in caplog.records
        )

    await eventually(lambda: bool(got.of(good)), "the good service found")
    await eventually(lambda: all(ignored(i) for i in bad), "every bad service looked at")
    assert got.of(good) == [("http://127.0.0.1:9999", good, "Good")]
    assert not got.of(other)
    await raw_zc.async_unregister_all_services()


async def test_a_failing_callback_does_not_stop_the_browser(
    nodes: Callable[..., ZeroconfDiscovery],
    raw_zc: AsyncZeroconf,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = community(), community()
    calls: list[bytes] = []

    async def on_found(url: str, found: bytes, name: str) -> None:
        calls.append(found)
        if found == first:
            raise RuntimeError("peer table on fire")

    a = nodes(on_found=on_found)
    first_info = raw_info(f"first-{secrets.token_hex(4)}", txt_records(first, "F"), 1)
    await asyncio.gather(a.start(), register(raw_zc, first_info))
    await eventually(lambda: first in calls, "the failing service reported")
    await register(raw_zc, raw_info(f"second-{secrets.token_hex(4)}", txt_records(second, "S"), 2))
    await eventually(lambda: second in calls, "a later service still reported")
    assert any("on_found failed" in r.message for r in caplog.records if r.levelno >= logging.ERROR)
    await raw_zc.async_unregister_all_services()


async def test_a_node_not_reachable_yet_is_reported_again_later(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    """``on_found`` raising TryLater (the node found did not answer yet) makes the
    discovery report that node again after a delay, until it goes through; then no
    more. Without a retry, a node heard while it starts is never added."""
    other = community()
    got = Unreachable(other, failures=2)
    a = nodes(on_found=got, retry_delays=(0.2, 0.2, 0.2, 0.2))
    info = raw_info(f"late-{secrets.token_hex(4)}", txt_records(other, "Late"), 3)
    await asyncio.gather(a.start(), register(raw_zc, info))
    await eventually(lambda: len(got.urls()) >= 3, "reported three times")
    await asyncio.sleep(1.0)  # the third report went through: no fourth
    assert len(got.urls()) == 3
    await raw_zc.async_unregister_all_services()


async def test_retries_end_after_the_last_delay(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    other = community()
    got = Unreachable(other)
    a = nodes(on_found=got, retry_delays=(0.1, 0.1))
    info = raw_info(f"gone-{secrets.token_hex(4)}", txt_records(other, "Gone"), 4)
    await asyncio.gather(a.start(), register(raw_zc, info))
    await eventually(lambda: len(got.urls()) >= 3, "reported three times")
    await asyncio.sleep(1.0)
    assert len(got.urls()) == 3  # the first report and one a delay
    assert not a._resolving
    await raw_zc.async_unregister_all_services()


async def test_an_announcement_during_a_retry_wait_is_looked_at_at_once(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    """A node not reachable is retried after a delay; if it announces itself again
    meanwhile (restarted, on another port), it is looked at then, not after the delay."""
    other = community()
    got = Unreachable(other, failures=1)
    a = nodes(on_found=got, retry_delays=(600.0,))
    instance = f"restarted-{secrets.token_hex(4)}"
    info = raw_info(instance, txt_records(other, "R"), 5)
    await asyncio.gather(a.start(), register(raw_zc, info))
    await eventually(lambda: len(got.urls()) == 1, "reported once")
    moved = raw_info(instance, txt_records(other, "R"), 6)
    moved.server = info.server
    moved.server_key = info.server_key
    await (await raw_zc.async_update_service(moved))
    await eventually(lambda: len(got.urls()) == 2, "reported again on its new port")
    assert got.urls() == ["http://127.0.0.1:5", "http://127.0.0.1:6"]
    await raw_zc.async_unregister_all_services()


async def test_moved_service_is_reported_again(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    peer = community()
    info = raw_info(f"mover-{secrets.token_hex(4)}", txt_records(peer, "Mover"), 8001)
    a = nodes()
    await asyncio.gather(a.start(), register(raw_zc, info))
    got: Recorder = a._on_found  # type: ignore[assignment]
    await eventually(lambda: len(got.of(peer)) == 1, "first report")

    moved = raw_info(info.name.removesuffix(f".{SERVICE_TYPE}"), txt_records(peer, "Mover"), 8002)
    moved.server = info.server
    moved.server_key = info.server_key
    await (await raw_zc.async_update_service(moved))
    await eventually(lambda: len(got.of(peer)) == 2, "report after the port changed")
    assert [url for url, _, _ in got.of(peer)] == ["http://127.0.0.1:8001", "http://127.0.0.1:8002"]

    renamed = raw_info(info.name.removesuffix(f".{SERVICE_TYPE}"), txt_records(peer, "New"), 8002)
    renamed.server = info.server
    renamed.server_key = info.server_key
    await (await raw_zc.async_update_service(renamed))
    await asyncio.sleep(0.5)  # a new name at the same url: not a new peer
    assert len(got.of(peer)) == 2
    await raw_zc.async_unregister_all_services()


async def test_stop_says_goodbye_and_leaves_nothing_running(
    nodes: Callable[..., ZeroconfDiscovery], raw_zc: AsyncZeroconf
) -> None:
    a = nodes()
    before = asyncio.all_tasks()
    await a.start()
    name = a.service_name
    assert name is not None

    seen: dict[ServiceStateChange, set[str]] = {s: set() for s in ServiceStateChange}

    def on_change(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        seen[state_change].add(name)

    browser = AsyncServiceBrowser(raw_zc.zeroconf, SERVICE_TYPE, handlers=[on_change])
    try:
        await eventually(lambda: name in seen[ServiceStateChange.Added], "service seen")
        await a.stop()
        await eventually(lambda: name in seen[ServiceStateChange.Removed], "goodbye seen")
    finally:
        await browser.async_cancel()
    await a.stop()  # twice is fine
    await asyncio.sleep(0)
    assert asyncio.all_tasks() <= before | {asyncio.current_task()}


async def test_restart_after_stop(nodes: Callable[..., ZeroconfDiscovery]) -> None:
    a, b = nodes(), nodes()
    got_a: Recorder = a._on_found  # type: ignore[assignment]
    await a.start()
    with pytest.raises(RuntimeError):
        await a.start()
    await a.stop()
    await asyncio.gather(a.start(), b.start())
    await eventually(lambda: bool(got_a.of(b.community)), "found after a restart")


async def test_blockbuster_is_armed() -> None:
    from blockbuster import BlockingError

    with pytest.raises(BlockingError):
        time.sleep(0.001)


async def test_default_announce_addresses_are_the_hosts_ipv4() -> None:
    node = ZeroconfDiscovery(community=community(), name="X", port=1, on_found=Recorder())
    addresses = await node._announce_addresses()  # reads the adapters only: nothing is sent
    assert addresses
    assert all(ipaddress.IPv4Address(a) for a in addresses)
    assert addresses == ["127.0.0.1"] or not any(a.startswith("127.") for a in addresses)
    pinned = ZeroconfDiscovery(
        community=community(), name="X", port=1, on_found=Recorder(), host_address="192.0.2.9"
    )
    assert await pinned._announce_addresses() == ["192.0.2.9"]
    with pytest.raises(ValueError):
        ZeroconfDiscovery(
            community=community(), name="X", port=1, on_found=Recorder(), host_address="nope"
        )


# -- static list and the interface ------------------------------------------------------------


async def test_static_discovery_calls_back_once_per_peer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c1, c2 = community(), community()
    got = Recorder()

    async def on_found(url: str, found: bytes, name: str) -> None:
        if name == "Broken":
            raise ValueError("nope")
        await got(url, found, name)

    static: Discovery = StaticDiscovery(
        [
            ("http://10.0.0.1:8471", c1, "One"),
            ("http://10.0.0.9:8471", c2, "Broken"),
            ("http://10.0.0.1:8471", c1, "One again"),
            ("http://10.0.0.2:8471", c2, "Two"),
        ],
        on_found=on_found,
    )
    await static.start()
    await static.stop()
    assert got.found == [("http://10.0.0.1:8471", c1, "One"), ("http://10.0.0.2:8471", c2, "Two")]
    assert any("on_found failed" in r.message for r in caplog.records)


def test_zeroconf_discovery_is_a_discovery() -> None:
    node: Discovery = ZeroconfDiscovery(
        community=community(), name="X", port=1, on_found=Recorder()
    )
    assert node.instance_name.startswith("X-")


# -- pure helpers ---------------------------------------------------------------------------


def txt(*entries: bytes) -> bytes:
    return b"".join(bytes([len(e)]) + e for e in entries)


def test_parse_txt_accepts_what_we_announce() -> None:
    c = community()
    raw = txt(b"v=1", b"community=" + c.hex().encode(), "name=Čakovec".encode())
    assert parse_txt(raw) == (c, "Čakovec")
    # unknown keys and flags are allowed; keys are case-insensitive
    raw = txt(b"V=1", b"flag", b"x=y", b"Community=" + c.hex().encode(), b"name=" + b"n" * 200)
    assert parse_txt(raw) == (c, "n" * 200)


@pytest.mark.parametrize(
    "entries",
    [
        [],
        [b"v=2", b"community=" + b"ab" * 32, b"name=N"],
        [b"v=", b"community=" + b"ab" * 32, b"name=N"],
        [b"v=1", b"community=" + b"ab" * 31, b"name=N"],
        [b"v=1", b"community=" + b"AB" * 32, b"name=N"],
        [b"v=1", b"community= " + b"ab" * 32, b"name=N"],
        [b"v=1", b"community=" + b"ab" * 32],
        [b"v=1", b"community=" + b"ab" * 32, b"name="],
        [b"v=1", b"community=" + b"ab" * 32, b"name=" + b"n" * 201],
        [b"v=1", b"community=" + b"ab" * 32, b"name=\xc3"],
        [b"v=1", b"community=" + b"ab" * 32, b"name=a\nb"],
        [b"v=1", b"v=1", b"community=" + b"ab" * 32, b"name=N"],
        [b"v=1", b"community=" + b"ab" * 32, b"name=N", b"NAME=M"],
        [b"v=1", b"community=\xff" + b"ab" * 32, b"name=N"],
    ],
)
def test_parse_txt_rejects(entries: list[bytes]) -> None:
    with pytest.raises(ValueError):
        parse_txt(txt(*entries))


def test_parse_txt_rejects_truncated_and_random_bytes() -> None:
    with pytest.raises(ValueError):
        parse_txt(b"\x10v=1")
    for _ in range(200):
        with contextlib.suppress(ValueError):
            parse_txt(os.urandom(secrets.randbelow(80)))


def test_instance_names_fit_one_dns_label() -> None:
    c = bytes(range(32))
    assert default_instance_name("Bomarzo", c) == "Bomarzo-000102030405"
    assert default_instance_name("a.b\tc", c) == "a-b-c-000102030405"
    long = default_instance_name("Ω" * 100, c)
    assert len(long.encode()) <= 63
    assert long.endswith("-000102030405")
    assert default_instance_name("", c) == "fora-000102030405"
    with pytest.raises(ValueError):
        ZeroconfDiscovery(community=c, name="x", port=1, on_found=Recorder(), instance_name="a.b")
    with pytest.raises(ValueError):
        ZeroconfDiscovery(community=c, name="x", port=0, on_found=Recorder())
    with pytest.raises(ValueError):
        ZeroconfDiscovery(community=c[:31], name="x", port=1, on_found=Recorder())
