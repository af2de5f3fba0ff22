"""Canonical msgpack: one value, one byte form (PROTOCOL.md section 2).

msgpack itself allows several encodings of the same value (an integer in a wider form
than it needs, map keys in any order, duplicate keys) and has no key sorting. Here a
value is *canonical* when:

- integers use their shortest msgpack form; no floats, no ext types (the timestamp ext
  included);
- text is msgpack str holding valid UTF-8; bytes are msgpack bin;
- map keys are str, unique, and sorted by their UTF-8 bytes;
- containers nest at most :data:`MAX_DEPTH` deep (the top-level value is depth 1).

:func:`pack` produces canonical bytes from Python values; :func:`unpack_canonical`
decodes untrusted bytes and raises :class:`~protocol.errors.Malformed` when they are not
msgpack at all (or break a limit) and :class:`~protocol.errors.NonCanonical` when they
are msgpack but not in the one canonical form. Decoding is bounded: the caller's size
limit is checked before anything is decoded, and msgpack's own limits are set so that
no claimed length can make it allocate more than the input could hold.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgpack

from .errors import LocalProtocolError, Malformed, NonCanonical

__all__ = [
    "MAX_DEPTH",
    "Value",
    "check_canonical",
    "is_map",
    "pack",
    "unpack_canonical",
    "unpack_structural",
]

MAX_DEPTH = 8

#: What a decoded canonical value can hold.
Value = int | str | bytes | bool | None | list["Value"] | dict[str, "Value"]

_UINT64_MAX = (1 << 64) - 1
_INT64_MIN = -(1 << 63)


def _unpackb(data: bytes, **extra: Any) -> Any:
    """msgpack.unpackb with every limit sized to ``data``: msgpack 1.x sizes its limits
    (string, bin, array, map, ext lengths) to the input when none are given, and
    raw=False, use_list=True are its defaults, so two keywords say it all (parsing ten
    was half the cost of decoding a small value; tests/test_encoding.py holds this call
    to the one with every limit spelled out). Invalid UTF-8 comes back with surrogate
    escapes: the tree check rejects it."""
    return msgpack.unpackb(data, unicode_errors="surrogateescape", strict_map_key=False, **extra)


class _Pairs(list[Any]):
    """A map whose keys could not be dict keys (arrays or maps): never canonical."""


def is_map(value: object) -> bool:
    """True for a decoded msgpack map (including one whose keys cannot be canonical)."""
    return type(value) is dict or type(value) is _Pairs


def unpack_structural(data: bytes) -> Any:
    """Decode exactly one msgpack value from untrusted ``data``; raise only Malformed.

    Malformed is: not exactly one msgpack value (truncated, trailing bytes, an invalid
    type byte), or containers nested deeper than :data:`MAX_DEPTH`. Limits are sized to
    ``data`` so that no claimed length allocates more than the input could hold. The
    value may still be non-canonical (:func:`check_canonical` tells): invalid UTF-8
    comes back with surrogate escapes, ext types as ``msgpack.ExtType`` or
    ``msgpack.Timestamp``, a map with array or map keys as a ``_Pairs`` list.
    """
    try:
        value = _unpackb(data)
    except msgpack.ExtraData as exc:
        raise Malformed("trailing bytes after the msgpack value") from exc
    except TypeError:
        # An unhashable (array or map) key: decode again keeping the pairs as a list.
        try:
            value = _unpackb(data, object_pairs_hook=_Pairs)
        except msgpack.ExtraData as exc:
            raise Malformed("trailing bytes after the msgpack value") from exc
        except (ValueError, TypeError, msgpack.UnpackException, RecursionError) as exc:
            raise Malformed(f"not msgpack ({type(exc).__name__})") from exc
    except (ValueError, msgpack.UnpackException, RecursionError) as exc:
        # OutOfData, FormatError, StackError and BufferFull are ValueError subclasses.
        raise Malformed(f"not msgpack ({type(exc).__name__})") from exc
    if not _depth_ok(value, 0):
        raise Malformed(f"nesting deeper than {MAX_DEPTH}")
    return value


def _depth_ok(value: Any, depth: int) -> bool:
    """True unless a container sits at depth MAX_DEPTH or deeper (hot path: scalars
    are skipped without a call)."""
    t = type(value)
    if t is dict:
        items: Any = value.values()
    elif t is list or t is _Pairs:
        items = value
    elif t is tuple:  # a (key, value) pair of a _Pairs map: same depth as the map's items
        return all(_depth_ok(item, depth) for item in value)
    else:
        return True
    if depth >= MAX_DEPTH:
        return False
    for item in items:
        ti = type(item)
        if (ti is dict or ti is list or ti is _Pairs or ti is tuple) and not _depth_ok(
            item, depth + 1
        ):
            return False
    return True


def _check_str(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise NonCanonical("str is not valid UTF-8") from exc


def _check_tree(value: Any) -> None:
    """Raise unless ``value`` holds only canonical types with sorted, unique str keys."""
    t = type(value)
    if t is int or t is bytes or t is bool or value is None:
        return
    if t is str:
        if not value.isascii():
            _check_str(value)
        return
    if t is list:
        for item in value:
            ti = type(item)
            if ti is int or ti is bytes or (ti is str and item.isascii()):
                continue
            _check_tree(item)
        return
    if t is dict:
        previous: str | None = None
        for key, item in value.items():
            if type(key) is not str:
                raise NonCanonical("map key is not str")
            if not key.isascii():
                _check_str(key)
            if previous is not None and key <= previous:
                # Code point order equals UTF-8 byte order, so str comparison is exact.
                raise NonCanonical("map keys are not sorted and unique")
            previous = key
            ti = type(item)
            if ti is int or ti is bytes or (ti is str and item.isascii()):
                continue
            _check_tree(item)
        return
    if t is _Pairs:
        raise NonCanonical("map key is not str")
    if t is float:
        raise NonCanonical("floats are not allowed")
    raise NonCanonical(f"{t.__name__} values are not allowed")


def check_canonical(value: Any, data: bytes) -> None:
    """Raise NonCanonical unless ``data`` is the canonical encoding of ``value``.

    ``value`` must come from :func:`unpack_structural` of the same ``data``.
    """
    _check_tree(value)
    # Types and key order are fine; what is left is the byte form of each item
    # (shortest integers and lengths, no duplicate keys): re-encoding tells.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise NonCanonical("re-encoding gives different bytes")


def unpack_canonical(data: bytes) -> Any:
    """Decode untrusted ``data`` and insist that it is the canonical encoding.

    Malformed is decided before non-canonical, so every implementation reports the
    same code for the same bytes.
    """
    value = unpack_structural(data)
    check_canonical(value, data)
    return value


def _canonicalize(value: Any, depth: int) -> Any:
    t = type(value)
    if t is int:
        if not _INT64_MIN <= value <= _UINT64_MAX:
            raise LocalProtocolError("integer out of the msgpack range")
        return value
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is bytearray or t is memoryview:
        return bytes(value)
    if depth >= MAX_DEPTH and (isinstance(value, (list, tuple, Mapping))):
        raise LocalProtocolError(f"nesting deeper than {MAX_DEPTH}")
    if isinstance(value, (list, tuple)):
        return [_canonicalize(item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        out = {}
        for key in sorted(value):
            if type(key) is not str:
                raise LocalProtocolError("map keys must be str")
            out[key] = _canonicalize(value[key], depth + 1)
        return out
    raise LocalProtocolError(f"cannot encode {t.__name__} canonically")


def pack(value: Any) -> bytes:
    """Encode ``value`` canonically (sorting map keys, refusing floats)."""
    return bytes(msgpack.packb(_canonicalize(value, 0), use_bin_type=True))
