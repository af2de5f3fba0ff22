"""The node's handle on its database: one writer thread, a small pool of readers.

Nothing touches SQLite on the event loop. ``await store.write(fn, *args)`` runs
``fn(db, *args)`` on the single writer thread (so writes never contend), and
``await store.read(fn, *args)`` runs it on one of a few reader threads, each with its
own read-only connection (WAL lets them read while the writer writes).

Checkpoints (copying what the write-ahead log holds into the database file) run on a
thread of their own, with their own connection, after writes: the writer does not
stop to copy pages. The writer's own automatic checkpoint stays as a backstop, at
:data:`BACKSTOP_PAGES`, should the checkpoint thread fall behind.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlite_utils import Database

from .checking import lower_priority
from .database import open_database

__all__ = ["BACKSTOP_PAGES", "Store"]

#: The write-ahead log size (in pages) at which the writer checkpoints by itself
#: (SQLite's default is 1,000): only reached when the checkpoint thread falls behind.
BACKSTOP_PAGES = 10_000

log = logging.getLogger("fora.store")

P = ParamSpec("P")
T = TypeVar("T")


class Store:
    """Async access to one database file; open with ``await Store.open(path)``."""

    def __init__(self, path: Path, readers: int = 3) -> None:
        self.path = path
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="fora-writer")
        self._readers = ThreadPoolExecutor(readers, thread_name_prefix="fora-reader")
        self._local = threading.local()
        self._reader_dbs: list[Database] = []
        self._lock = threading.Lock()
        self._write_db: Database | None = None
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="fora-checkpoint")
        self._checkpoint_db: Database | None = None
        self._checkpoint_queued = False
        self._closed = False
        #: Completed writes through this store (a page cache's version: a write may
        #: change any page).
        self.generation = 0

    @classmethod
    async def open(cls, path: str | Path, readers: int = 3) -> Store:
        store = cls(Path(path), readers)
        try:
            await store._run(store._writer, store._open_writer)
        except BaseException:
            await store.close()  # its threads end with it
            raise
        return store

    def _open_writer(self) -> None:
        self._write_db = open_database(self.path)
        self._write_db.execute(f"PRAGMA wal_autocheckpoint = {BACKSTOP_PAGES}")

    def _request_checkpoint(self) -> None:
        """Have the checkpoint thread copy the log into the database file, once for
        any number of writes that end while it is busy."""
        with self._lock:
            if self._checkpoint_queued or self._closed:
                return
            self._checkpoint_queued = True
        self._checkpointer.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        with self._lock:
            self._checkpoint_queued = False
        if self._checkpoint_db is None:
            self._checkpoint_db = open_database(self.path, migrate=False)
            lower_priority()  # copying can wait for a core; the writer should not
        # PASSIVE: copies what no reader still needs, never waits for the writer or a
        # reader; the writer starts the log over once all of it is copied.
        try:
            self._checkpoint_db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            # Nothing is lost: the log keeps what was not copied, the next write asks
            # again, and the writer's own checkpoint is the backstop.
            log.warning("checkpoint of %s failed: %s", self.path, exc)

    def _reader_db(self) -> Database:
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            db = open_database(self.path, readonly=True)
            self._local.db = db
            with self._lock:
                self._reader_dbs.append(db)
        return db

    async def _run(self, pool: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("store is closed")
        return await asyncio.get_running_loop().run_in_executor(pool, fn)

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` on the writer thread."""

        def call() -> T:
            assert self._write_db is not None
            return fn(self._write_db, *args, **kwargs)

        try:
            return await self._run(self._writer, call)
        finally:
            self.generation += 1
            self._request_checkpoint()

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` on a reader thread (read-only connection)."""
        return await self._run(
            self._readers, functools.partial(lambda: fn(self._reader_db(), *args, **kwargs))
        )

    async def close(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()

        def close_writer() -> None:
            if self._write_db is not None:
                # No `PRAGMA optimize` here: the planner statistics it gathers made
                # SQLite build a Bloom filter over all of `things` in a thread's
                # recursive query (45 ms instead of 0.4 at full scale; m014). The
                # queries are written for, and tested with, no statistics.
                self._write_db.close()
                self._write_db = None

        def close_checkpointer() -> None:
            if self._checkpoint_db is not None:
                self._checkpoint_db.close()
                self._checkpoint_db = None

        with self._lock:
            self._closed = True
        await loop.run_in_executor(self._writer, close_writer)
        await loop.run_in_executor(self._checkpointer, close_checkpointer)
        for pool in (self._writer, self._readers, self._checkpointer):
            await loop.run_in_executor(None, functools.partial(pool.shutdown, wait=True))
        with self._lock:
            for db in self._reader_dbs:
                db.close()
            self._reader_dbs.clear()
