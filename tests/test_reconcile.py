"""Negentropy v1 reconciliation: reference vectors, convergence, hostile input, states."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import LocalProtocolError, ReconcileError, RemoteProtocolError
from protocol.negentropy_store import MAX_TIMESTAMP, ZERO_BOUND
from protocol.reconcile import (
    MAX_U64,
    PROTOCOL_VERSION,
    TRANSITIONS,
    Bound,
    ClientStep,
    Event,
    Item,
    Mode,
    Negentropy,
    State,
    VectorStore,
    encode_varint,
    fingerprint_of,
    id_sum,
)

VECTORS = Path(__file__).parent / "vectors" / "negentropy-v1.json"

# Helpers


def make_items(seed: int, count: int, ts_of: Callable[[random.Random], int]) -> list[Item]:
    rng = random.Random(seed)
    raw = rng.randbytes(32 * count)
    return [Item(ts_of(rng), raw[i * 32 : i * 32 + 32]) for i in range(count)]


@dataclass
class Exchange:
    """The outcome of a whole reconciliation run by :class:`ReconcilePair`."""

    have: list[bytes] = field(default_factory=list)
    need: list[bytes] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return len(self.messages) // 2

    @property
    def total_bytes(self) -> int:
        return sum(map(len, self.messages))


class ReconcilePair:
    """Two sessions joined in memory (like h11's ConnectionPair).

    The client keeps one initiator session; the server, like the HTTP endpoint, answers
    each message with a fresh responder (it keeps no state), unless ``stateful_server``.
    """

    def __init__(
        self,
        client_items: Iterable[tuple[int, bytes]],
        server_items: Iterable[tuple[int, bytes]],
        *,
        frame_size_limit: int = 60_000,
        whole_set: bool = False,
        stateful_server: bool = False,
    ) -> None:
        self.client_store = VectorStore.from_unsorted(client_items)
        self.server_store = VectorStore.from_unsorted(server_items)
        self.frame_size_limit = frame_size_limit
        self.whole_set = whole_set
        self.client = Negentropy(self.client_store, frame_size_limit)
        self._server: Negentropy | None = (
            Negentropy(self.server_store, frame_size_limit) if stateful_server else None
        )

    def answer(self, message: bytes) -> bytes:
        server = self._server or Negentropy(self.server_store, self.frame_size_limit)
        return server.reconcile(message)

    def run(self, max_round_trips: int = 500) -> Exchange:
        exchange = Exchange()
        message: bytes | None = self.client.initiate(self.whole_set)
        while message is not None:
            assert exchange.round_trips < max_round_trips, "reconciliation does not end"
            reply = self.answer(message)
            exchange.messages += [message, reply]
            if self.frame_size_limit:
                assert len(message) <= self.frame_size_limit
                assert len(reply) <= self.frame_size_limit
            step = self.client.reconcile_client(reply)
            exchange.have += step.have_ids
            exchange.need += step.need_ids
            message = step.message
        assert self.client.state is State.DONE
        return exchange


def assert_converges(exchange: Exchange, client: set[Item], server: set[Item]) -> None:
    client_ids = {item.id for item in client}
    server_ids = {item.id for item in server}
    assert not [k for k, n in Counter(exchange.have).items() if n > 1], "have reported twice"
    assert not [k for k, n in Counter(exchange.need).items() if n > 1], "need reported twice"
    assert set(exchange.have) == client_ids - server_ids
    assert set(exchange.need) == server_ids - client_ids


# Reference vectors: both roles reproduce every message byte for byte


@cache
def load_vectors() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(VECTORS.read_text())
    return data


def vector_items(case: dict[str, Any], lo: int, hi: int) -> list[Item]:
    """The item-set rule of the vectors' ``about`` field."""
    items = []
    for i in range(lo, hi):
        name = f"{case['name']}/{i}".encode()
        if case["ts_mode"] == "seq":
            ts = case["t0"] + i
        else:
            head = hashlib.sha256(name + b"/ts").digest()[:4]
            ts = case["t0"] + int.from_bytes(head, "big") % case["span"]
        items.append(Item(ts, hashlib.sha256(name).digest()))
    return items


def vector_stores(case: dict[str, Any]) -> tuple[VectorStore, VectorStore]:
    common, server_only, client_only = case["common"], case["server_only"], case["client_only"]
    shared = vector_items(case, 0, common)
    server = shared + vector_items(case, common, common + server_only)
    end = common + server_only + client_only
    client = shared + vector_items(case, common + server_only, end)
    return VectorStore.from_unsorted(client), VectorStore.from_unsorted(server)


CASES = [case["name"] for case in load_vectors()["cases"]]


def vector_case(name: str) -> dict[str, Any]:
    return next(case for case in load_vectors()["cases"] if case["name"] == name)


def test_vectors_cover_the_interesting_cases() -> None:
    cases = load_vectors()["cases"]
    assert len(cases) == 16
    assert {case["frame"] for case in cases} == {0, 4096, 60_000}
    assert any(case["single_fingerprint"] for case in cases)
    # The reference JS cannot go past 2**31 (32-bit shifts): the vectors stop just short;
    # the u64 range is covered by the convergence tests below.
    assert 2 * 10**9 < max(case["t0"] + case["span"] for case in cases) < 2**31
    for case in cases:
        senders = [m["from"] for m in case["transcript"]]
        assert senders == ["client", "server"] * (len(senders) // 2)


@pytest.mark.parametrize("name", CASES)
def test_vector_client_role(name: str) -> None:
    case = vector_case(name)
    client_store, _ = vector_stores(case)
    transcript = [bytes.fromhex(m["hex"]) for m in case["transcript"]]
    client = Negentropy(client_store, case["frame"])
    assert client.initiate(case["single_fingerprint"]) == transcript[0]
    have: list[bytes] = []
    need: list[bytes] = []
    for i in range(1, len(transcript), 2):
        step = client.reconcile_client(transcript[i])
        have += step.have_ids
        need += step.need_ids
        expected = transcript[i + 1] if i + 1 < len(transcript) else None
        assert step.message == expected, f"client message {i + 1} differs"
    assert client.state is State.DONE
    assert sorted(x.hex() for x in have) == sorted(case["client_have"])
    assert sorted(x.hex() for x in need) == sorted(case["client_need"])
    assert len(have) == len(case["client_have"])
    assert len(need) == len(case["client_need"])


@pytest.mark.parametrize("name", CASES)
def test_vector_server_role(name: str) -> None:
    case = vector_case(name)
    _, server_store = vector_stores(case)
    transcript = [bytes.fromhex(m["hex"]) for m in case["transcript"]]
    persistent = Negentropy(server_store, case["frame"])
    for i in range(0, len(transcript), 2):
        fresh = Negentropy(server_store, case["frame"])  # the HTTP server keeps no state
        assert fresh.reconcile(transcript[i]) == transcript[i + 1], f"reply {i + 1} differs"
        assert persistent.reconcile(transcript[i]) == transcript[i + 1]
    assert persistent.state is State.RESPONDING


@pytest.mark.parametrize("name", CASES)
def test_vector_pair_reproduces_transcript(name: str) -> None:
    case = vector_case(name)
    client_store, server_store = vector_stores(case)
    pair = ReconcilePair(
        client_store.iterate(0, client_store.size()),
        server_store.iterate(0, server_store.size()),
        frame_size_limit=case["frame"],
        whole_set=case["single_fingerprint"],
    )
    exchange = pair.run()
    assert [m.hex() for m in exchange.messages] == [m["hex"] for m in case["transcript"]]


# Convergence: random pairs of sets always reconcile to exactly the symmetric difference

TS_MODES: dict[str, Callable[[random.Random], int]] = {
    "same_second": lambda rng: 1_700_000_000,
    "few_seconds": lambda rng: 1_700_000_000 + rng.randrange(5),
    "a_year": lambda rng: 1_700_000_000 + rng.randrange(31_536_000),
    "any_u64": lambda rng: rng.randrange(MAX_TIMESTAMP + 1),
    "near_max": lambda rng: MAX_TIMESTAMP - rng.randrange(50),
}


@dataclass(frozen=True)
class SetPair:
    """A compact recipe for two sets (so Hypothesis shows a short example)."""

    seed: int
    ts_mode: str
    common: int
    client_only: int
    server_only: int

    def build(self) -> tuple[set[Item], set[Item]]:
        total = self.common + self.client_only + self.server_only
        items = make_items(self.seed, total, TS_MODES[self.ts_mode])
        shared = set(items[: self.common])
        client = shared | set(items[self.common : self.common + self.client_only])
        server = shared | set(items[self.common + self.client_only :])
        return client, server


def set_pairs(max_common: int = 1500, max_only: int = 300) -> st.SearchStrategy[SetPair]:
    return st.builds(
        SetPair,
        seed=st.integers(0, 2**32),
        ts_mode=st.sampled_from(sorted(TS_MODES)),
        common=st.integers(0, max_common),
        client_only=st.integers(0, max_only),
        server_only=st.integers(0, max_only),
    )


RECONCILE_SETTINGS = settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@RECONCILE_SETTINGS
@given(sets=set_pairs(), frame=st.sampled_from([0, 4096, 60_000]), whole_set=st.booleans())
def test_random_sets_converge(sets: SetPair, frame: int, whole_set: bool) -> None:
    client, server = sets.build()
    pair = ReconcilePair(client, server, frame_size_limit=frame, whole_set=whole_set)
    assert_converges(pair.run(), client, server)


@RECONCILE_SETTINGS
@given(sets=set_pairs(), frame=st.sampled_from([0, 4096]), whole_set=st.booleans())
def test_random_sets_converge_in_both_roles(sets: SetPair, frame: int, whole_set: bool) -> None:
    a, b = sets.build()
    ab = ReconcilePair(a, b, frame_size_limit=frame, whole_set=whole_set).run()
    ba = ReconcilePair(b, a, frame_size_limit=frame, whole_set=whole_set).run()
    assert_converges(ab, a, b)
    assert_converges(ba, b, a)
    assert set(ab.have) == set(ba.need)
    assert set(ab.need) == set(ba.have)


@RECONCILE_SETTINGS
@given(
    sets=set_pairs(max_common=6000, max_only=15),
    frame=st.sampled_from([0, 4096]),
    whole_set=st.booleans(),
)
def test_big_sets_few_differences_converge(sets: SetPair, frame: int, whole_set: bool) -> None:
    client, server = sets.build()
    exchange = ReconcilePair(client, server, frame_size_limit=frame, whole_set=whole_set).run()
    assert_converges(exchange, client, server)
    if client == server:
        assert exchange.round_trips == 1
        if whole_set or len(client) >= 32:  # under 32 items an id list gets an id list back
            assert exchange.messages[1] == bytes([PROTOCOL_VERSION])


@settings(max_examples=25, deadline=None)
@given(sets=set_pairs(max_common=4000, max_only=1500), whole_set=st.booleans())
def test_frame_limit_holds_with_many_differences(sets: SetPair, whole_set: bool) -> None:
    client, server = sets.build()
    pair = ReconcilePair(client, server, frame_size_limit=4096, whole_set=whole_set)
    exchange = pair.run()  # run() asserts every message fits the frame
    assert_converges(exchange, client, server)


@settings(max_examples=20, deadline=None)
@given(sets=set_pairs(max_common=500, max_only=100))
def test_stateful_server_session_answers_like_fresh_ones(
    sets: SetPair,
) -> None:
    client, server = sets.build()
    fresh = ReconcilePair(client, server, frame_size_limit=4096).run()
    kept = ReconcilePair(client, server, frame_size_limit=4096, stateful_server=True).run()
    assert kept.messages == fresh.messages


def test_client_empty_with_frame_limit_takes_many_rounds() -> None:
    server = set(make_items(7, 3000, TS_MODES["a_year"]))
    exchange = ReconcilePair(set(), server, frame_size_limit=4096).run()
    assert_converges(exchange, set(), server)
    assert exchange.round_trips > 20
    unlimited = ReconcilePair(set(), server, frame_size_limit=0).run()
    assert unlimited.round_trips == 1
    assert len(unlimited.messages[1]) > 3000 * 32


# The whole-set opening: one round trip, about 21 bytes, when nothing differs


@pytest.mark.parametrize("count", [0, 1, 31, 32, 5000])
def test_whole_set_fingerprint_equal_sets_is_21_bytes(count: int) -> None:
    items = set(make_items(count, count, TS_MODES["a_year"]))
    exchange = ReconcilePair(items, items, whole_set=True).run()
    assert exchange.round_trips == 1
    opening, answer = exchange.messages
    assert len(opening) == 20
    assert opening[:4] == bytes([PROTOCOL_VERSION, 0, 0, Mode.FINGERPRINT])
    assert answer == bytes([PROTOCOL_VERSION])
    assert exchange.total_bytes == 21
    assert exchange.have == exchange.need == []


def test_whole_set_fingerprint_differing_sets() -> None:
    shared = make_items(1, 5000, TS_MODES["a_year"])
    client = set(shared) | set(make_items(2, 3, TS_MODES["a_year"]))
    server = set(shared) | set(make_items(3, 2, TS_MODES["a_year"]))
    exchange = ReconcilePair(client, server, whole_set=True).run()
    assert_converges(exchange, client, server)
    assert exchange.round_trips <= 3


def test_default_opening_on_equal_sets_is_also_one_round_trip() -> None:
    items = set(make_items(5, 5000, TS_MODES["a_year"]))
    exchange = ReconcilePair(items, items).run()
    assert exchange.round_trips == 1
    assert exchange.messages[1] == bytes([PROTOCOL_VERSION])
    assert len(exchange.messages[0]) > 300  # 16 fingerprints: why the whole-set opening exists


# Timestamps anywhere in u64


def test_timestamps_near_u64_max() -> None:
    ids = [hashlib.sha256(bytes([i])).digest() for i in range(90)]
    client = {Item(MAX_TIMESTAMP - (i % 3), ids[i]) for i in range(60)}
    server = {Item(MAX_TIMESTAMP - (i % 3), ids[i]) for i in range(20, 80)}
    server |= {Item(0, ids[80]), Item(2**32 + 5, ids[81]), Item(2**63, ids[82])}
    client |= {Item(2**31 + 1, ids[83]), Item(2**53 + 1, ids[84])}
    for frame in (0, 4096):
        for whole_set in (False, True):
            exchange = ReconcilePair(client, server, frame_size_limit=frame, whole_set=whole_set)
            assert_converges(exchange.run(), client, server)


def test_store_rejects_the_infinity_timestamp_and_bad_items() -> None:
    with pytest.raises(LocalProtocolError):
        VectorStore([(MAX_U64, bytes(32))])
    with pytest.raises(LocalProtocolError):
        VectorStore([(-1, bytes(32))])
    with pytest.raises(LocalProtocolError):
        VectorStore([(1, bytes(31))])
    with pytest.raises(LocalProtocolError):
        VectorStore([(2, bytes(32)), (1, bytes(32))])  # unsorted
    with pytest.raises(LocalProtocolError):
        VectorStore([(1, bytes(32)), (1, bytes(32))])  # duplicate
    assert VectorStore([(MAX_TIMESTAMP, bytes(32))]).size() == 1


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8100"),
        (255, "817f"),
        (16_384, "818000"),
        (2**32, "9080808000"),
        (MAX_U64, "81ffffffffffffffff7f"),
    ],
)
def test_varint_encoding(n: int, encoded: str) -> None:
    assert encode_varint(n).hex() == encoded
    # decoding goes through a bound's timestamp: 1 + delta, so decode n - 1 when n > 0
    if 0 < n <= MAX_TIMESTAMP + 1:
        message = bytes([PROTOCOL_VERSION]) + bytes.fromhex(encoded) + b"\x00\x00"
        assert Negentropy(VectorStore([])).reconcile(message) == bytes([PROTOCOL_VERSION])


