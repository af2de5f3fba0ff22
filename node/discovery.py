"""LAN discovery over mDNS / DNS-SD (docs/protocol.md §7), behind a small interface.

A node announces ``_fora._tcp.local.`` with the TXT records ``v=1``,
``community=<64 lowercase hex>`` and ``name=<community name>`` on its HTTP port, and
browses for the same type. Every service found is resolved, its TXT records are checked
as untrusted input, and ``on_found(url, community_id, name)`` is awaited once per
distinct ``(url, community_id)`` in a run, or again later if it raised
:class:`TryLater` (see :data:`RETRY_DELAYS`).

Two implementations of :class:`Discovery`:

- :class:`ZeroconfDiscovery` uses python-zeroconf's asyncio API on the running loop
  (no threads, nothing blocking the loop);
- :class:`StaticDiscovery` reports a fixed list at start (tests, ``--no-mdns``).

What a TXT record says is a hint, not a fact: the caller should still ask the peer's
``/sync/v1/info`` and pin the community id it gets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

import ifaddr
from zeroconf import Error as ZeroconfError
from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = [
    "MAX_NAME_CHARS",
    "RETRY_DELAYS",
    "SERVICE_TYPE",
    "Discovery",
    "FoundCallback",
    "StaticDiscovery",
    "TryLater",
    "ZeroconfDiscovery",
    "default_instance_name",
    "parse_txt",
    "txt_records",
]

log = logging.getLogger(__name__)

SERVICE_TYPE = "_fora._tcp.local."
TXT_VERSION = "1"
#: The longest community name accepted from the network, in characters.
MAX_NAME_CHARS = 200
#: How long to wait for a found service's SRV, TXT and A records.
RESOLVE_TIMEOUT_MS = 3000
#: A DNS label (the service instance name) is at most 63 bytes.
_MAX_LABEL_BYTES = 63
_COMMUNITY_HEX = re.compile(r"[0-9a-f]{64}")

#: After a service could not be resolved, or ``on_found`` raised :class:`TryLater`, it
#: is resolved (and reported) again after each of these delays in turn (seconds), while
#: it fails so; then not until the service announces itself anew.
RETRY_DELAYS = (2.0, 5.0, 15.0, 60.0, 300.0)

#: ``await on_found(url, community_id, name)``; url like ``"http://192.0.2.7:8471"``.
FoundCallback = Callable[[str, bytes, str], Awaitable[None]]


class TryLater(Exception):
    """Raised by ``on_found`` when the node found could not be reached (it may be
    starting, or the network between may be down): report it again later."""


class Discovery(Protocol):
    """Finds peers and reports them to an ``on_found`` callback given at construction."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


# -- TXT records ---------------------------------------------------------------------------


def txt_records(community: bytes, name: str) -> dict[str, str]:
    """The TXT records a node announces (values are encoded as UTF-8 on the wire)."""
    if len(community) != 32:
        raise ValueError("community id must be 32 bytes")
    return {"v": TXT_VERSION, "community": community.hex(), "name": name}


def _split_txt(text: bytes) -> dict[str, bytes]:
    """Split raw TXT rdata (length-prefixed strings) into key -> value.

    Keys are case-insensitive (RFC 6763 §6.4); a key given twice is rejected rather than
    letting one copy silently win; strings without ``=`` are boolean flags and ignored.
    """
    out: dict[str, bytes] = {}
    i = 0
    while i < len(text):
        length = text[i]
        entry = text[i + 1 : i + 1 + length]
        if len(entry) != length:
            raise ValueError("truncated TXT record")
        i += 1 + length
        key, sep, value = entry.partition(b"=")
        if not sep or not key:
            continue
        try:
            k = key.decode("ascii").lower()
        except UnicodeDecodeError as exc:
            raise ValueError("non-ASCII TXT key") from exc
        if k in out:
            raise ValueError(f"duplicate TXT key {k!r}")
        out[k] = value
    return out


def parse_txt(text: bytes) -> tuple[bytes, str]:
    """Check a found service's raw TXT rdata; return ``(community_id, name)``.

    Raises ``ValueError`` saying what is wrong: the records come from anyone on the LAN.
    Unknown keys are allowed (a later ``v=1`` may add some).
    """
    records = _split_txt(text)
    version = records.get("v")
    if version != TXT_VERSION.encode():
        raise ValueError(f"unsupported version v={version!r}")
    raw_community = records.get("community", b"")
    try:
        community_hex = raw_community.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("community is not hex") from exc
    if not _COMMUNITY_HEX.fullmatch(community_hex):
        raise ValueError(f"community is not 64 lowercase hex characters: {raw_community!r:.80}")
    raw_name = records.get("name")
    if raw_name is None:
        raise ValueError("no name")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("name is not UTF-8") from exc
    if not name or len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name must be 1..{MAX_NAME_CHARS} characters")
    if not name.isprintable():
        raise ValueError("name contains control characters")
    return bytes.fromhex(community_hex), name


