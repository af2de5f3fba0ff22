"""The golden message vectors: one valid message of every kind, and rejected bytes.

`tests/vectors/messages-v1.json` is made by :func:`build` (Ed25519 signatures are
deterministic, so the same code always gives the same bytes); `tests/test_golden.py`
checks the committed file against our decoder and against a fresh build. Regenerate
after a deliberate protocol change with:

    .venv/bin/python -m tests.golden > tests/vectors/messages-v1.json
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocol import signing
from protocol.encoding import pack
from protocol.messages import create_message, encode_envelope

TS = 1_795_392_000_000  # 2026-11-23T00:00:00Z


def key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed.to_bytes(32, "big"))


C_KEY, MEMBER_KEY = key(1), key(2)
C = signing.public_key_bytes(C_KEY)
MEMBER = signing.public_key_bytes(MEMBER_KEY)
REF = hashlib.sha256(b"fora golden ref").digest()
REF2 = hashlib.sha256(b"fora golden ref 2").digest()

BODIES: list[tuple[str, dict[str, Any], list[bytes]]] = [
    (
        "community",
        {
            "name": "Bomarzo",
            "country": "IT",
            "region": "Lazio",
            "languages": ["it", "en"],
            "about": "Il forum dei cittadini.",
        },
        [],
    ),
    ("grant", {"member": MEMBER, "role": "member", "until": TS + 86_400_000}, []),
    ("revoke", {"reason": ""}, [REF]),
    (
        "topic",
        {
            "title": "Scuole",
            "text": "Più sicure.",
            "lang": "it",
            "tags": ["scuola"],
            "scope": "european",
        },
        [],
    ),
    (
        "proposal",
        {
            "title": "Scuolabus",
            "problem": "Vecchio.",
            "solution": "Elettrico.",
            "lang": "it",
            "closes": TS + 14 * 86_400_000,
        },
        [REF],
    ),
    ("vote", {"choice": "yes"}, [REF]),
    ("tally", {"yes": 2, "no": 1, "abstain": 0, "ballots": REF2}, [REF]),
    ("story", {"title": "Il mio anno", "text": "Siamo arrivati.", "lang": "it"}, []),
    ("comment", {"text": "D'accordo.", "lang": "it", "edit_of": REF2}, [REF]),
    ("report", {"reason": "spam"}, [REF]),
    ("hide", {"reason": "spam"}, [REF]),
    ("unhide", {"reason": "not spam"}, [REF]),
    ("erase", {}, [REF]),
    (
        "petition",
        {"title": "Piazza", "text": "Più alberi.", "goal": 500, "closes": TS + 30 * 86_400_000},
        [],
    ),
    ("sign", {}, [REF]),
    (
        "survey",
        {
            "title": "Valutazione",
            "intro": "",
            "questions": [
                {"text": "Soddisfatti?", "type": "scale", "options": ["no", "poco", "sì"]},
                {"text": "Commenti", "type": "text", "options": []},
            ],
            "opens": TS,
            "closes": TS + 86_400_000,
        },
        [],
    ),
    ("answer", {"answers": [2, None]}, [REF]),
    ("panel", {"name": "Panel scuole", "seats": 12, "roll": REF, "commit": REF2}, []),
    ("draw", {"secret": REF2, "selected": [MEMBER]}, [REF, REF2]),
    (
        "meeting",
        {
            "title": "Assemblea",
            "starts": TS,
            "ends": TS + 7_200_000,
            "place": "Piazza del Comune",
            "agenda": "1. Scuolabus",
        },
        [],
    ),
    ("minutes", {"text": "Approvato."}, [REF]),
    (
        "infokit",
        {"title": "Incendi", "text": "Chiamare il 112.", "category": "emergency", "lang": "it"},
        [],
    ),
    ("future_kind", {"anything": [1, "two", b"\x03"]}, []),
]


def _forge(
    head: list[Any],
    body: bytes | None,
    sig_key: Ed25519PrivateKey = MEMBER_KEY,
    sig: bytes | None = None,
) -> bytes:
    payload = msgpack.packb(head, use_bin_type=True)
    if sig is None:
        sig = signing.sign(sig_key, hashlib.sha256(payload).digest())
    return encode_envelope(payload, sig, body)


def rejected() -> list[dict[str, str]]:
    body = pack({"text": "x", "lang": "it"})
    h = hashlib.sha256(body).digest()
    good = [1, "comment", C, MEMBER, TS, [REF], h]
    identity = b"\x01" + bytes(31)
    cases = [
        ("malformed", "not a 3-array", msgpack.packb([b"a", b"b"])),
        ("malformed", "trailing byte", _forge(good, body) + b"\x00"),
        (
            "non_canonical",
            "body keys unsorted",
            _forge(
                [*good[:6], hashlib.sha256(b"\x82\xa4text\xa1x\xa4lang\xa2it").digest()],
                b"\x82\xa4text\xa1x\xa4lang\xa2it",
            ),
        ),
        ("bad_field", "version 2", _forge([2, *good[1:]], body)),
        (
            "weak_key",
            "identity point as author, R = identity, S = 0",
            _forge([1, "comment", C, identity, TS, [REF], h], body, sig=identity + bytes(32)),
        ),
        ("bad_signature", "signature by another key", _forge(good, body, sig_key=C_KEY)),
        (
            "from_future",
            "ts 10 minutes and 1 ms ahead of the clock",
            _forge([1, "comment", C, MEMBER, TS + 600_001, [REF], h], body),
        ),
        (
            "body_mismatch",
            "body not the hashed one",
            _forge(good, pack({"text": "y", "lang": "it"})),
        ),
        (
            "bad_body",
            "comment without lang",
            _forge(
                [1, "comment", C, MEMBER, TS, [REF], hashlib.sha256(pack({"text": "x"})).digest()],
                pack({"text": "x"}),
            ),
        ),
    ]
    return [{"code": code, "what": what, "hex": raw.hex()} for code, what, raw in cases]


def build() -> dict[str, Any]:
    messages = []
    for kind, fields, refs in BODIES:
        signer = (
            C_KEY
            if kind in {"community", "grant", "revoke", "tally", "panel", "draw"}
            else MEMBER_KEY
        )
        m = create_message(signer, kind=kind, community=C, ts=TS, fields=fields, refs=refs)
        messages.append(
            {
                "kind": kind,
                "id": m.hex_id,
                "hex": m.raw.hex(),
                "skeleton_hex": m.skeleton().raw.hex(),
            }
        )
    return {
        "about": (
            "Fora protocol v1 golden messages. Keys: Ed25519 seeds 1 (community C) and 2"
            " (member), as 32-byte big-endian integers. now_ms for checking: "
            f"{TS}. 'messages' must all decode with these ids (their skeletons too);"
            " 'rejected' must each fail with exactly 'code'. Made by tests/golden.py."
        ),
        "now_ms": TS,
        "community": C.hex(),
        "member": MEMBER.hex(),
        "messages": messages,
        "rejected": rejected(),
    }


if __name__ == "__main__":
    print(json.dumps(build(), indent=1))
