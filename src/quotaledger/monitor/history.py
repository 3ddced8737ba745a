"""The state file: every poll and each account's alert record, in SQLite.

One file on the user's machine (stdlib `sqlite3`, WAL so that `status` can read while
`watch` writes). Times are stored as UTC epoch seconds, money as Decimal text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

import platformdirs

from quotaledger.monitor.forecast import Sample
from quotaledger.monitor.state import Record, State

SCHEMA_VERSION = 2
"""2: `polls.watched` (what a poll's balance is of: a key, or the account behind one)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS polls (
    id INTEGER PRIMARY KEY,
    account TEXT NOT NULL,
    at REAL NOT NULL,
    amount TEXT,
    currency TEXT,
    quota INTEGER,
    used_quota INTEGER,
    used_amount TEXT,
    request_count INTEGER,
    error TEXT,
    watched TEXT
);
CREATE INDEX IF NOT EXISTS polls_by_account ON polls (account, at);
CREATE TABLE IF NOT EXISTS alerts (
    account TEXT PRIMARY KEY,
    state TEXT,
    level TEXT,
    since REAL,
    failures INTEGER NOT NULL,
    last_error TEXT,
    announced TEXT,
    announced_at REAL
);
"""
_POLL_COLUMNS = (
    "account, at, amount, currency, quota, used_quota, used_amount, request_count, error, watched"
)


def default_state_path() -> Path:
    """`monitor.sqlite3` in the user's data directory (e.g. ~/.local/share/quotaledger)."""
    return platformdirs.user_data_path("quotaledger") / "monitor.sqlite3"


@dataclass(frozen=True)
class Poll:
    """One poll of one account: a balance, or the error that prevented reading it."""

    account: str
    at: datetime
    amount: Decimal | None = None
    currency: str | None = None
    quota: int | None = None
    used_quota: int | None = None
    used_amount: Decimal | None = None
    request_count: int | None = None
    error: str | None = None
    watched: str | None = None
    """What the balance is of, when not the account's own: `key laptop` (the key's own
    budget), or `the account (key laptop is unlimited)`."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.amount is not None

    def sample(self) -> Sample:
        assert self.amount is not None
        return Sample(self.at, self.amount, self.used_amount)


class StateFileError(Exception):
    """The state file cannot be used; `str()` names the path and the reason, in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"cannot use the state file {path}: {reason}")


