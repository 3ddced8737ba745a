"""The request side: `BodyGuard` (413 for oversized bodies, 415 for a non-JSON body sent
to the API). The response side is `finisher.ResponseFinisher`. Both are pure ASGI (no
BaseHTTPMiddleware: it costs a task per request)."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotaledger.server.responses import envelope

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


async def send_envelope(send: Send, status: int, message: str) -> None:
    body = envelope(message=message, status_code=status)
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    """Reads a request body whole before the app sees it (ours are small JSON), so that an
    oversized one gets 413 whether it came with a Content-Length or chunked."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"].encode() not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = body_refusal(
            scope["path"],
            headers.get("content-length"),
            "transfer-encoding" in headers,
            headers.get("content-type", ""),
            self.max_body_bytes,
        )
        body = None if refused else await read_body(receive, self.max_body_bytes)
        if refused or body is None:
            await send_envelope(send, *(refused or too_large(self.max_body_bytes)))
            return
        await self.app(scope, _replay(body, receive), send)


def body_refusal(
    path: str, length: str | None, chunked: bool, content_type: str, max_bytes: int
) -> tuple[int, str] | None:
    """413 for a declared length over `max_bytes`, 415 for a body to the API that is not
    JSON; None if the body may be read (`read_body` still stops at `max_bytes`)."""
    if length is not None and (not length.isdigit() or int(length) > max_bytes):
        return too_large(max_bytes)
    has_body = length not in (None, "0") or chunked
    media_type = content_type.split(";")[0].strip().lower()
    if has_body and path.startswith("/api/") and media_type != "application/json":
        return 415, "send the body as application/json"
    return None


def too_large(max_bytes: int) -> tuple[int, str]:
    return 413, f"request body over {max_bytes} bytes"


async def read_body(receive: Receive, max_bytes: int) -> bytes | None:
    """The whole request body, or None once it goes over `max_bytes` (chunked included)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
