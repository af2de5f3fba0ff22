"""Login throttling: exponential delays per account and per client address.

Pure bookkeeping: no I/O, no sleeping, the clock is injected. The web view asks
:meth:`LoginThrottle.wait` before checking a password (and answers "try again in N
seconds" without hashing when it is not 0), then reports :meth:`failed` or
:meth:`succeeded`.

- Per client address (IPv6 grouped by /64, the usual size of one customer's network):
  one machine guessing many names slows down.
- Per account: many machines guessing one name slow down. Its delays are capped lower,
  because anyone can run them up to keep the resident out; the resident can still log
  in after at most :attr:`Policy.cap` seconds.

A success clears the account's failures, not the address's: a guesser who owns one
account cannot reset its own address by logging into it. Failures are forgotten
``forget_after`` seconds after the last one. Memory is bounded: each table keeps at most
``max_entries`` keys, dropping the one whose last failure is oldest.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ACCOUNT_POLICY", "ADDRESS_POLICY", "LoginThrottle", "Policy", "address_key"]


@dataclass(frozen=True)
class Policy:
    """``free`` failures cost nothing; the k-th one after those waits
    ``base * factor ** (k - 1)`` seconds, at most ``cap``."""

    free: int
    base: float
    factor: float
    cap: float
    forget_after: float = 3600.0

    def delay(self, failures: int) -> float:
        over = failures - self.free
        if over <= 0:
            return 0.0
        return float(min(self.cap, self.base * self.factor ** min(over - 1, 64)))


#: One address: 5 free, then 1 s, 2 s, 4 s ... up to 15 minutes.
ADDRESS_POLICY = Policy(free=5, base=1.0, factor=2.0, cap=900.0)
#: One account: 5 free, then 1 s, 2 s, 4 s ... up to 5 minutes.
ACCOUNT_POLICY = Policy(free=5, base=1.0, factor=2.0, cap=300.0)


def address_key(address: str) -> str:
    """The unit an address is counted in: the IPv4 address, or the IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address[:100]  # not an IP (a Unix socket peer): count it as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class _Entry:
    failures: int
    last: float
    until: float


class _Table:
    def __init__(self, policy: Policy, max_entries: int) -> None:
        self.policy = policy
        self.max_entries = max_entries
        self.entries: OrderedDict[str, _Entry] = OrderedDict()

    def _current(self, key: str, now: float) -> _Entry | None:
        entry = self.entries.get(key)
        if entry is not None and now - entry.last >= self.policy.forget_after:
            del self.entries[key]
            return None
        return entry

    def wait(self, key: str, now: float) -> float:
        entry = self._current(key, now)
        return 0.0 if entry is None else max(0.0, entry.until - now)

    def failed(self, key: str, now: float) -> None:
        entry = self._current(key, now)
        failures = 1 if entry is None else entry.failures + 1
        self.entries[key] = _Entry(failures, now, now + self.policy.delay(failures))
        self.entries.move_to_end(key)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def clear(self, key: str) -> None:
        self.entries.pop(key, None)


class LoginThrottle:
    """How long a login for (account, address) must wait; see the module docstring.

    ``account`` is the name's comparison key (``storage.accounts.name_key``), so look-
    alike spellings of a name share one counter; unknown names are counted too.
    """

    def __init__(
        self,
        *,
        account_policy: Policy = ACCOUNT_POLICY,
        address_policy: Policy = ADDRESS_POLICY,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._accounts = _Table(account_policy, max_entries)
        self._addresses = _Table(address_policy, max_entries)
        self._clock = clock

    def wait(self, account: str, address: str) -> float:
        """Seconds before this login may be checked; 0.0 means now."""
        now = self._clock()
        return max(
            self._accounts.wait(account, now), self._addresses.wait(address_key(address), now)
        )

    def failed(self, account: str, address: str) -> None:
        now = self._clock()
        self._accounts.failed(account, now)
        self._addresses.failed(address_key(address), now)

    def succeeded(self, account: str, address: str) -> None:
        self._accounts.clear(account)

    def __len__(self) -> int:
        """Entries held (both tables): bounded by twice ``max_entries``."""
        return len(self._accounts.entries) + len(self._addresses.entries)
