"""`quotaledger serve`."""

from __future__ import annotations

import os

import click

from quotaledger.cli.common import database_url_option, handles_errors
from quotaledger.settings import redact_database_url


@click.command()
@click.option("--host", envvar="QUOTALEDGER_HOST", default="127.0.0.1", show_default=True)
@click.option("--port", envvar="QUOTALEDGER_PORT", type=int, default=8000, show_default=True)
@click.option(
    "--workers",
    envvar="QUOTALEDGER_WORKERS",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Worker processes.",
)
@database_url_option
@handles_errors
def serve(host: str, port: int, workers: int, database_url: str | None) -> None:
    """Run the server: balance API, admin API and the Account Settings page.

    Applies schema migrations first. On an empty database it creates the `admin` account
    and prints its random password once (set QUOTALEDGER_ADMIN_PASSWORD to choose it).

    \b
    Examples:
      quotaledger serve
      quotaledger serve --port 9000 --database-url postgresql://localhost/quotaledger
      QUOTALEDGER_REDIS_URL=redis://localhost:6379 quotaledger serve --workers 2
    """
    import uvicorn

    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.logging import configure_logging
    from quotaledger.settings import Settings

    settings = Settings.from_env(host=host, port=port, workers=workers, database_url=database_url)
    configure_logging(settings.log_level)
    database = prepare_database(settings, announce=lambda text: click.secho(text, fg="yellow"))
    database.dispose()
    # Workers read their settings from the environment: pass the flags on that way.
    os.environ["QUOTALEDGER_DATABASE_URL"] = settings.database_url
    click.echo(
        f"quotaledger on http://{host}:{port}  (database: {_describe(settings.database_url)})"
    )
    uvicorn.run(
        "quotaledger.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        proxy_headers=False,  # X-Forwarded-* are read only from QUOTALEDGER_TRUSTED_PROXIES
        server_header=False,
        # Bounded request heads: size (431) and time to arrive (408); see `connections`.
        http=_bounded_protocol(),
        h11_max_incomplete_event_size=settings.max_header_bytes,
    )


def _bounded_protocol() -> str:
    """The bounded variant (`server/connections.py`) of the protocol uvicorn's `auto` would
    pick, named as an import string as the app is: worker processes import it, and the CLI
    never imports the server."""
    import importlib.util

    found = importlib.util.find_spec("httptools") is not None
    name = "BoundedHttpToolsProtocol" if found else "BoundedH11Protocol"
    return f"quotaledger.server.connections:{name}"


def _describe(url: str) -> str:
    if url.startswith("sqlite:///"):
        return os.path.abspath(url.removeprefix("sqlite:///"))
    return redact_database_url(url)  # never print a password that sits in the URL
