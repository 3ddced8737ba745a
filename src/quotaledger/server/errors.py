"""One table from every error to its HTTP status, and the one function that turns any known
error into its answer (`refusal`); the front door writes it, in the envelope under `/api`."""

from __future__ import annotations

from typing import Any, NamedTuple

from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from quotaledger import errors
from quotaledger.server.ratelimit import Decision

STATUS_BY_ERROR: dict[type[errors.QuotaLedgerError], int] = {
    errors.InvalidInput: 422,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.AuthenticationFailed: 401,
    errors.PermissionDenied: 403,
    errors.InsufficientQuota: 402,
    errors.RateLimited: 429,
    errors.IdempotencyConflict: 409,
    errors.Busy: 503,
    errors.NotConfigured: 503,
}

WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="quotaledger"'}


class HTTPError(Exception):
    """An error the adapter raises itself (415, 413, 429...), with optional headers."""

    def __init__(self, status_code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.headers = headers or {}


def within_limit(decision: Decision | None, message: str | None = None) -> dict[str, str]:
    """The rate-limit headers to answer with while under a limit (none when it is off);
    the 429 (`message`, or how long to wait) when over it."""
    if decision is None:
        return {}
    if not decision.allowed:
        wait = f"too many requests: try again in {max(decision.reset_after, 1)} s"
        raise HTTPError(429, message or wait, decision.headers())
    return decision.headers()


def status_for(error: errors.QuotaLedgerError) -> int:
    for kind in type(error).__mro__:
        if kind in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[kind]
    return 400


class Refusal(NamedTuple):
    status: int
    message: str
    headers: tuple[tuple[str, str], ...]  # besides the message (a tuple: refusals are cached)


_FRAMEWORK_MESSAGES = {404: "not found", 405: "method not allowed"}
# FastAPI's 400 for a body its JSON parser raised on (other than a syntax error, which is
# its 422): too-large integers, say.
_FRAMEWORK_PARSE_ERROR = "There was an error parsing the body"


def refusal(exc: BaseException) -> Refusal | None:
    """The answer to a known error (the domain's, ours, the framework's): status, message and
    headers; None for an unexpected one (a 500). The one translation, for every route."""
    if isinstance(exc, errors.RateLimited):  # its own status and wait
        return Refusal(exc.status, str(exc), (("Retry-After", str(exc.retry_after)),))
    if isinstance(exc, errors.QuotaLedgerError):
        status = status_for(exc)
        return Refusal(status, str(exc), _SAID.get(status, ()))
    if isinstance(exc, HTTPError):
        usual = _SAID.get(exc.status_code)
        said = {**dict(usual), **exc.headers} if usual else exc.headers
        return Refusal(exc.status_code, exc.message, tuple(said.items()))
    if isinstance(exc, HTTPException):
        if exc.status_code == 400 and exc.detail == _FRAMEWORK_PARSE_ERROR:
            return Refusal(422, "body: invalid JSON", ())  # as docs/api.md promises
        message = _FRAMEWORK_MESSAGES.get(exc.status_code) or str(exc.detail)
        return Refusal(exc.status_code, message, tuple((exc.headers or {}).items()))
    if isinstance(exc, RequestValidationError):
        return Refusal(422, describe_validation_errors(exc.errors()), ())
    return None


# What every refusal with this status says besides its message.
_SAID: dict[int, tuple[tuple[str, str], ...]] = {
    401: tuple(WWW_AUTHENTICATE.items()),
    503: (("Retry-After", "1"),),
}


async def to_the_front_door(request: Request, exc: Exception) -> Response:
    """FastAPI answers its own exceptions (404, 405, invalid parameters) unless a handler
    says otherwise: this one hands them on, so that the front door answers every refusal."""
    found = refusal(exc)
    assert found is not None
    raise HTTPError(found.status, found.message, dict(found.headers)) from None


_NOT_AN_OBJECT = {"model_type", "model_attributes_type", "dict_type"}


def describe_validation_errors(items: object) -> str:
    """`'quota: Input should be a valid integer; usd: ...'`, naming each field."""
    parts = []
    for item in items if isinstance(items, list | tuple) else []:
        location = [str(p) for p in item.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(location) or "body"
        kind = item.get("type")
        if kind == "json_invalid":
            field = "body"
            message = "invalid JSON"
        elif kind in _NOT_AN_OBJECT:  # pydantic's message would name our model class
            message = "send a JSON object"
        else:
            message = item.get("msg", "invalid")
        parts.append(f"{field}: {message}")
    return "; ".join(parts) or "invalid request"


# The framework's own exceptions, handed to the front door (`to_the_front_door`). Domain
# errors and ours are not handled in the framework at all: they reach the front door as
# they are, as do unexpected errors, which the front door alone logs and answers with 500.
FRAMEWORK_HANDLERS: dict[int | type[Exception], Any] = {
    HTTPException: to_the_front_door,
    RequestValidationError: to_the_front_door,
}
