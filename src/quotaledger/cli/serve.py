"""`quotaledger serve`: migrations, then the app on Granian.

Granian was chosen by measurement (benchmarks/engines.py, figures in benchmarks/README.md):
1.7x the requests per second of uvicorn (httptools, uvloop) on a bare Starlette route, and
it speaks HTTP/2 (prior knowledge, and `--http auto`), serves a request that offers
`Upgrade: h2c` as HTTP/1.1 with its body, keeps connections alive, and bounds request heads
itself (SPEC §14): a head over `max_header_bytes` gets 431 (hyper's read buffer), a head
not complete `header_timeout` after its first byte, or a kept-alive connection idle that
long, is closed. Request bodies and requests per client address are bounded by the front
door (`server/front_door.py`); connections per process by Granian's backpressure.
"""

from __future__ import annotations

import os
import resource
from typing import TYPE_CHECKING

import click

from quotaledger.cli.common import database_url_option, handles_errors
from quotaledger.settings import Settings, redact_database_url

if TYPE_CHECKING:
    from granian.server import MPServer, MTServer

# The CLI never imports the server: the app is named to Granian's workers as a string.
APP = "quotaledger.server.app:app_from_env"
# Descriptors kept free for the database, log files and upstream connections.
_SPARE_DESCRIPTORS = 256
_MAX_CONNECTIONS = 4096  # per worker, when the descriptor limit allows it


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
    from quotaledger.identity.bootstrap import prepare_database
    from quotaledger.logging import configure_logging

    settings = Settings.from_env(host=host, port=port, workers=workers, database_url=database_url)
    configure_logging(settings.log_level)
    database = prepare_database(settings, announce=lambda text: click.secho(text, fg="yellow"))
    database.dispose()
    # Workers read their settings from the environment: pass the flags on that way.
    os.environ["QUOTALEDGER_DATABASE_URL"] = settings.database_url
    click.echo(
        f"quotaledger on http://{host}:{port}  (database: {_describe(settings.database_url)})"
    )
    engine(settings).serve()


def engine(settings: Settings) -> MPServer | MTServer:
    """The Granian server for `settings` (not started)."""
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings, HTTP2Settings
    from granian.log import LogLevels

    return Granian(
        APP,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.ASGI,
        workers=settings.workers,
        factory=True,
        http=HTTPModes.auto,  # HTTP/1.1, and HTTP/2 by prior knowledge
        websockets=True,  # the Responses socket (SPEC §14), over HTTP/1.1
        http1_settings=HTTP1Settings(
            header_read_timeout=int(settings.header_timeout * 1000),
            # hyper answers 431 to a head that fills its read buffer (8 KiB at least).
            max_buffer_size=max(8192, settings.max_header_bytes),
        ),
        http2_settings=HTTP2Settings(max_headers_size=settings.max_header_bytes),
        backpressure=max_connections(),
        log_level=LogLevels(settings.log_level.lower()),
        log_access=settings.access_log,
    )


def max_connections() -> int:
    """Connections each worker process holds at once: Granian accepts no more (the rest wait
    in the kernel's backlog), so a worker never reaches its descriptor limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_CONNECTIONS
    return max(16, min(_MAX_CONNECTIONS, soft - _SPARE_DESCRIPTORS))


def _describe(url: str) -> str:
    if url.startswith("sqlite:///"):
        return os.path.abspath(url.removeprefix("sqlite:///"))
    return redact_database_url(url)  # never print a password that sits in the URL
