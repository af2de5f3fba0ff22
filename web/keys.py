"""Residents' passwords and keys: the password record, the sealed key, key export.

The node makes each resident's Ed25519 key and keeps it sealed under their password,
usable only while they are logged in (the session holds the unsealed key in memory).

One scrypt derivation per login gives a master secret; two HKDF expansions with
different labels split it into the *verifier* (stored, compared in constant time) and
the *sealing key* (never stored): knowing the verifier does not give the sealing key.
The private key is sealed with ChaCha20-Poly1305 under a random nonce, with the format
version and the public key as associated data, so a sealed key cannot be moved to
another account. Formats, both versioned:

    password record   fora-scrypt-v1$n=131072,r=8,p=1$<salt, base64>$<verifier, base64>
    sealed key        0x01 || nonce (12 bytes) || ciphertext of the 32-byte key + tag (16)

The scrypt parameters live in each record, so they can be raised later:
:func:`needs_rehash` tells when a record is weaker than :data:`DEFAULT_PARAMS`, and the
next successful login re-seals under a new record (:func:`change_password` with the
same password). At n = 2**17 one derivation costs about 0.5-0.9 s and 128 MiB here;
:data:`MAX_PARALLEL_HASHES` derivations run at once, the others wait.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import threading
import unicodedata
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from protocol import signing
from storage.accounts import Account

__all__ = [
    "DEFAULT_PARAMS",
    "MAX_PARALLEL_HASHES",
    "MAX_PASSWORD",
    "MIN_PASSWORD",
    "LoginFailed",
    "PasswordError",
    "ScryptParams",
    "Sealed",
    "SealedKeyError",
    "change_password",
    "check_password",
    "export_key",
    "login",
    "needs_rehash",
    "new_resident",
    "record_params",
    "seal",
    "unlock",
]

MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_PARALLEL_HASHES = 2
RECORD_VERSION = "fora-scrypt-v1"
SEALED_VERSION = 1
SALT_BYTES = 16
NONCE_BYTES = 12
KEY_BYTES = 32
_VERIFIER_LABEL = b"fora password verifier v1"
_SEALING_LABEL = b"fora key sealing v1"
_AAD_LABEL = b"fora sealed resident key v1"
_RECORD = re.compile(
    r"fora-scrypt-v1\$n=(\d{1,8}),r=(\d{1,2}),p=(\d{1,2})"
    r"\$([A-Za-z0-9+/=]{1,64})\$([A-Za-z0-9+/=]{1,64})"
)
_slots = threading.BoundedSemaphore(MAX_PARALLEL_HASHES)


class PasswordError(ValueError):
    """A new password that is not acceptable (too short, too long)."""


class LoginFailed(Exception):
    """Wrong name or password: one error for both, so a caller cannot tell which."""

    def __init__(self) -> None:
        super().__init__("wrong name or password")


class SealedKeyError(Exception):
    """A stored record or sealed key that is malformed or does not open: damaged data,
    not the user's fault."""


