"""Bring a database's schema up to date with Alembic (at start-up and `quotaledger db upgrade`).

Several instances may start at once on one PostgreSQL: a transaction-level advisory lock
makes them take turns, and the later ones find nothing left to do.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from quotaledger.store.database import Database

_MIGRATIONS = Path(__file__).parent / "migrations"
_LOCK_ID = 0x71756F7461  # "quota"


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply every migration up to `revision`."""
    config = alembic_config(database)
    with database.write() as connection:
        if not database.is_sqlite:
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(database: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with database.read() as connection:
        return MigrationContext.configure(connection).get_current_revision()
