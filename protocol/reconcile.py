"""Range-based set reconciliation: Negentropy protocol v1, sans-IO.

Two nodes find the difference between their sets of items (``(ts // 1000, id)`` of a
community's messages) in a few round trips whose cost grows with the number of
differences, not with the size of the sets. The messages are byte-identical to the
reference implementation (hoytech/negentropy, protocol version byte ``0x61``) for the
same sets and frame size limit; ``tests/vectors/negentropy-v1.json`` pins that.

Bytes in, bytes out, no I/O::

    client = Negentropy(client_store, frame_size_limit=60_000)
    server = Negentropy(server_store, frame_size_limit=60_000)
    msg: bytes | None = client.initiate()
    while msg is not None:
        step = client.reconcile_client(server.reconcile(msg))
        have.extend(step.have_ids)   # we hold, the server lacks: push them
        need.extend(step.need_ids)   # the server holds, we lack: fetch them
        msg = step.message

The server side keeps no state between messages: a fresh :class:`Negentropy` per
request answers the same bytes. Anything wrong with a peer's message raises
:class:`~protocol.errors.ReconcileError` and puts the session in :attr:`State.ERROR`;
misusing a session (wrong call for its state or role) raises
:class:`~protocol.errors.LocalProtocolError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, IntEnum, auto
from types import MappingProxyType
from typing import Final

from .errors import LocalProtocolError, ReconcileError
from .negentropy_store import (
    FINGERPRINT_SIZE,
    ID_SIZE,
    INFINITY_BOUND,
    MAX_U64,
    ZERO_BOUND,
    Bound,
    Item,
    ItemStore,
    VectorStore,
    encode_varint,
    fingerprint_of,
    id_sum,
)

__all__ = [
    "DEFAULT_FRAME_SIZE_LIMIT",
    "FINGERPRINT_SIZE",
    "ID_SIZE",
    "MAX_U64",
    "MIN_FRAME_SIZE_LIMIT",
    "PROTOCOL_VERSION",
    "TRANSITIONS",
    "Bound",
    "ClientStep",
    "Event",
    "Item",
    "ItemStore",
    "Mode",
    "Negentropy",
    "State",
    "VectorStore",
    "encode_varint",
    "fingerprint_of",
    "id_sum",
]

PROTOCOL_VERSION: Final = 0x61
#: Version bytes 0x60..0x6F are Negentropy's; anything else is not a Negentropy message.
_MIN_VERSION, _MAX_VERSION = 0x60, 0x6F
DEFAULT_FRAME_SIZE_LIMIT: Final = 60_000
MIN_FRAME_SIZE_LIMIT: Final = 4096
#: Output stops this many bytes short of the frame limit (the reference's margin).
_FRAME_MARGIN: Final = 200
_BUCKETS: Final = 16
_VERSION_BYTE: Final = bytes((PROTOCOL_VERSION,))


class Mode(IntEnum):
    """What a range's payload is."""

    SKIP = 0  # nothing: the sender is done with this range
    FINGERPRINT = 1  # 16 bytes: the sender's fingerprint of the range
    ID_LIST = 2  # varint count, then that many 32-byte ids: all the sender holds in it


class State(Enum):
    """Where a session is."""

    IDLE = auto()  # fresh: may initiate, or answer as the responder
    AWAITING_REPLY = auto()  # initiator: sent a message, waits for the peer's reply
    RESPONDING = auto()  # responder: answered, may answer the next message
    DONE = auto()  # initiator: nothing left to ask; the difference is known
    ERROR = auto()  # the peer sent something bad; the session is dead


class Event(Enum):
    """What happened to a session (the inputs of the transition table)."""

    INITIATE = auto()  # initiate(): the opening message went out
    QUERY = auto()  # reconcile(): the responder answered a message
    REPLY = auto()  # reconcile_client(): the initiator has a next message
    FINISH = auto()  # reconcile_client(): the initiator has nothing left to send
    FAIL = auto()  # the peer's message was bad