def test_varint_range_is_checked() -> None:
    with pytest.raises(LocalProtocolError):
        encode_varint(-1)
    with pytest.raises(LocalProtocolError):
        encode_varint(2**64)


# Fingerprints and the store


def naive_fingerprint(items: list[Item]) -> bytes:
    total = sum(int.from_bytes(item.id, "little") for item in items) % 2**256
    data = total.to_bytes(32, "little") + encode_varint(len(items))
    return hashlib.sha256(data).digest()[:16]


@settings(max_examples=50, deadline=None)
@given(
    items=st.lists(st.tuples(st.integers(0, 5), st.binary(min_size=32, max_size=32)), max_size=60),
    data=st.data(),
)
def test_store_matches_naive_list(items: list[tuple[int, bytes]], data: st.DataObject) -> None:
    store = VectorStore.from_unsorted(items)
    ordered = sorted(set(map(Item._make, items)))
    assert store.size() == len(ordered)
    assert list(store.iterate(0, store.size())) == ordered
    begin = data.draw(st.integers(0, len(ordered)))
    end = data.draw(st.integers(begin, len(ordered)))
    assert store.fingerprint(begin, end) == naive_fingerprint(ordered[begin:end])
    assert store.fingerprint(begin, end) == fingerprint_of(
        id_sum(item.id for item in ordered[begin:end]), end - begin
    )
    bound = Bound(data.draw(st.integers(0, 6)), data.draw(st.binary(max_size=32)))
    expected = next((i for i in range(begin, end) if ordered[i] >= bound.key), end)
    assert store.find_lower_bound(begin, end, bound) == expected


