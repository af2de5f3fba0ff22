"""The message store: ingest results, erasure, skeletons, export, verify, async access."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from protocol.errors import Result
from protocol.messages import decode_message
from storage.checking import BACKGROUND_NICENESS, make_check_pool
from storage.database import StorageError, open_database, write_transaction
from storage.messages import (
    count_messages,
    get_raw,
    ingest,
    iter_raw,
    set_hash,
    stats,
    verify_store,
)
from storage.store import BACKSTOP_PAGES, Store

from .conftest import NOW, Factory, seeded_key, upgrade_again


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = open_database(tmp_path / "fora.db")
    yield database
    database.close()


def codes(results: list) -> list[str]:
    return [r.result.value for r in results]


def test_schema_is_wal_and_strict(db: Database) -> None:
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "STRICT" in db.table("messages").schema


def test_bytes_and_none_bind_through_registered_adapters(db: Database) -> None:
    # storage.database registers identity adapters so that sqlite3 does not look for
    # __adapt__ on every bytes or None parameter (a formatted AttributeError each).
    assert sqlite3.adapters[(bytes, sqlite3.PrepareProtocol)] is bytes.__bytes__
    assert (type(None), sqlite3.PrepareProtocol) in sqlite3.adapters
    db.execute("CREATE TABLE bound (a ANY, b ANY, c ANY) STRICT")
    db.conn.executemany("INSERT INTO bound VALUES (?, ?, ?)", [(b"\x00id", None, b"")] * 3)
    db.execute("INSERT INTO bound VALUES (?, ?, ?)", (b"one", None, "text"))
    assert db.execute("SELECT typeof(a), typeof(b), typeof(c), a FROM bound").fetchall() == [
        ("blob", "null", "blob", b"\x00id"),
        ("blob", "null", "blob", b"\x00id"),
        ("blob", "null", "blob", b"\x00id"),
        ("blob", "null", "text", b"one"),
    ]
    assert db.execute("SELECT count(*) FROM bound WHERE a = ?", (b"one",)).fetchone() == (1,)


def _read_calls() -> int:
    for line in Path("/proc/thread-self/io").read_text().splitlines():
        if line.startswith("syscr:"):
            return int(line.split()[1])
    raise AssertionError("no syscr in /proc/thread-self/io")


def _mmap_ceiling() -> int:
    """SQLite's build limit on memory maps (SQLITE_MAX_MMAP_SIZE; 0: none at all)."""
    conn = sqlite3.connect(":memory:")
    try:
        options = [row[0] for row in conn.execute("PRAGMA compile_options")]
    finally:
        conn.close()
    for option in options:
        if option.startswith("MAX_MMAP_SIZE="):
            return int(option.split("=", 1)[1], 0)
    return 0x7FFF0000  # SQLite's default


@pytest.mark.skipif(not Path("/proc/thread-self/io").exists(), reason="Linux /proc only")
@pytest.mark.skipif(_mmap_ceiling() == 0, reason="this SQLite is built without memory maps")
@pytest.mark.parametrize("readonly", [False, True])
def test_pages_are_read_through_the_memory_map(tmp_path: Path, readonly: bool) -> None:
    # Every connection maps the file: reading 2,000+ pages that are in no cache of
    # this connection takes page faults, not a read() call per page.
    path = tmp_path / "fora.db"
    writer = open_database(path)
    writer.execute("CREATE TABLE big (n INTEGER PRIMARY KEY, pad BLOB NOT NULL)")
    with write_transaction(writer):
        writer.conn.executemany(
            "INSERT INTO big (pad) VALUES (?)", [(os.urandom(1000),) for _ in range(8_000)]
        )
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the pages in the file, not the WAL
    writer.close()

    def scan(mapped: bool) -> tuple[int, int, int]:
        db = open_database(path, readonly=readonly, migrate=False)
        try:
            if not mapped:
                db.execute("PRAGMA mmap_size = 0")
            assert (db.execute("PRAGMA mmap_size").fetchone()[0] > 8_000_000) == mapped
            before = _read_calls()
            total = db.execute("SELECT sum(length(pad)) FROM big").fetchone()[0]
            return total, _read_calls() - before, db.execute("PRAGMA page_count").fetchone()[0]
        finally:
            db.close()

    total, reads, pages = scan(mapped=True)
    again, unmapped, _ = scan(mapped=False)
    assert total == again == 8_000_000 and pages > 2_000
    assert unmapped > pages // 2  # the same scan without the map: a read() per page
    assert reads < 50, (reads, pages)


