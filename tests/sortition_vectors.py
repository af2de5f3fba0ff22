"""The sortition test vectors: roll, commit, seed, ranks and selection of a few draws.

`tests/vectors/sortition-v1.json` is made by :func:`build` from fixed inputs (no
randomness); `tests/test_sortition.py` checks the committed file byte for byte against
a fresh build, and every case against :mod:`protocol.sortition`. Another
implementation re-computes `roll`, `commit`, `seed`, `ranks` and `selected` from the
inputs. Regenerate after a deliberate protocol change with:

    .venv/bin/python -m tests.sortition_vectors > tests/vectors/sortition-v1.json
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing, sortition


def _key(seed: int) -> bytes:
    return signing.public_key_bytes(Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big")))


def _h(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


#: (what, roll keys as given (unsorted), secret, entropy ids in ref order, seats)
CASES: list[tuple[str, list[bytes], bytes, list[bytes], int]] = [
    (
        "ten members, three seats, two entropy messages",
        [_key(i) for i in range(10, 20)],
        _h("fora sortition secret 1"),
        sorted([_h("fora entropy a"), _h("fora entropy b")]),
        3,
    ),
    (
        "four members, six seats: everyone, in rank order",
        [_key(i) for i in range(30, 34)],
        _h("fora sortition secret 2"),
        [_h("fora entropy c")],
        6,
    ),
    (
        "same roll and secret as the first, other entropy: another selection",
        [_key(i) for i in range(10, 20)],
        _h("fora sortition secret 1"),
        [_h("fora entropy d")],
        3,
    ),
]


def build() -> dict[str, Any]:
    cases = []
    for what, keys, secret, entropy, seats in CASES:
        selection = sortition.draw(keys, secret, entropy, seats)
        cases.append(
            {
                "what": what,
                "roll_keys": [k.hex() for k in keys],
                "secret": secret.hex(),
                "entropy_ids": [e.hex() for e in entropy],
                "seats": seats,
                "roll": selection.roll.hex(),
                "commit": sortition.commit_of(secret).hex(),
                "seed": selection.seed.hex(),
                "ranks": {k.hex(): sortition.rank(selection.seed, k).hex() for k in sorted(keys)},
                "selected": [k.hex() for k in selection.selected],
            }
        )
    return {
        "about": (
            "Fora sortition v1 (docs/protocol.md, Sortition). roll = SHA-256(sorted distinct"
            " keys concatenated); commit = SHA-256(secret); seed = SHA-256('"
            + sortition.DOMAIN.decode()
            + "' || secret || entropy ids in ref order); rank(k) = SHA-256(seed || k);"
            " selected = the `seats` keys of lowest (rank, key), lowest first."
            " Made by tests/sortition_vectors.py."
        ),
        "domain": sortition.DOMAIN.decode(),
        "cases": cases,
    }


if __name__ == "__main__":
    print(json.dumps(build(), indent=1))