def test_fingerprint_sums_mod_2_256() -> None:
    top = (2**256 - 1).to_bytes(32, "little")
    one = (1).to_bytes(32, "little")
    store = VectorStore([(1, one), (2, top)])
    assert store.fingerprint(0, 2) == fingerprint_of(0, 2)
    assert store.fingerprint(0, 2) == naive_fingerprint([Item(1, one), Item(2, top)])
    assert store.fingerprint(1, 1) == fingerprint_of(0, 0)


def test_bound_between_is_minimal() -> None:
    a = Item(5, bytes.fromhex("aabbcc") + bytes(29))
    b = Item(5, bytes.fromhex("aabbdd") + bytes(29))
    assert Bound.between(a, b) == Bound(5, bytes.fromhex("aabbdd"))
    assert Bound.between(a, Item(6, bytes(32))) == Bound(6)
    assert a < Bound.between(a, b).key <= b
    assert ZERO_BOUND.key == Item(0, bytes(32))


def test_million_item_store_fingerprints() -> None:
    """A big store answers range fingerprints from prefix sums (checked, not timed)."""
    n = 1_000_000
    raw = random.Random(1).randbytes(32 * n)
    store = VectorStore(
        sorted((1_700_000_000 + i // 8, raw[i * 32 : i * 32 + 32]) for i in range(n))
    )
    assert store.size() == n
    whole = id_sum(raw[i : i + 32] for i in range(0, len(raw), 32))
    assert store.fingerprint(0, n) == fingerprint_of(whole, n)
    for begin, end in [(0, 10), (123_456, 123_500), (n - 7, n), (500_000, 500_000)]:
        items = list(store.iterate(begin, end))
        assert store.fingerprint(begin, end) == naive_fingerprint(items)
    probe = store.get_item(777_777)
    assert store.find_lower_bound(0, n, Bound.of_item(probe)) == 777_777
    assert store.find_lower_bound(0, n, Bound(probe.timestamp)) == 777_776  # 8 per second
    assert store.find_lower_bound(0, n, Bound(MAX_U64)) == n
    # One round trip over a million items with the whole-set opening.
    client = Negentropy(store)
    opening = client.initiate(whole_set_fingerprint=True)
    assert Negentropy(store).reconcile(opening) == bytes([PROTOCOL_VERSION])


# Hostile input: only ReconcileError, never anything else


def responder_outcome(message: bytes, store: VectorStore | None = None) -> bytes | None:
    session = Negentropy(store or SMALL_STORE, 4096)
    try:
        return session.reconcile(message)
    except ReconcileError:
        assert session.state is State.ERROR
        return None


def initiator_outcome(message: bytes, store: VectorStore | None = None) -> ClientStep | None:
    session = Negentropy(store or SMALL_STORE, 4096)
    session.initiate()
    try:
        return session.reconcile_client(message)
    except ReconcileError:
        assert session.state is State.ERROR
        return None


SMALL_STORE = VectorStore.from_unsorted(make_items(11, 300, TS_MODES["few_seconds"]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_reconcile_error(message: bytes) -> None:
    responder_outcome(message)
    initiator_outcome(message)
    responder_outcome(bytes([PROTOCOL_VERSION]) + message)
    initiator_outcome(bytes([PROTOCOL_VERSION]) + message)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 255), max_size=120))
def test_garbage_fed_one_byte_at_a_time(values: list[int]) -> None:
    """Grow a message one byte at a time; every prefix decodes or fails cleanly."""
    message = bytearray([PROTOCOL_VERSION])
    for value in values:
        message.append(value)
        responder_outcome(bytes(message))
        initiator_outcome(bytes(message))


@pytest.mark.parametrize("name", ["one-each", "single-fp-differ-5000", "equal-100"])
def test_truncated_and_extended_vector_messages(name: str) -> None:
    case = vector_case(name)
    client_store, server_store = vector_stores(case)
    query = bytes.fromhex(case["transcript"][0]["hex"])
    reply = bytes.fromhex(case["transcript"][1]["hex"])
    for cut in range(len(query) + 1):
        responder_outcome(query[:cut], server_store)
    for cut in range(len(reply) + 1):
        initiator_outcome(reply[:cut], client_store)
    for junk in (b"\x00", b"\x80", b"\xff" * 12, b"\x01\x00\x03", bytes(40)):
        responder_outcome(query + junk, server_store)
        initiator_outcome(reply + junk, client_store)
    rng = random.Random(name)
    for pos in range(len(query)):
        mutated = bytearray(query)
        mutated[pos] ^= rng.randrange(1, 256)
        responder_outcome(bytes(mutated), server_store)


V = bytes([PROTOCOL_VERSION])


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (b"", "empty message"),
        (b"\x00", "not a negentropy version byte"),
        (b"\x70", "not a negentropy version byte"),
        (V + b"\x81", "truncated varint"),
        (V + b"\x80\x01\x00\x00", "varint with a leading zero group"),
        (V + b"\xff" * 9 + b"\x7f\x00\x00", "varint over u64"),
        (V + b"\x82\x80\x80\x80\x80\x80\x80\x80\x80\x00" + b"\x00\x00", "varint over u64"),
        (V + b"\x00\x00\x03", "unknown mode 3"),
        (V + b"\x00\x00\x04", "unknown mode 4"),
        (V + b"\x00\x00\x01" + bytes(15), "truncated fingerprint"),
        (V + b"\x00\x00\x02\x01" + bytes(31), "truncated id list"),
        (V + b"\x00\x00\x02\x8f\xff\xff\xff\x7f", "absurd id list length"),
        (V + b"\x00\x00\x02" + encode_varint(MAX_U64), "absurd id list length"),
        (V + b"\x00\x21" + bytes(33) + b"\x00", "bound prefix over 32 bytes"),
        (V + b"\x00\x02\xff", "truncated bound prefix"),
        (V + b"\x05\x01\x05\x00" + b"\x01\x01\x01\x00", "bounds out of order"),
    ],
)
def test_bad_messages_raise_reconcile_error(message: bytes, reason: str) -> None:
    for role in ("responder", "initiator"):
        session = Negentropy(SMALL_STORE)
        if role == "initiator":
            session.initiate()
            call: Callable[[bytes], object] = session.reconcile_client
        else:
            call = session.reconcile
        with pytest.raises(ReconcileError):
            call(message)
        assert session.state is State.ERROR, reason
    assert issubclass(ReconcileError, RemoteProtocolError)