def test_ingest_is_idempotent(db: Database, factory: Factory) -> None:
    topic = factory.topic()
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["ok"]
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["duplicate"]
    assert codes(ingest(db, [topic.raw, topic.raw], now_ms=NOW)) == ["duplicate", "duplicate"]
    assert count_messages(db) == 1


def test_a_bad_message_never_stops_the_good_ones(db: Database, factory: Factory) -> None:
    good = [factory.topic(f"T{i}").raw for i in range(3)]
    batch = [good[0], b"\xc1garbage", good[1], good[1][:-1] + b"\x00", good[2]]
    results = ingest(db, batch, now_ms=NOW)
    assert codes(results) == ["ok", "malformed", "ok", results[3].result.value, "ok"]
    assert results[3].result not in (Result.OK, Result.DUPLICATE)
    assert count_messages(db) == 3
    assert results[1].id is None and results[0].id is not None


def test_export_is_byte_identical(db: Database, factory: Factory) -> None:
    raws = [factory.topic(f"T{i}").raw for i in range(20)]
    ingest(db, raws, now_ms=NOW)
    assert list(iter_raw(db)) == raws
    other = Factory(seeded_key(2))
    foreign = other.topic().raw
    ingest(db, [foreign], now_ms=NOW)
    assert list(iter_raw(db, other.community)) == [foreign]


def test_get_raw_keeps_order_and_gaps(db: Database, factory: Factory) -> None:
    a, b = factory.topic("A"), factory.topic("B")
    ingest(db, [a.raw, b.raw], now_ms=NOW)
    assert get_raw(db, [b.id, bytes(32), a.id]) == [b.raw, None, a.raw]


def test_set_hash_depends_only_on_the_set(tmp_path: Path, factory: Factory) -> None:
    raws = [factory.topic(f"T{i}").raw for i in range(10)]
    one, two = open_database(tmp_path / "1.db"), open_database(tmp_path / "2.db")
    ingest(one, raws, now_ms=NOW)
    ingest(two, list(reversed(raws)), now_ms=NOW)
    assert set_hash(one) == set_hash(two)
    ingest(two, [factory.topic("extra").raw], now_ms=NOW)
    assert set_hash(one) != set_hash(two)
    s = stats(one)
    assert s["messages"] == 10 and s["communities"][factory.community.hex()]["kinds"] == {
        "topic": 10
    }


def test_erase_after_target_drops_the_body(db: Database, factory: Factory) -> None:
    topic = factory.topic()
    ingest(db, [topic.raw], now_ms=NOW)
    assert codes(ingest(db, [factory.erase(topic.id).raw], now_ms=NOW)) == ["ok"]
    (raw,) = get_raw(db, [topic.id])
    assert raw == topic.skeleton().raw
    # A stale peer offers the full message again: the body does not come back.
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["erased"]
    assert get_raw(db, [topic.id]) == [topic.skeleton().raw]
    assert verify_store(db).ok


def test_erase_before_target(db: Database, factory: Factory) -> None:
    topic = factory.topic()
    ingest(db, [factory.erase(topic.id).raw], now_ms=NOW)
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["erased"]
    assert get_raw(db, [topic.id]) == [topic.skeleton().raw]


def test_erase_by_someone_else_has_no_effect(db: Database, factory: Factory) -> None:
    topic = factory.topic()
    stranger_erase = factory.erase(topic.id, key=seeded_key(99))
    ingest(db, [stranger_erase.raw, topic.raw], now_ms=NOW)
    assert get_raw(db, [topic.id]) == [topic.raw]


