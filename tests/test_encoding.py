"""Canonical msgpack: one value, one byte form."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.encoding import (
    MAX_DEPTH,
    _unpackb,
    pack,
    unpack_canonical,
    unpack_structural,
)
from protocol.errors import LocalProtocolError, Malformed, NonCanonical, ProtocolError

scalars = (
    st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.booleans()
    | st.none()
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


def sort_keys(value: object) -> object:
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    return value


@given(values)
def test_round_trip(value: object) -> None:
    if depth(value) > MAX_DEPTH:
        with pytest.raises(LocalProtocolError):
            pack(value)
        return
    data = pack(value)
    assert unpack_canonical(data) == sort_keys(value)
    assert pack(unpack_canonical(data)) == data


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_our_errors(data: bytes) -> None:
    try:
        value = unpack_canonical(data)
    except ProtocolError:
        return
    assert pack(value) == data  # whatever is accepted is canonical


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"\xcc\x01", NonCanonical),  # 1 as uint8 instead of fixint
        (b"\xd0\x01", NonCanonical),  # 1 as int8
        (b"\xcd\x00\x10", NonCanonical),  # 16 as uint16
        (b"\xd9\x01a", NonCanonical),  # 'a' as str8
        (b"\xc5\x00\x01a", NonCanonical),  # b'a' as bin16
        (b"\xdc\x00\x00", NonCanonical),  # [] as array16
        (b"\x82\xa1b\x01\xa1a\x02", NonCanonical),  # keys out of order
        (b"\x82\xa1a\x01\xa1a\x02", NonCanonical),  # duplicate keys
        (b"\x81\x01\x01", NonCanonical),  # int key
        (b"\x81\xc4\x01a\x01", NonCanonical),  # bin key
        (b"\x81\x91\x01\x01", NonCanonical),  # array key
        (b"\xca\x00\x00\x00\x00", NonCanonical),  # float32
        (b"\xcb" + bytes(8), NonCanonical),  # float64
        (b"\xa1\xff", NonCanonical),  # invalid UTF-8
        (b"\xa3\xed\xa0\x80", NonCanonical),  # UTF-8 encoded surrogate
        (b"\xd4\x01\x00", NonCanonical),  # fixext1
        (b"\xd6\xff\x00\x00\x00\x00", NonCanonical),  # timestamp ext
        (b"", Malformed),
        (b"\x91", Malformed),  # truncated
        (b"\x01\x02", Malformed),  # trailing bytes
        (b"\xc1", Malformed),  # never-used type byte
        (b"\xdd\xff\xff\xff\xff", Malformed),  # claims 4 billion items
        (b"\xc6\xff\xff\xff\xff", Malformed),  # claims a 4 GiB bin
        (b"\x91" * (MAX_DEPTH + 1) + b"\x01", Malformed),  # too deep
        (b"\x81\x91\x01\xca\x00\x00\x00\x00\x01", Malformed),  # bad key and trailing
    ],
)
def test_rejections(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        unpack_canonical(data)


def test_depth_limit_is_exact() -> None:
    ok = b"\x91" * MAX_DEPTH + b"\x01"
    assert depth(unpack_canonical(ok)) == MAX_DEPTH
    with pytest.raises(Malformed):
        unpack_structural(b"\x91" * (MAX_DEPTH + 1) + b"\x01")


def test_malformed_wins_over_non_canonical() -> None:
    # A float (non-canonical) nested too deep (malformed): malformed is reported.
    data = b"\x91" * MAX_DEPTH + b"\x91\xca\x00\x00\x00\x00"
    with pytest.raises(Malformed):
        unpack_canonical(data)


def test_huge_claimed_container_does_not_allocate() -> None:
    # A million-element array header with no items behind it fails fast.
    with pytest.raises(Malformed):
        unpack_canonical(b"\xdd\x00\x0f\x42\x40")


def test_pack_sorts_keys_by_utf8_bytes() -> None:
    data = pack({"é": 1, "z": 2, "a": 3, "Z": 4})
    assert list(msgpack.unpackb(data)) == ["Z", "a", "z", "é"]


def test_pack_refuses_what_has_no_canonical_form() -> None:
    for bad in (1.5, {1: 2}, object(), 1 << 64, -(1 << 63) - 1):
        with pytest.raises(LocalProtocolError):
            pack(bad)


def _outcome(fn: Any, data: bytes) -> tuple[str, str]:
    try:
        return "ok", repr(fn(data))
    except Exception as exc:  # the outcome is compared, whatever it is
        return type(exc).__name__, str(exc)


# Claimed lengths far beyond the input, for each container and string type, nested too.
CLAIMS = [
    b"\xdd\xff\xff\xff\xff",
    b"\xdc\xff\xff",
    b"\x9f",
    b"\xdf\xff\xff\xff\xff",
    b"\xde\x00\x10",
    b"\x8f\x01",
    b"\xdb\xff\xff\xff\xff",
    b"\xda\x01\x00",
    b"\xd9\x10",
    b"\xc6\xff\xff\xff\xff",
    b"\xc5\x01\x00",
    b"\xc9\xff\xff\xff\xff\x01",
    b"\xc8\x01\x00\x01",
    b"\x92\xdc\x00\x05",
    b"\x81\xa1a\xdd\x00\x00\x00\x09",
    b"\xde\x00\x02\x01\x02",
    b"\x94\x01\x02\x03\x04",
    b"\x82\xa1a\x01\xa1a\x02",
    b"\x81\x91\x01\x02",
    b"\xa2\xff\xfe",
]


def _unpackb_sized(data: bytes, **extra: Any) -> Any:
    """The reference for :func:`protocol.encoding._unpackb`: msgpack.unpackb with every
    limit sized to ``data`` spelled out (the call the protocol module made before)."""
    n = len(data)
    return msgpack.unpackb(
        data,
        raw=False,
        unicode_errors="surrogateescape",  # keep going; the tree check rejects it
        use_list=True,
        strict_map_key=False,
        max_str_len=n,
        max_bin_len=n,
        max_array_len=n,
        max_map_len=n // 2,
        max_ext_len=n,
        **extra,
    )


def assert_same_unpacking(data: bytes) -> None:
    # _unpackb leaves msgpack's limits at their defaults, which msgpack sizes to the
    # input: the same outcome, value or error message, as spelling them out.
    assert _outcome(_unpackb, data) == _outcome(_unpackb_sized, data)
    assert _outcome(lambda d: _unpackb(d, object_pairs_hook=list), data) == _outcome(
        lambda d: _unpackb_sized(d, object_pairs_hook=list), data
    )


@pytest.mark.parametrize("data", CLAIMS)
def test_short_unpack_call_is_the_sized_one(data: bytes) -> None:
    assert_same_unpacking(data)
    assert_same_unpacking(data + bytes(len(data)))


@settings(max_examples=300)
@given(st.sampled_from(CLAIMS), st.binary(max_size=60))
def test_short_unpack_call_is_the_sized_one_random(claim: bytes, tail: bytes) -> None:
    assert_same_unpacking(tail)
    assert_same_unpacking(claim + tail)
