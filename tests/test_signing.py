"""Ed25519: keys, PEM, RFC 8032 vectors, the weak-key rule and the acceptance rule.

The acceptance rule is consensus-critical, so it is checked three ways: against golden
vectors (RFC 8032 section 7.1 and the "Taming the many EdDSAs" edge cases), against a
small pure-Python reference of the written rule below (slow, exact, no libraries), and
against the raw libraries, to show where they differ from the rule and why the
pre-checks exist.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import nacl.bindings
import nacl.exceptions
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import signing
from protocol.errors import ProtocolError
from protocol.signing import L, P

VECTORS = Path(__file__).parent / "vectors"
RFC8032 = json.loads((VECTORS / "rfc8032-ed25519.json").read_text())
SPECCHECK = json.loads((VECTORS / "ed25519-speccheck.json").read_text())

IDENTITY_KEY = bytes([1]) + bytes(31)
IDENTITY_FORGERY = bytes([1]) + bytes(63)  # R = identity, S = 0

# -- a pure-Python reference of the written rule (RFC 8032 section 6 arithmetic) ------

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)

D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY: Point = (0, 1, 1, 0)


def point_add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa, bb = (y1 - x1) * (y2 - x2) % P, (y1 + x1) * (y2 + x2) % P
    cc, dd = 2 * t1 * t2 * D % P, 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def point_mul(s: int, a: Point) -> Point:
    q = IDENTITY
    while s > 0:
        if s & 1:
            q = point_add(q, a)
        a = point_add(a, a)
        s >>= 1
    return q


def point_neg(a: Point) -> Point:
    return ((-a[0]) % P, a[1], a[2], (-a[3]) % P)


def point_equal(a: Point, b: Point) -> bool:
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def recover_x(y: int, sign: int) -> int | None:
    """x for y (any residue) and x's low bit; None if no point. x = 0 ignores ``sign``."""
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P != 0:
        return None
    return P - x if (x & 1) != sign else x


def decode_lenient(s: bytes) -> Point | None:
    """Decode like a careless library: y reduced mod p, sign ignored when x = 0."""
    y = int.from_bytes(s, "little") & ((1 << 255) - 1)
    x = recover_x(y % P, s[31] >> 7)
    if x is None:
        return None
    y %= P
    return (x, y, 1, x * y % P)


def is_canonical(s: bytes) -> bool:
    y = int.from_bytes(s, "little") & ((1 << 255) - 1)
    point = decode_lenient(s)
    return y < P and point is not None and not (point[0] == 0 and s[31] >> 7)


def encode(a: Point) -> bytes:
    zinv = pow(a[2], P - 2, P)
    x, y = a[0] * zinv % P, a[1] * zinv % P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


B: Point = decode_lenient(
    bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666")
)  # type: ignore[assignment]


def order_class(a: Point) -> str:
    if point_equal(point_mul(8, a), IDENTITY):
        return "small"
    return "large" if point_equal(point_mul(L, a), IDENTITY) else "mixed"


def reference_reason(public_key: bytes, signature: bytes, message: bytes) -> str | None:
    """The first step of the written rule that fails, or None if the signature passes."""
    if len(public_key) != 32 or len(signature) != 64 or not is_canonical(public_key):
        return "weak_key"
    a = decode_lenient(public_key)
    assert a is not None
    if order_class(a) == "small":
        return "weak_key"
    r_bytes, s = signature[:32], int.from_bytes(signature[32:], "little")
    r = decode_lenient(r_bytes)
    if r is not None and order_class(r) == "small":
        return "small_order_R"
    if r is None or not is_canonical(r_bytes):
        return "non_canonical_R"
    if s >= L:
        return "S_not_below_L"
    h = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % L
    if not point_equal(point_mul(s, B), point_add(r, point_mul(h, a))):
        return "equation"
    return None


def cofactored_holds(public_key: bytes, signature: bytes, message: bytes) -> bool:
    a, r = decode_lenient(public_key), decode_lenient(signature[:32])
    assert a is not None and r is not None
    s = int.from_bytes(signature[32:], "little")
    h = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    lhs = point_mul(8 * s, B)
    return point_equal(lhs, point_mul(8, point_add(r, point_mul(h % L, a))))