def test_skeleton_is_filled_in_when_the_body_comes(db: Database, factory: Factory) -> None:
    topic = factory.topic()
    assert codes(ingest(db, [topic.skeleton().raw], now_ms=NOW)) == ["ok"]
    assert codes(ingest(db, [topic.skeleton().raw], now_ms=NOW)) == ["duplicate"]
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["ok"]
    assert get_raw(db, [topic.id]) == [topic.raw]
    assert codes(ingest(db, [topic.raw], now_ms=NOW)) == ["duplicate"]


def test_verify_finds_tampering(db: Database, factory: Factory) -> None:
    topic, other = factory.topic("A"), factory.topic("B")
    ingest(db, [topic.raw], now_ms=NOW)
    assert verify_store(db).ok
    db.execute("UPDATE messages SET raw = ? WHERE id = ?", (other.raw, topic.id))
    report = verify_store(db)
    assert not report.ok and "columns disagree" in report.problems[0]
    db.execute("UPDATE messages SET raw = ? WHERE id = ?", (b"\x93junk", topic.id))
    assert "malformed" in verify_store(db).problems[0]


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "fora.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError):
        open_database(path)


async def test_no_planner_statistics_are_kept(tmp_path: Path, factory: Factory) -> None:
    """With statistics SQLite built a Bloom filter over all of `things` in a thread's
    recursive query (45 ms instead of 0.4 at full scale): m014 drops them, and closing
    a store gathers none (it ran `PRAGMA optimize`)."""
    path = tmp_path / "fora.db"
    db = open_database(path)
    db.execute("ANALYZE")  # statistics as an older node's `PRAGMA optimize` left them
    assert db.execute("SELECT count(*) FROM sqlite_stat1").fetchone()[0] > 0
    db = upgrade_again(db, "m014_no_planner_statistics")
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None
    db.close()
    store = await Store.open(path)
    for _ in range(3):
        await store.write(ingest, [factory.comment(bytes(32), "x").raw], now_ms=NOW)
        await store.read(
            lambda d: d.execute("SELECT count(*) FROM things WHERE kind = 'comment'").fetchone()
        )
    await store.close()
    db = open_database(path)
    assert db.execute("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").fetchone() is None
    db.close()


async def test_a_store_that_cannot_open_leaves_no_thread(tmp_path: Path) -> None:
    def store_threads() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name.startswith("fora-")}

    before = store_threads()
    bad = tmp_path / "fora.db"
    bad.write_bytes(b"not a database" * 500)
    with pytest.raises(StorageError, match="not a database"):
        await Store.open(bad)
    assert store_threads() == before
    assert bad.read_bytes() == b"not a database" * 500  # and it is left as it was


async def test_store_runs_off_the_event_loop(tmp_path: Path, factory: Factory) -> None:
    store = await Store.open(tmp_path / "fora.db")
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def write(db: Database, raws: list[bytes]) -> list:
        seen.append(threading.get_ident())
        return ingest(db, raws, now_ms=NOW)

    def read(db: Database) -> int:
        seen.append(threading.get_ident())
        return count_messages(db)

    try:
        raws = [factory.topic(f"T{i}").raw for i in range(50)]
        results = await asyncio.gather(*(store.write(write, [raw]) for raw in raws))
        assert all(r[0].result is Result.OK for r in results)
        counts = await asyncio.gather(*(store.read(read) for _ in range(10)))
        assert counts == [50] * 10
        assert loop_thread not in seen
        # A reader's connection is read-only.
        with pytest.raises(Exception, match="readonly"):
            await store.read(lambda db: db.execute("DELETE FROM messages"))
    finally:
        await store.close()


