"""Shared fixtures: keys, message factories, node folders."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, settings

from protocol import signing
from protocol.messages import Message, create_message

#: A fixed clock for tests: 2026-11-23T00:00:00Z.
NOW = 1_795_392_000_000


# No per-example deadline (Hypothesis's default is 200 ms): on a shared machine one
# example can stall behind another process and fail a correct test ("DeadlineExceeded",
# "Unreliable test timings"). How fast the code is: scripts/bench_*. Examples stay
# random (a counterexample found once is a real bug); a test's own @settings still
# sets its number of examples.
settings.register_profile("fora", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("fora")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", help="run the long-form tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="long-form run: pass --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def upgrade_again(db: Any, migration: str) -> Any:
    """Close ``db`` as if ``migration`` had never run on it and open it again: the
    upgrade of a node from before that migration, over what ``db`` holds now."""
    from storage.database import open_database

    path = db.execute("PRAGMA database_list").fetchone()[2]
    db.execute("DELETE FROM _sqlite_migrations WHERE name = ?", [migration])
    db.close()
    return open_database(path)


def seeded_key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big"))


class Factory:
    """Makes valid signed messages of one community with increasing timestamps."""

    def __init__(self, community_key: Ed25519PrivateKey, start: int = NOW - 3_600_000) -> None:
        self.community_key = community_key
        self.community = signing.public_key_bytes(community_key)
        self._ts = itertools.count(start, 1_000)

    def make(
        self,
        kind: str,
        fields: dict[str, Any],
        *,
        refs: tuple[bytes, ...] = (),
        key: Ed25519PrivateKey | None = None,
        ts: int | None = None,
    ) -> Message:
        return create_message(
            key or self.community_key,
            kind=kind,
            community=self.community,
            ts=next(self._ts) if ts is None else ts,
            fields=fields,
            refs=refs,
        )

    def topic(self, title: str = "Schools", **kw: Any) -> Message:
        fields = {
            "title": title,
            "text": f"What should we do about {title.lower()}?",
            "lang": "en",
            "tags": ["education"],
            "scope": "local",
        }
        return self.make("topic", fields, **kw)

    def comment(self, target: bytes, text: str = "I agree.", **kw: Any) -> Message:
        return self.make("comment", {"text": text, "lang": "en"}, refs=(target,), **kw)

    def comment_edit(self, target: bytes, edit_of: bytes, text: str, **kw: Any) -> Message:
        """A new version of comment ``edit_of`` (on ``target``)."""
        return self.make(
            "comment", {"text": text, "lang": "en", "edit_of": edit_of}, refs=(target,), **kw
        )

    def erase(self, target: bytes, **kw: Any) -> Message:
        return self.make("erase", {}, refs=(target,), **kw)

    # -- civic kinds (tests/test_civic*.py) ------------------------------------------

    def grant(
        self,
        member: Ed25519PrivateKey | bytes,
        role: str = "member",
        until: int | None = None,
        **kw: Any,
    ) -> Message:
        key = member if isinstance(member, bytes) else signing.public_key_bytes(member)
        fields: dict[str, Any] = {"member": key, "role": role}
        if until is not None:
            fields["until"] = until
        return self.make("grant", fields, **kw)

    def revoke(self, grant: bytes, reason: str = "", **kw: Any) -> Message:
        return self.make("revoke", {"reason": reason}, refs=(grant,), **kw)

    def proposal(
        self,
        topic: bytes,
        title: str = "Electric bus",
        closes: int = NOW + 86_400_000,
        **kw: Any,
    ) -> Message:
        fields = {
            "title": title,
            "problem": "The bus is old.",
            "solution": "Buy an electric one.",
            "lang": "en",
            "closes": closes,
        }
        return self.make("proposal", fields, refs=(topic,), **kw)

    def vote(self, proposal: bytes, choice: str = "yes", **kw: Any) -> Message:
        return self.make("vote", {"choice": choice}, refs=(proposal,), **kw)

    def tally(
        self,
        proposal: bytes,
        ballots: bytes,
        yes: int = 0,
        no: int = 0,
        abstain: int = 0,
        **kw: Any,
    ) -> Message:
        fields = {"yes": yes, "no": no, "abstain": abstain, "ballots": ballots}
        return self.make("tally", fields, refs=(proposal,), **kw)

    def hide(self, target: bytes, reason: str = "spam", **kw: Any) -> Message:
        return self.make("hide", {"reason": reason}, refs=(target,), **kw)

    def unhide(self, target: bytes, reason: str = "on appeal", **kw: Any) -> Message:
        return self.make("unhide", {"reason": reason}, refs=(target,), **kw)

    def report(self, target: bytes, reason: str = "insults", **kw: Any) -> Message:
        return self.make("report", {"reason": reason}, refs=(target,), **kw)

    def story(self, topic: bytes | None, title: str = "My street", **kw: Any) -> Message:
        refs = (topic,) if topic is not None else ()
        return self.make(
            "story", {"title": title, "text": "Once upon a time.", "lang": "en"}, refs=refs, **kw
        )


@pytest.fixture
def community_key() -> Ed25519PrivateKey:
    return seeded_key(1)


@pytest.fixture
def factory(community_key: Ed25519PrivateKey) -> Factory:
    return Factory(community_key)


@pytest.fixture
def tmp_node(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "node"
