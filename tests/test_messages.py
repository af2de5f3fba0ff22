"""Messages: every check code, in order; streams; skeletons; round trips."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import signing
from protocol.encoding import pack
from protocol.errors import (
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
    Result,
    WeakKey,
)
from protocol.messages import (
    FUTURE_TOLERANCE_MS,
    MAX_MESSAGE,
    StreamDecoder,
    create_message,
    decode_message,
    encode_envelope,
    iter_stream,
)

from .conftest import NOW, Factory, seeded_key

KEY = seeded_key(7)
AUTHOR = signing.public_key_bytes(KEY)
COMMUNITY = signing.public_key_bytes(seeded_key(1))
IDENTITY = b"\x01" + bytes(31)  # the neutral point: small order
TOPIC = {"lang": "en", "scope": "local", "tags": [], "text": "Text", "title": "Title"}


def forge(
    head: list[Any] | bytes | None = None,
    body: bytes | None = None,
    *,
    key: Ed25519PrivateKey = KEY,
    sig: bytes | None = None,
    payload: bytes | None = None,
) -> bytes:
    """Build message bytes from parts, signing whatever payload results."""
    if body is None and head is None and payload is None:
        body = pack(TOPIC)
    if payload is None:
        if head is None or isinstance(head, list):
            fields = head or [1, "topic", COMMUNITY, AUTHOR, NOW, [], None]
            if fields[6] is None:
                fields = [*fields[:6], hashlib.sha256(body or b"").digest()]
            payload = msgpack.packb(fields, use_bin_type=True)
        else:
            payload = head
    if sig is None:
        sig = signing.sign(key, hashlib.sha256(payload).digest())
    return encode_envelope(payload, sig, body)


def code_of(raw: bytes, now: int = NOW) -> str:
    try:
        decode_message(raw, now_ms=now)
    except MessageRejected as exc:
        return exc.code
    return "ok"


def test_a_valid_message_decodes() -> None:
    raw = forge()
    m = decode_message(raw, now_ms=NOW)
    assert m.kind == "topic" and m.author == AUTHOR and m.community == COMMUNITY
    assert m.id == hashlib.sha256(m.payload).digest()
    assert m.fields == TOPIC and m.raw == raw and not m.is_skeleton


def body_hash_of(body: bytes) -> bytes:
    return hashlib.sha256(body).digest()


GOOD_BODY = pack(TOPIC)
H = body_hash_of(GOOD_BODY)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # -- malformed
        (b"", "malformed"),
        (b"\xc1", "malformed"),
        (msgpack.packb([b"a", b"b"]), "malformed"),
        (msgpack.packb({"a": 1}), "malformed"),
        (msgpack.packb([b"p", bytes(63), None], use_bin_type=True), "malformed"),
        (msgpack.packb([b"p", bytes(64), 5], use_bin_type=True), "malformed"),
        (msgpack.packb(["p", bytes(64), None], use_bin_type=True), "malformed"),
        (forge() + b"\x00", "malformed"),
        (forge(payload=bytes(4097), sig=bytes(64)), "malformed"),
        (forge(payload=b"\x01", sig=bytes(64)), "malformed"),  # payload not an array
        (forge(payload=msgpack.packb([1, 2, 3]), sig=bytes(64)), "malformed"),  # 3-array
        (forge(body=b"\x91\x01"), "malformed"),  # body is an array, not a map
        (forge(body=b"\x82\xa1a"), "malformed"),  # body truncated
        # envelope not canonical: the payload length as bin16 instead of bin8
        (b"\x93\xc5\x00\x03\x93\x01\x02" + b"\xc4\x40" + bytes(64) + b"\xc0", "malformed"),
        # -- non_canonical
        (
            forge(
                head=msgpack.packb([1, "topic", COMMUNITY, AUTHOR, NOW, [], H])[:1]
                + b"\xcc\x01"
                + msgpack.packb([1, "topic", COMMUNITY, AUTHOR, NOW, [], H])[2:],
                body=GOOD_BODY,
            ),
            "non_canonical",
        ),
        (forge(body=b"\x82\xa1b\x01\xa1a\x02"), "non_canonical"),
        (forge(body=b"\x81\xa1a\xca\x00\x00\x00\x00"), "non_canonical"),
        # -- bad_field
        (forge(head=[2, "topic", COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[True, "topic", COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[1, "Topic", COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[1, "", COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[1, "a" * 33, COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[1, "topic", COMMUNITY[:31], AUTHOR, NOW, [], H], body=GOOD_BODY), "bad_field"),
        (
            forge(head=[1, "topic", COMMUNITY, AUTHOR.hex(), NOW, [], H], body=GOOD_BODY),
            "bad_field",
        ),
        (forge(head=[1, "topic", COMMUNITY, AUTHOR, -1, [], H], body=GOOD_BODY), "bad_field"),
        (forge(head=[1, "topic", COMMUNITY, AUTHOR, "now", [], H], body=GOOD_BODY), "bad_field"),
        (
            forge(head=[1, "topic", COMMUNITY, AUTHOR, NOW, [bytes(32)] * 17, H], body=GOOD_BODY),
            "bad_field",
        ),
        (
            forge(head=[1, "topic", COMMUNITY, AUTHOR, NOW, [bytes(31)], H], body=GOOD_BODY),
            "bad_field",
        ),
        (forge(head=[1, "topic", COMMUNITY, AUTHOR, NOW, [], H[:31]], body=GOOD_BODY), "bad_field"),
        # -- weak_key: the identity point as author, with the (R = identity, S = 0)
        # signature that OpenSSL alone would accept for it
        (
            forge(
                head=[1, "topic", COMMUNITY, IDENTITY, NOW, [], H],
                body=GOOD_BODY,
                sig=IDENTITY + bytes(32),
            ),
            "weak_key",
        ),
        (forge(head=[1, "topic", IDENTITY, AUTHOR, NOW, [], H], body=GOOD_BODY), "weak_key"),
        # -- bad_signature
        (forge(sig=bytes(64)), "bad_signature"),
        (
            forge(
                head=[1, "topic", COMMUNITY, AUTHOR, NOW, [], H], body=GOOD_BODY, key=seeded_key(8)
            ),
            "bad_signature",
        ),
        # -- from_future
        (
            forge(
                head=[1, "topic", COMMUNITY, AUTHOR, NOW + FUTURE_TOLERANCE_MS + 1, [], H],
                body=GOOD_BODY,
            ),
            "from_future",
        ),
        # -- body_mismatch: a different (valid) body under the signed hash
        (
            forge(
                head=[1, "topic", COMMUNITY, AUTHOR, NOW, [], H],
                body=pack({**TOPIC, "title": "Other"}),
            ),
            "body_mismatch",
        ),
        # -- bad_body: signed, hash matches, schema fails
        (forge(body=pack({"title": "no text"})), "bad_body"),
        (
            forge(
                head=[1, "vote", COMMUNITY, AUTHOR, NOW, [], body_hash_of(pack({"choice": "yes"}))],
                body=pack({"choice": "yes"}),
            ),
            "bad_body",
        ),  # a vote needs its proposal ref
    ],
)
def test_check_codes(raw: bytes, code: str) -> None:
    assert code_of(raw) == code


def test_every_failure_code_is_produced_by_a_test() -> None:
    # The parametrized cases above cover every rejection code of PROTOCOL.md section 3.
    produced = {code for _, code in test_check_codes.pytestmark[0].args[1]}  # type: ignore[attr-defined]
    failures = {r.value for r in Result if not r.accepted}
    assert failures <= produced


def test_from_future_boundary() -> None:
    at_limit = forge(
        head=[1, "topic", COMMUNITY, AUTHOR, NOW + FUTURE_TOLERANCE_MS, [], H], body=GOOD_BODY
    )
    assert code_of(at_limit) == "ok"


def test_size_limits() -> None:
    # A body of exactly 65,536 bytes is allowed; the whole message must stay <= 70,000.
    big = forge(body=pack({**TOPIC, "text": "x" * 19_990}))
    assert code_of(big) == "ok"
    too_big = b"\x93" + b"\xc6" + (70_001).to_bytes(4, "big") + bytes(70_001)
    assert len(too_big) > MAX_MESSAGE
    assert code_of(too_big) == "malformed"


def test_check_order_first_failure_wins() -> None:
    # Bad signature AND from the future AND body mismatch: bad_signature comes first.
    raw = forge(
        head=[1, "topic", COMMUNITY, AUTHOR, NOW + 10**9, [], H], body=pack({"x": 1}), sig=bytes(64)
    )
    assert code_of(raw) == "bad_signature"
    # Weak community key AND bad signature: weak_key comes first.
    raw = forge(head=[1, "topic", IDENTITY, AUTHOR, NOW, [], H], body=GOOD_BODY, sig=bytes(64))
    assert code_of(raw) == "weak_key"
    # Non-canonical body AND bad field: non_canonical comes first.
    raw = forge(head=[9, "topic", COMMUNITY, AUTHOR, NOW, [], H], body=b"\x81\xa1a\xcc\x01")
    assert code_of(raw) == "non_canonical"


def test_skeleton_round_trip(factory: Factory) -> None:
    m = factory.topic()
    skel = m.skeleton()
    assert skel.is_skeleton and skel.id == m.id and skel.raw != m.raw
    again = decode_message(skel.raw, now_ms=NOW)
    assert again.is_skeleton and again.fields is None and again.id == m.id
    assert again.with_body(m.body or b"").raw == m.raw
    with pytest.raises(BodyMismatch):
        again.with_body(pack({**TOPIC, "title": "changed"}))


def test_skeleton_skips_only_body_checks() -> None:
    # A skeleton of a message whose body would be bad is still a valid skeleton.
    raw = forge(body=pack({"title": "no text"}))
    payload, sig, _ = msgpack.unpackb(raw)
    skel = encode_envelope(payload, sig, None)
    assert decode_message(skel, now_ms=NOW).is_skeleton
    with pytest.raises(BadSignature):
        decode_message(encode_envelope(payload, bytes(64), None), now_ms=NOW)


def test_create_message_refuses_invalid_bodies() -> None:
    with pytest.raises(LocalProtocolError, match="bad_body"):
        create_message(KEY, kind="topic", community=COMMUNITY, ts=NOW, fields={"title": "x"})
    with pytest.raises(LocalProtocolError):
        create_message(
            KEY, kind="topic", community=COMMUNITY, ts=NOW, fields={**TOPIC, "text": 1.5}
        )


def test_unknown_kind_passes_schema() -> None:
    m = create_message(KEY, kind="poll_two", community=COMMUNITY, ts=NOW, fields={"anything": [1]})
    assert decode_message(m.raw, now_ms=NOW).kind == "poll_two"


# --------------------------------------------------------------------------- streams


def stream_of(n: int) -> list[bytes]:
    f = Factory(seeded_key(1))
    return [f.topic(f"Topic {i}").raw for i in range(n)]


def test_stream_whole_buffer() -> None:
    raws = stream_of(5)
    assert list(iter_stream([b"".join(raws)])) == raws


def test_stream_one_byte_at_a_time() -> None:
    raws = stream_of(3)
    data = b"".join(raws)
    assert list(iter_stream(data[i : i + 1] for i in range(len(data)))) == raws


def test_stream_with_trailing_garbage() -> None:
    raws = stream_of(2)
    decoder = StreamDecoder()
    assert decoder.feed(b"".join(raws)) == raws
    with pytest.raises(Malformed):
        decoder.feed(b"\xc1")
    # Garbage in the same chunk: the good values before it still come out first.
    decoder = StreamDecoder()
    assert decoder.feed(b"".join(raws) + b"\xc1") == raws
    with pytest.raises(Malformed):
        decoder.close()
    with pytest.raises(Malformed):  # a dead stream stays dead
        decoder.feed(raws[0])


def test_stream_truncated_at_end() -> None:
    raws = stream_of(2)
    with pytest.raises(Malformed, match="ends inside"):
        list(iter_stream([b"".join(raws)[:-1]]))


def test_stream_refuses_oversized_value() -> None:
    decoder = StreamDecoder()
    with pytest.raises(Malformed, match="over"):
        decoder.feed(b"\xc6\x00\x10\x00\x00" + bytes(MAX_MESSAGE + 10))


def test_stream_feeds_big_chunks_of_many_messages() -> None:
    raws = stream_of(300)  # ~100 KB, more than one value's limit in one chunk
    assert StreamDecoder().feed(b"".join(raws)) == raws


# --------------------------------------------------------------------------- properties

texts = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), min_size=1, max_size=60
)


@settings(max_examples=60, deadline=None)
@given(title=texts, text=texts, ts=st.integers(0, NOW), n_refs=st.integers(0, 1))
def test_encode_decode_round_trip(title: str, text: str, ts: int, n_refs: int) -> None:
    fields = {"title": title, "text": text, "lang": "en"}
    refs = (hashlib.sha256(title.encode()).digest(),) * n_refs
    m = create_message(KEY, kind="story", community=COMMUNITY, ts=ts, fields=fields, refs=refs)
    again = decode_message(m.raw, now_ms=NOW)
    assert again == m and again.fields == fields and again.refs == refs
    assert encode_envelope(again.payload, again.signature, again.body) == m.raw


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_message(data, now_ms=NOW)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutations_of_a_valid_message_are_rejected_or_identical(data: st.DataObject) -> None:
    raw = bytearray(forge())
    i = data.draw(st.integers(0, len(raw) - 1))
    raw[i] ^= data.draw(st.integers(1, 255))
    try:
        m = decode_message(bytes(raw), now_ms=NOW)
    except ProtocolError:
        return
    # The only mutations that survive cannot change what was signed.
    assert m.payload == decode_message(forge(), now_ms=NOW).payload


def test_errors_say_whose_fault() -> None:
    for cls in (
        Malformed,
        NonCanonical,
        BadField,
        WeakKey,
        BadSignature,
        FromFuture,
        BodyMismatch,
        BadBody,
    ):
        assert issubclass(cls, MessageRejected)


# --------------------------------------------------------------------------- envelope sizes

BIN_FORMS = {  # each msgpack header form of bin: first byte, bytes of length, max length
    "bin8": (0xC4, 1, 0xFF),
    "bin16": (0xC5, 2, 0xFFFF),
    "bin32": (0xC6, 4, 0xFFFFFFFF),
}


def bin_forms(data: bytes) -> list[bytes]:
    """``data`` as a msgpack bin in every header form that can hold it."""
    return [
        bytes([first]) + len(data).to_bytes(size, "big") + data
        for first, size, most in BIN_FORMS.values()
        if len(data) <= most
    ]


def sized_message(n_refs: int, body_bytes: int) -> Any:
    """A message of an unknown kind (body not schema-checked) whose body is exactly
    ``body_bytes`` bytes long."""
    x = bytes(max(0, body_bytes - 4))
    while len(pack({"x": x})) > body_bytes:
        x = x[:-1]
    while len(pack({"x": x})) < body_bytes:
        x += b"\x00"
    refs = [bytes([i]) * 32 for i in range(n_refs)]
    fields = {"x": x}
    return create_message(
        KEY, kind="zz_test", community=COMMUNITY, ts=NOW, fields=fields, refs=refs
    )


@pytest.mark.parametrize("n_refs", [0, 16])  # a payload under 256 bytes (bin8), and over
@pytest.mark.parametrize("body_bytes", [None, 255, 256, 65_535, 65_536])
def test_envelope_headers_must_be_the_shortest(n_refs: int, body_bytes: int | None) -> None:
    # The canonical envelope is told by its size alone: every longer header is refused.
    if body_bytes is None:
        m = sized_message(n_refs, 10).skeleton()
    else:
        m = sized_message(n_refs, body_bytes)
        assert len(m.body or b"") == body_bytes
    assert decode_message(m.raw, now_ms=NOW) == m
    assert m.raw == encode_envelope(m.payload, m.signature, m.body)
    bodies = [b"\xc0"] if m.body is None else bin_forms(m.body)
    variants = {
        outer + payload + sig + body
        for outer in (b"\x93", b"\xdc\x00\x03", b"\xdd\x00\x00\x00\x03")
        for payload in bin_forms(m.payload)
        for sig in bin_forms(m.signature)
        for body in bodies
    }
    assert m.raw in variants and len(variants) >= 3 * 2 * 3
    for raw in variants - {m.raw}:
        with pytest.raises(Malformed, match="envelope is not in its canonical form"):
            decode_message(raw, now_ms=NOW)


def test_checked_messages_pickle_to_equal_messages() -> None:
    # Checking workers send checked messages back pickled (Message.__reduce__).
    for m in (sized_message(16, 300), sized_message(0, 70), sized_message(3, 300).skeleton()):
        again = pickle.loads(pickle.dumps(m, protocol=pickle.HIGHEST_PROTOCOL))
        for name in m.__dataclass_fields__:
            assert getattr(again, name) == getattr(m, name), name
        assert type(again.refs) is tuple