def test_equal_bounds_are_not_out_of_order() -> None:
    # The reference itself can emit an empty range (e.g. infinity after infinity).
    message = V + b"\x00\x00\x00" + b"\x00\x00\x01" + fingerprint_of(0, 0)
    assert Negentropy(VectorStore([])).reconcile(message) == V


def test_timestamp_deltas_saturate_at_infinity() -> None:
    message = V + encode_varint(MAX_U64) + b"\x00\x00" + encode_varint(5) + b"\x00\x02\x00"
    # infinity then infinity: the id list covers the empty range above every item
    assert Negentropy(SMALL_STORE).reconcile(message)[:1] == V


def test_unsupported_version_negotiation() -> None:
    server = Negentropy(SMALL_STORE)
    assert server.reconcile(b"\x62" + b"anything") == V  # "I speak version 1"
    assert server.state is State.RESPONDING
    client = Negentropy(SMALL_STORE)
    client.initiate()
    with pytest.raises(ReconcileError):
        client.reconcile_client(b"\x62")
    assert client.state is State.ERROR


# The state machine


def test_frame_size_limit_validation() -> None:
    for bad in (1, 4095, -1, 200):
        with pytest.raises(LocalProtocolError):
            Negentropy(SMALL_STORE, bad)
    with pytest.raises(LocalProtocolError):
        Negentropy(SMALL_STORE, True)
    for good in (0, 4096, 60_000, 2**40):
        assert Negentropy(SMALL_STORE, good).frame_size_limit == good
    assert Negentropy(SMALL_STORE).frame_size_limit == 60_000


