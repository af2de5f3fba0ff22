"""Sortition: the pure selection function, its vectors, and the entropy rules."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import sortition
from protocol.sortition import Entropy, entropy_problems

from .sortition_vectors import build

VECTOR_FILE = Path(__file__).parent / "vectors" / "sortition-v1.json"
VECTORS = json.loads(VECTOR_FILE.read_text())


def test_the_committed_file_is_what_the_code_makes_byte_for_byte() -> None:
    assert VECTOR_FILE.read_text() == json.dumps(build(), indent=1) + "\n"


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: c["what"])
def test_vectors_recomputed_from_the_written_rule(case: dict[str, object]) -> None:
    # Re-implemented here from the rule in docs/protocol.md with hashlib only.
    keys = sorted({bytes.fromhex(k) for k in case["roll_keys"]})  # type: ignore[attr-defined]
    secret = bytes.fromhex(case["secret"])  # type: ignore[arg-type]
    entropy = [bytes.fromhex(e) for e in case["entropy_ids"]]  # type: ignore[attr-defined]
    assert hashlib.sha256(b"".join(keys)).hexdigest() == case["roll"]
    assert hashlib.sha256(secret).hexdigest() == case["commit"]
    seed = hashlib.sha256(b"fora/sortition/v1" + secret + b"".join(entropy)).digest()
    assert seed.hex() == case["seed"]
    ranks = {k: hashlib.sha256(seed + k).digest() for k in keys}
    assert {k.hex(): r.hex() for k, r in ranks.items()} == case["ranks"]
    chosen = sorted(keys, key=lambda k: (ranks[k], k))[: case["seats"]]  # type: ignore[misc]
    assert [k.hex() for k in chosen] == case["selected"]
    # And the module agrees.
    sel = sortition.draw(keys, secret, entropy, case["seats"])  # type: ignore[arg-type]
    assert [k.hex() for k in sel.selected] == case["selected"]


def test_vectors_are_not_trivial() -> None:
    first, everyone, other = VECTORS["cases"]
    assert len(first["selected"]) == 3 and len(everyone["selected"]) == 4
    assert first["selected"] != other["selected"]
    assert everyone["selected"] != sorted(everyone["selected"])  # rank order, not key order


@given(
    keys=st.sets(st.binary(min_size=32, max_size=32), max_size=40),
    secret=st.binary(min_size=32, max_size=32),
    entropy=st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=15),
    seats=st.integers(1, 50),
)
def test_selection_is_a_function_of_the_set(
    keys: set[bytes], secret: bytes, entropy: list[bytes], seats: int
) -> None:
    a = sortition.draw(list(keys), secret, entropy, seats)
    b = sortition.draw(sorted(keys, reverse=True) + list(keys), secret, entropy, seats)
    assert a == b
    assert len(a.selected) == min(seats, len(keys))
    assert set(a.selected) <= keys
    # The first `seats` of a longer selection: seats only cut the ranked list.
    bigger = sortition.draw(keys, secret, entropy, seats + 5)
    assert bigger.selected[: len(a.selected)] == a.selected


def test_bad_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        sortition.commit_of(b"short")
    with pytest.raises(ValueError, match="entropy ids"):
        sortition.seed_of(bytes(32), [])
    with pytest.raises(ValueError, match="entropy ids"):
        sortition.seed_of(bytes(32), [bytes([i]) * 32 for i in range(16)])
    with pytest.raises(ValueError, match="roll key"):
        sortition.roll_hash([b"x"])
    with pytest.raises(ValueError, match="seats"):
        sortition.select(bytes(32), [], 0)


HOME, PEER, PEER2 = b"H" * 32, b"P" * 32, b"Q" * 32


def _e(n: int, community: bytes, ts: int, authorized: bool = True) -> Entropy:
    return Entropy(bytes([n]) * 32, community, ts, authorized)


def test_entropy_rules() -> None:
    good = [_e(1, PEER, 150), _e(2, PEER2, 200)]
    held = {e.id: e for e in good}
    ids = [e.id for e in good]
    assert entropy_problems(HOME, 100, 200, ids, held) == ([], [])
    # Missing ones are named, not problems.
    assert entropy_problems(HOME, 100, 200, ids, {}) == ([], ids)
    cases = {
        "not in ascending order": (list(reversed(ids)), held),
        "panel's own community": ([b"\x03" * 32], {b"\x03" * 32: _e(3, HOME, 150)}),
        "not after the panel": ([b"\x03" * 32], {b"\x03" * 32: _e(3, PEER, 100)}),
        "after the draw": ([b"\x03" * 32], {b"\x03" * 32: _e(3, PEER, 201)}),
        "holds no role": ([b"\x03" * 32], {b"\x03" * 32: _e(3, PEER, 150, False)}),
        "a second message of community": (
            [b"\x03" * 32, b"\x04" * 32],
            {b"\x03" * 32: _e(3, PEER, 150), b"\x04" * 32: _e(4, PEER, 160)},
        ),
        "entropy ids (1..15 allowed)": ([], {}),
    }
    for needle, (entropy, known) in cases.items():
        problems, _ = entropy_problems(HOME, 100, 200, entropy, known)
        assert any(needle in p for p in problems), (needle, problems)


def test_the_protocol_doc_prints_the_first_vector() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "protocol.md").read_text(encoding="utf-8")
    start = doc.index("<!-- sortition-vector:start -->\n```json\n") + len(
        "<!-- sortition-vector:start -->\n```json\n"
    )
    end = doc.index("\n```\n<!-- sortition-vector:end -->")
    first = {k: v for k, v in VECTORS["cases"][0].items() if k != "ranks"}
    assert doc[start:end] == json.dumps(first, indent=1)