@cache
def torsion_generator() -> Point:
    """A point of order 8 found from scratch: [L]Q for curve points Q until one works."""
    y = 2
    while True:
        q = decode_lenient(y.to_bytes(32, "little"))
        if q is not None:
            t = point_mul(L, q)
            if not point_equal(point_mul(4, t), IDENTITY):
                return t
        y += 1


def small_order_points() -> list[Point]:
    t8 = torsion_generator()
    return [point_mul(k, t8) for k in range(8)]


def all_encodings(a: Point) -> set[bytes]:
    """Every 32-byte string that leniently decodes to ``a``."""
    y = int.from_bytes(encode(a), "little") & ((1 << 255) - 1)
    out = set()
    for candidate in (y, y + P):
        for sign in (0, 1):
            s = (candidate | sign << 255).to_bytes(32, "little")
            decoded = decode_lenient(s) if candidate < 1 << 255 else None
            if decoded is not None and point_equal(decoded, a):
                out.add(s)
    return out


def key_from_seed(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed)


def cryptography_accepts(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def libsodium_accepts(public_key: bytes, signature: bytes, message: bytes) -> bool:
    try:
        nacl.bindings.crypto_sign_open(signature + message, public_key)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# -- keys, signing, PEM -----------------------------------------------------------


def test_generated_keys_sign_and_verify() -> None:
    key = signing.generate_private_key()
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"id" * 16)
    assert len(public) == signing.PUBLIC_KEY_SIZE
    assert len(signature) == signing.SIGNATURE_SIZE
    assert not signing.is_weak_key(public)
    assert signing.verify(public, signature, b"id" * 16)
    assert not signing.verify(public, signature, b"di" * 16)


def test_pem_round_trip() -> None:
    key = signing.generate_private_key()
    pem = signing.private_key_to_pem(key)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = signing.private_key_from_pem(pem)
    assert signing.public_key_bytes(again) == signing.public_key_bytes(key)
    assert signing.private_key_to_pem(again) == pem


def other_pems() -> dict[str, bytes]:
    ed = signing.generate_private_key()
    p256 = ec.generate_private_key(ec.SECP256R1())
    return {
        "garbage": b"not a key at all",
        "empty": b"",
        "truncated": signing.private_key_to_pem(ed)[:60],
        "p256": p256.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        "public key": ed.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "encrypted": ed.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        "raw seed": bytes(32),
    }


@pytest.mark.parametrize("name", sorted(other_pems()))
def test_pem_rejects_everything_else(name: str) -> None:
    with pytest.raises(signing.KeyFormatError) as info:
        signing.private_key_from_pem(other_pems()[name])
    assert isinstance(info.value, ProtocolError)
    assert str(info.value)


def test_pem_names_the_wrong_key_type() -> None:
    with pytest.raises(signing.KeyFormatError, match="not an Ed25519 private key"):
        signing.private_key_from_pem(other_pems()["p256"])


# -- RFC 8032 section 7.1 -------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC8032["vectors"], ids=lambda v: v["name"])
def test_rfc8032_vectors(vector: dict[str, str]) -> None:
    key = key_from_seed(bytes.fromhex(vector["secret_key"]))
    public = bytes.fromhex(vector["public_key"])
    message = bytes.fromhex(vector["message"])
    signature = bytes.fromhex(vector["signature"])
    assert signing.public_key_bytes(key) == public
    assert signing.sign(key, message) == signature
    assert signing.verify(public, signature, message)
    assert reference_reason(public, signature, message) is None


def test_rfc8032_file_is_complete() -> None:
    names = [v["name"] for v in RFC8032["vectors"]]
    assert names == ["TEST 1", "TEST 2", "TEST 3", "TEST 1024", "TEST SHA(abc)"]
    assert len(bytes.fromhex(RFC8032["vectors"][3]["message"])) == 1023
    assert bytes.fromhex(RFC8032["vectors"][4]["message"]) == hashlib.sha512(b"abc").digest()
    assert "about" in RFC8032


# -- "Taming the many EdDSAs" (ed25519-speccheck) ---------------------------------------


def case_bytes(case: dict[str, Any]) -> tuple[bytes, bytes, bytes]:
    return (
        bytes.fromhex(case["pub_key"]),
        bytes.fromhex(case["signature"]),
        bytes.fromhex(case["message"]),
    )


