"""Ed25519 keys, signing, and the consensus-critical signature acceptance rule.

Two nodes that disagree on a single signature never converge, so acceptance is pinned
down exactly (PROTOCOL.md section 3) instead of being left to whichever library is
installed. :func:`verify` accepts ``(A, R || S, M)`` if and only if:

1. ``A`` is not a weak key (:func:`is_weak_key`): 32 bytes, ``y < p``, not one of the
   fourteen encodings of the eight small-order points, and the canonical encoding of a
   point on the curve (``x = 0`` with the sign bit set is not canonical);
2. ``R`` is not one of those fourteen small-order encodings and its ``y < p``;
3. ``S < L`` (compared as an integer, no reduction);
4. the cofactorless equation ``[S]B = R + [SHA-512(R || A || M) mod L]A`` of RFC 8032
   section 5.1.7 holds, checked as "the canonical encoding of ``[S]B - [h]A`` equals the
   32 bytes of ``R``": an ``R`` that is off the curve or not canonical never matches.

Mixed-order keys and ``R`` (a point of order ``8L``, ``4L`` or ``2L``) are points of
large order and pass steps 1 and 2; the cofactorless equation then decides.

Steps 1-3 run here in Python (byte compares, integer compares and a cached modular
square root); step 4 runs in libsodium through PyNaCl, which applies steps 1-3 again
and is about twice as fast as OpenSSL here (``scripts/bench_verify``). The checks in
Python make the rule independent of how libsodium was built: OpenSSL (behind
``cryptography``) applies only steps 3 and 4, and accepts ``R = identity, S = 0`` on
any message for the identity key.

Pure: bytes in, bytes out; no I/O, no clock. :func:`verify_batch` uses threads only if
the caller hands it an executor (libsodium releases the GIL).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor

import nacl.bindings
import nacl.exceptions
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import ProtocolError

__all__ = [
    "KEY_CACHE_SIZE",
    "PUBLIC_KEY_SIZE",
    "SIGNATURE_SIZE",
    "SMALL_ORDER_ENCODINGS",
    "Ed25519PrivateKey",
    "KeyFormatError",
    "L",
    "P",
    "generate_private_key",
    "is_weak_key",
    "private_key_from_pem",
    "private_key_to_pem",
    "public_key_bytes",
    "sign",
    "verify",
    "verify_batch",
]

PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

P = 2**255 - 19
"""The field prime."""
L = 2**252 + 27742317777372353535851937790883648493
"""The order of the base point B (the large prime subgroup)."""
_D = -121665 * pow(121666, P - 2, P) % P
_SQRT_M1 = pow(2, (P - 1) // 4, P)
_Y_MASK = (1 << 255) - 1

SMALL_ORDER_ENCODINGS: frozenset[bytes] = frozenset(
    bytes.fromhex(h)
    for h in (
        # The eight points of small order, canonically encoded.
        "0100000000000000000000000000000000000000000000000000000000000000",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # (0, -1), order 2
        "0000000000000000000000000000000000000000000000000000000000000000",  # y = 0, order 4
        "0000000000000000000000000000000000000000000000000000000000000080",  # y = 0, order 4
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",  # order 8
        # Non-canonical encodings of the same points: x = 0 with the sign bit set ...
        "0100000000000000000000000000000000000000000000000000000000000080",  # identity
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # (0, -1)
        # ... and y + p for y = 0 and y = 1 (the only y values below 19), both signs.
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  # y = p + 1
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",  # y = p + 1
    )
)
"""Every 32-byte string that decodes (leniently) to a point of small order: 8 + 6."""

KEY_CACHE_SIZE = 1 << 14
"""Entries kept by the weak-key cache (about 3 MB when full)."""


class KeyFormatError(ProtocolError):
    """A private key file that is not an unencrypted PKCS#8 PEM Ed25519 key."""


# -- keys and signing -------------------------------------------------------------


def generate_private_key() -> Ed25519PrivateKey:
    """A new random Ed25519 private key (its public key is never weak)."""
    return Ed25519PrivateKey.generate()


def public_key_bytes(key: Ed25519PrivateKey) -> bytes:
    """The 32-byte raw encoding of ``key``'s public key: the author / community id."""
    return key.public_key().public_bytes_raw()


def sign(key: Ed25519PrivateKey, message: bytes) -> bytes:
    """The 64-byte deterministic RFC 8032 Ed25519 signature ``R || S`` of ``message``."""
    return key.sign(message)


