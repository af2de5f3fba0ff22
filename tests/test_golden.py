"""Golden message vectors: what another implementation checks itself against."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path

import pytest

from protocol.errors import MessageRejected
from protocol.messages import decode_message

from .golden import build

VECTORS = json.loads((Path(__file__).parent / "vectors" / "messages-v1.json").read_text())


def test_every_kind_has_a_golden_message() -> None:
    from protocol.kinds import KNOWN_KINDS

    assert {m["kind"] for m in VECTORS["messages"]} >= KNOWN_KINDS


def test_golden_messages_decode_to_their_ids() -> None:
    for m in VECTORS["messages"]:
        decoded = decode_message(bytes.fromhex(m["hex"]), now_ms=VECTORS["now_ms"])
        assert decoded.hex_id == m["id"] and decoded.kind == m["kind"]
        skeleton = decode_message(bytes.fromhex(m["skeleton_hex"]), now_ms=VECTORS["now_ms"])
        assert skeleton.hex_id == m["id"] and skeleton.is_skeleton


def test_rejected_vectors_fail_with_their_codes() -> None:
    for case in VECTORS["rejected"]:
        try:
            decode_message(bytes.fromhex(case["hex"]), now_ms=VECTORS["now_ms"])
        except MessageRejected as exc:
            assert exc.code == case["code"], case["what"]
        else:
            raise AssertionError(f"accepted: {case['what']}")


def test_the_committed_file_is_what_the_code_makes() -> None:
    # Deterministic signatures: a protocol change shows up here as a diff.
    assert build() == VECTORS


def test_workers_verdicts_rebuild_what_check_all_gives() -> None:
    # A checking worker sends back verdicts only; the messages are rebuilt from the
    # bytes: the same messages, attribute for attribute, and the same rejections.
    from storage.messages import check_all, check_verdicts, with_verdicts

    raws = [bytes.fromhex(m[k]) for m in VECTORS["messages"] for k in ("hex", "skeleton_hex")]
    raws += [bytes.fromhex(case["hex"]) for case in VECTORS["rejected"]]
    now = VECTORS["now_ms"]
    expected = check_all(raws, now)
    verdicts = check_verdicts(raws, now)
    assert sum(type(v) is bytes for v in verdicts) == 2 * len(VECTORS["messages"])
    rebuilt = with_verdicts(raws, pickle.loads(pickle.dumps(verdicts)))
    assert len(rebuilt) == len(expected)
    for got, want in zip(rebuilt, expected, strict=True):
        assert type(got) is type(want)
        if isinstance(want, MessageRejected):
            assert (got.code, str(got)) == (want.code, str(want))
            continue
        for name in want.__dataclass_fields__:
            assert getattr(got, name) == getattr(want, name), name
        assert type(got.refs) is tuple


async def test_ingest_through_worker_processes_stores_what_inline_checks_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The node's Ingestor with real worker processes (verdicts sent back) and with the
    # checks on a thread: the same result for every message, the same messages stored.
    import node.syncer
    from node.syncer import SMALL_BATCH, Ingestor
    from storage.messages import iter_raw
    from storage.store import Store

    monkeypatch.setattr(node.syncer, "now_ms", lambda: VECTORS["now_ms"])
    raws = [bytes.fromhex(m["hex"]) for m in VECTORS["messages"]]
    raws += [bytes.fromhex(case["hex"]) for case in VECTORS["rejected"]]
    batches = [raws * 2, raws[::-1] * 2]  # each large enough for the workers
    assert min(len(b) for b in batches) >= SMALL_BATCH

    async def each():  # type: ignore[no-untyped-def]
        for batch in batches:
            yield batch

    stored = []
    for workers in (0, 2):
        store = await Store.open(tmp_path / f"{workers}.db")
        ingestor = Ingestor(store, workers=workers)
        try:
            results = [
                (r.result, r.id, r.detail)
                async for batch in ingestor.ingest_all(each())
                for r in batch
            ]
            assert (ingestor._pool is not None) == (workers > 1)  # the workers did check
            held = sorted(await store.read(lambda db: list(iter_raw(db))))
        finally:
            await asyncio.to_thread(ingestor.close)
            await store.close()
        stored.append((results, held))
    assert stored[0] == stored[1]
    results, held = stored[0]
    assert len(results) == 4 * len(raws) and len(held) == len(VECTORS["messages"])