def state_of(session: Negentropy) -> State:
    return session.state  # a fresh read (mypy keeps an earlier narrowing of .state)


def test_illegal_transitions() -> None:
    opening = Negentropy(SMALL_STORE).initiate()

    fresh = Negentropy(SMALL_STORE)
    with pytest.raises(LocalProtocolError):
        fresh.reconcile_client(V)  # before initiate
    assert fresh.state is State.IDLE

    client = Negentropy(SMALL_STORE)
    client.initiate()
    with pytest.raises(LocalProtocolError):
        client.initiate()  # twice
    with pytest.raises(LocalProtocolError):
        client.reconcile(opening)  # an initiator does not respond
    assert client.state is State.AWAITING_REPLY
    step = client.reconcile_client(Negentropy(SMALL_STORE).reconcile(opening))
    assert step.done
    assert state_of(client) is State.DONE
    with pytest.raises(LocalProtocolError):
        client.reconcile_client(V)  # after done

    server = Negentropy(SMALL_STORE)
    server.reconcile(opening)
    with pytest.raises(LocalProtocolError):
        server.initiate()  # a responder does not initiate
    with pytest.raises(LocalProtocolError):
        server.reconcile_client(V)
    with pytest.raises(ReconcileError):
        server.reconcile(b"\x61\x81")
    assert server.state is State.ERROR
    with pytest.raises(LocalProtocolError):
        server.reconcile(opening)  # fed after error
    with pytest.raises(LocalProtocolError):
        server.initiate()
    assert server.state is State.ERROR

    with pytest.raises(LocalProtocolError):
        Negentropy(SMALL_STORE).reconcile(cast(Any, "61"))  # str is not bytes


