"""`create_app(settings)`: the ASGI application, built from settings passed in.

Which module answers what:

    GET  /api/user/self          balance.py   (through the front door)
    POST /api/usage              charges.py   (through the front door)
    everything else              the framework (FastAPI): api.py (the other /api/... and
                                 /healthz, /metrics), pages.py (/, /login, /account,
                                 /static), docs.py (/docs), FastAPI itself (/openapi.json)

Every request enters `front_door.FrontDoor`, which answers its own routes (`ROUTES`) and
hands the rest to the framework, and finishes, counts and refuses for both.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp

from quotaledger import __version__
from quotaledger.server import (
    admin_api,
    admin_pages,
    alert_routes,
    api,
    balance,
    charges,
    docs,
    errors,
    openapi,
    pages,
    relay,
)
from quotaledger.server.calls import Endpoint
from quotaledger.server.charges import UsageBody
from quotaledger.server.front_door import FrontDoor, Route
from quotaledger.server.key_balance import billing_subscription, billing_usage, token_usage
from quotaledger.server.newapi_docs import described
from quotaledger.server.newapi_routes import router as newapi_router
from quotaledger.server.plain_text import plain_parameters
from quotaledger.server.ratelimit import RateLimiter
from quotaledger.server.services import Services
from quotaledger.server.sweeper import sweep_forever
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.wire.errors import WireFormat, error_body


def _openai_refusal(status: int, message: str) -> bytes:
    return error_body(WireFormat.OPENAI, status, message)


def _anthropic_refusal(status: int, message: str) -> bytes:
    return error_body(WireFormat.ANTHROPIC, status, message)


def _gemini_refusal(status: int, message: str) -> bytes:
    return error_body(WireFormat.GEMINI, status, message)


_REFUSALS = {
    WireFormat.OPENAI: _openai_refusal,
    WireFormat.ANTHROPIC: _anthropic_refusal,
    WireFormat.GEMINI: _gemini_refusal,
}


def _relay_route(
    endpoint: Endpoint, wire: WireFormat, summary: str, fmt: str | None = None
) -> Route:
    return Route(
        endpoint, openapi.relay(summary), _REFUSALS[wire], relay_body=True, relay_format=fmt
    )


_OPENAI, _ANTHROPIC, _GEMINI = WireFormat.OPENAI, WireFormat.ANTHROPIC, WireFormat.GEMINI

# The Gemini API (SPEC §11.1), under `/v1beta` and `/v1` (google-genai's default version;
# its `GET /v1/models` is the OpenAI route's, which answers Google's list to Google's SDK).
_GEMINI_METHODS = {
    "generateContent": (relay.gemini_generate, "Gemini generateContent", "gemini"),
    "streamGenerateContent": (
        relay.gemini_stream,
        "Gemini streamGenerateContent (?alt=sse: events; else one JSON array)",
        "gemini",
    ),
    "countTokens": (relay.gemini_count, "Gemini token counting (never billed)", None),
    "embedContent": (relay.gemini_embed, "Gemini embedContent (gemini channels)", "gemini_embed"),
    "batchEmbedContents": (relay.gemini_batch_embed, "Gemini batchEmbedContents", "gemini_embeds"),
}
_GEMINI_ROUTES = {
    **{
        ("POST", f"{version}/models/{{model}}:{method}"): _relay_route(
            endpoint, _GEMINI, summary, fmt
        )
        for version in ("/v1beta", "/v1")
        for method, (endpoint, summary, fmt) in _GEMINI_METHODS.items()
    },
    ("GET", "/v1beta/models"): _relay_route(
        relay.gemini_models, _GEMINI, "Gemini's list of the models offered to this key"
    ),
    ("GET", "/v1beta/models/{model}"): _relay_route(
        relay.gemini_model, _GEMINI, "One model offered to this key, as Gemini describes it"
    ),
}

# The front door's own routes: (method, path) -> endpoint, description, refusal format.
ROUTES: dict[tuple[str, str], Route] = {
    ("GET", "/api/user/self"): Route(balance.user_self, openapi.USER_SELF),
    ("POST", "/api/usage"): Route(
        charges.charge_usage, openapi.with_body(openapi.USAGE, UsageBody)
    ),
    ("POST", "/v1/chat/completions"): _relay_route(
        relay.chat_completions, _OPENAI, "OpenAI chat completions, streamed or not", "chat"
    ),
    ("POST", "/v1/embeddings"): _relay_route(
        relay.embeddings, _OPENAI, "OpenAI embeddings", "embeddings"
    ),
    ("POST", "/v1/responses"): _relay_route(
        relay.responses, _OPENAI, "OpenAI Responses, streamed or not", "responses"
    ),
    ("POST", "/v1/messages"): _relay_route(
        relay.messages, _ANTHROPIC, "Anthropic Messages, streamed or not", "messages"
    ),
    ("POST", "/v1/messages/count_tokens"): _relay_route(
        relay.count_tokens, _ANTHROPIC, "Anthropic token counting (never billed)"
    ),
    ("GET", "/v1/models"): _relay_route(
        relay.models, _OPENAI, "The models offered and allowed to this API key"
    ),
    ("GET", "/v1/models/{model}"): _relay_route(
        relay.model, _OPENAI, "One model offered and allowed to this API key"
    ),
    **_GEMINI_ROUTES,
    # What an API key may still spend, asked with the key (SPEC §9): new-api's route in the
    # envelope; OpenAI's legacy billing routes, with OpenAI's errors, with and without /v1.
    ("GET", "/api/usage/token"): Route(token_usage, described("This API key's balance")),
    ("GET", "/api/usage/token/"): Route(token_usage, described("The same (new-api's spelling)")),
    **{
        ("GET", f"{prefix}/dashboard/billing/{name}"): Route(
            endpoint,
            described(f"OpenAI's legacy billing {name} of this key", openai=True),
            _openai_refusal,
        )
        for prefix in ("/v1", "")
        for name, endpoint in (("subscription", billing_subscription), ("usage", billing_usage))
    },
}


def create_app(settings: Settings, database: Database | None = None) -> FrontDoor:
    """The app, on `database` (or one opened from `settings.database_url`). The schema must
    already be migrated: `quotaledger serve` does that before it starts any worker."""
    database = database or Database.from_settings(settings)
    redis_url = settings.redis_url.reveal() if settings.redis_url else None
    limiter = RateLimiter(
        {
            "balance": settings.rate_limit_balance,
            "login": settings.rate_limit_login,
            "login_address": settings.rate_limit_login_address,
            "redeem": settings.rate_limit_redeem,
            "redeem_address": settings.rate_limit_redeem_address,
            "alert_test": settings.rate_limit_alert_test,
        },
        redis_url,
    )
    services = Services(settings, database, limiter)
    routes = dict(ROUTES)
    return FrontDoor(routes, _framework(services, routes), services)


def _framework(services: Services, routes: dict[tuple[str, str], Route]) -> FastAPI:
    framework = _Framework(
        title="quotaledger",
        version=__version__,
        summary="Prepaid LLM API quota: balance API and ledger (500,000 quota = 1.00 USD).",
        openapi_url="/openapi.json",
        docs_url=None,  # docs.py serves /docs from our own files
        redoc_url=None,
        exception_handlers=dict(errors.FRAMEWORK_HANDLERS),
        dependencies=[Depends(plain_parameters)],
        lifespan=_lifespan(services),
    )
    framework.state.ql = services
    framework.include_router(api.router)
    framework.include_router(newapi_router)
    framework.include_router(alert_routes.router)
    framework.include_router(admin_api.router)  # last: its /api/user/{id} is the most general
    # The front door's routes, for /openapi.json (and a 405 for their other methods).
    for (method, path), route in routes.items():
        framework.add_api_route(path, _front_door_only, methods=[method], **route.openapi)
    pages.install(framework)
    framework.include_router(admin_pages.router)
    docs.install(framework)
    return framework


async def _front_door_only() -> None:
    """Never called: the front door answers this route before the framework sees it."""
    raise RuntimeError("this route is answered by the front door")


class _Framework(FastAPI):
    """FastAPI without its outermost error layer, which would answer and log a 500 of its
    own: unexpected errors climb to the front door, which owns the only one."""

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        assert isinstance(stack, ServerErrorMiddleware), "FastAPI's stack changed"
        inner: ASGIApp = stack.app
        return inner


def _lifespan(services: Services) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        sweeper = asyncio.ensure_future(
            sweep_forever(services.database, services.settings, services.alerts.settled)
        )
        services.alerts.start()
        services.channel_jobs.start()
        await services.relay.warm()
        # Everything loaded so far (modules, tables, the tokenizer) lives as long as the
        # process: frozen out of the collector's sight, a full collection with 1,000 streams
        # open paused every stream for 167 ms instead of 274 ms, and all collections took
        # 0.46 s instead of 1.0 s over the 1,000-stream benchmark.
        gc.collect()
        gc.freeze()
        yield
        sweeper.cancel()
        await asyncio.gather(sweeper, return_exceptions=True)
        await services.alerts.stop()
        await services.channel_jobs.stop()
        await services.logins.aclose()
        await services.relay.close()
        await services.database.close_group_commits()

    return lifespan


def app_from_env() -> FrontDoor:
    """Factory for Granian's workers (`factory=True`): settings from `QUOTALEDGER_*`."""
    from quotaledger.logging import configure_logging

    _die_with_parent()
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return create_app(settings)


def _die_with_parent() -> None:
    """A Granian worker is a child process that would outlive a killed `serve` (still holding
    the port and its streams): on Linux it asks the kernel to kill it with its parent."""
    import ctypes
    import ctypes.util
    import os
    import signal
    import sys

    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    parent = os.getppid()
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGKILL)