@dataclass(frozen=True, order=True)
class ScryptParams:
    """scrypt's cost: ``n`` (a power of two: CPU and memory), ``r`` (block size), ``p``."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not (2**10 <= self.n <= 2**22 and self.n & (self.n - 1) == 0):
            raise ValueError(f"scrypt n must be a power of two in [2**10, 2**22], not {self.n}")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise ValueError(f"scrypt r in [1, 32] and p in [1, 16], not r={self.r} p={self.p}")

    @property
    def maxmem(self) -> int:
        return 128 * self.r * (self.n + self.p + 2) + (1 << 20)

    def weaker_than(self, other: ScryptParams) -> bool:
        return self.n < other.n or self.r < other.r or self.p < other.p


#: OWASP's recommendation for scrypt (n = 2**17, r = 8, p = 1): 128 MiB per derivation.
DEFAULT_PARAMS = ScryptParams()


@dataclass(frozen=True)
class Sealed:
    """What the accounts table stores for a resident: the record and the sealed key."""

    password: str
    sealed_key: bytes


def check_password(password: str) -> str:
    """The password as hashed (Unicode NFC), or :class:`PasswordError` saying why not."""
    if not isinstance(password, str):
        raise PasswordError("the password must be text")
    normal = unicodedata.normalize("NFC", password)
    if len(normal) < MIN_PASSWORD:
        raise PasswordError(f"a password has at least {MIN_PASSWORD} characters")
    if len(normal) > MAX_PASSWORD:
        raise PasswordError(f"a password has at most {MAX_PASSWORD} characters")
    return normal


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(password: str, salt: bytes, params: ScryptParams) -> tuple[bytes, bytes]:
    """(verifier, sealing key) for ``password`` under ``salt`` and ``params``."""
    secret = unicodedata.normalize("NFC", password).encode("utf-8")
    with _slots:
        master = hashlib.scrypt(
            secret,
            salt=salt,
            n=params.n,
            r=params.r,
            p=params.p,
            maxmem=params.maxmem,
            dklen=KEY_BYTES,
        )
    verifier = HKDFExpand(hashes.SHA256(), KEY_BYTES, _VERIFIER_LABEL).derive(master)
    sealing = HKDFExpand(hashes.SHA256(), KEY_BYTES, _SEALING_LABEL).derive(master)
    return verifier, sealing


def _parse(record: str) -> tuple[ScryptParams, bytes, bytes]:
    match = _RECORD.fullmatch(record)
    if match is None:
        raise SealedKeyError("not a fora-scrypt-v1 password record")
    try:
        params = ScryptParams(int(match[1]), int(match[2]), int(match[3]))
        salt = base64.b64decode(match[4], validate=True)
        verifier = base64.b64decode(match[5], validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SealedKeyError(f"bad password record: {exc}") from None
    if len(salt) != SALT_BYTES or len(verifier) != KEY_BYTES:
        raise SealedKeyError("bad password record: salt or verifier of the wrong size")
    return params, salt, verifier


def record_params(record: str) -> ScryptParams:
    """The scrypt parameters a password record was made with."""
    return _parse(record)[0]


def needs_rehash(record: str, params: ScryptParams = DEFAULT_PARAMS) -> bool:
    """Whether ``record`` is weaker than ``params`` (re-seal at the next login)."""
    return record_params(record).weaker_than(params)


def _aad(public_key: bytes) -> bytes:
    return bytes([SEALED_VERSION]) + _AAD_LABEL + public_key


def seal(password: str, key: Ed25519PrivateKey, params: ScryptParams = DEFAULT_PARAMS) -> Sealed:
    """A new record (fresh salt) for ``password`` and ``key`` sealed under it."""
    password = check_password(password)
    salt = os.urandom(SALT_BYTES)
    verifier, sealing = _derive(password, salt, params)
    record = f"{RECORD_VERSION}$n={params.n},r={params.r},p={params.p}$"
    record += f"{_b64(salt)}${_b64(verifier)}"
    nonce = os.urandom(NONCE_BYTES)
    raw = key.private_bytes_raw()
    box = ChaCha20Poly1305(sealing).encrypt(nonce, raw, _aad(signing.public_key_bytes(key)))
    return Sealed(record, bytes([SEALED_VERSION]) + nonce + box)


def unlock(password: str, sealed: Sealed, public_key: bytes) -> Ed25519PrivateKey:
    """The resident's key, or :class:`LoginFailed` for a wrong password.

    :class:`SealedKeyError` when the password is right but the stored data is damaged
    (or belongs to another public key).
    """
    params, salt, expected = _parse(sealed.password)
    verifier, sealing = _derive(password, salt, params)
    if not hmac.compare_digest(verifier, expected):
        raise LoginFailed()
    blob = sealed.sealed_key
    if len(blob) != 1 + NONCE_BYTES + KEY_BYTES + 16 or blob[0] != SEALED_VERSION:
        raise SealedKeyError("sealed key of an unknown version or size")
    try:
        raw = ChaCha20Poly1305(sealing).decrypt(
            blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :], _aad(public_key)
        )
    except InvalidTag:
        raise SealedKeyError("the sealed key does not open under this password") from None
    key = Ed25519PrivateKey.from_private_bytes(raw)
    if signing.public_key_bytes(key) != public_key:
        raise SealedKeyError("the sealed key is not the account's key")
    return key


# A record to spend the same scrypt work on when the name is unknown (its salt and
# verifier are random, so no password opens it).
_DUMMY: dict[ScryptParams, str] = {}


def _dummy_record(params: ScryptParams) -> str:
    if params not in _DUMMY:
        _DUMMY[params] = (
            f"{RECORD_VERSION}$n={params.n},r={params.r},p={params.p}$"
            f"{_b64(os.urandom(SALT_BYTES))}${_b64(os.urandom(KEY_BYTES))}"
        )
    return _DUMMY[params]


def login(
    account: Account | None, password: str, params: ScryptParams = DEFAULT_PARAMS
) -> Ed25519PrivateKey:
    """Check a login: the resident's unsealed key, or :class:`LoginFailed`.

    ``account`` is ``storage.accounts.get_account(db, name)``: ``None`` for an unknown
    name still costs one derivation at ``params``, so neither the error nor the time
    tells an unknown name from a wrong password. The account's status (pending,
    rejected) is the caller's to check after a successful login.
    """
    if not isinstance(password, str):
        raise LoginFailed()
    if account is None:
        dummy_params, salt, _ = _parse(_dummy_record(params))
        _derive(password, salt, dummy_params)
        raise LoginFailed()
    return unlock(password, Sealed(account.password, account.sealed_key), account.public_key)


def new_resident(
    password: str, params: ScryptParams = DEFAULT_PARAMS
) -> tuple[Ed25519PrivateKey, Sealed]:
    """A new resident key and its record and sealed form (for ``create_account``)."""
    key = signing.generate_private_key()
    return key, seal(password, key, params)


def change_password(
    old_password: str,
    new_password: str,
    sealed: Sealed,
    public_key: bytes,
    params: ScryptParams = DEFAULT_PARAMS,
) -> Sealed:
    """The same key re-sealed under ``new_password`` (fresh salt and nonce, ``params``);
    :class:`LoginFailed` if ``old_password`` is wrong. With the same password twice it
    upgrades a record that :func:`needs_rehash`."""
    new_password = check_password(new_password)
    key = unlock(old_password, sealed, public_key)
    return seal(new_password, key, params)


def export_key(key: Ed25519PrivateKey) -> bytes:
    """The key as the file ``fora key new`` writes and ``--key`` reads: PKCS#8 PEM."""
    return signing.private_key_to_pem(key)
