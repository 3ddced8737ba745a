"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request).

- `BodyGuard`: 413 for oversized bodies, 415 for a non-JSON body sent to the API.
- `CatchAll`: an unexpected error becomes a 500 envelope that the others still see.
- `Compression`: gzip whenever the client accepts it, whatever the size; always for the
  API when `always_gzip` is set (what the reference page describes).
- `SecurityHeaders`: on every response.
"""

from __future__ import annotations

import logging
import zlib

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotaledger.server.proxies import is_https
from quotaledger.settings import Network

log = logging.getLogger("quotaledger.server")

_BODY_METHODS = {b"POST", b"PUT", b"PATCH"}


async def _send_envelope(send: Send, status: int, message: str) -> None:
    body = orjson.dumps({"success": False, "message": message, "data": None})
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
            await _send_envelope(send, 413, too_large)
            return
        has_body = length not in (None, "0") or "transfer-encoding" in headers
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if has_body and scope["path"].startswith("/api/") and content_type != "application/json":
            await _send_envelope(send, 415, "send the body as application/json")
            return
        body = await self._read(receive)
        if body is None:
            await _send_envelope(send, 413, too_large)
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


class CatchAll:
    """Turns an unexpected exception into a 500 envelope *inside* the other middleware, so
    that it too gets the security headers, compression and a count. The traceback goes to
    the operator's log, never to the client."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception:
            if started:
                raise
            log.exception("unexpected error on %s %s", scope["method"], scope["path"])
            await _send_envelope(send, 500, "internal server error")


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` admits gzip (`gzip;q=0` refuses it)."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


# gzip framing (16 +) with a 4 KiB window and a small memory level: zlib's defaults
# allocate ~256 KiB per stream, which costs ~100 µs per response, ten times the work of
# compressing a balance answer; for our answers (JSON, mostly under 4 KiB) the output is
# the same size.
_GZIP_WBITS = 16 + 12
_MEM_LEVEL = 4


class Compression:
    """Buffers the response (ours are small) and gzips it when the client accepts gzip."""

    def __init__(self, app: ASGIApp, *, always_for_api: bool = False, level: int = 6) -> None:
        self.app = app
        self.always_for_api = always_for_api
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        accepts = accepts_gzip(Headers(scope=scope).get("accept-encoding", ""))
        if not accepts and not (self.always_for_api and scope["path"].startswith("/api/")):
            await self.app(scope, receive, send)
            return
        await self.app(scope, receive, _GzipSend(send, self.level))


class _GzipSend:
    def __init__(self, send: Send, level: int) -> None:
        self.send = send
        self.level = level
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        if message["type"] != "http.response.body" or self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body", False):
            return
        await self._flush(b"".join(self.chunks))

    async def _flush(self, body: bytes) -> None:
        assert self.start is not None
        headers = MutableHeaders(raw=list(self.start["headers"]))
        if "content-encoding" not in headers and self.start["status"] not in (204, 304):
            compressor = zlib.compressobj(self.level, zlib.DEFLATED, _GZIP_WBITS, _MEM_LEVEL)
            body = compressor.compress(body) + compressor.flush()
            headers["content-encoding"] = "gzip"
            headers["content-length"] = str(len(body))
        headers.add_vary_header("Accept-Encoding")
        await self.send({**self.start, "headers": headers.raw})
        await self.send({"type": "http.response.body", "body": body})


# Pages and the API serve only their own scripts and styles; /docs (Swagger UI) loads
# its assets from a CDN, so it gets a CSP that allows exactly that.
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
    "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp, trusted_proxies: tuple[Network, ...] = ()) -> None:
        self.app = app
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        extra = _security_headers(path)
        if is_https(scope, self.trusted_proxies):
            extra.append((b"strict-transport-security", b"max-age=31536000"))

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message["headers"], *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    csp = DOCS_CSP if path in ("/docs", "/redoc") else PAGE_CSP
    headers = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"cross-origin-opener-policy", b"same-origin"),
        (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        (b"content-security-policy", csp.encode()),
    ]
    if path.startswith("/api/"):
        headers.append((b"cache-control", b"no-store"))
    return headers
