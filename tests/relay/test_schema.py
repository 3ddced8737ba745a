"""Migration 0002 builds exactly the schema `store/tables.py` describes, keeps the rows
written before it, and goes back down cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import insert, select

from quotaledger.store.database import Database, now
from quotaledger.store.migrate import upgrade
from quotaledger.store.tables import metadata, usage, users


def test_the_migrated_schema_matches_the_tables(database_url: str) -> None:
    database = Database(database_url)
    try:
        upgrade(database)
        with database.read() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        database.dispose()
    assert differences == []


def test_rows_written_before_the_relay_keep_working(database_url: str) -> None:
    database = Database(database_url)
    try:
        upgrade(database, "0001")
        with database.write() as connection:
            connection.exec_driver_sql(
                "INSERT INTO users (username, display_name, password_hash, created_at) "
                f"VALUES ('old', 'old', 'x', {now()})"
            )
            user_id = connection.execute(select(users.c.id)).scalar_one()
            connection.exec_driver_sql(
                "INSERT INTO usage (user_id, request_id, model, prompt_tokens, "
                "completion_tokens, quota, quota_after, created_at) "
                f"VALUES ({user_id}, 'r1', 'm', 1, 2, 3, 0, {now()})"
            )
        upgrade(database)
        with database.write() as connection:
            connection.execute(
                insert(usage).values(
                    user_id=user_id, request_id="r2", model="m", prompt_tokens=0,
                    completion_tokens=0, quota=0, quota_after=0, created_at=now(),
                )
            )  # fmt: skip
            rows = connection.execute(
                select(usage.c.request_id, usage.c.status, usage.c.written_off).order_by(usage.c.id)
            ).all()
    finally:
        database.dispose()
    assert [tuple(r) for r in rows] == [("r1", 200, 0), ("r2", 200, 0)]


def test_the_relay_migration_goes_down_cleanly(database_url: str) -> None:
    from alembic import command

    from quotaledger.store.migrate import alembic_config

    database = Database(database_url)
    try:
        upgrade(database)
        config = alembic_config(database)
        with database.write() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0001")
        upgrade(database)
    finally:
        database.dispose()