def test_transition_table_shape() -> None:
    # ERROR and DONE are terminal; every live state can fail.
    sources = {state for state, _ in TRANSITIONS}
    assert State.ERROR not in sources
    assert State.DONE not in sources
    for state in sources:
        assert TRANSITIONS[state, Event.FAIL] is State.ERROR


OPERATIONS = ["initiate", "initiate_whole", "reconcile_good", "reconcile_bad", "client_good",
              "client_bad", "client_final"]  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(OPERATIONS), max_size=8))
def test_any_call_sequence_follows_the_table(operations: list[str]) -> None:
    """Every call either follows the table or raises the right class; state is kept."""
    store = SMALL_STORE
    other = VectorStore.from_unsorted(make_items(12, 50, TS_MODES["few_seconds"]))
    opening = Negentropy(other).initiate()
    good_reply = Negentropy(other).reconcile(Negentropy(store).initiate())
    session = Negentropy(store)
    for op in operations:
        before = session.state
        event = {
            "initiate": Event.INITIATE,
            "initiate_whole": Event.INITIATE,
            "reconcile_good": Event.QUERY,
            "reconcile_bad": Event.QUERY,
        }.get(op, Event.REPLY)
        legal = (before, event) in TRANSITIONS
        try:
            if op == "initiate":
                session.initiate()
            elif op == "initiate_whole":
                session.initiate(whole_set_fingerprint=True)
            elif op == "reconcile_good":
                session.reconcile(opening)
            elif op == "reconcile_bad":
                session.reconcile(b"\x61\x00\x00\x07")
            elif op == "client_good":
                session.reconcile_client(good_reply)
            elif op == "client_final":
                session.reconcile_client(V)
            else:
                session.reconcile_client(b"\x61\xff")
        except LocalProtocolError:
            assert not legal
            assert session.state is before
        except ReconcileError:
            assert legal
            assert op in ("reconcile_bad", "client_bad")
            assert session.state is State.ERROR
        else:
            assert legal
            assert (before, event) in TRANSITIONS
            assert session.state in (TRANSITIONS.get((before, event)), State.DONE)


