"""One table from every error to its HTTP status, and the handlers that answer with the
envelope (never a stack trace)."""

from __future__ import annotations

import logging

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from quotaledger import errors
from quotaledger.server.responses import fail

log = logging.getLogger("quotaledger.server")

STATUS_BY_ERROR: dict[type[errors.QuotaLedgerError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.AuthenticationFailed: 401,
    errors.PermissionDenied: 403,
    errors.InsufficientQuota: 402,
    errors.IdempotencyConflict: 409,
    errors.Busy: 503,
}

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="quotaledger"'}


class HTTPError(Exception):
    """An error the adapter raises itself (415, 413, 429...), with optional headers."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


def status_for(error: errors.QuotaLedgerError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 400


def refusal(exc: errors.QuotaLedgerError | HTTPError) -> tuple[int, str, dict[str, str]]:
    """Status, message and headers of the answer to a refusal."""
    if isinstance(exc, HTTPError):
        return exc.status_code, exc.message, {**headers_for(exc.status_code), **exc.headers}
    status = status_for(exc)
    return status, str(exc), headers_for(status)


def headers_for(status: int) -> dict[str, str]:
    """What every refusal with this status says besides its message."""
    if status == 401:
        return dict(WWW_AUTHENTICATE)
    if status == 503:
        return {"Retry-After": "1"}
    return {}


def response_for(exc: errors.QuotaLedgerError | HTTPError) -> Response:
    """The envelope for a refusal. The hot routes call this directly (cheaper than letting
    the exception climb the middleware); the handlers below do the same for the rest."""
    status, message, headers = refusal(exc)
    return fail(status, message, headers=headers)


async def domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.QuotaLedgerError)
    return response_for(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPError)
    return response_for(exc)


async def starlette_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    messages = {404: "not found", 405: "method not allowed"}
    message = messages.get(exc.status_code) or str(exc.detail)
    return fail(exc.status_code, message, headers=exc.headers)


async def validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return fail(422, describe_validation_errors(exc.errors()))


def describe_validation_errors(items: object) -> str:
    """`'quota: Input should be a valid integer; usd: ...'`, naming each field."""
    parts = []
    for item in items if isinstance(items, list | tuple) else []:
        location = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(location) or "body"
        if item.get("type") == "json_invalid":
            field = "body"
            message = "invalid JSON"
        else:
            message = item.get("msg", "invalid")
        parts.append(f"{field}: {message}")
    return "; ".join(parts) or "invalid request"


async def unexpected_error(request: Request, exc: Exception) -> Response:
    # Logged with its traceback for the operator; the client sees a plain envelope.
    log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return fail(500, "internal server error")


HANDLERS = {
    errors.QuotaLedgerError: domain_error,
    HTTPError: http_error,
    HTTPException: starlette_http_error,
    RequestValidationError: validation_error,
    Exception: unexpected_error,
}
