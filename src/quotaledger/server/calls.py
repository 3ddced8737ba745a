"""What an endpoint is given and what it gives back.

`Head`: the request headers the server reads, read once per request by the front door (the
first occurrence of each; ASGI names are lower-case). `Call`: the request as an endpoint sees
it. `Answer` (a complete JSON body) and `Stream` (chunks sent as they come, such as
server-sent events): what an endpoint returns; the front door finishes and sends both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, NamedTuple

from starlette.requests import Request
from starlette.types import Scope

from quotaledger.server import proxies

if TYPE_CHECKING:
    from quotaledger.server.services import Services

Headers = list[tuple[bytes, bytes]]


class Head(NamedTuple):
    authorization: str | None
    accept_encoding: str | None
    new_api_user: str | None
    content_length: str | None
    content_type: str | None
    csrf_token: str | None  # X-CSRF-Token
    chunked: bool  # a Transfer-Encoding was sent

    @property
    def token(self) -> str | None:
        """The token from `Authorization`, raw (as the reference page sends it) or `Bearer`."""
        if self.authorization is None:
            return None
        header = self.authorization.strip()
        scheme, _, rest = header.partition(" ")
        if rest and scheme.lower() == "bearer":
            return rest.strip()
        return header


# Where each header read goes in `Head` (the order of its fields).
_SLOT = {
    b"authorization": 0,
    b"accept-encoding": 1,
    b"new-api-user": 2,
    b"content-length": 3,
    b"content-type": 4,
    b"x-csrf-token": 5,
}
_HEAD = "quotaledger.head"  # where the front door leaves the head in the scope


def read_head(scope: Scope) -> Head:
    """The head of this request, read in one pass over its headers (once: kept in the
    scope for whoever asks again)."""
    found: list[str | None] = [None] * 6
    chunked = False
    for name, value in scope["headers"]:
        slot = _SLOT.get(name)
        if slot is not None:
            if found[slot] is None:
                found[slot] = value.decode("latin-1")
        elif name == b"transfer-encoding":
            chunked = True
    head = Head(found[0], found[1], found[2], found[3], found[4], found[5], chunked)
    scope[_HEAD] = head
    return head


def head_of(scope: Scope) -> Head:
    head: Head | None = scope.get(_HEAD)
    return head if head is not None else read_head(scope)


class Call:
    """One request as an endpoint sees it: its scope, head, body (already read and bounded by
    the front door) and the app's services."""

    __slots__ = ("body", "head", "scope", "services")

    def __init__(self, scope: Scope, head: Head, body: bytes, services: Services) -> None:
        self.scope, self.head, self.body, self.services = scope, head, body, services

    @classmethod
    def of(cls, request: Request) -> Call:
        """The call behind a framework route's request (its body is read separately)."""
        return cls(request.scope, head_of(request.scope), b"", request.app.state.ql)

    @property
    def method(self) -> str:
        method: str = self.scope["method"]
        return method

    def client_address(self) -> str:
        """The real client address (see `proxies.client_address`)."""
        return proxies.client_address(self.scope, self.services.settings.trusted_proxies)

    def is_https(self) -> bool:
        """Whether the client reached us over TLS (cookies then get `Secure`)."""
        return proxies.is_https(self.scope, self.services.settings.trusted_proxies)

    def cookie(self, name: str) -> str | None:
        return Request(self.scope).cookies.get(name)


class Answer(NamedTuple):
    """A complete JSON answer: the status, the body and the endpoint's own headers."""

    status: int
    body: bytes
    headers: Headers | tuple[()] = ()


class Stream(NamedTuple):
    """An answer sent chunk by chunk as `chunks` yields them (never buffered, never
    gzipped: each event must reach the client when it is made)."""

    status: int
    chunks: AsyncIterator[bytes]
    media_type: bytes = b"text/event-stream"
    headers: Headers | tuple[()] = ()


Endpoint = Callable[[Call], Awaitable[Answer | Stream]]
