"""Bodies of the sync API (PROTOCOL.md section 5): msgpack arrays of ids or messages.

A ``fetch`` answer and a ``push`` request are msgpack arrays whose items are messages,
and a message is itself a msgpack value, so the array is its header followed by the
messages' exact bytes: nothing is decoded or re-encoded on the way.
"""

from __future__ import annotations

import msgpack

from protocol.errors import Malformed
from protocol.messages import MAX_MESSAGE, StreamDecoder

__all__ = [
    "MAX_FETCH_IDS",
    "MAX_FETCH_RESPONSE_BYTES",
    "MAX_PUSH_MESSAGES",
    "WireError",
    "array_header",
    "decode_id_list",
    "decode_result_list",
    "encode_list",
    "join_messages",
    "split_messages",
]

MAX_FETCH_IDS = 5_000
#: A fetch answer stops before this many bytes; the client asks again for the rest.
MAX_FETCH_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_PUSH_MESSAGES = 5_000


class WireError(ValueError):
    """A request or response body that does not have the expected shape."""


def array_header(n: int) -> bytes:
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def join_messages(raws: list[bytes]) -> bytes:
    return array_header(len(raws)) + b"".join(raws)


def _read_header(data: bytes) -> tuple[int, int]:
    if not data:
        raise WireError("empty body")
    first = data[0]
    if 0x90 <= first <= 0x9F:
        return first & 0x0F, 1
    if first == 0xDC and len(data) >= 3:
        return int.from_bytes(data[1:3], "big"), 3
    if first == 0xDD and len(data) >= 5:
        return int.from_bytes(data[1:5], "big"), 5
    raise WireError("body is not a msgpack array")


def split_messages(data: bytes, max_items: int = MAX_PUSH_MESSAGES) -> list[bytes]:
    """The raw bytes of each message in a msgpack array of messages."""
    count, offset = _read_header(data)
    if count > max_items:
        raise WireError(f"more than {max_items} messages in one body")
    decoder = StreamDecoder(MAX_MESSAGE)
    try:
        items = decoder.feed(data[offset:])
        decoder.close()
    except Malformed as exc:
        raise WireError(str(exc)) from exc
    if len(items) != count:
        raise WireError(f"array says {count} items, body holds {len(items)}")
    return items


def encode_list(values: list[bytes] | list[str]) -> bytes:
    """A msgpack array of ids (bin) or of result codes (str)."""
    return bytes(msgpack.packb(values, use_bin_type=True))


def decode_id_list(data: bytes, max_items: int = MAX_FETCH_IDS) -> list[bytes]:
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            max_bin_len=32,
            max_str_len=0,
            max_array_len=max_items,
            max_map_len=0,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError(f"not a msgpack array of at most {max_items} ids") from exc
    if type(value) is not list:
        raise WireError("body is not a msgpack array")
    for item in value:
        if type(item) is not bytes or len(item) != 32:
            raise WireError("every id must be bin(32)")
    return value


def decode_result_list(data: bytes, expected: int) -> list[str]:
    try:
        value = msgpack.unpackb(data, raw=False, max_array_len=expected, max_str_len=32)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise WireError("push answer is not a msgpack array of result codes") from exc
    if type(value) is not list or len(value) != expected or not all(type(v) is str for v in value):
        raise WireError("push answer does not hold one result code per message")
    return value
