"""A live node seeded with every kind of content, through the real ingest path.

The forum of ``tests/test_web.py``'s ``build`` (community profile, topics with tags and
scopes, proposals open and closed with a verified tally and one with a mismatch, a
story, threaded comments and a hidden one, a petition, a survey with answers, a meeting
with minutes, the info kit, a followed peer community with an Italian topic and comment)
plus panels: one with a verified draw, one whose draw waits for entropy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlite_utils import Database

from protocol import signing, sortition
from protocol.messages import Message
from storage.panels import eligible_keys

from ..conftest import NOW, Factory, seeded_key
from ..test_web import ALICE, OFFICIAL, build, put
from .conftest import LiveNode

SECRET = hashlib.sha256(b"browser panel secret").digest()


@dataclass
class Seeded:
    node: LiveNode
    f: Factory
    other: Factory
    m: dict[str, Message]

    def url(self, path: str) -> str:
        return self.node.url + path

    def hex(self, name: str) -> str:
        return self.m[name].id.hex()


def _build(db: Database, key: Ed25519PrivateKey) -> tuple[Factory, Factory, dict[str, Message]]:
    f = Factory(key, start=NOW - 3_600_000)
    other = Factory(seeded_key(2), start=NOW - 3_500_000)
    m = build(db, f, other)
    topic = m["topic"].id
    panel_ts = NOW - 60_000
    roll = eligible_keys(db.conn, f.community, panel_ts)
    for name, seats, pending in (("School panel", 2, False), ("Park panel", 1, True)):
        panel = f.make(
            "panel",
            {
                "name": name,
                "seats": seats,
                "roll": sortition.roll_hash(roll),
                "commit": sortition.commit_of(SECRET),
            },
            refs=(topic,),
            key=OFFICIAL,
            ts=panel_ts,
        )
        entropy = other.topic(f"Peer news for the {name.lower()}", ts=panel_ts + 10_000)
        selected = list(sortition.draw(roll, SECRET, [entropy.id], seats).selected)
        draw = f.make(
            "draw",
            {"secret": SECRET, "selected": selected},
            refs=(panel.id, entropy.id),
            key=OFFICIAL,
            ts=panel_ts + 20_000,
        )
        # The pending panel's entropy message never reaches this node.
        put(db, panel, draw, *(() if pending else (entropy,)))
        key_name = "pending_panel" if pending else "panel"
        m[key_name], m[key_name + "_draw"], m[key_name + "_entropy"] = panel, draw, entropy
    return f, other, m


async def seed(node: LiveNode) -> Seeded:
    f, other, m = await node.store.write(_build, node.key)
    return Seeded(node, f, other, m)


def alice() -> str:
    return signing.public_key_bytes(ALICE).hex()
