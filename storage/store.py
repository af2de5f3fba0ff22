"""The node's handle on its database: one writer thread, a small pool of readers.

Nothing touches SQLite on the event loop. ``await store.write(fn, *args)`` runs
``fn(db, *args)`` on the single writer thread (so writes never contend), and
``await store.read(fn, *args)`` runs it on one of a few reader threads, each with its
own read-only connection (WAL lets them read while the writer writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlite_utils import Database

from .database import open_database

__all__ = ["Store"]

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
        self._closed = False
        #: Completed writes through this store (a page cache's version: a write may
        #: change any page).
        self.generation = 0

    @classmethod
    async def open(cls, path: str | Path, readers: int = 3) -> Store:
        store = cls(Path(path), readers)
        await store._run(store._writer, store._open_writer)
        return store

    def _open_writer(self) -> None:
        self._write_db = open_database(self.path)

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
                with contextlib.suppress(Exception):
                    self._write_db.execute("PRAGMA optimize")
                self._write_db.close()
                self._write_db = None

        await loop.run_in_executor(self._writer, close_writer)
        self._closed = True
        for pool in (self._writer, self._readers):
            await loop.run_in_executor(None, functools.partial(pool.shutdown, wait=True))
        with self._lock:
            for db in self._reader_dbs:
                db.close()
            self._reader_dbs.clear()
