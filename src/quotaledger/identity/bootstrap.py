"""Getting a database ready: migrations, then the first admin account on an empty one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy.engine import make_url

from quotaledger import passwords
from quotaledger.errors import AlreadyExists, NotFound
from quotaledger.identity import accounts
from quotaledger.settings import Settings, default_database_path
from quotaledger.store.database import Database
from quotaledger.store.migrate import upgrade

ADMIN_USERNAME = "admin"


class DatabaseMissing(NotFound):
    """A SQLite file that does not exist, opened by a command that must not create it."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"no database at {path}: create it with `quotaledger serve` or "
            "`quotaledger db upgrade` (or point --database-url at the server's database)"
        )
        self.path = path


def sqlite_file(settings: Settings) -> Path | None:
    """The file behind a SQLite URL; None for PostgreSQL and in-memory SQLite."""
    if not settings.is_sqlite:
        return None
    name = make_url(settings.database_url).database
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name).resolve()


def prepare_database(
    settings: Settings,
    *,
    announce: Callable[[str], None] | None = None,
    create: bool = True,
) -> Database:
    """Open the database, bring its schema up to date, and create `admin` if it has no
    accounts. The admin's random password goes to `announce` once (never to the log);
    `QUOTALEDGER_ADMIN_PASSWORD` sets it instead.

    A SQLite file that does not exist is created only when `create` (by `serve` and
    `db upgrade`); otherwise `DatabaseMissing` is raised and nothing is written. The
    default file's directory is made on first use."""
    path = sqlite_file(settings)
    if path is not None and not path.exists():
        if not create:
            raise DatabaseMissing(path)
        if path == default_database_path().resolve():
            path.parent.mkdir(parents=True, exist_ok=True)
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
