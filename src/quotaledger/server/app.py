"""`create_app(settings)`: the ASGI application, built from settings passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.types import ASGIApp

from quotaledger import __version__
from quotaledger.server import api, errors, pages
from quotaledger.server.finisher import ResponseFinisher
from quotaledger.server.hot_routes import HotRoutes
from quotaledger.server.middleware import BodyGuard
from quotaledger.server.ratelimit import RateLimiter
from quotaledger.server.state import AppState
from quotaledger.settings import Settings
from quotaledger.store.database import Database


def create_app(settings: Settings, database: Database | None = None) -> Starlette:
    """The app, on `database` (or one opened from `settings.database_url`). The schema must
    already be migrated: `quotaledger serve` does that before it starts any worker.

    The balance query by token and usage charges are answered in plain ASGI (`HotRoutes`);
    everything else goes to the FastAPI app, which validates bodies and publishes the
    OpenAPI description of every route, the hot ones included. FastAPI's per-request
    machinery would cost the balance query about half its throughput.
    """
    database = database or Database.from_settings(settings)
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
    handlers: dict[Any, Any] = dict(errors.HANDLERS)

    api_app = FastAPI(
        title="quotaledger",
        version=__version__,
        summary="Prepaid LLM API quota: balance API and ledger (500,000 quota = 1.00 USD).",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        exception_handlers=handlers,
    )
    api_app.state.ql = state
    api_app.include_router(api.router)
    pages.install(api_app)

    app = _App(
        routes=[Mount("", app=api_app)],
        exception_handlers=handlers,
        # Outermost first (after `HotRoutes`, see `_App`): finish every answer (count,
        # headers, gzip, 500s); guard bodies.
        middleware=[
            Middleware(
                ResponseFinisher,
                metrics=state.metrics,
                trusted_proxies=settings.trusted_proxies,
                always_gzip_api=settings.always_gzip,
            ),
            Middleware(BodyGuard, max_body_bytes=settings.max_body_bytes),
        ],
        lifespan=_lifespan(state),
    )
    app.state.ql = state
    app.state.api = api_app
    return app


class _App(Starlette):
    """Starlette with `HotRoutes` in front of everything, Starlette's own error
    middleware included: it answers its own errors, and each layer wrapping `send`
    costs the hottest route a few percent."""

    def build_middleware_stack(self) -> ASGIApp:
        return HotRoutes(super().build_middleware_stack(), self.state.ql)


def _lifespan(state: AppState) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await state.database.close_group_commits()

    return lifespan


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` workers: settings from `QUOTALEDGER_*`."""
    from quotaledger.logging import configure_logging

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)