async def test_ingest_all_checks_the_next_batch_while_one_is_stored(
    tmp_path: Path, factory: Factory
) -> None:
    """`Ingestor.ingest_all` (`fora ingest`, bench_views): each batch's results in
    order once committed; batch k+1 is being checked while batch k is stored; a caller
    that stops early, or a store that fails, leaves no check running."""
    from node.syncer import Ingestor

    events: list[tuple[str, int]] = []
    held_back: set[int] = set()  # the checks of these batches never end
    never = asyncio.Event()
    failing: set[int] = set()  # the stores of these batches fail

    class Traced(Ingestor):
        async def check(self, raws):  # type: ignore[no-untyped-def]
            k = batches.index(raws)
            events.append(("check", k))
            await asyncio.sleep(0.02)  # a check takes a while
            if k in held_back:
                await never.wait()
            got = await super().check(raws)
            events.append(("checked", k))
            return got

        async def store_checked(self, raws, checked, now, source=None):  # type: ignore[no-untyped-def]
            k = batches.index(raws)
            events.append(("store", k))
            if k in failing:
                await asyncio.sleep(0.02)  # the next batch's check is under way
                raise OSError("disk full")
            results = await super().store_checked(raws, checked, now, source)
            events.append(("stored", k))
            return results

    async def each(items: list[list[bytes]]):  # type: ignore[no-untyped-def]
        for batch in items:
            yield batch

    def fresh(tag: str, n: int) -> list[list[bytes]]:
        return [[factory.topic(f"{tag}{k}.{i}").raw for i in range(30)] for k in range(n)]

    batches = fresh("T", 4)
    store = await Store.open(tmp_path / "fora.db")
    ingestor = Traced(store, workers=0)
    try:
        got = [results async for results in ingestor.ingest_all(each(batches))]
        assert [[r.result for r in results] for results in got] == [[Result.OK] * 30] * 4
        assert [[r.id for r in results] for results in got] == [
            [decode_message(raw, now_ms=NOW).id for raw in batch] for batch in batches
        ]
        assert await store.read(count_messages) == 120
        for k in range(3):  # batch k+1's check began before batch k's store ended
            assert events.index(("check", k + 1)) < events.index(("stored", k)), events
            assert events.index(("stored", k)) < events.index(("store", k + 1)), events

        # Stopping after the first batch: the second one's check is cancelled.
        events.clear()
        batches[:] = fresh("U", 3)
        held_back.add(1)
        stream = ingestor.ingest_all(each(batches))
        first = await anext(stream)
        assert [r.result for r in first] == [Result.OK] * 30
        await stream.aclose()
        assert events == [("check", 0), ("checked", 0), ("store", 0), ("check", 1), ("stored", 0)]
        assert await store.read(count_messages) == 150
        assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []

        # A store that fails: its error comes out, and the next batch's check is
        # cancelled (it is held back: only a cancel ends it).
        events.clear()
        batches[:] = fresh("V", 3)
        failing.add(0)
        with pytest.raises(OSError, match="disk full"):
            async for _ in ingestor.ingest_all(each(batches)):
                raise AssertionError("nothing is stored")
        assert events == [("check", 0), ("checked", 0), ("store", 0), ("check", 1)]
        assert await store.read(count_messages) == 150
        assert [task for task in asyncio.all_tasks() if task is not asyncio.current_task()] == []

        # Nothing to ingest: nothing yielded.
        assert [r async for r in ingestor.ingest_all(each([]))] == []
    finally:
        ingestor.close()
        await store.close()


