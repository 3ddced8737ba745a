"""PostgreSQL connections that the server dropped (a restart, `pg_terminate_backend`, an idle
timeout): the pool does not ping each connection before use, so the first statement on a
dead one fails; `Database` recognises the loss, drops every pooled connection and the read
or the group-committed write goes through on a fresh one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from quotaledger.identity import accounts
from quotaledger.identity.bootstrap import prepare_database
from quotaledger.settings import Settings
from quotaledger.store.compiled import CompiledStatement
from quotaledger.store.database import Database
from quotaledger.store.group_commit import apply_in_order
from quotaledger.store.tables import users
from support import POSTGRES_URL

pytestmark = pytest.mark.postgres

_QUOTA = CompiledStatement(select(users.c.quota).where(users.c.username == "alice"))


@pytest.fixture
def database(postgres_server_url: str) -> Iterator[Database]:
    import psycopg

    with psycopg.connect(postgres_server_url, autocommit=True) as connection:
        connection.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    settings = Settings.from_env({}, database_url=postgres_server_url)
    database = prepare_database(settings)
    accounts.create_account(database, "alice", "alice-password-123", quota=7)
    yield database
    database.dispose()


def _terminate_every_connection(database: Database) -> int:
    import psycopg

    with psycopg.connect(POSTGRES_URL + "/postgres", autocommit=True) as connection:
        return len(
            connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database.engine.url.database,),
            ).fetchall()
        )


def _pool_filled(database: Database, count: int) -> None:
    connections = [database.engine.connect() for _ in range(count)]
    for connection in connections:
        connection.close()


def test_a_read_on_a_terminated_connection_is_retried_on_a_fresh_one(database: Database) -> None:
    _pool_filled(database, 3)
    assert _terminate_every_connection(database) >= 3

    assert database.fetch_one(_QUOTA, {}) == (7,)


def test_a_batch_on_terminated_connections_commits_on_a_fresh_one(database: Database) -> None:
    _pool_filled(database, 3)
    assert _terminate_every_connection(database) >= 3

    def add(connection: object, amount: int) -> int:
        stmt = users.update().where(users.c.username == "alice")
        stmt = stmt.values(quota=users.c.quota + amount)
        return int(connection.execute(stmt).rowcount)  # type: ignore[attr-defined]

    def batch() -> list[int | Exception]:
        return apply_in_order(database, [1, 2], order=lambda n: (n,), apply=add, refusals=())

    with pytest.raises(Exception):  # noqa: B017 - the first batch meets the dead connection
        batch()
    assert batch() == [1, 1]  # the pool was emptied: the next batch gets a live connection
    assert database.fetch_one(_QUOTA, {}) == (10,)