ALL_SPECCHECK = SPECCHECK["cases"] + SPECCHECK["extra_cases"]


def test_speccheck_has_the_twelve_cases() -> None:
    assert [c["case"] for c in SPECCHECK["cases"]] == list(range(12))
    assert [c["verdict"] for c in SPECCHECK["cases"]].count("accept") == 1
    assert "about" in SPECCHECK


@pytest.mark.parametrize("case", ALL_SPECCHECK, ids=lambda c: f"{c['case']}")
def test_speccheck_verdicts(case: dict[str, Any]) -> None:
    public, signature, message = case_bytes(case)
    assert case["verdict"] in ("accept", "reject")
    assert signing.verify(public, signature, message) is (case["verdict"] == "accept")
    assert signing.verify_batch([(public, signature, message)]) == [case["verdict"] == "accept"]
    assert signing.is_weak_key(public) is (case["rule"] == "weak_key")


@pytest.mark.parametrize("case", ALL_SPECCHECK, ids=lambda c: f"{c['case']}")
def test_speccheck_against_the_reference(case: dict[str, Any]) -> None:
    """The recorded rule and point orders are what the pure-Python reference computes."""
    public, signature, message = case_bytes(case)
    assert reference_reason(public, signature, message) == case["rule"]
    a, r = decode_lenient(public), decode_lenient(signature[:32])
    assert a is not None and r is not None
    assert order_class(a) == case["A_order"]
    assert order_class(r) == case["R_order"]
    assert cofactored_holds(public, signature, message) is case["cofactored_equation"]


def test_speccheck_large_s_cases_are_only_malleated() -> None:
    """Cases 6 and 7 are valid signatures with L or 2L added to S."""
    large_s = [c for c in SPECCHECK["cases"] if c["rule"] == "S_not_below_L"]
    assert [c["case"] for c in large_s] == [6, 7]
    for case in large_s:
        public, signature, message = case_bytes(case)
        s = int.from_bytes(signature[32:], "little")
        reduced = signature[:32] + (s % L).to_bytes(32, "little")
        assert reference_reason(public, reduced, message) is None
        assert signing.verify(public, reduced, message)


@pytest.mark.parametrize("case", ALL_SPECCHECK, ids=lambda c: f"{c['case']}")
def test_speccheck_raw_libraries(case: dict[str, Any]) -> None:
    """What the libraries do without our pre-checks (recorded, so a change shows up)."""
    public, signature, message = case_bytes(case)
    assert cryptography_accepts(public, signature, message) is case["cryptography_raw"]
    assert libsodium_accepts(public, signature, message) is case["libsodium_raw"]


# -- the weak-key rule --------------------------------------------------------------


def test_small_order_encodings_are_exactly_the_small_order_points() -> None:
    points = small_order_points()
    assert len({encode(p) for p in points}) == 8
    encodings = set().union(*(all_encodings(p) for p in points))
    assert encodings == signing.SMALL_ORDER_ENCODINGS
    assert len(encodings) == 14
    canonical = {e for e in encodings if is_canonical(e)}
    assert canonical == {encode(p) for p in points}


@pytest.mark.parametrize("encoding", sorted(signing.SMALL_ORDER_ENCODINGS), ids=bytes.hex)
def test_small_order_points_are_weak_in_every_encoding(encoding: bytes) -> None:
    assert signing.is_weak_key(encoding)
    assert signing.is_weak_key(bytearray(encoding))


def test_y_at_least_p_is_weak() -> None:
    encodings = [
        (y | sign << 255).to_bytes(32, "little") for y in range(P, 1 << 255) for sign in (0, 1)
    ]
    assert len(encodings) == 38
    for encoding in encodings:
        assert signing.is_weak_key(encoding)


def test_x_zero_with_sign_bit_is_not_canonical() -> None:
    assert not signing._is_on_curve(1, 1)
    assert not signing._is_on_curve(P - 1, 1)
    assert signing._is_on_curve(1, 0)


def test_off_curve_encodings_are_weak() -> None:
    off = [y for y in range(2, 40) if recover_x(y, 0) is None]
    on = [y for y in range(2, 40) if recover_x(y, 0) is not None]
    assert off and on
    for y in off:
        for sign in (0, 1):
            assert signing.is_weak_key((y | sign << 255).to_bytes(32, "little"))


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_wrong_length_keys_are_weak(length: int) -> None:
    assert signing.is_weak_key(b"\x42" * length)