async def test_checkpoints_run_beside_the_writer(tmp_path: Path, factory: Factory) -> None:
    """The write-ahead log is copied into the database file by the checkpoint thread,
    not by the writer (whose own automatic checkpoint is only a backstop), and closing
    leaves a whole database."""

    path = tmp_path / "fora.db"
    store = await Store.open(path)
    checkpoints: list[str] = []
    try:
        assert (
            await store.write(lambda db: db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            == BACKSTOP_PAGES
        )
        for i in range(20):
            await store.write(ingest, [factory.topic(f"T{i}").raw], now_ms=NOW)

        # The checkpoint thread is a single thread: a task queued now runs after the
        # checkpoints the writes asked for.
        def where() -> None:
            me = threading.get_native_id()
            checkpoints.append(
                (threading.current_thread().name, os.getpriority(os.PRIO_PROCESS, me))
            )

        await asyncio.get_running_loop().run_in_executor(store._checkpointer, where)
        writer_priority = await store.write(
            lambda db: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        )
        # The database file alone, copied without its log, holds the 20 topics (the
        # writer's own checkpoint would not have run yet: the log is far below the
        # backstop).
        shutil.copyfile(path, tmp_path / "copy.db")
        copy = open_database(tmp_path / "copy.db", migrate=False)
        try:
            assert count_messages(copy) == 20
        finally:
            copy.close()
    finally:
        await store.close()
    # It copies at a lower priority than the node's; the writer keeps the node's.
    assert writer_priority == os.nice(0)
    assert checkpoints == [("fora-checkpoint_0", min(19, os.nice(0) + BACKGROUND_NICENESS))]
    db = open_database(path)
    try:
        assert count_messages(db) == 20
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.write(lambda db: None)


def test_check_workers_run_below_the_node(tmp_path: Path) -> None:
    """Checking workers run at a lower priority than the process that starts them."""
    pool = make_check_pool(2)
    try:
        mine = os.nice(0)
        theirs = set(pool.map(os.nice, [0, 0]))
        assert theirs == {min(19, mine + BACKGROUND_NICENESS)}
    finally:
        pool.shutdown()


def test_a_check_pool_starts_all_its_workers_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each worker is spawned when the pool is made, never later on ``submit`` (which a
    node calls on its event loop). ``ProcessPoolExecutor`` spawns on ``submit`` only when
    no worker is idle; here each call is submitted late, so the first worker could
    finish its warm-up call before the second is submitted: without the warm-up's
    barrier the pool kept one worker and spawned the second in the middle of a sync (a
    CI failure: "Blocking call to os.getcwd" in the fetch)."""
    spawned: list[int] = []
    spawn, submit = ProcessPoolExecutor._spawn_process, ProcessPoolExecutor.submit

    def counted_spawn(self: ProcessPoolExecutor) -> None:
        spawn(self)  # type: ignore[attr-defined]
        spawned.append(1)

    def late_submit(self: ProcessPoolExecutor, *args: Any, **kwargs: Any) -> Any:
        if spawned:
            time.sleep(1.0)  # the worker spawned first has time to finish its call
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", counted_spawn)
    monkeypatch.setattr(ProcessPoolExecutor, "submit", late_submit)
    pool = make_check_pool(2)
    try:
        assert len(spawned) == 2
    finally:
        pool.shutdown()


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_check_workers_end_with_a_killed_node(tmp_path: Path) -> None:
    """A node killed with SIGKILL leaves no checking worker (nor their fork server)
    behind: each worker watches the process that made the pool."""
    script = (
        "import os, sys, time\n"
        "from storage.checking import make_check_pool\n"
        "pool = make_check_pool(2)\n"
        "print(' '.join(str(p) for p in pool._processes), flush=True)\n"
        "time.sleep(60)\n"
    )
    node = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert node.stdout is not None
        workers = [int(p) for p in node.stdout.readline().split()]
        assert len(workers) == 2 and all(_running(p) for p in workers)
        server = int(Path(f"/proc/{workers[0]}/stat").read_text().rsplit(")", 1)[1].split()[1])
        assert server != node.pid and _running(server)  # the fork server
    finally:
        node.kill()
        node.wait()
        node.stdout.close()
    deadline = time.monotonic() + 20
    while any(_running(p) for p in (*workers, server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [p for p in (*workers, server) if _running(p)]


def test_two_writers_wait_for_each_other(tmp_path: Path, factory: Factory) -> None:
    """`fora post` or `fora peer add` beside a running node: two connections write the
    same file; neither fails with "database is locked"."""
    from storage import peers as peer_fns

    path = tmp_path / "fora.db"
    open_database(path).close()
    errors: list[BaseException] = []
    raws = [factory.topic(f"T{i}").raw for i in range(200)]

    def node_writes() -> None:
        db = open_database(path)
        try:
            for i in range(0, 200, 5):
                ingest(db, raws[i : i + 5], now_ms=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    def cli_writes() -> None:
        db = open_database(path)
        try:
            for i in range(40):
                peer_fns.add_peer(
                    db, f"http://127.0.0.1:{9000 + i}", bytes([i]) * 32, "x", "manual", now_ms=NOW
                )
                peer_fns.record_failure(db, f"http://127.0.0.1:{9000 + i}", "down", now_ms=NOW)
        except BaseException as exc:
            errors.append(exc)
        finally:
            db.close()

    threads = [threading.Thread(target=node_writes), threading.Thread(target=cli_writes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    db = open_database(path)
    assert count_messages(db) == 200 and len(peer_fns.list_peers(db)) == 40
    db.close()
