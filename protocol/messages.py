"""Signed messages: build, encode, decode and check them (PROTOCOL.md sections 1-3).

A message on the wire is ``[payload: bin, signature: bin(64), body: bin | nil]``; the
payload is the canonical msgpack array ``[version, kind, community, author, ts, refs,
body_hash]``, its SHA-256 is the message id, and the author signs the 32-byte id. The
body is signed only through its hash, so it can be dropped (a *skeleton*) while the
envelope stays verifiable.

:func:`decode_message` runs every check in the order PROTOCOL.md section 3 gives and
raises the first failure as its :class:`~protocol.errors.MessageRejected` subclass.
The clock is an argument (``now_ms``); nothing here reads it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import kinds, signing
from .encoding import check_canonical, is_map, pack, unpack_structural
from .errors import (
    BadField,
    BadSignature,
    BodyMismatch,
    FromFuture,
    LocalProtocolError,
    Malformed,
    MessageRejected,
    WeakKey,
)

__all__ = [
    "FUTURE_TOLERANCE_MS",
    "MAX_BODY",
    "MAX_MESSAGE",
    "MAX_PAYLOAD",
    "MAX_REFS",
    "VERSION",
    "Message",
    "StreamDecoder",
    "create_message",
    "decode_message",
    "encode_envelope",
    "iter_stream",
    "message_id_hex",
    "rebuild_checked",
]

VERSION = 1
MAX_PAYLOAD = 4_096
MAX_BODY = 65_536
MAX_MESSAGE = 70_000
MAX_REFS = 16
FUTURE_TOLERANCE_MS = 10 * 60 * 1000
_UINT64_MAX = (1 << 64) - 1
_KIND_RE = re.compile(r"[a-z_]{1,32}\Z")
_SIG_LEN = 64
_KEY_LEN = 32


def message_id_hex(message_id: bytes) -> str:
    return message_id.hex()


def encode_envelope(payload: bytes, signature: bytes, body: bytes | None) -> bytes:
    """The canonical outer array (the only byte form a node accepts or stores)."""
    return bytes(msgpack.packb([payload, signature, body], use_bin_type=True))


@dataclass(frozen=True, slots=True, eq=False)
class Message:
    """One checked message. ``fields`` is the decoded body (None for a skeleton)."""

    kind: str
    community: bytes
    author: bytes
    ts: int
    refs: tuple[bytes, ...]
    body_hash: bytes
    signature: bytes
    payload: bytes
    id: bytes
    body: bytes | None
    fields: dict[str, Any] | None = field(repr=False)
    raw: bytes = field(repr=False)

    version = VERSION

    def __reduce__(self) -> tuple[Any, ...]:
        # Checked messages cross process boundaries (checking workers): send the bytes,
        # the decoded body and the id once; the rest is re-read from the bytes,
        # unchecked (cheaper than pickling each field: fewer objects to memoize).
        return (_rebuild_checked, (self.raw, self.fields, self.id))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    @property
    def hex_id(self) -> str:
        return self.id.hex()

    @property
    def is_skeleton(self) -> bool:
        return self.body is None

    def skeleton(self) -> Message:
        """The same signed envelope without its body (what erasure keeps)."""
        if self.body is None:
            return self
        return replace(
            self, body=None, fields=None, raw=encode_envelope(self.payload, self.signature, None)
        )

    def with_body(self, body: bytes) -> Message:
        """This skeleton filled in with ``body``, checked against its hash and schema."""
        if len(body) > MAX_BODY:
            raise Malformed(f"body over {MAX_BODY} bytes")
        fields = _decode_body(body)
        _check_body(self.kind, self.body_hash, body, fields, self.refs)
        return replace(
            self, body=body, fields=fields, raw=encode_envelope(self.payload, self.signature, body)
        )


def _rebuild_checked(raw: bytes, fields: dict[str, Any] | None, message_id: bytes) -> Message:
    """Rebuild a message that was checked already (see ``Message.__reduce__``)."""
    return rebuild_checked(raw, message_id, fields=fields)


def rebuild_checked(
    raw: bytes, message_id: bytes | None = None, *, fields: dict[str, Any] | None = None
) -> Message:
    """The :class:`Message` of bytes that passed :func:`decode_message` before, decoded
    again with no check at all (``message_id``: its id, when known; ``fields``: its
    decoded body, when known).

    Only for bytes this process holds and has seen pass (a checking worker says which
    of the bytes it was sent passed, with their ids, rather than sending each message
    back: about 1 KB less to pickle, pipe and unpickle per message). Anything else goes
    through :func:`decode_message`.
    """
    payload, signature, body = msgpack.unpackb(raw)
    _, kind, community, author, ts, refs, body_hash = msgpack.unpackb(payload, use_list=False)
    # Positional, in field order (keywords cost ~0.8 us more per message).
    return Message(
        kind,
        community,
        author,
        ts,
        refs,
        body_hash,
        signature,
        payload,
        hashlib.sha256(payload).digest() if message_id is None else message_id,
        body,
        fields if fields is not None or body is None else msgpack.unpackb(body),
        raw,
    )


def create_message(
    key: Ed25519PrivateKey,
    *,
    kind: str,
    community: bytes,
    ts: int,
    fields: Mapping[str, Any],
    refs: Sequence[bytes] = (),
) -> Message:
    """Build and sign a message; it passes :func:`decode_message` or this raises.

    Raises :class:`LocalProtocolError` when the arguments cannot make a valid message
    (the schema's complaint is kept as the cause).
    """
    author = signing.public_key_bytes(key)
    body = pack(dict(fields))
    payload = pack(
        [VERSION, kind, community, author, ts, list(refs), hashlib.sha256(body).digest()]
    )
    message_id = hashlib.sha256(payload).digest()
    raw = encode_envelope(payload, signing.sign(key, message_id), body)
    try:
        return decode_message(raw, now_ms=ts)
    except MessageRejected as exc:
        raise LocalProtocolError(f"cannot build this {kind}: {exc.code}: {exc}") from exc


def _structural_body(body: bytes) -> Any:
    fields = unpack_structural(body)
    if not is_map(fields):
        raise Malformed("body is not a msgpack map")
    return fields


def _decode_body(body: bytes) -> dict[str, Any]:
    fields = _structural_body(body)
    check_canonical(fields, body)
    return dict(fields)


def _check_body(
    kind: str, body_hash: bytes, body: bytes, fields: dict[str, Any], refs: Sequence[bytes]
) -> None:
    if hashlib.sha256(body).digest() != body_hash:
        raise BodyMismatch("SHA-256 of the body is not body_hash")
    kinds.check_body(kind, fields, refs)


def _bin_header_size(n: int) -> int:
    return 2 if n < 0x100 else 3 if n < 0x10000 else 5


def _envelope_size(payload_len: int, body_len: int | None) -> int:
    """The size of the canonical envelope around a payload and a body (or nil).

    Every item of a decoded envelope has a msgpack header at least as long as its
    shortest form, and the shortest forms are the canonical ones; so an envelope that
    decoded to ``[bin, bin(64), bin | nil]`` with nothing left over is canonical exactly
    when it has this size (the same test as re-encoding it, without the copy).
    """
    size = 1 + _bin_header_size(payload_len) + payload_len + 2 + _SIG_LEN
    return size + (1 if body_len is None else _bin_header_size(body_len) + body_len)


def _is_bin(value: object, length: int) -> bool:
    return type(value) is bytes and len(value) == length


def decode_message(raw: bytes, *, now_ms: int, verify: bool = True) -> Message:
    """Decode and check one message from untrusted bytes.

    The checks run in the order of PROTOCOL.md section 3; the first failure is raised.
    ``verify=False`` skips only the signature (for bytes this node wrote and checked
    before, such as its own database); everything else is always checked.
    """
    # -- malformed ---------------------------------------------------------------
    if len(raw) > MAX_MESSAGE:
        raise Malformed(f"message over {MAX_MESSAGE} bytes")
    outer = unpack_structural(raw)
    if type(outer) is not list or len(outer) != 3:
        raise Malformed("not a 3-element array")
    payload, signature, body = outer
    if type(payload) is not bytes:
        raise Malformed("payload is not bin")
    if not _is_bin(signature, _SIG_LEN):
        raise Malformed("signature is not bin(64)")
    if body is not None and type(body) is not bytes:
        raise Malformed("body is neither bin nor nil")
    if len(payload) > MAX_PAYLOAD:
        raise Malformed(f"payload over {MAX_PAYLOAD} bytes")
    if body is not None and len(body) > MAX_BODY:
        raise Malformed(f"body over {MAX_BODY} bytes")
    if len(raw) != _envelope_size(len(payload), None if body is None else len(body)):
        raise Malformed("envelope is not in its canonical form")
    head = unpack_structural(payload)
    if type(head) is not list or len(head) != 7:
        raise Malformed("payload is not a 7-element array")
    fields = _structural_body(body) if body is not None else None
    # -- non_canonical -----------------------------------------------------------
    check_canonical(head, payload)
    if body is not None:
        check_canonical(fields, body)
    # -- bad_field ---------------------------------------------------------------
    version, kind, community, author, ts, refs, body_hash = head
    if type(version) is not int or version != VERSION:
        raise BadField("version is not 1")
    if type(kind) is not str or not _KIND_RE.match(kind):
        raise BadField("kind is not 1..32 chars of a-z and _")
    if not _is_bin(community, _KEY_LEN):
        raise BadField("community is not bin(32)")
    if not _is_bin(author, _KEY_LEN):
        raise BadField("author is not bin(32)")
    if type(ts) is not int or not 0 <= ts <= _UINT64_MAX:
        raise BadField("ts is not an integer >= 0")
    if type(refs) is not list or len(refs) > MAX_REFS:
        raise BadField(f"refs is not an array of at most {MAX_REFS}")
    for ref in refs:
        if not _is_bin(ref, 32):
            raise BadField("a ref is not bin(32)")
    if not _is_bin(body_hash, 32):
        raise BadField("body_hash is not bin(32)")
    # -- weak_key ----------------------------------------------------------------
    if signing.is_weak_key(author):
        raise WeakKey("author key is not a point of large order")
    if signing.is_weak_key(community):
        raise WeakKey("community key is not a point of large order")
    # -- bad_signature -----------------------------------------------------------
    message_id = hashlib.sha256(payload).digest()
    if verify and not signing.verify(author, signature, message_id):
        raise BadSignature("Ed25519 signature does not verify")
    # -- from_future -------------------------------------------------------------
    if ts > now_ms + FUTURE_TOLERANCE_MS:
        raise FromFuture("ts is more than 10 minutes ahead")
    # -- body_mismatch, bad_body -------------------------------------------------
    refs_t = tuple(refs)
    if body is not None:
        assert fields is not None
        _check_body(kind, body_hash, body, fields, refs_t)
    # Positional, in field order (keywords cost ~0.8 us more per message).
    return Message(
        kind,
        community,
        author,
        ts,
        refs_t,
        body_hash,
        signature,
        payload,
        message_id,
        body,
        fields,
        raw,
    )


class StreamDecoder:
    """Split a byte stream of concatenated msgpack values into one ``bytes`` per value.

    Sans-IO: :meth:`feed` any chunk (a whole file, or one byte at a time) and get back
    the complete values seen so far, as their raw bytes, for :func:`decode_message` to
    check one by one. A value that is not msgpack, or that grows past ``max_item``
    bytes, ends the stream with :class:`Malformed`: there is no framing to resync on.
    """

    def __init__(self, max_item: int = MAX_MESSAGE) -> None:
        self._max_item = max_item
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max_item + 1,
            max_str_len=max_item,
            max_bin_len=max_item,
            max_array_len=max_item,
            max_map_len=max_item,
            max_ext_len=max_item,
        )
        self._pending = bytearray()  # bytes of the value not yet complete
        self._consumed = 0  # stream offset where _pending starts
        self._dead: Malformed | None = None

    @property
    def pending(self) -> int:
        """How many bytes of an incomplete value are buffered."""
        return len(self._pending)

    def feed(self, data: bytes) -> list[bytes]:
        if self._dead is not None:
            raise self._dead
        out: list[bytes] = []
        view = memoryview(data)
        while view:
            room = self._max_item + 1 - len(self._pending)
            chunk, view = view[:room], view[room:]
            self._unpacker.feed(chunk)
            self._pending += chunk
            while True:
                try:
                    self._unpacker.skip()
                except msgpack.OutOfData:
                    break
                except (ValueError, msgpack.UnpackException, RecursionError) as exc:
                    self._dead = Malformed(f"stream is not msgpack at offset {self._consumed}")
                    self._dead.__cause__ = exc
                    if out:  # hand over the values before the bad one; raise next time
                        return out
                    raise self._dead from exc
                end = self._unpacker.tell()
                size = end - self._consumed
                out.append(bytes(self._pending[:size]))
                del self._pending[:size]
                self._consumed = end
            if len(self._pending) > self._max_item:
                self._dead = Malformed(
                    f"value at offset {self._consumed} is over {self._max_item} bytes"
                )
                if out:
                    return out
                raise self._dead
        return out

    def close(self) -> None:
        """Declare the end of the stream; leftover bytes are a truncated value."""
        if self._dead is not None:
            raise self._dead
        if self._pending:
            self._dead = Malformed(f"stream ends inside a value at offset {self._consumed}")
            raise self._dead


def iter_stream(chunks: Iterable[bytes], max_item: int = MAX_MESSAGE) -> Iterator[bytes]:
    """Yield each value's raw bytes from an iterable of chunks (then check the end)."""
    decoder = StreamDecoder(max_item)
    for chunk in chunks:
        yield from decoder.feed(chunk)
    decoder.close()
