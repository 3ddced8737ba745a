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
        length = headers.get("content-length")
        too_large = f"request body over {self.max_body_bytes} bytes"
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            await send_envelope(send, 413, too_large)
            return
        has_body = length not in (None, "0") or "transfer-encoding" in headers
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and scope["path"].startswith("/api/") and content_type != "application/json":
            await send_envelope(send, 415, "send the body as application/json")
            return
        body = await self._read(receive)
        if body is None:
            await send_envelope(send, 413, too_large)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
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
