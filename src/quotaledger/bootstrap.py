"""Getting a database ready: migrations, then the first admin account on an empty one."""

from __future__ import annotations

from collections.abc import Callable

from quotaledger import accounts, passwords
from quotaledger.errors import AlreadyExists
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.store.migrate import upgrade

ADMIN_USERNAME = "admin"


def prepare_database(
    settings: Settings, *, announce: Callable[[str], None] | None = None
) -> Database:
    """Open the database, bring its schema up to date, and create `admin` if it has no
    accounts. The admin's random password goes to `announce` once (never to the log);
    `QUOTALEDGER_ADMIN_PASSWORD` sets it instead."""
    database = Database.from_settings(settings)
    upgrade(database)
    if accounts.count_accounts(database) == 0:
        _create_first_admin(database, settings, announce)
    return database


def _create_first_admin(
    database: Database, settings: Settings, announce: Callable[[str], None] | None
) -> None:
    given = settings.admin_password.reveal() if settings.admin_password else None
    password = given or passwords.random_password()
    try:
        accounts.create_account(database, ADMIN_USERNAME, password, role="admin")
    except AlreadyExists:
        return  # another instance created it first
    if announce is not None:
        if given:
            announce("Created the admin account with the password in QUOTALEDGER_ADMIN_PASSWORD.")
        else:
            announce(
                f"Created the admin account.\n  username: {ADMIN_USERNAME}\n"
                f"  password: {password}\nThis password is shown once: keep it now."
            )
