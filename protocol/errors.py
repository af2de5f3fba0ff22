"""Errors say whose fault they are.

A :class:`RemoteProtocolError` means the bytes we were given are bad (a peer, a file or a
form sent them); at the HTTP edge it maps to a 400. A :class:`LocalProtocolError` means
our own code misused the protocol layer.

Every reason a message is rejected is its own subclass with a stable ``code``: the codes
are part of the wire protocol (``push`` answers with them, PROTOCOL.md section 3).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

__all__ = [
    "BadBody",
    "BadField",
    "BadSignature",
    "BodyMismatch",
    "FromFuture",
    "LocalProtocolError",
    "Malformed",
    "MessageRejected",
    "NonCanonical",
    "ProtocolError",
    "ReconcileError",
    "RemoteProtocolError",
    "Result",
    "WeakKey",
]


class Result(StrEnum):
    """The result code of ingesting one message, in the order checks run."""

    OK = "ok"
    DUPLICATE = "duplicate"
    ERASED = "erased"
    MALFORMED = "malformed"
    NON_CANONICAL = "non_canonical"
    BAD_FIELD = "bad_field"
    WEAK_KEY = "weak_key"
    BAD_SIGNATURE = "bad_signature"
    FROM_FUTURE = "from_future"
    BODY_MISMATCH = "body_mismatch"
    BAD_BODY = "bad_body"

    @property
    def accepted(self) -> bool:
        """True for the codes that mean the message is (or already was) stored."""
        return self in (Result.OK, Result.DUPLICATE, Result.ERASED)


class ProtocolError(Exception):
    """Base of every error raised by :mod:`protocol`."""


class LocalProtocolError(ProtocolError):
    """We misused the protocol layer (a bug on our side, not the peer's)."""


class RemoteProtocolError(ProtocolError):
    """The input we were given breaks the protocol; the sender is at fault."""


class ReconcileError(RemoteProtocolError):
    """A reconciliation message that cannot be decoded or does not fit the session."""


class MessageRejected(RemoteProtocolError):
    """A message failed one of the checks of PROTOCOL.md section 3."""

    result: ClassVar[Result]

    @property
    def code(self) -> str:
        return self.result.value


class Malformed(MessageRejected):
    result = Result.MALFORMED


class NonCanonical(MessageRejected):
    result = Result.NON_CANONICAL


class BadField(MessageRejected):
    result = Result.BAD_FIELD


class WeakKey(MessageRejected):
    result = Result.WEAK_KEY


class BadSignature(MessageRejected):
    result = Result.BAD_SIGNATURE


class FromFuture(MessageRejected):
    result = Result.FROM_FUTURE


class BodyMismatch(MessageRejected):
    result = Result.BODY_MISMATCH


class BadBody(MessageRejected):
    result = Result.BAD_BODY
