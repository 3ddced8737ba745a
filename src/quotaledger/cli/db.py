"""`quotaledger db upgrade`."""

from __future__ import annotations

import click

from quotaledger.cli.common import database_url_option, handles_errors, open_database


@click.group()
def db() -> None:
    """Database schema (migrations also run at every start of `serve`)."""


@db.command()
@database_url_option
@handles_errors
def upgrade(database_url: str | None) -> None:
    """Apply every schema migration not yet applied; creates a new SQLite file (and the
    `admin` account, its password printed once) if there is none."""
    from quotaledger.store.migrate import current_revision

    database = open_database(database_url, create=True)
    click.echo(f"Database schema is at revision {current_revision(database)}.")
