"""Sortition: who a `draw` selects, re-computable by any node (docs/protocol.md).

A `panel` commits to the eligible roll (:func:`roll_hash`) and to a secret
(:func:`commit_of`); its `draw` reveals the secret and names 1..15 entropy messages of
*other* communities published after the panel. The selection is a pure function of
the roll, the secret, the entropy ids and the number of seats:

    seed     = SHA-256(DOMAIN || secret || entropy id 1 || ... || entropy id n)
    rank(k)  = SHA-256(seed || k)                    for each 32-byte key k of the roll
    selected = the `seats` keys of lowest (rank, key), lowest first

Every input has a fixed length (secret and ids 32 bytes), so the concatenations are
unambiguous. :func:`entropy_problems` gives the rules the entropy messages must meet.
Pure code: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "DOMAIN",
    "MAX_ENTROPY",
    "Entropy",
    "Selection",
    "commit_of",
    "draw",
    "entropy_problems",
    "rank",
    "roll_hash",
    "seed_of",
    "select",
]

#: Domain separation tag of the seed: a seed can never equal another SHA-256 of Fora.
DOMAIN = b"fora/sortition/v1"
#: A draw refs its panel and 1..15 entropy ids (a message holds at most 16 refs).
MAX_ENTROPY = 15

_KEY = 32


def _check32(value: bytes, what: str) -> None:
    if len(value) != _KEY:
        raise ValueError(f"{what} must be 32 bytes, got {len(value)}")


def roll_hash(keys: Iterable[bytes]) -> bytes:
    """SHA-256 of the concatenation of the distinct 32-byte keys, sorted bytewise."""
    h = hashlib.sha256()
    for key in sorted(set(keys)):
        _check32(key, "a roll key")
        h.update(key)
    return h.digest()


def commit_of(secret: bytes) -> bytes:
    """The panel's `commit`: SHA-256 of the 32-byte secret."""
    _check32(secret, "the secret")
    return hashlib.sha256(secret).digest()


def seed_of(secret: bytes, entropy_ids: Sequence[bytes]) -> bytes:
    """SHA-256(DOMAIN || secret || entropy ids in ref order)."""
    _check32(secret, "the secret")
    if not 1 <= len(entropy_ids) <= MAX_ENTROPY:
        raise ValueError(f"a draw takes 1..{MAX_ENTROPY} entropy ids, got {len(entropy_ids)}")
    h = hashlib.sha256(DOMAIN)
    h.update(secret)
    for entropy_id in entropy_ids:
        _check32(entropy_id, "an entropy id")
        h.update(entropy_id)
    return h.digest()


def rank(seed: bytes, key: bytes) -> bytes:
    """A key's rank: SHA-256(seed || key); the lowest ranks are selected."""
    return hashlib.sha256(seed + key).digest()


def select(seed: bytes, keys: Iterable[bytes], seats: int) -> list[bytes]:
    """The ``seats`` distinct keys of lowest (rank, key), lowest first (all of them,
    in that order, when the roll has no more keys than seats)."""
    if seats < 1:
        raise ValueError("seats must be at least 1")
    roll = set(keys)
    for key in roll:
        _check32(key, "a roll key")
    return sorted(roll, key=lambda k: (rank(seed, k), k))[:seats]


@dataclass(frozen=True, slots=True)
class Selection:
    roll: bytes
    seed: bytes
    selected: tuple[bytes, ...]


def draw(
    keys: Iterable[bytes], secret: bytes, entropy_ids: Sequence[bytes], seats: int
) -> Selection:
    """The roll hash, seed and selection of a draw over ``keys``."""
    roll = set(keys)
    seed = seed_of(secret, entropy_ids)
    return Selection(roll_hash(roll), seed, tuple(select(seed, roll, seats)))


@dataclass(frozen=True, slots=True)
class Entropy:
    """What a node knows of one entropy message it holds."""

    id: bytes
    community: bytes
    ts: int
    authorized: bool


def entropy_problems(
    panel_community: bytes,
    panel_ts: int,
    draw_ts: int,
    entropy_ids: Sequence[bytes],
    held: dict[bytes, Entropy],
) -> tuple[list[str], list[bytes]]:
    """Check a draw's entropy refs against the messages held.

    Returns (problems, missing): ``problems`` are reasons that make the draw invalid
    whatever else arrives; ``missing`` the entropy ids not held (the draw is pending).
    The rules: 1..15 ids, sorted ascending bytewise (so the drawer cannot reorder
    them); each a message of a community other than the panel's, at most one per
    community, with ``panel_ts < ts <= draw_ts``, whose author was authorized in its
    community at its ``ts``.
    """
    problems: list[str] = []
    if not 1 <= len(entropy_ids) <= MAX_ENTROPY:
        problems.append(f"{len(entropy_ids)} entropy ids (1..{MAX_ENTROPY} allowed)")
    if list(entropy_ids) != sorted(set(entropy_ids)):
        problems.append("entropy ids not in ascending order (or repeated)")
    missing: list[bytes] = []
    seen: dict[bytes, bytes] = {}
    for entropy_id in entropy_ids:
        e = held.get(entropy_id)
        if e is None:
            missing.append(entropy_id)
            continue
        name = entropy_id.hex()[:16]
        if e.community == panel_community:
            problems.append(f"entropy {name}: a message of the panel's own community")
        elif e.community in seen:
            other = e.community.hex()[:16]
            problems.append(f"entropy {name}: a second message of community {other}")
        else:
            seen[e.community] = entropy_id
        if e.ts <= panel_ts:
            problems.append(f"entropy {name}: not after the panel (ts {e.ts} <= {panel_ts})")
        elif e.ts > draw_ts:
            problems.append(f"entropy {name}: after the draw (ts {e.ts} > {draw_ts})")
        if not e.authorized:
            problems.append(f"entropy {name}: its author holds no role in its community at ts")
    return problems, missing
