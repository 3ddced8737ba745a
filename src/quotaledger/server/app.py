"""`create_app(settings)`: the ASGI application, built from settings passed in."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from quotaledger import __version__
from quotaledger.server import api, errors, pages
from quotaledger.server.metrics import CountResponses
from quotaledger.server.middleware import BodyGuard, BodyTooLarge, Compression, SecurityHeaders
from quotaledger.server.ratelimit import RateLimiter
from quotaledger.server.responses import fail
from quotaledger.server.state import AppState
from quotaledger.settings import Settings
from quotaledger.store.database import Database

ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


def create_app(settings: Settings, database: Database | None = None) -> FastAPI:
    """The app, on `database` (or one opened from `settings.database_url`). The schema must
    already be migrated: `quotaledger serve` does that before it starts any worker."""
    database = database or Database(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    redis_url = settings.redis_url.reveal() if settings.redis_url else None
    limiter = RateLimiter(
        {
            "balance": settings.rate_limit_balance,
            "login": settings.rate_limit_login,
            "login_address": settings.rate_limit_login_address,
        },
        redis_url,
    )
    state = AppState(settings, database, limiter)

    app = FastAPI(
        title="quotaledger",
        version=__version__,
        summary="Prepaid LLM API quota: balance API and ledger (500,000 quota = 1.00 USD).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.ql = state
    app.include_router(api.router)
    pages.install(app)
    for kind, handler in errors.HANDLERS.items():
        app.add_exception_handler(kind, handler)
    app.add_exception_handler(BodyTooLarge, _body_too_large(settings.max_body_bytes))

    # Outermost last: headers on every answer, compression of whatever the app said.
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(Compression, always_for_api=settings.always_gzip)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(CountResponses, metrics=state.metrics)
    return app


def _body_too_large(limit: int) -> ExceptionHandler:
    async def handler(request: Request, exc: Exception) -> Response:
        return fail(413, f"request body over {limit} bytes")

    return handler


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` workers: settings from `QUOTALEDGER_*`."""
    from quotaledger.logging import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