@settings(max_examples=200)
@given(st.binary(min_size=32, max_size=32))
def test_real_keys_are_not_weak(seed: bytes) -> None:
    assert not signing.is_weak_key(signing.public_key_bytes(key_from_seed(seed)))


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_weak_key_agrees_with_the_reference(candidate: bytes) -> None:
    expected = reference_reason(candidate, bytes(64), b"") == "weak_key"
    assert signing.is_weak_key(candidate) is expected


def test_weak_key_results_are_cached() -> None:
    key = signing.public_key_bytes(signing.generate_private_key())
    before = signing._is_weak_key_cached.cache_info()
    assert before.maxsize == signing.KEY_CACHE_SIZE
    for _ in range(3):
        signing.is_weak_key(key)
    after = signing._is_weak_key_cached.cache_info()
    assert after.misses == before.misses + 1
    assert after.hits == before.hits + 2


# -- mixed order: the written rule decides ------------------------------------------


def mixed_key(torsion: Point, a: int = 0x1234567890ABCDEF) -> tuple[int, Point, bytes]:
    point = point_add(point_mul(a, B), torsion)
    return a, point, encode(point)


def formula_signature(a: int, public: bytes, message: bytes, r: int, r_point: Point) -> bytes:
    """S = r + h a: valid for the large-order part of A, whatever its torsion."""
    r_bytes = encode(r_point)
    h = int.from_bytes(hashlib.sha512(r_bytes + public + message).digest(), "little") % L
    return r_bytes + ((r + h * a) % L).to_bytes(32, "little")


@pytest.mark.parametrize("torsion_order", [2, 4, 8])
def test_mixed_order_key_is_not_weak_and_verifies_by_the_cofactorless_equation(
    torsion_order: int,
) -> None:
    torsion = point_mul(8 // torsion_order, torsion_generator())
    a, point, public = mixed_key(torsion)
    assert order_class(point) == "mixed"
    assert not signing.is_weak_key(public)
    verdicts = []
    for i in range(16):
        message = b"message %d" % i
        r = 1000 + i
        signature = formula_signature(a, public, message, r, point_mul(r, B))
        h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little")
        holds = point_equal(point_mul(h % L, torsion), IDENTITY)  # [h]T = O iff cofactorless holds
        assert signing.verify(public, signature, message) is holds
        assert reference_reason(public, signature, message) == (None if holds else "equation")
        assert cofactored_holds(public, signature, message)  # cofactored would accept all
        verdicts.append(holds)
    assert True in verdicts
    assert False in verdicts


def test_mixed_order_r_verifies_only_when_the_equation_holds() -> None:
    t2 = point_mul(4, torsion_generator())  # order 2
    a, _, public = mixed_key(t2)
    verdicts = []
    for i in range(16):
        message = b"mixed R %d" % i
        r = 5000 + i
        r_point = point_add(point_mul(r, B), t2)  # R = [r]B + T2: mixed order
        signature = formula_signature(a, public, message, r, r_point)
        h = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little")
        holds = (h % L) % 2 == 1  # R + [h]A = [S]B + (1 + h) T2
        assert signing.verify(public, signature, message) is holds
        verdicts.append(holds)
    assert True in verdicts
    assert False in verdicts


# -- the acceptance rule: libraries and pre-checks ----------------------------------------


def test_cryptography_alone_accepts_the_identity_forgery() -> None:
    for message in (b"", b"any message at all", bytes(32)):
        assert cryptography_accepts(IDENTITY_KEY, IDENTITY_FORGERY, message)
        assert not signing.verify(IDENTITY_KEY, IDENTITY_FORGERY, message)
        assert not libsodium_accepts(IDENTITY_KEY, IDENTITY_FORGERY, message)
    assert signing.is_weak_key(IDENTITY_KEY)


def test_small_order_r_is_rejected_in_every_encoding() -> None:
    key = key_from_seed(bytes(range(32)))
    public = signing.public_key_bytes(key)
    for r_bytes in sorted(signing.SMALL_ORDER_ENCODINGS):
        signature = r_bytes + bytes(32)
        assert not signing.verify(public, signature, b"m")
        assert reference_reason(public, signature, b"m") == "small_order_R"


def test_s_at_least_l_is_rejected() -> None:
    key = key_from_seed(bytes(range(1, 33)))
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"malleable")
    s = int.from_bytes(signature[32:], "little")
    forged = signature[:32] + (s + L).to_bytes(32, "little")
    assert not signing.verify(public, forged, b"malleable")
    assert reference_reason(public, forged, b"malleable") == "S_not_below_L"
    assert not cryptography_accepts(public, forged, b"malleable")


