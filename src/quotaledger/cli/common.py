"""What the admin commands share: the `--database-url` option, `--json`, opening a
migrated database, and one place that turns errors into a one-line message and an exit code."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from quotaledger import errors
from quotaledger.cli.exits import Exit
from quotaledger.settings import DEFAULT_DATABASE_URL, Settings, SettingsError

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
    help=f"sqlite:///PATH or postgresql://... [default: {DEFAULT_DATABASE_URL}, "
    "i.e. quotaledger.db in the current directory; env: QUOTALEDGER_DATABASE_URL]",
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


def open_database(database_url: str | None) -> Any:
    """The migrated database of `--database-url` (first admin created on an empty one)."""
    from quotaledger.bootstrap import prepare_database

    settings = Settings.from_env(database_url=database_url)
    return prepare_database(settings, announce=lambda text: click.echo(text, err=True))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))
