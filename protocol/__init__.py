"""Fora's wire protocol, version 1: pure code, no I/O, no clock, no asyncio.

- :mod:`protocol.encoding` — canonical msgpack
- :mod:`protocol.signing` — Ed25519 keys and the consensus-critical verify
- :mod:`protocol.messages` — the signed message: build, encode, decode, check
- :mod:`protocol.kinds` — the body schema of every kind
- :mod:`protocol.reconcile` — Negentropy v1 range-based set reconciliation
- :mod:`protocol.sortition` — panels drawn by lot: roll, commit, seed, selection
- :mod:`protocol.errors` — whose fault it is, and one code per rejection reason
- :mod:`protocol.dates` — what a typed date means (a close ends with its day)
"""

from .dates import BadTime, closing_time, opening_time
from .errors import (
    BadBody,
    BadField,
    BadSignature,
    BodyMismatch,
    FromFuture,
    LocalProtocolError,
    Malformed,
    MessageRejected,
    NonCanonical,
    ProtocolError,
    ReconcileError,
    RemoteProtocolError,
    Result,
    WeakKey,
)
from .messages import Message, StreamDecoder, create_message, decode_message, iter_stream
from .reconcile import (
    DEFAULT_FRAME_SIZE_LIMIT,
    PROTOCOL_VERSION,
    Bound,
    ClientStep,
    Item,
    ItemStore,
    Negentropy,
    State,
    VectorStore,
)

__all__ = [
    "DEFAULT_FRAME_SIZE_LIMIT",
    "PROTOCOL_VERSION",
    "BadBody",
    "BadField",
    "BadSignature",
    "BadTime",
    "BodyMismatch",
    "Bound",
    "ClientStep",
    "FromFuture",
    "Item",
    "ItemStore",
    "LocalProtocolError",
    "Malformed",
    "Message",
    "MessageRejected",
    "Negentropy",
    "NonCanonical",
    "ProtocolError",
    "ReconcileError",
    "RemoteProtocolError",
    "Result",
    "State",
    "StreamDecoder",
    "VectorStore",
    "WeakKey",
    "closing_time",
    "create_message",
    "decode_message",
    "iter_stream",
    "opening_time",
]
