"""The engine and its transactions.

SQLite: WAL, `synchronous=FULL` by default (an acknowledged charge survives power loss),
a busy timeout, and `BEGIN IMMEDIATE` for write transactions so that two writers queue on
the lock instead of failing with "database is locked" when one upgrades a read lock.
PostgreSQL: psycopg 3, READ COMMITTED; correctness comes from guarded UPDATEs and unique
constraints, not from the isolation level.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.pool import ConnectionPoolEntry

from quotaledger.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
INLINE_MMAP_BYTES = 256 * 1024 * 1024


def is_busy(error: BaseException) -> bool:
    """Whether `error` is SQLite giving up on a lock (raised by the driver directly or
    wrapped by SQLAlchemy)."""
    text = str(error).lower()
    return "database is locked" in text or "database is busy" in text


def now() -> int:
    """Unix time in whole seconds, as stored in every `*_at` column."""
    return int(time.time())


class Database:
    """One engine, and the two kinds of transaction the domain uses."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "FULL",
        sqlite_busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS,
        pool_size: int = 8,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self._inline: sqlite3.Connection | None = None
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, sqlite_synchronous, sqlite_busy_timeout_ms, pool_size)
        else:
            self.engine = create_engine(
                url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that will write: committed on success, rolled back on error."""
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read-only transaction (a deferred BEGIN on SQLite: no write lock)."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(sqlite_deferred=True)
            with connection.begin():
                yield connection

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

    def inline_reader(self) -> sqlite3.Connection | None:
        """On SQLite, a raw connection for one-row indexed reads made right on the event
        loop: such a read takes microseconds (WAL readers never wait for writers), less
        than a hop to a worker thread. None on PostgreSQL, where every read is a network
        round trip and belongs in a worker thread."""
        if not self.is_sqlite:
            return None
        if self._inline is None:
            path = self.engine.url.database or ":memory:"
            self._inline = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            # Never wait on the event loop: a busy database raises at once, and the caller
            # retries in a worker thread, where waiting blocks nobody.
            self._inline.execute("PRAGMA busy_timeout = 0")
            self._inline.execute("PRAGMA query_only = ON")
            # Token lookups land anywhere in the index: read it through a memory map
            # (no read() call per page) so a million accounts cost what a thousand do.
            self._inline.execute(f"PRAGMA mmap_size = {INLINE_MMAP_BYTES}")
        return self._inline

    def dispose(self) -> None:
        if self._inline is not None:
            self._inline.close()
            self._inline = None
        self.engine.dispose()


def _sqlite_engine(url: str, synchronous: str, busy_timeout_ms: int, pool_size: int) -> Engine:
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let us emit BEGIN ourselves (the sqlite3 module's implicit BEGIN is DEFERRED).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        deferred = connection.get_execution_options().get("sqlite_deferred", False)
        connection.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")

    return engine