def _usable_ipv4(addresses: Iterable[str]) -> str | None:
    """The first announced IPv4 address one could connect to."""
    for text in addresses:
        try:
            addr = ipaddress.IPv4Address(text)
        except ValueError:
            continue
        if addr.is_unspecified or addr.is_multicast or addr.is_reserved:
            continue
        return str(addr)
    return None


# -- names -----------------------------------------------------------------------------------


def _label_safe(text: str) -> str:
    """Replace what would confuse a DNS label or a log line (dots, control characters)."""
    return "".join("-" if ch == "." or not ch.isprintable() else ch for ch in text).strip()


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def default_instance_name(name: str, community: bytes) -> str:
    """``<name, at most 40 chars>-<first 12 hex of the community>``, within one DNS label."""
    suffix = f"-{community.hex()[:12]}"
    prefix = _truncate_utf8(_label_safe(name[:40]), _MAX_LABEL_BYTES - len(suffix))
    return f"{prefix or 'fora'}{suffix}"


# -- zeroconf --------------------------------------------------------------------------------


class ZeroconfDiscovery:
    """Announce this node and browse for others with python-zeroconf on the running loop.

    ``interfaces``: addresses to bind mDNS to (``["127.0.0.1"]`` in tests); None = all.
    ``host_address``: the IPv4 address to announce; by default the IPv4 addresses among
    ``interfaces``, else the host's non-loopback IPv4 addresses (loopback if none).
    """

    def __init__(
        self,
        *,
        community: bytes,
        name: str,
        port: int,
        on_found: FoundCallback,
        interfaces: list[str] | None = None,
        host_address: str | None = None,
        instance_name: str | None = None,
        resolve_timeout_ms: int = RESOLVE_TIMEOUT_MS,
        retry_delays: Iterable[float] = RETRY_DELAYS,
    ) -> None:
        self._txt = txt_records(community, name)
        if not 0 < port < 65536:
            raise ValueError(f"bad port {port}")
        if host_address is not None:
            ipaddress.IPv4Address(host_address)  # raises ValueError
        instance = (
            default_instance_name(name, community) if instance_name is None else instance_name
        )
        if not instance or "." in instance or len(instance.encode()) > _MAX_LABEL_BYTES:
            raise ValueError(f"instance name must be one DNS label of 1..63 bytes: {instance!r}")
        self.community = community
        self.name = name
        self.port = port
        self.instance_name = instance
        self._on_found = on_found
        self._interfaces = list(interfaces) if interfaces is not None else None
        self._host_address = host_address
        self._resolve_timeout_ms = resolve_timeout_ms
        self._retry_delays = tuple(retry_delays)
        self._aiozc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._announcing: Awaitable[None] | None = None
        self._resolving: dict[str, asyncio.Task[None]] = {}
        #: Of each name being looked at: set when it is announced again meanwhile.
        self._renewed: dict[str, asyncio.Event] = {}
        self._reported: set[tuple[str, bytes]] = set()
        self._stopping = False

    @property
    def service_name(self) -> str | None:
        """The full service name as registered (zeroconf may rename it on a clash)."""
        return self._info.name if self._info is not None else None

    async def start(self) -> None:
        if self._aiozc is not None:
            raise RuntimeError("discovery already started")
        self._stopping = False
        self._reported.clear()
        addresses = await self._announce_addresses()
        interfaces = self._interfaces if self._interfaces is not None else InterfaceChoice.All
        # On a running loop AsyncZeroconf uses that loop: no thread of its own.
        self._aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        try:
            info = AsyncServiceInfo(
                SERVICE_TYPE,
                f"{self.instance_name}.{SERVICE_TYPE}",
                port=self.port,
                properties=self._txt,
                server=f"fora-{self.community.hex()[:12]}-{secrets.token_hex(3)}.local.",
                parsed_addresses=addresses,
            )
            # Probes for the name (renaming on a clash), then announces in the background.
            self._announcing = await self._aiozc.async_register_service(
                info, allow_name_change=True
            )
            self._info = info
            self._browser = AsyncServiceBrowser(
                self._aiozc.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
            )
        except BaseException:
            await self.stop()
            raise
        log.info("mDNS: announcing %s on %s port %d", info.name, ", ".join(addresses), self.port)

    async def stop(self) -> None:
        aiozc = self._aiozc
        if aiozc is None:
            return
        self._stopping = True
        try:
            if self._browser is not None:
                await self._browser.async_cancel()
            tasks = list(self._resolving.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            announcing = self._announcing
            if isinstance(announcing, asyncio.Future) and not announcing.done():
                announcing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await announcing
            if self._info is not None:
                await aiozc.async_unregister_all_services()  # goodbye packets
        finally:
            await aiozc.async_close()
            self._aiozc = None
            self._info = None
            self._browser = None
            self._announcing = None
            self._resolving.clear()
            self._renewed.clear()

    async def _announce_addresses(self) -> list[str]:
        if self._host_address is not None:
            return [self._host_address]
        if self._interfaces is not None:
            own = [a for a in self._interfaces if _usable_ipv4([a]) is not None]
            if own:
                return own
        adapters = await asyncio.to_thread(ifaddr.get_adapters)
        found: list[str] = []
        for adapter in adapters:
            for ip in adapter.ips:
                if ip.is_IPv4 and isinstance(ip.ip, str):
                    addr = ipaddress.IPv4Address(ip.ip)
                    if not addr.is_loopback and str(addr) not in found:
                        found.append(str(addr))
        return found or ["127.0.0.1"]

    # Called by zeroconf on the loop, synchronously: only schedule work here.
    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if self._stopping or state_change is ServiceStateChange.Removed:
            return
        if self._info is not None and name.lower() == self._info.name.lower():
            return
        renewed = self._renewed.get(name)
        if renewed is not None:
            # Being looked at: look again once this lookup is done, or now if it is
            # waiting to retry.
            renewed.set()
            return
        renewed = self._renewed[name] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._resolve(name, renewed))
        self._resolving[name] = task
        task.add_done_callback(self._resolved)

    def _resolved(self, task: asyncio.Task[None]) -> None:
        for name, running in list(self._resolving.items()):
            if running is task:
                del self._resolving[name]
                self._renewed.pop(name, None)

    async def _resolve(self, name: str, renewed: asyncio.Event) -> None:
        retries = iter(self._retry_delays)
        while True:
            if renewed.is_set():  # announced anew: the delays start over
                retries = iter(self._retry_delays)
            renewed.clear()
            again = False
            try:
                again = await self._resolve_once(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("mDNS: looking at %r failed", name)
            if self._stopping:
                return
            if renewed.is_set():  # announced again meanwhile: look again now
                continue
            if not again:
                return
            delay = next(retries, None)
            if delay is None:
                log.info("mDNS: giving up on %r until it announces itself again", name)
                return
            # Wait for the delay, or less if the service announces itself again (a
            # node restarted, or moved to another port).
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(renewed.wait(), delay)

    async def _resolve_once(self, name: str) -> bool:
        """Resolve ``name`` and report it if new; True if it should be tried again."""
        aiozc = self._aiozc
        if aiozc is None:
            return False
        try:
            info = AsyncServiceInfo(SERVICE_TYPE, name)
        except ZeroconfError as exc:  # a hostile PTR record can name anything
            log.debug("mDNS: ignoring %r: %s", name, exc)
            return False
        if not await info.async_request(aiozc.zeroconf, self._resolve_timeout_ms):
            # Lost or late answers (a busy network or host): ask again after a delay;
            # a service that has gone stops answering for good and is given up.
            log.debug("mDNS: could not resolve %r", name)
            return True
        try:
            community, community_name = parse_txt(info.text or b"")
        except ValueError as exc:
            log.debug("mDNS: ignoring %r: %s", name, exc)
            return False
        if community == self.community:
            log.debug("mDNS: ignoring %r: our own community", name)
            return False
        address = _usable_ipv4(info.parsed_addresses(IPVersion.V4Only))
        port = info.port
        if address is None or port is None or not 0 < port < 65536:
            log.debug("mDNS: ignoring %r: no usable IPv4 address and port", name)
            return False
        url = f"http://{address}:{port}"
        key = (url, community)
        if key in self._reported:
            return False
        self._reported.add(key)
        log.debug("mDNS: found %s (%s) at %s", community.hex(), community_name, url)
        try:
            await self._on_found(url, community, community_name)
        except asyncio.CancelledError:
            raise
        except TryLater as exc:
            self._reported.discard(key)
            log.info("mDNS: %s (%s) not reachable, trying again later: %s", url, name, exc)
            return True
        except Exception:
            self._reported.discard(key)  # a later update of the service tries again
            log.exception("mDNS: on_found failed for %s", url)
        return False


# -- static ----------------------------------------------------------------------------------


class StaticDiscovery:
    """Report a fixed list of ``(url, community_id, name)`` at start (tests, ``--no-mdns``)."""

    def __init__(self, peers: Iterable[tuple[str, bytes, str]], *, on_found: FoundCallback) -> None:
        self.peers = list(peers)
        self._on_found = on_found

    async def start(self) -> None:
        seen: set[tuple[str, bytes]] = set()
        for url, community, name in self.peers:
            if (url, community) in seen:
                continue
            seen.add((url, community))
            try:
                await self._on_found(url, community, name)
            except TryLater as exc:
                log.info("static discovery: %s not reachable: %s", url, exc)
            except Exception:
                log.exception("static discovery: on_found failed for %s", url)

    async def stop(self) -> None:
        return None
