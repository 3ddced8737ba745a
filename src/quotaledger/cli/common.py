"""What the admin commands share: the `--database-url` option, `--json`, opening a
migrated database, tables of names printed safely, and one place that turns errors into a
one-line message and an exit code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from quotaledger import errors
from quotaledger.cli.exits import Exit
from quotaledger.settings import Settings, SettingsError, default_database_path
from quotaledger.text import escaped

F = TypeVar("F", bound=Callable[..., Any])

EXIT_BY_ERROR: dict[type[errors.QuotaLedgerError], Exit] = {
    errors.InvalidInput: Exit.USAGE,
    errors.AuthenticationFailed: Exit.AUTHENTICATION,
    errors.PermissionDenied: Exit.PERMISSION,
    errors.NotConfigured: Exit.USAGE,
}

database_url_option = click.option(
    "--database-url",
    envvar="QUOTALEDGER_DATABASE_URL",
    metavar="URL",
    help="sqlite:///PATH or postgresql://... [default: quotaledger.db in the user's data "
    f"directory, here {default_database_path()}; env: QUOTALEDGER_DATABASE_URL]",
)

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for programs.")


def fail(message: str, code: Exit = Exit.ERROR) -> None:
    click.secho(f"Error: {message}", fg="red", err=True)
    sys.exit(code)


def handles_errors(function: F) -> F:
    """Domain and settings errors become `Error: ...` on stderr and a non-zero exit."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except SettingsError as exc:
            fail(str(exc), Exit.USAGE)
        except errors.QuotaLedgerError as exc:
            fail(str(exc), EXIT_BY_ERROR.get(type(exc), Exit.ERROR))
        except SQLAlchemyError as exc:
            # One line, without the URL (it may hold a password): the driver's own reason.
            reason = str(getattr(exc, "orig", None) or type(exc).__name__).splitlines()[0]
            fail(f"database: {reason}", Exit.ERROR)

    return wrapper  # type: ignore[return-value]


def open_database(database_url: str | None, *, create: bool = False) -> Any:
    """The migrated database of `--database-url` (first admin created on an empty one),
    for every admin command.

    It never creates a SQLite file unless `create` (only `db upgrade` passes it; `serve`
    creates its own): a missing file is a one-line error naming the path, so a command run
    from the wrong place or with a mistyped URL cannot start a second, empty ledger. When
    no URL was given, says on stderr which file the default is."""
    from quotaledger.identity.bootstrap import prepare_database, sqlite_file

    settings = Settings.from_env(database_url=database_url)
    if database_url is None:  # neither the flag nor QUOTALEDGER_DATABASE_URL
        click.echo(f"using database {sqlite_file(settings)} (the default)", err=True)
    return prepare_database(settings, announce=_to_stderr, create=create)


def audited(database: Any, action: str, target: object = "", **detail: Any) -> None:
    """Record an admin command in the audit trail (SPEC §13), as the console's actions are:
    the actor is `cli:` and the local user, the address `cli`. `detail` holds no secret."""
    import getpass

    from quotaledger.identity import audit_trail

    try:
        who = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        who = "unknown"
    actor = audit_trail.Actor(None, f"cli:{who}", "cli")
    audit_trail.record(database, actor, action, str(target), **detail)


def _to_stderr(text: str) -> None:
    click.echo(text, err=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A table on standard output. Each cell is plain text, never rich markup (a name such
    as `[link=...]x` stays as written), with what a terminal would act on escaped
    (`text.escaped`): a key, user or channel name cannot clear or rewrite the screen."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(*columns)
    for row in rows:
        table.add_row(*(Text(escaped(cell)) for cell in row))
    Console().print(table)
