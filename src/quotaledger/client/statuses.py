"""HTTP status codes and refusals turned into the client's errors, with messages that say
what happened and what to do. Providers add their own hints (where to get a new token)."""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime
from typing import Any

from quotaledger.client.errors import (
    AuthenticationError,
    BalanceError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.exchange import Reply, parse_json
from quotaledger.client.printable import printable
from quotaledger.client.redaction import redact

_MAX_MESSAGE = 200

# Words in a one-api style `success: false` message (HTTP 200 on older servers), lower-cased,
# checked in this order: a message about the token is about authentication even if it says
# "disabled"; "无权进行此操作, 权限不足" (no permission) starts like a generic refusal.
_TOKEN_WORDS = ("token", "令牌", "new-api-user")
_PERMISSION_WORDS = ("封禁", "禁用", "权限不足", "banned", "disabled", "privilege", "forbidden")
_AUTH_WORDS = ("未登录", "not logged in", "unauthorized", "无权")


def server_message(reply: Reply) -> str | None:
    """The reason the server gave, from the usual JSON shapes or a short plain-text body."""
    body = parse_json(reply)
    if isinstance(body, dict):
        return message_in(body, reply.secret)
    raw = reply.content.decode("utf-8", "replace")
    plain = reply.content_type in {"text/plain", ""} and raw.lstrip()[:1] != "<"
    if plain and " ".join(raw.split()).isprintable():  # text, not a binary body
        return one_line(raw, reply.secret) or None
    return None


def message_in(body: dict[str, Any], secret: str = "") -> str | None:  # nosec B107  # what to redact
    """`message` (one-api envelope), `error.message` (OpenAI style), `error` or `detail`;
    without `secret` (pass `reply.secret`)."""
    error = body.get("error")
    for value in (body.get("message"), error, body.get("detail"), body.get("msg")):
        if isinstance(value, dict):
            value = value.get("message")
        if isinstance(value, str) and value.strip():
            return one_line(value, secret)
    return None


def one_line(text: str, secret: str = "") -> str:  # nosec B107  # what to redact
    """`text` on one line, without `secret`, escape sequences or control characters (see
    `printable`), then cut to length: in this order, so that a token straddling the cut
    cannot survive in part."""
    text = printable(redact(text, secret))
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def retry_after(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); `None` for none,
    garbage, a negative number, `inf` or `nan`. A date already past is 0."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        seconds = parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, OverflowError):
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def refusal_error(
    message: str, *, host: str, token_help: str, status_code: int | None = None
) -> BalanceError:
    """A `success: false` answer, classified by its message: token, permission, or other."""
    lowered = message.lower()
    said = f"{host} refused the request: {message}"
    refused_token = AuthenticationError(
        f"{host} refused the token ({message}). {token_help}", status_code=status_code
    )
    if any(word in lowered for word in _TOKEN_WORDS):
        return refused_token
    if any(word in lowered for word in _PERMISSION_WORDS):
        return PermissionDeniedError(
            f"{said}. The token is valid but this account may not read its balance "
            "(is it disabled?).",
            status_code=status_code,
        )
    if any(word in lowered for word in _AUTH_WORDS):
        return refused_token
    return ProviderError(f"{said}.", status_code=status_code)


def status_error(reply: Reply, *, token_help: str, provider: str) -> BalanceError:
    """The error for a status of 400 or more."""
    status, host = reply.status, reply.host
    said = server_message(reply)
    detail = f"HTTP {status}: {said}" if said else f"HTTP {status}"
    if status == 401:
        return AuthenticationError(
            f"{host} refused the token ({detail}). {token_help}", status_code=status
        )
    if status == 403:
        return PermissionDeniedError(
            f"{host} denied access ({detail}). The token was accepted but may not read this "
            "balance: the account may be disabled, or the token lacks the permission.",
            status_code=status,
        )
    if status == 429:
        return _rate_limited(reply, detail)
    if status >= 500:
        return ProviderError(f"{host} had a server error ({detail}).", status_code=status)
    if status == 404:
        return ProviderError(
            f"{host} has no {reply.url} ({detail}). Check that the base URL is the site root "
            f"and that provider {provider!r} is the right one.",
            status_code=status,
        )
    return ProviderError(f"{host} did not accept the request ({detail}).", status_code=status)


def _rate_limited(reply: Reply, detail: str) -> RateLimitedError:
    wait = retry_after(reply.headers.get("retry-after"))
    advice = f"retry in {wait:.0f} s" if wait is not None else "wait a minute before retrying"
    return RateLimitedError(
        f"{reply.host} is limiting balance queries ({detail}); {advice}. "
        "Query at most about once a minute.",
        retry_after=wait,
    )
