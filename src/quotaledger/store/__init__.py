"""Persistence: the tables, the engine (SQLite or PostgreSQL) and the schema migrations."""

from quotaledger.store.database import Database

__all__ = ["Database"]