def test_non_canonical_r_is_rejected() -> None:
    key = key_from_seed(bytes(range(2, 34)))
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"m")
    for y in range(P, 1 << 255):
        r_bytes = y.to_bytes(32, "little")
        forged = r_bytes + signature[32:]
        assert not signing.verify(public, forged, b"m")


@settings(max_examples=100)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=300))
def test_round_trip(seed: bytes, message: bytes) -> None:
    key = key_from_seed(seed)
    public = signing.public_key_bytes(key)
    assert signing.verify(public, signing.sign(key, message), message)


@settings(max_examples=100)
@given(st.binary(min_size=32, max_size=32), st.binary(max_size=64), st.data())
def test_any_bit_flip_is_rejected(seed: bytes, message: bytes, data: st.DataObject) -> None:
    key = key_from_seed(seed)
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, message)
    sig_bit = data.draw(st.integers(0, 511), label="signature bit")
    assert not signing.verify(public, flip(signature, sig_bit), message)
    key_bit = data.draw(st.integers(0, 255), label="key bit")
    assert not signing.verify(flip(public, key_bit), signature, message)
    if message:
        msg_bit = data.draw(st.integers(0, 8 * len(message) - 1), label="message bit")
        assert not signing.verify(public, signature, flip(message, msg_bit))
    assert not signing.verify(public, signature, message + b"\x00")


@given(st.binary(), st.binary(), st.binary())
def test_arbitrary_bytes_never_raise(public: bytes, signature: bytes, message: bytes) -> None:
    assert signing.verify(public, signature, message) is False
    assert isinstance(signing.is_weak_key(public), bool)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=64, max_size=64), st.binary())
def test_arbitrary_right_sized_bytes_never_raise(
    public: bytes, signature: bytes, message: bytes
) -> None:
    expected = (
        not signing.is_weak_key(public)
        and signature[:32] not in signing.SMALL_ORDER_ENCODINGS
        and cryptography_accepts(public, signature, message)
    )
    assert signing.verify(public, signature, message) is expected


@pytest.mark.parametrize("value", [None, 0, 32, "text", [1, 2], object()])
def test_non_bytes_never_raise(value: Any) -> None:
    key = key_from_seed(bytes(32))
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"m")
    assert signing.verify(value, signature, b"m") is False
    assert signing.verify(public, value, b"m") is False
    assert signing.verify(public, signature, value) is False
    assert signing.is_weak_key(value) is True


def test_bytes_like_inputs_are_accepted() -> None:
    key = key_from_seed(bytes(32))
    public = signing.public_key_bytes(key)
    signature = signing.sign(key, b"m")
    assert signing.verify(bytearray(public), memoryview(signature), bytearray(b"m"))


# -- batches ------------------------------------------------------------------------


def batch_items() -> list[tuple[bytes, bytes, bytes]]:
    items = []
    for i in range(600):
        key = key_from_seed(i.to_bytes(32, "big"))
        message = hashlib.sha256(b"%d" % i).digest()
        signature = signing.sign(key, message)
        if i % 3 == 1:
            signature = flip(signature, i % 512)
        elif i % 3 == 2:
            message = message[::-1]
        items.append((signing.public_key_bytes(key), signature, message))
    items.append((IDENTITY_KEY, IDENTITY_FORGERY, b"forged"))
    return items


def test_verify_batch_matches_verify() -> None:
    items = batch_items()
    expected = [signing.verify(*item) for item in items]
    assert expected.count(True) == 200
    assert signing.verify_batch(items) == expected
    assert signing.verify_batch(iter(items)) == expected
    with ThreadPoolExecutor(2) as pool:
        assert signing.verify_batch(items, pool) == expected
        assert signing.verify_batch(items, pool, chunk_size=7) == expected
        assert signing.verify_batch([], pool) == []