def private_key_to_pem(key: Ed25519PrivateKey) -> bytes:
    """``key`` as an unencrypted PKCS#8 PEM document."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def private_key_from_pem(data: bytes) -> Ed25519PrivateKey:
    """Load an unencrypted PKCS#8 PEM Ed25519 private key.

    Raises :class:`KeyFormatError` for anything else: garbage, a PEM of another key
    type, an encrypted key.
    """
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted, or data is not bytes
        raise KeyFormatError(f"not an unencrypted PEM private key: {exc}") from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not a PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"not an Ed25519 private key: {type(key).__name__}")
    return key


# -- the acceptance rule ----------------------------------------------------------


def _is_on_curve(y: int, sign_bit: int) -> bool:
    """Whether ``(x, y)`` with x's low bit ``sign_bit`` is a canonical curve point.

    RFC 8032 section 5.1.3 step 2-4 for ``y < p``: recover x from
    ``x^2 = (y^2 - 1) / (d y^2 + 1)``; no square root means no point, and ``x = 0``
    with the sign bit set is not a canonical encoding.
    """
    u = (y * y - 1) % P
    v = (_D * y * y + 1) % P
    x = u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P) % P
    vx2 = v * x * x % P
    if vx2 != u:
        if vx2 != (P - u) % P:
            return False
        x = x * _SQRT_M1 % P
    return not (x == 0 and sign_bit)


@functools.lru_cache(maxsize=KEY_CACHE_SIZE)
def _is_weak_key_cached(public_key: bytes) -> bool:
    # Only ever called with 32 bytes, so the cache holds at most ~3 MB.
    if public_key in SMALL_ORDER_ENCODINGS:
        return True
    y = int.from_bytes(public_key, "little") & _Y_MASK
    if y >= P:
        return True
    return not _is_on_curve(y, public_key[31] >> 7)


def _as_bytes(value: object) -> bytes | None:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return None


def is_weak_key(public_key: bytes) -> bool:
    """True unless ``public_key`` is the canonical encoding of a point of large order.

    PROTOCOL.md ``weak_key``: weak are the eight small-order points in all their
    encodings, ``x = 0`` with the sign bit set, ``y >= p``, encodings of no curve
    point, and anything that is not 32 bytes. Mixed-order points are of large order
    and not weak. Results are cached (keys repeat a lot).
    """
    key = _as_bytes(public_key)
    return key is None or len(key) != PUBLIC_KEY_SIZE or _is_weak_key_cached(key)


def _passes_prechecks(public_key: bytes, signature: bytes) -> bool:
    if len(public_key) != PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    if _is_weak_key_cached(public_key):
        return False
    r = signature[:32]
    if r in SMALL_ORDER_ENCODINGS or int.from_bytes(r, "little") & _Y_MASK >= P:
        return False
    return int.from_bytes(signature[32:], "little") < L


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is acceptable for ``message`` under ``public_key``.

    The whole acceptance rule of this module's docstring, including the weak-key
    check. Never raises: any input that is not a valid signature gives False.
    """
    pk = _as_bytes(public_key)
    sig = _as_bytes(signature)
    msg = _as_bytes(message)
    if pk is None or sig is None or msg is None or not _passes_prechecks(pk, sig):
        return False
    try:
        nacl.bindings.crypto_sign_open(sig + msg, pk)
    except nacl.exceptions.BadSignatureError:
        return False
    return True


def _verify_chunk(items: Sequence[tuple[bytes, bytes, bytes]]) -> list[bool]:
    return [verify(pk, sig, msg) for pk, sig, msg in items]


def verify_batch(
    items: Iterable[tuple[bytes, bytes, bytes]],
    executor: Executor | None = None,
    *,
    chunk_size: int = 256,
) -> list[bool]:
    """:func:`verify` on each ``(public_key, signature, message)``, results in order.

    With a thread pool ``executor`` the chunks run in parallel: libsodium releases the
    GIL, so two threads verify about twice as fast as one. Each verdict is exactly
    that of :func:`verify`; nothing is verified as a batch equation.
    """
    work = list(items)
    if executor is None or len(work) <= chunk_size:
        return _verify_chunk(work)
    chunks = [work[i : i + chunk_size] for i in range(0, len(work), chunk_size)]
    return [ok for chunk in executor.map(_verify_chunk, chunks) for ok in chunk]
