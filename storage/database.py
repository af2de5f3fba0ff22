"""Opening a node's SQLite database: WAL, durable commits, migrations."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from .migrations import REBUILD_KEY, migrations

__all__ = ["SCHEMA_SET", "StorageError", "open_database", "select_in", "write_transaction"]

SCHEMA_SET = migrations.name

#: Bytes of the database file each connection reads through a memory map: SQLite's
#: own ceiling in common builds (SQLITE_MAX_MMAP_SIZE, 0x7fff0000), which a larger
#: value would be cut down to. The map takes address space, not memory: its pages are
#: the kernel's file cache, shared by every connection. None on a 32-bit system, whose
#: 4 GiB of address space a few connections' maps would use up.
MMAP_SIZE = 0x7FFF0000 if sys.maxsize > 2**32 else 0


def _bind_without_adapting() -> None:
    """Register identity adapters for ``bytes`` and ``None``.

    CPython's sqlite3 (3.11 at least) passes every parameter that is not exactly an
    int, float, str or bytearray through its adapter registry. For a ``bytes`` or
    ``None`` with no adapter registered, it then asks the protocol type for
    ``__adapt__``, which formats an AttributeError message and throws it away: about
    2,000 instructions per parameter, a tenth of the writer's CPU (ids, keys and raw
    messages are all bytes). With these adapters the registry answers at once and
    binds the same values: a blob, a NULL. Process-wide, like the registry itself.
    """
    sqlite3.register_adapter(bytes, bytes.__bytes__)
    # {}.get(None) is None: a builtin that gives back None (a lambda costs a frame).
    sqlite3.register_adapter(type(None), {}.get)  # type: ignore[arg-type]


_bind_without_adapting()


class StorageError(Exception):
    """The database cannot be used (missing, not a Fora database, newer schema)."""


def _configure(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    # FULL: a commit is on disk before ingest reports it, so an acknowledged message
    # survives a crash or a power cut; batches amortize the fsync.
    conn.execute("PRAGMA synchronous = FULL")
    # 64 MiB of page cache per connection: the id and reconciliation indexes of a large
    # community stay in memory, so inserting at random ids does not re-read pages.
    conn.execute("PRAGMA cache_size = -65536")
    # Read the database file through a memory map (up to MMAP_SIZE; the rest as
    # before): a page not in the cache above costs a page fault the first time instead
    # of a read() every time. At full scale (scripts/bench_views' store, 1.4 GB) the
    # writer made 11.3 read() calls a message and now 1.0, for 3.3 more page faults.
    # Writes still go through the WAL: the map is only read.
    conn.execute(f"PRAGMA mmap_size = {MMAP_SIZE}")
    conn.execute("PRAGMA temp_store = MEMORY")


def open_database(path: str | Path, *, readonly: bool = False, migrate: bool = True) -> Database:
    """Open (creating if needed) the database at ``path``.

    The writer opens it read-write, switches it to WAL and applies pending migrations.
    Readers open it read-only (``readonly=True``) and never change the schema.
    """
    path = Path(path)
    if readonly:
        if not path.exists():
            raise StorageError(f"no database at {path}")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False)
    # isolation_level=None: autocommit; db.atomic() issues BEGIN/COMMIT itself.
    conn.isolation_level = None
    try:
        _configure(conn)
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise StorageError(f"{path}: cannot switch to WAL (journal_mode={mode})")
        db = Database(conn)
        if migrate and not readonly:
            migrations.apply(db)
            _rebuild_if_asked(db)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise StorageError(f"{path}: {exc}") from exc
    return db


def _rebuild_if_asked(db: Database) -> None:
    """Build the derived state again when a migration asked for it (in one
    transaction with clearing the request: a crash half-way asks again next time)."""
    if not db.execute("SELECT 1 FROM settings WHERE key = ?", [REBUILD_KEY]).fetchone():
        return
    from .derive import rebuild

    with write_transaction(db):
        rebuild(db.conn)
        db.execute("DELETE FROM settings WHERE key = ?", [REBUILD_KEY])


@contextlib.contextmanager
def write_transaction(db: Database) -> Iterator[Database]:
    """A transaction that takes the write lock at once (``BEGIN IMMEDIATE``).

    ``db.atomic()`` begins a deferred transaction: one that reads first and writes
    later fails at once with "database is locked" when another process (``fora post``
    beside a running node) committed in between, whatever the busy timeout. Taking the
    lock first makes it wait its turn instead. Nested inside another transaction it
    is a savepoint, like ``db.atomic()``.
    """
    if db.conn.in_transaction:
        with db.atomic():
            yield db
        return
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.conn.in_transaction:
            db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


#: How many ids go in one ``IN (...)`` list (SQLite allows 32,766 parameters).
IN_CHUNK = 500


def select_in(db: Database, sql: str, ids: Sequence[bytes]) -> Iterator[tuple[Any, ...]]:
    """Rows of ``sql`` (a SELECT with ``{marks}`` where the ``IN`` list goes) for
    ``ids``, asked in chunks of :data:`IN_CHUNK`."""
    for start in range(0, len(ids), IN_CHUNK):
        chunk = list(ids[start : start + IN_CHUNK])
        yield from db.execute(sql.format(marks=",".join("?" * len(chunk))), chunk)