class History:
    """Polls and alert records of every watched account, in one SQLite file.

    Opening raises `FileNotFoundError` (no file, `create=False`) or `StateFileError` (the
    directory cannot be created, the file cannot be opened or written, it is not SQLite, or
    not a quotaledger state file)."""

    def __init__(self, path: Path, *, create: bool = True) -> None:
        if not create and not path.exists():
            raise FileNotFoundError(f"no state file at {path}: run `quotaledger watch` first")
        self.path = path
        self._batch = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = f"cannot create {path.parent}: {exc.strerror or exc}"
            raise StateFileError(path, reason) from None
        try:
            # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
            self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0)
        except sqlite3.Error as exc:
            raise StateFileError(path, str(exc)) from None
        try:
            self._open(create)
        except sqlite3.Error as exc:
            self._db.close()
            raise StateFileError(path, _reason(exc)) from None

    def _open(self, create: bool) -> None:
        # The first read of the file: "file is not a database" if it is not SQLite.
        tables = {
            name
            for (name,) in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            ).fetchall()
        }
        # Another program's database is left alone, never extended with our tables.
        if (tables or not create) and not {"polls", "alerts"} <= tables:
            raise sqlite3.DatabaseError("not a quotaledger state file (no polls/alerts tables)")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        if create:
            self._db.executescript(_SCHEMA)
        self._upgrade()

    def _upgrade(self) -> None:
        """A state file of version 1 gets `polls.watched` (NULL: the account's own balance,
        as every poll before it was)."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(polls)").fetchall()}
        if "watched" not in columns:
            self._db.execute("ALTER TABLE polls ADD COLUMN watched TEXT")
        (version,) = self._db.execute("PRAGMA user_version").fetchone()
        if version != SCHEMA_VERSION:
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def save(self, account: str, record: Record | None, poll: Poll | None = None) -> None:
        """Store `record` and `poll` (each if given) together: in a transaction of their own,
        or, inside `transaction()`, as one savepoint of it (a failure undoes both, nothing
        else)."""
        if self._batch:
            self._db.execute("SAVEPOINT save")
            try:
                self._write(account, record, poll)
            except BaseException:
                self._db.execute("ROLLBACK TO save")
                raise
            finally:
                self._db.execute("RELEASE save")
            return
        with self._atomic():
            self._write(account, record, poll)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Every `save` inside it in one transaction: one commit (one fsync) for a whole
        round of polls instead of one per account. Nothing of it is stored unless all of it
        is: if the commit fails, it raises and the file is as before."""
        if self._batch:
            raise RuntimeError("History.transaction() does not nest")
        with self._atomic():
            self._batch = True
            try:
                yield
            finally:
                self._batch = False

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # a failed COMMIT may have rolled back already
                self._db.execute("ROLLBACK")
            raise

    def _write(self, account: str, record: Record | None, poll: Poll | None) -> None:
        if poll is not None:
            self._insert_poll(poll)
        if record is not None:
            self._upsert_record(account, record)

    def record(self, account: str) -> Record:
        """The alert record of `account` (an empty one if it was never polled)."""
        row = self._db.execute(
            "SELECT state, level, since, failures, last_error, announced, announced_at"
            " FROM alerts WHERE account = ?",
            (account,),
        ).fetchone()
        if row is None:
            return Record()
        state, level, since, failures, last_error, announced, announced_at = row
        return Record(
            _state(state), _state(level), _time(since), failures, last_error,
            _state(announced), _time(announced_at),
        )  # fmt: skip

    def polls(
        self, account: str, *, since: datetime | None = None, limit: int | None = None
    ) -> list[Poll]:
        """Polls of `account`, oldest first: those after `since`, or the last `limit`."""
        query = f"SELECT {_POLL_COLUMNS} FROM polls WHERE account = ?"  # noqa: S608  # nosec  # constant columns (bandit#1204)
        params: list[Any] = [account]
        if since is not None:
            query += " AND at >= ?"
            params.append(since.timestamp())
        query += " ORDER BY at DESC, id DESC"
        if limit is not None:
            query += " LIMIT ?"
            params.append(limit)
        return [_poll(row) for row in reversed(self._db.execute(query, params).fetchall())]

    def samples(self, account: str, since: datetime) -> list[Sample]:
        """Successful polls after `since`, oldest first, for the forecast: only those of what
        the latest one watched (a key's `used_quota` and its account's are different
        counters: a key that became unlimited must not look like a burst of spending)."""
        good = [poll for poll in self.polls(account, since=since) if poll.ok]
        watched = good[-1].watched if good else None
        return [poll.sample() for poll in good if poll.watched == watched]

    def last_success(self, account: str) -> Poll | None:
        row = self._db.execute(
            f"SELECT {_POLL_COLUMNS} FROM polls WHERE account = ? AND error IS NULL"  # noqa: S608  # nosec  # constant columns (bandit#1204)
            " ORDER BY at DESC, id DESC LIMIT 1",
            (account,),
        ).fetchone()
        return None if row is None else _poll(row)

    def prune(self, account: str, before: datetime) -> int:
        """Delete `account`'s polls older than `before`, except its latest poll and its
        latest successful one (what `status` and an alert's "last good balance" show);
        returns how many went. One indexed range per account, in one transaction."""
        keep = (self._latest_id(account, _LATEST), self._latest_id(account, _LATEST_GOOD))
        with self._atomic():
            deleted = self._db.execute(
                "DELETE FROM polls WHERE account = ? AND at < ? AND id NOT IN (?, ?)",
                (account, before.timestamp(), *keep),
            )
        return int(deleted.rowcount)

    def _latest_id(self, account: str, query: str) -> int:
        row = self._db.execute(query, (account,)).fetchone()
        return int(row[0]) if row is not None else -1

    def _insert_poll(self, poll: Poll) -> None:
        self._db.execute(
            f"INSERT INTO polls ({_POLL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608  # nosec  # constant columns (bandit#1204)
            (
                poll.account, poll.at.timestamp(), _text(poll.amount), poll.currency, poll.quota,
                poll.used_quota, _text(poll.used_amount), poll.request_count, poll.error,
                poll.watched,
            ),
        )  # fmt: skip

    def _upsert_record(self, account: str, record: Record) -> None:
        self._db.execute(
            "INSERT INTO alerts (account, state, level, since, failures, last_error, announced,"
            " announced_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
            " state = excluded.state, level = excluded.level, since = excluded.since,"
            " failures = excluded.failures, last_error = excluded.last_error,"
            " announced = excluded.announced, announced_at = excluded.announced_at",
            (
                account, _value(record.state), _value(record.level), _epoch(record.since),
                record.failures, record.last_error, _value(record.announced),
                _epoch(record.announced_at),
            ),
        )  # fmt: skip


_LATEST = "SELECT id FROM polls WHERE account = ? ORDER BY at DESC, id DESC LIMIT 1"
_LATEST_GOOD = (
    "SELECT id FROM polls WHERE account = ? AND error IS NULL ORDER BY at DESC, id DESC LIMIT 1"
)


def _poll(row: tuple[Any, ...]) -> Poll:
    account, at, amount, currency, quota, used_quota, used_amount, requests, error, watched = row
    return Poll(
        account, datetime.fromtimestamp(at, UTC), _decimal(amount), currency,
        quota, used_quota, _decimal(used_amount), requests, error, watched,
    )  # fmt: skip


def _reason(exc: sqlite3.Error) -> str:
    text = str(exc)
    if text == "file is not a database":
        return "not an SQLite file (file is not a database)"
    return text


def _state(value: str | None) -> State | None:
    return None if value is None else State(value)


def _value(state: State | None) -> str | None:
    return None if state is None else state.value


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def _epoch(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _text(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)