#: The one transition table. A (state, event) pair missing here is a protocol error.
TRANSITIONS: Final[Mapping[tuple[State, Event], State]] = MappingProxyType(
    {
        (State.IDLE, Event.INITIATE): State.AWAITING_REPLY,
        (State.IDLE, Event.QUERY): State.RESPONDING,
        (State.RESPONDING, Event.QUERY): State.RESPONDING,
        (State.AWAITING_REPLY, Event.REPLY): State.AWAITING_REPLY,
        (State.AWAITING_REPLY, Event.FINISH): State.DONE,
        (State.IDLE, Event.FAIL): State.ERROR,
        (State.RESPONDING, Event.FAIL): State.ERROR,
        (State.AWAITING_REPLY, Event.FAIL): State.ERROR,
    }
)


@dataclass(frozen=True, slots=True)
class ClientStep:
    """What the initiator learned from one reply.

    ``message`` is the next message to send, or ``None`` when reconciliation is
    complete. ``have_ids``: ids we hold that the peer lacks (push them); ``need_ids``:
    ids the peer holds that we lack (fetch them). Each id is reported once per session
    (with a frame limit the reference protocol can revisit a settled range).
    """

    message: bytes | None
    have_ids: tuple[bytes, ...]
    need_ids: tuple[bytes, ...]

    @property
    def done(self) -> bool:
        return self.message is None