# --------------------------------------------------------------------------- recent opening


def _recent_pair(
    shared: int, a_only: int, b_only: int
) -> tuple[VectorStore, VectorStore, set[bytes], set[bytes]]:
    def item(i: int, tag: str) -> tuple[int, bytes]:
        return (1_000_000 + i, hashlib.sha256(f"{tag}{i}".encode()).digest())

    common = [item(i, "s") for i in range(shared)]
    a_new = [item(shared + i, "a") for i in range(a_only)]
    b_new = [item(shared + i, "b") for i in range(b_only)]
    a = VectorStore.from_unsorted(common + a_new)
    b = VectorStore.from_unsorted(common + b_new)
    return a, b, {x[1] for x in a_new}, {x[1] for x in b_new}


@pytest.mark.parametrize("frame", [0, 4096, 60_000])
def test_recent_opening_settles_recent_differences_in_one_round_trip(frame: int) -> None:
    a, b, a_new, b_new = _recent_pair(5_000, 30, 40)
    client, server = Negentropy(a, frame), Negentropy(b, frame)
    opening = client.initiate(recent_since=1_000_000 + 5_000)
    step = client.reconcile_client(server.reconcile(opening))
    assert step.done
    assert set(step.have_ids) == a_new and set(step.need_ids) == b_new
    # About 32 bytes per recent item each way, plus a fixed overhead.
    assert len(opening) <= 64 + 32 * 30


