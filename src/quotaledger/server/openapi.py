"""OpenAPI descriptions of the routes (summaries, statuses, headers), kept apart from the
handlers so that those stay short. Every error answer is the envelope."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from quotaledger.server.responses import envelope_schema

_ERROR = {"application/json": {"schema": envelope_schema({"type": "null"})}}
_RATE_HEADERS = {
    "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}},
    "RateLimit-Limit": {"schema": {"type": "integer"}},
    "RateLimit-Remaining": {"schema": {"type": "integer"}},
    "RateLimit-Reset": {"schema": {"type": "integer"}},
}


def _error(description: str, **extra: Any) -> Any:
    return {"description": description, "content": _ERROR, **extra}


E401 = {
    401: _error(
        "missing, malformed, unknown or replaced credentials; wrong password",
        headers={"WWW-Authenticate": {"schema": {"type": "string"}}},
    )
}
E403 = {403: _error("disabled account, not an admin, New-Api-User mismatch, CSRF failure")}
E422 = {422: _error("invalid JSON or fields; the message names the field")}
E429 = {429: _error("over a rate limit", headers=_RATE_HEADERS)}
E413_415 = {413: _error("body too large"), 415: _error("body is not application/json")}

_ACCOUNT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "username": {"type": "string"},
        "display_name": {"type": "string"},
        "group": {"type": "string"},
        "role": {"type": "integer", "enum": [1, 10], "description": "new-api's: 1 user, 10 admin"},
        "status": {"type": "integer", "enum": [1, 2], "description": "1 enabled, 2 disabled"},
        "quota": {"type": "integer"},
        "used_quota": {"type": "integer"},
        "request_count": {"type": "integer"},
        "quota_usd": {"type": "string"},
        "used_quota_usd": {"type": "string"},
        "token_hint": {"type": ["string", "null"]},
        "token_created_at": {"type": ["integer", "null"]},
        "ModelFixedPrice": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _ok(data: dict[str, Any] | None = None, description: str = "success") -> dict[int, Any]:
    schema = envelope_schema(data or {})
    return {200: {"description": description, "content": {"application/json": {"schema": schema}}}}


USER_SELF: dict[str, Any] = {
    "summary": "The caller's balance",
    "description": "Authorization: the system token, raw or as `Bearer <token>`, or a "
    "browser session. 500,000 quota = 1.00 USD.",
    "responses": {**_ok(_ACCOUNT), **E401, **E403, **E429},
}
LOGIN: dict[str, Any] = {
    "summary": "Log in: sets the session cookie and the ql_csrf cookie",
    "responses": {**_ok(_ACCOUNT), **E401, **E403, **E413_415, **E422, **E429},
}
LOGOUT: dict[str, Any] = {
    "summary": "End the browser session (send X-CSRF-Token)",
    "responses": {**_ok(), **E401, **E403},
}
ISSUE_TOKEN: dict[str, Any] = {
    "summary": "Verify the password again and issue a new system token",
    "description": "The token is shown in this response only; the previous one stops "
    "working at once. Needs a browser session and its X-CSRF-Token header.",
    "responses": {
        **_ok({"type": "object", "properties": {"token": {"type": "string"}}}),
        **E401,
        **E403,
        **E413_415,
        **E422,
        **E429,
    },
}


def json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The `requestBody` of a route that reads its JSON body itself (`bodies.parse_json`)."""
    schema = model.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def with_body(described: dict[str, Any], body: type[BaseModel]) -> dict[str, Any]:
    """`described`, with the JSON body the route reads itself."""
    return {**described, "openapi_extra": json_body(body)}


USAGE: dict[str, Any] = {
    "summary": "Charge one request (admin token); idempotent per request_id",
    "responses": {
        **_ok({"type": "object"}),
        **E401,
        **E403,
        402: _error("the charge is larger than the remaining quota: nothing charged"),
        404: _error("unknown user"),
        409: _error("request_id replayed with a different payload: nothing charged"),
        503: _error(
            "the database stayed busy: nothing charged, retry",
            headers={"Retry-After": {"schema": {"type": "integer"}}},
        ),
        **E413_415,
        **E422,
    },
}
TOPUP: dict[str, Any] = {
    "summary": "Grant quota to a user (admin token)",
    "responses": {
        **_ok({"type": "object"}),
        **E401,
        **E403,
        404: _error("unknown user"),
        **E413_415,
        **E422,
    },
}
PRICING: dict[str, Any] = {"summary": "The price list", "responses": _ok({"type": "object"})}
STATUS: dict[str, Any] = {
    "summary": "Public facts about this server, including quota_per_unit",
    "responses": _ok({"type": "object"}),
}
HEALTHZ: dict[str, Any] = {
    "summary": "Liveness and database check",
    "responses": {**_ok({"type": "object"}), 503: _error("database unavailable")},
}


def relay(summary: str) -> dict[str, Any]:
    """A relay route (`/v1/...`, `/v1beta/...`): OpenAI's, Anthropic's or Google's wire
    format, described by them."""
    return {
        "summary": summary,
        "description": "Authorization: an API key (`Bearer sk-ql-...`, or `x-api-key` on the "
        "Anthropic routes, `x-goog-api-key` or `?key=` on the Gemini routes). Bodies and answers "
        "are the provider's own format; errors are OpenAI's error object (Anthropic's under "
        "/v1/messages, Google's on the Gemini routes). SPEC §8, §11.1.",
        "tags": ["relay"],
        "responses": {
            200: {"description": "the upstream's answer, or its event stream"},
            **{status: _relay_error(reason) for status, reason in _RELAY_ERRORS.items()},
            "default": _relay_error(
                "an upstream's own error before the first byte, passed through unmodified "
                "(Anthropic's routes, and a 4xx about the request itself)"
            ),
        },
    }


_RELAY_ERRORS = {
    400: "invalid_request_error: bad JSON or fields, named",
    401: "invalid_api_key: missing, malformed, unknown, deleted, disabled or expired key",
    402: "insufficient_quota: the account, the key or its period cannot cover the reservation",
    403: "permission_denied: client address, disabled user, or a model this key may not use",
    404: "model_not_found: the model is not offered",
    413: "request_too_large: over QUOTALEDGER_RELAY_MAX_BODY_BYTES",
    415: "the body is not application/json",
    429: "rate_limit_exceeded: over the per-key limit (Retry-After)",
    502: "upstream_error: every channel failed (the last upstream status is named)",
    503: "upstream_error, or the relay is not configured (no secret key)",
    504: "upstream_error: the upstream timed out",
}


def _relay_error(description: str) -> dict[str, Any]:
    error = {"type": "object", "description": "OpenAI's error object, Anthropic's on /v1/messages"}
    return {"description": description, "content": {"application/json": {"schema": error}}}
