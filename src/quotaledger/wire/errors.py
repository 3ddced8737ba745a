"""The relay's own errors, in the envelope each client's SDK understands (SPEC §8, §8a).

OpenAI's `{"error": {"message", "type", "param", "code"}}` under the OpenAI routes, and
Anthropic's `{"type": "error", "error": {"type", "message"}}` under `/v1/messages`, Google's
`{"error": {"code", "message", "status"}}` under `/v1beta` (SPEC §11.1), so that
the SDKs raise their matching exceptions (401 AuthenticationError, 403 PermissionDeniedError,
404 NotFoundError, 429 RateLimitError; 402 is an APIStatusError neither SDK retries).
Mid-stream failures are SSE events: OpenAI chat gets a `data: {"error": ...}` event then
`data: [DONE]` (the OpenAI SDK raises an APIError on it); Anthropic an `event: error`
(the Anthropic SDK raises on it); a Responses stream ends with a `response.failed` of ours
(`openai_responses.ResponsesStream.fail`).
(Upstream errors before the first byte are not built here: they pass through unchanged.)
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple

import orjson

DONE = b"data: [DONE]\n\n"


class WireFormat(StrEnum):
    OPENAI = "openai"  # chat completions, embeddings, Responses, models
    ANTHROPIC = "anthropic"  # messages, count_tokens
    GEMINI = "gemini"  # /v1beta: generateContent, streamGenerateContent, models


class ErrorKind(NamedTuple):
    openai_type: str
    openai_code: str | None
    anthropic_type: str


# The SPEC's statuses. OpenAI's types are the ones OpenAI itself answers with for the status.
KINDS: dict[int, ErrorKind] = {
    400: ErrorKind("invalid_request_error", "invalid_request_error", "invalid_request_error"),
    401: ErrorKind("invalid_request_error", "invalid_api_key", "authentication_error"),
    402: ErrorKind("insufficient_quota", "insufficient_quota", "billing_error"),
    403: ErrorKind("invalid_request_error", "permission_denied", "permission_error"),
    404: ErrorKind("invalid_request_error", "model_not_found", "not_found_error"),
    413: ErrorKind("invalid_request_error", "request_too_large", "request_too_large"),
    429: ErrorKind("requests", "rate_limit_exceeded", "rate_limit_error"),
    500: ErrorKind("server_error", None, "api_error"),
    502: ErrorKind("server_error", "upstream_error", "api_error"),
    503: ErrorKind("server_error", "upstream_error", "api_error"),
    504: ErrorKind("server_error", "upstream_error", "timeout_error"),
}


def _kind(status: int) -> ErrorKind:
    return KINDS.get(status) or (KINDS[400] if status < 500 else KINDS[502])


def openai_error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error object for `status`; `code` overrides the status's default code."""
    kind = _kind(status)
    chosen = code if code is not None else kind.openai_code
    return {"error": {"message": message, "type": kind.openai_type, "param": param, "code": chosen}}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": _kind(status).anthropic_type, "message": message}}


# Google's canonical status names (google.rpc.Code) for the HTTP statuses we answer.
GEMINI_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    402: "FAILED_PRECONDITION",  # an account that cannot pay (as `refusals.gemini` says)
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    415: "INVALID_ARGUMENT",
    422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def gemini_error(status: int, message: str) -> dict[str, Any]:
    named = GEMINI_STATUS.get(status) or ("INVALID_ARGUMENT" if status < 500 else "UNAVAILABLE")
    return {"error": {"code": status, "message": message, "status": named}}


def error_body(
    wire: WireFormat,
    status: int,
    message: str,
    *,
    code: str | None = None,
    param: str | None = None,
) -> bytes:
    """The JSON body of an error answer of ours, in `wire`'s envelope."""
    if wire is WireFormat.ANTHROPIC:
        return orjson.dumps(anthropic_error(status, message))
    if wire is WireFormat.GEMINI:
        return orjson.dumps(gemini_error(status, message))
    return orjson.dumps(openai_error(status, message, code=code, param=param))


def openai_stream_error(message: str, *, status: int = 502, code: str | None = None) -> bytes:
    """A chat stream's ending after a failure: the error event, then `[DONE]`."""
    return b"data: " + orjson.dumps(openai_error(status, message, code=code)) + b"\n\n" + DONE


def anthropic_stream_error(message: str, *, status: int = 502) -> bytes:
    """An Anthropic stream's `event: error` (529-like failures are `overloaded_error` upstream;
    ours name the status's type)."""
    return b"event: error\ndata: " + orjson.dumps(anthropic_error(status, message)) + b"\n\n"


class InvalidRequest(ValueError):
    """A request body the relay cannot forward: answer 400 with `message` (and `param`)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
