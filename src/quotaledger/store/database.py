"""The engine and its transactions.

SQLite: WAL, `synchronous=FULL` by default (an acknowledged charge survives power loss),
a busy timeout, and `BEGIN IMMEDIATE` for write transactions so that two writers queue on
the lock instead of failing with "database is locked" when one upgrades a read lock.
PostgreSQL: psycopg 3, READ COMMITTED; correctness comes from guarded UPDATEs and unique
constraints, not from the isolation level.

Two calls serve requests on the event loop, the same on both engines; how each engine is
best used stays here: `fetch_one_async` (a one-row indexed read: inline on SQLite, in the
pass snapshot of `inline_reads`; in a worker thread on PostgreSQL) and `group_commit`
(writes that arrive together share one transaction: `group_commit`).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

import anyio.to_thread
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import ConnectionPoolEntry

from quotaledger.settings import Settings
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.group_commit import BatchFunction, GroupCommit
from quotaledger.store.inline_reads import InlineReader

SQLITE_BUSY_TIMEOUT_MS = 30_000
POOL_RECYCLE_SECONDS = 300

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class _Lost(Exception):
    """The server connection was lost (a restart, an idle timeout): nothing committed;
    retrying on a fresh connection is safe."""


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
        self._inline: InlineReader | None = None
        self._group_commits: dict[Any, GroupCommit[Any, Any]] = {}
        # The thread (the event loop's) whose writes must not wait for the lock (`group_commit`).
        self._no_wait_thread: int | None = None
        self._batch_connection: Connection | None = None  # SQLite: see `batch_write`
        self._busy_timeout_ms = int(sqlite_busy_timeout_ms)
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, sqlite_synchronous, sqlite_busy_timeout_ms, pool_size)
        else:
            # No ping per checkout (a round trip before every transaction): connections are
            # recycled before servers and proxies usually drop idle ones, a lost one
            # invalidates the pool (SQLAlchemy's default on a disconnect), and what failed on
            # one is retried once on a fresh connection: `fetch_one` here, a group commit's
            # batch by `GroupCommit` (each item alone).
            # The same cap as before (2 x pool_size), all of it kept: overflow connections
            # are closed on check-in when the pool is full, and under load (admission reads
            # in threads, the group-commit thread) that opened a new PostgreSQL connection
            # (a backend fork, authentication) for about every 5 relayed requests.
            self.engine = create_engine(
                url, pool_size=2 * pool_size, max_overflow=0, pool_recycle=POOL_RECYCLE_SECONDS
            )

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A transaction that will write: committed on success, rolled back on error."""
        if self._no_wait_thread == threading.get_ident():
            with self._write_no_wait() as connection:
                yield connection
            return
        with self.engine.begin() as connection, self._losing(connection):
            yield connection

    @contextmanager
    def batch_write(self) -> Iterator[Connection]:
        """The write transaction of a group-commit batch (`group_commit.apply_items`), whose
        statements all run on the driver's cursor (`CompiledStatement`). On SQLite, on one
        connection kept for batches, begun and committed on the driver itself: a pool
        checkout, SQLAlchemy's transaction and the pool's reset cost more than a small
        reservation's statements. Batches never overlap (`GroupCommit` commits one at a
        time, inline only when none is committing)."""
        if not self.is_sqlite:
            with self.write() as connection:
                yield connection
            return
        held = self._batch_connection
        if held is None or held.closed or held.invalidated:
            held = self._batch_connection = self.engine.connect()
        driver: Any = held.connection.dbapi_connection
        if driver.in_transaction:  # left over by a COMMIT that failed: never reuse it
            driver.execute("ROLLBACK")
        no_wait = self._no_wait_thread == threading.get_ident()
        if no_wait:  # on the event loop: the lock at once, or "database is locked" at once
            driver.execute("PRAGMA busy_timeout = 0")
        try:
            driver.execute("BEGIN IMMEDIATE")
        finally:
            if no_wait:
                driver.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        try:
            yield held
            driver.execute("COMMIT")
        except BaseException:
            if driver.in_transaction:
                driver.execute("ROLLBACK")
            raise

    @contextmanager
    def _write_no_wait(self) -> Iterator[Connection]:
        # SQLite, on the event loop: the write lock is taken at once or "database is locked"
        # is raised at once (busy_timeout 0), never waited for on the loop.
        with self.engine.connect() as connection:
            driver = connection.connection.dbapi_connection
            assert driver is not None
            driver.execute("PRAGMA busy_timeout = 0")
            try:
                with connection.begin():
                    yield connection
            finally:
                driver.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A short read-only transaction (a deferred BEGIN on SQLite: no write lock)."""
        with self.engine.connect() as connection:
            connection = connection.execution_options(sqlite_deferred=True)
            with connection.begin(), self._losing(connection):
                yield connection

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction whose every query sees the same committed state (an
        audit adding up several tables): SQLite's read transaction is one already;
        PostgreSQL's default, READ COMMITTED, sees each query's own, so REPEATABLE READ."""
        with self.engine.connect() as connection:
            if self.is_sqlite:
                connection = connection.execution_options(sqlite_deferred=True)
            else:
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin(), self._losing(connection):
                yield connection

    @contextmanager
    def _losing(self, connection: Connection) -> Iterator[None]:
        """Statements run on the driver's cursor (`CompiledStatement`) raise the driver's
        own errors, which SQLAlchemy never sees: a lost server connection is recognised
        here, dropped with every other pooled one (a restarted server lost them all), and
        raised as `_Lost` for the caller to retry on a fresh one."""
        try:
            yield
        except DBAPIError:
            raise
        except Exception as exc:
            if self.is_sqlite or not self._is_disconnect(exc, connection):
                raise
            connection.invalidate()
            self.engine.dispose()
            raise _Lost(str(exc)) from exc

    def _is_disconnect(self, exc: Exception, connection: Connection) -> bool:
        driver = self.engine.dialect.loaded_dbapi
        if not isinstance(exc, driver.Error):
            return False
        try:
            dbapi_connection = connection.connection.dbapi_connection
        except Exception:  # already invalidated
            return True
        return bool(self.engine.dialect.is_disconnect(exc, dbapi_connection, None))

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            settings.database_url,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )

    def fetch_one(self, statement: CompiledStatement, params: dict[str, Any]) -> Any:
        """The first row of `statement` (a driver tuple, or None), in a read transaction;
        tried again once on a fresh connection when the pooled one turned out lost."""
        try:
            return self._fetch_one(statement, params)
        except _Lost:
            return self._fetch_one(statement, params)

    def _fetch_one(self, statement: CompiledStatement, params: dict[str, Any]) -> Any:
        if self.is_sqlite:
            with self.read() as connection:
                return statement.execute(connection, params).fetchone()
        # PostgreSQL: one statement is its own consistent snapshot; in autocommit it is one
        # round trip instead of three (BEGIN, the SELECT, COMMIT).
        with self.engine.connect() as pooled:
            connection = pooled.execution_options(isolation_level="AUTOCOMMIT")
            with self._losing(connection):
                return statement.execute(connection, params).fetchone()

    async def fetch_one_async(self, statement: CompiledStatement, params: dict[str, Any]) -> Any:
        """`fetch_one` for code on the event loop, for one-row indexed reads. SQLite: read
        right on the loop (`InlineReader`), or in a worker thread while the database is
        busy; PostgreSQL, where every read is a network round trip: in a worker thread."""
        reader = self._inline or self.inline_reader()
        if reader is not None:
            try:
                return reader.fetch_one(*statement.bind(self.engine.dialect, params))
            except sqlite3.OperationalError:
                pass  # busy: wait for it in a worker thread instead
        return await anyio.to_thread.run_sync(self.fetch_one, statement, params)

    async def group_commit(
        self, apply: BatchFunction[Item, Outcome], item: Item, *, alone: bool = False
    ) -> Outcome:
        """`apply(self, [item, ...])`'s outcome for `item`, where `item` shares a batch (one
        transaction) with the others submitted while the previous batch committed; answered
        after the commit. Raises `DatabaseBusy` if SQLite's lock stayed taken.

        `alone`: the caller knows no other request is being served. On SQLite, with nothing
        queued, the write then commits right on the event loop (`GroupCommit.try_inline`),
        without the two thread hops: what a lone request waits for is the commit itself."""
        queue = self._group_commits.get(apply)
        if queue is None:
            queue = self._group_commits[apply] = GroupCommit(self, apply, is_busy)
        if alone and self.is_sqlite:
            self._no_wait_thread = threading.get_ident()
            try:
                done, inline = queue.try_inline(item)
            finally:
                self._no_wait_thread = None
            if done:
                return cast(Outcome, inline)
        outcome: Outcome = await queue.submit(item)
        return outcome

    async def close_group_commits(self) -> None:
        """Stop the group-commit workers (a later write starts them again)."""
        for queue in self._group_commits.values():
            await queue.close()

    def inline_reader(self) -> InlineReader | None:
        """On SQLite, the connection for reads made on the event loop; None on PostgreSQL."""
        if not self.is_sqlite:
            return None
        if self._inline is None:
            self._inline = InlineReader(self.engine.url.database or ":memory:")
        return self._inline

    def dispose(self) -> None:
        if self._batch_connection is not None:
            self._batch_connection.close()
            self._batch_connection = None
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
