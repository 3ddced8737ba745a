"""The plain data that passes between a provider and the HTTP client.

Providers do no I/O ("sans-IO", as h11 does): each one is a generator that yields a `Call`,
receives the `Reply`, and finally returns a `Balance`. The same provider code therefore
serves `BalanceClient` and `AsyncBalanceClient`, and can branch on an answer (OpenRouter's
fallback from `/credits` to `/key`).
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from quotaledger.client.balance import Balance
from quotaledger.client.errors import ProviderError


@dataclass(frozen=True)
class Call:
    """One GET on the provider's site. A `best_effort` call is tried once, and a network
    failure reaches the provider as a `Reply` with status 0 instead of an exception. A
    `shared` call (unauthenticated only) has the same answer for every account of the site:
    clients given one `SharedReplies` ask it once for all of them."""

    path: str
    authenticated: bool = True
    best_effort: bool = False
    shared: bool = False


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive (httpx.Headers, aiohttp's CIMultiDictProxy)
    content: bytes
    url: str
    secret: str = field(default="", repr=False, compare=False)
    """The token the request carried, so that a message quoted from the answer is scrubbed of
    it before being cut to length (see `statuses.one_line`)."""

    def with_secret(self, secret: str) -> Reply:
        """The same reply, for a client with another token (`dataclasses.replace`, at a
        third of its cost: shared replies are handed out at every account's poll)."""
        return Reply(self.status, self.headers, self.content, self.url, secret)

    @classmethod
    def failed(cls, url: str) -> Reply:
        """The answer to a best-effort call that got none."""
        return cls(status=0, headers={}, content=b"", url=url)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()


@dataclass(frozen=True)
class Site:
    """Where the balance comes from, for requests and for messages."""

    base_url: str  # the site root, without a trailing slash
    user_id: str | None = None

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc


Plan = Generator[Call, Reply, Balance]
"""What a provider's `plan()` returns: it yields calls and is sent their replies."""


def parse_json(reply: Reply) -> Any:
    """The body as JSON, numbers with a fraction as exact `Decimal`; `None` if it is not JSON."""
    return parse_json_content(reply.content)


def parse_json_content(content: bytes) -> Any:
    try:
        return json.loads(content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None


def looks_like_html(reply: Reply) -> bool:
    start = reply.content[:100].lstrip()
    return reply.content_type == "text/html" or start.startswith(b"<")


def json_object(reply: Reply) -> dict[str, Any]:
    """The body as a JSON object, or `ProviderError` saying what came instead."""
    body = parse_json(reply)
    if isinstance(body, dict):
        return body
    raise ProviderError(_not_json(reply, body), status_code=reply.status)


def _not_json(reply: Reply, body: Any) -> str:
    where = f"(HTTP {reply.status}, {reply.url})"
    if body is not None:
        return f"{reply.host} answered with JSON that is not an object {where}."
    if looks_like_html(reply):
        return (
            f"{reply.host} answered with an HTML page instead of JSON {where}. Check the base "
            "URL: it should be the site root, e.g. https://api.example.com; a login page or a "
            "firewall challenge also looks like this."
        )
    kind = reply.content_type or "no content type"
    return (
        f"{reply.host} answered with something that is not JSON "
        f"{where}: {kind}, {len(reply.content)} bytes."
    )