class _Reader:
    """A cursor over one untrusted message; every read checks what is left first."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def byte(self) -> int:
        if self._pos >= len(self._data):
            raise ReconcileError("message ends prematurely")
        self._pos += 1
        return self._data[self._pos - 1]

    def take(self, n: int) -> bytes:
        if n > self.remaining:
            raise ReconcileError("message ends prematurely")
        start = self._pos
        self._pos += n
        return self._data[start : self._pos]

    def skip(self, n: int) -> None:
        self.take(n)

    def varint(self) -> int:
        data, pos, end = self._data, self._pos, len(self._data)
        if pos < end and data[pos] == 0x80:
            raise ReconcileError("varint has a leading zero group")
        value = 0
        while True:
            if pos >= end:
                raise ReconcileError("varint ends prematurely")
            byte = data[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if value > MAX_U64:
                raise ReconcileError("varint overflows u64")
            if not byte & 0x80:
                break
        self._pos = pos
        return value


class Negentropy:
    """One side of one reconciliation over ``store``.

    Call :meth:`initiate` then :meth:`reconcile_client` to be the initiator (client);
    call :meth:`reconcile` to be the responder (server). ``frame_size_limit`` is 0 (no
    limit) or at least 4096 bytes: longer answers stop early and the rest of the range
    is carried over to the next round.
    """

    def __init__(self, store: ItemStore, frame_size_limit: int = DEFAULT_FRAME_SIZE_LIMIT) -> None:
        if isinstance(frame_size_limit, bool) or not isinstance(frame_size_limit, int):
            raise LocalProtocolError("frame_size_limit must be an int")
        if frame_size_limit != 0 and frame_size_limit < MIN_FRAME_SIZE_LIMIT:
            raise LocalProtocolError(
                f"frame_size_limit must be 0 or >= {MIN_FRAME_SIZE_LIMIT}: {frame_size_limit}"
            )
        self.store: Final = store
        self.frame_size_limit: Final = frame_size_limit
        self._state = State.IDLE
        self._last_in = 0
        self._last_out = 0
        # Ids already reported to the initiator's caller: with a frame limit the
        # reference can revisit a settled range, and each id should be reported once.
        self._reported: set[bytes] = set()

    @property
    def state(self) -> State:
        return self._state

    # The state machine

    def _check(self, event: Event) -> None:
        if (self._state, event) not in TRANSITIONS:
            raise LocalProtocolError(f"cannot {event.name.lower()} in state {self._state.name}")

    def _transition(self, event: Event) -> None:
        self._check(event)
        self._state = TRANSITIONS[self._state, event]

    # Public API

    def initiate(
        self, whole_set_fingerprint: bool = False, *, recent_since: int | None = None
    ) -> bytes:
        """The opening message; this session becomes the initiator.

        By default the whole set is split as the reference's ``initiate()`` does (16
        fingerprints, or an id list under 32 items). With ``whole_set_fingerprint`` the
        message is one Fingerprint range over everything (20 bytes); a peer holding the
        same set answers with the version byte alone.

        With ``recent_since`` (a timestamp) the message is one Fingerprint range over
        the items before it and one IdList of our items from it on: after an outage
        whose differences are all recent, the responder's IdList answer settles them in
        one round trip at about 32 bytes per item since then. When those ids would not
        fit in one frame, the default opening is sent instead. Every opening is a valid
        Negentropy v1 message; the responder needs to know nothing about it.
        """
        self._check(Event.INITIATE)
        self._last_out = 0
        out = bytearray(_VERSION_BYTE)
        store = self.store
        size = store.size()
        if whole_set_fingerprint:
            out += self._encode_bound(INFINITY_BOUND)
            out += encode_varint(Mode.FINGERPRINT)
            out += store.fingerprint(0, size)
        elif recent_since is not None and self._recent_fits(
            size - store.find_lower_bound(0, size, Bound(recent_since))
        ):
            split = store.find_lower_bound(0, size, Bound(recent_since))
            if split > 0:
                out += self._encode_bound(Bound(recent_since))
                out += encode_varint(Mode.FINGERPRINT)
                out += store.fingerprint(0, split)
            out += self._encode_bound(INFINITY_BOUND)
            out += encode_varint(Mode.ID_LIST)
            out += encode_varint(size - split)
            for item in store.iterate(split, size):
                out += item.id
        else:
            out += self._split_range(0, size, INFINITY_BOUND)
        self._transition(Event.INITIATE)
        return bytes(out)

    def _recent_fits(self, count: int) -> bool:
        # version + two bounds and modes + a fingerprint + the id list, within a frame
        return not self._exceeded(64 + FINGERPRINT_SIZE + ID_SIZE * count)

    def reconcile(self, message: bytes) -> bytes:
        """As the responder: answer one message from the initiator."""
        self._check(Event.QUERY)
        answer, _, _ = self._run(message, initiator=False)
        self._transition(Event.QUERY)
        return answer

    def reconcile_client(self, message: bytes) -> ClientStep:
        """As the initiator: take the responder's reply, learn have/need ids, and get
        the next message (``None`` once done)."""
        self._check(Event.REPLY)
        answer, have, need = self._run(message, initiator=True)
        new_have = tuple(self._first_report(have))
        new_need = tuple(self._first_report(need))
        if len(answer) == 1:
            self._transition(Event.FINISH)
            return ClientStep(None, new_have, new_need)
        self._transition(Event.REPLY)
        return ClientStep(answer, new_have, new_need)

    def _first_report(self, ids: list[bytes]) -> list[bytes]:
        reported = self._reported
        fresh = [item_id for item_id in ids if item_id not in reported]
        reported.update(fresh)
        return fresh

    # Processing one message

    def _run(self, message: bytes, *, initiator: bool) -> tuple[bytes, list[bytes], list[bytes]]:
        if not isinstance(message, bytes | bytearray | memoryview):
            raise LocalProtocolError("a reconciliation message is bytes")
        try:
            return self._process(bytes(message), initiator=initiator)
        except BaseException:
            self._transition(Event.FAIL)
            raise

    def _process(
        self, message: bytes, *, initiator: bool
    ) -> tuple[bytes, list[bytes], list[bytes]]:
        store = self.store
        reader = _Reader(message)
        self._last_in = self._last_out = 0  # the timestamp deltas restart with each message
        have: list[bytes] = []
        need: list[bytes] = []
        out = bytearray(_VERSION_BYTE)

        version = reader.byte()
        if not _MIN_VERSION <= version <= _MAX_VERSION:
            raise ReconcileError(f"not a Negentropy message (version byte {version:#04x})")
        if version != PROTOCOL_VERSION:
            if initiator:
                raise ReconcileError(f"peer speaks Negentropy protocol version {version - 0x60}")
            return bytes(out), have, need  # tell the initiator which version we speak

        size = store.size()
        prev_bound = ZERO_BOUND
        prev_key = ZERO_BOUND.key
        prev_index = 0
        skip = False

        while reader.remaining:
            o = bytearray()
            curr_bound = self._decode_bound(reader)
            curr_key = curr_bound.key
            if curr_key < prev_key:
                raise ReconcileError("range bounds out of order")
            mode = reader.varint()
            lower = prev_index
            upper = store.find_lower_bound(prev_index, size, curr_bound)

            if mode == Mode.SKIP:
                skip = True
            elif mode == Mode.FINGERPRINT:
                theirs = reader.take(FINGERPRINT_SIZE)
                if theirs != store.fingerprint(lower, upper):
                    if skip:
                        skip = False
                        o += self._encode_bound(prev_bound) + encode_varint(Mode.SKIP)
                    o += self._split_range(lower, upper, curr_bound)
                else:
                    skip = True
            elif mode == Mode.ID_LIST:
                count = reader.varint()
                if count > reader.remaining // ID_SIZE:
                    raise ReconcileError(f"id list claims {count} ids, more than the message holds")
                if initiator:
                    packed = reader.take(count * ID_SIZE)
                    theirs_ids = dict.fromkeys(
                        packed[i : i + ID_SIZE] for i in range(0, len(packed), ID_SIZE)
                    )
                    for item in store.iterate(lower, upper):
                        if item.id in theirs_ids:
                            del theirs_ids[item.id]
                        else:
                            have.append(item.id)
                    need.extend(theirs_ids)
                    skip = True
                else:
                    reader.skip(count * ID_SIZE)  # the responder just sends all it holds
                    if skip:
                        skip = False
                        o += self._encode_bound(prev_bound) + encode_varint(Mode.SKIP)
                    response_ids = bytearray()
                    end_bound = curr_bound
                    for index, item in enumerate(store.iterate(lower, upper), lower):
                        if self._exceeded(len(out) + len(response_ids)):
                            end_bound = Bound.of_item(item)
                            upper = index  # the rest of the range goes in the remainder
                            break
                        response_ids += item.id
                    o += self._encode_bound(end_bound)
                    o += encode_varint(Mode.ID_LIST)
                    o += encode_varint(len(response_ids) // ID_SIZE)
                    o += response_ids
                    out += o
                    o.clear()
            else:
                raise ReconcileError(f"unknown range mode {mode}")

            if self._exceeded(len(out) + len(o)):
                # Frame full: stop here and send one fingerprint for what is left (as the
                # reference does, over the items from `upper` on).
                out += self._encode_bound(INFINITY_BOUND)
                out += encode_varint(Mode.FINGERPRINT)
                out += store.fingerprint(upper, size)
                break
            out += o
            prev_index = upper
            prev_bound = curr_bound
            prev_key = curr_key

        return bytes(out), have, need

    def _split_range(self, lower: int, upper: int, upper_bound: Bound) -> bytes:
        """Our ranges for [lower, upper): an id list under 32 items, else 16 buckets."""
        store = self.store
        o = bytearray()
        count = upper - lower
        if count < _BUCKETS * 2:
            o += self._encode_bound(upper_bound)
            o += encode_varint(Mode.ID_LIST)
            o += encode_varint(count)
            for item in store.iterate(lower, upper):
                o += item.id
            return bytes(o)
        per_bucket, with_extra = divmod(count, _BUCKETS)
        curr = lower
        for i in range(_BUCKETS):
            bucket_size = per_bucket + (1 if i < with_extra else 0)
            fingerprint = store.fingerprint(curr, curr + bucket_size)
            curr += bucket_size
            if curr == upper:
                bound = upper_bound
            else:
                bound = Bound.between(store.get_item(curr - 1), store.get_item(curr))
            o += self._encode_bound(bound)
            o += encode_varint(Mode.FINGERPRINT)
            o += fingerprint
        return bytes(o)

    def _exceeded(self, n: int) -> bool:
        return bool(self.frame_size_limit) and n > self.frame_size_limit - _FRAME_MARGIN

    # Bounds on the wire: varint(0 for infinity, else 1 + delta from the previous
    # timestamp of this message), varint(prefix length 0..32), prefix bytes.

    def _decode_bound(self, reader: _Reader) -> Bound:
        encoded = reader.varint()
        # 0 is infinity; a sum past the u64 range saturates to infinity (as the reference).
        timestamp = MAX_U64 if encoded == 0 else min(encoded - 1 + self._last_in, MAX_U64)
        self._last_in = timestamp
        length = reader.varint()
        if length > ID_SIZE:
            raise ReconcileError(f"bound id prefix of {length} bytes (at most {ID_SIZE})")
        return Bound(timestamp, reader.take(length))

    def _encode_bound(self, bound: Bound) -> bytes:
        timestamp = bound.timestamp
        if timestamp == MAX_U64:
            self._last_out = MAX_U64
            head = b"\x00"
        else:
            delta = (timestamp - self._last_out) & MAX_U64  # never negative in practice
            self._last_out = timestamp
            head = encode_varint((delta + 1) & MAX_U64)
        return head + encode_varint(len(bound.id_prefix)) + bound.id_prefix