def test_recent_opening_with_older_differences_still_converges() -> None:
    a, b, a_new, b_new = _recent_pair(3_000, 10, 10)
    # The split point is after the differences: they sit in the fingerprint range.
    client, server = Negentropy(a), Negentropy(b)
    msg: bytes | None = client.initiate(recent_since=1_000_000 + 5_000)
    have: set[bytes] = set()
    need: set[bytes] = set()
    rounds = 0
    while msg is not None:
        rounds += 1
        step = client.reconcile_client(server.reconcile(msg))
        have |= set(step.have_ids)
        need |= set(step.need_ids)
        msg = step.message
        server = Negentropy(b)  # the responder keeps no state
    assert have == a_new and need == b_new and rounds > 1


def test_recent_opening_falls_back_when_ids_do_not_fit_a_frame() -> None:
    a, _, _, _ = _recent_pair(0, 500, 0)
    opening = Negentropy(a, 4096).initiate(recent_since=0)
    assert opening == Negentropy(a, 4096).initiate()


def test_appended_store_equals_a_rebuilt_one() -> None:
    items = sorted((1_000 + i // 3, hashlib.sha256(str(i).encode()).digest()) for i in range(300))
    base = VectorStore(items[:200])
    grown = base.appended(items[200:])
    full = VectorStore(items)
    assert grown is not None and grown.size() == full.size() == 300
    for begin, end in [(0, 300), (0, 200), (150, 300), (200, 201), (299, 300), (0, 0)]:
        assert grown.fingerprint(begin, end) == full.fingerprint(begin, end)
    assert list(grown.iterate(0, 300)) == list(full.iterate(0, 300))
    assert base.size() == 200  # the original is untouched
    # An item that sorts before the last one cannot be appended.
    assert base.appended([items[5]]) is None
    assert base.appended([]) is base
