"""How the routes of new-api's user API (SPEC §9) describe themselves in /openapi.json: a
summary, and every status they may answer with (the envelope's refusal for each)."""

from __future__ import annotations

from typing import Any

from quotaledger.server.responses import envelope_schema

_MEANING = {
    401: "missing, malformed or unknown credentials",
    403: "disabled account, New-Api-User mismatch, CSRF failure",
    404: "not found (another user's key is not found either)",
    405: "method not allowed, with the reason",
    409: "already done (a redemption code already redeemed)",
    410: "gone: a key is shown once and never revealed again",
    413: "body too large",
    415: "body is not application/json",
    422: "invalid parameters or fields; the message names the field",
    429: "over a rate limit (Retry-After says how long to wait)",
    502: "a notification was not delivered (the message says so; the URL is never repeated)",
    503: "the server lacks a setting this needs (the message names it)",
}
API_READ = (401, 403, 422, 429)
API_WRITE = (401, 403, 404, 413, 415, 422, 429)


def described(summary: str, statuses: tuple[int, ...] = API_READ, *, openai: bool = False,
              description: str | None = None) -> dict[str, Any]:  # fmt: skip
    """FastAPI route options: `summary`, a 200, and `statuses` as refusals (OpenAI's error
    object under the billing routes when `openai`, else the envelope)."""
    refusal_schema = {"type": "object"} if openai else envelope_schema({"type": "null"})
    content = {"application/json": {"schema": refusal_schema}}
    responses: dict[int, Any] = {200: {"description": "success"}}
    for status in statuses:
        responses[status] = {"description": _MEANING[status], "content": content}
    found: dict[str, Any] = {"summary": summary, "responses": responses}
    if description:
        found["description"] = description
    return found
