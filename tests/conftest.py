"""Fixtures for every test; they live in support.py, which test modules also import from."""

from support import (  # noqa: F401 - pytest finds fixtures by name here
    admin_token,
    client,
    database,
    database_url,
    live_server,
    make_user,
    migrated_sqlite_url,
    postgres_server_url,
    settings,
    sqlite_url,
)
