"""`ResponseFinisher`: everything done to every answer, in one ASGI layer.

One pass instead of four middlewares (each layer wraps `send` again and costs a few
microseconds per message, a real share of a balance query's budget):

- counts the answer for `/metrics`;
- adds the security headers (and HSTS when the client came over TLS);
- gzips the body whenever the client accepts gzip, whatever its size, and always for the
  API when `always_gzip` is set (what the reference page's provider does);
- turns an unexpected exception into a 500 envelope that still gets all of the above,
  with the traceback in the operator's log, never in the answer.
"""

from __future__ import annotations

import functools
import logging
import zlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from quotaledger.server.metrics import Metrics
from quotaledger.server.middleware import send_envelope
from quotaledger.server.proxies import is_https
from quotaledger.settings import Network

log = logging.getLogger("quotaledger.server")

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
_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
# JSON answers need fewer (OWASP's REST list): no sniffing, no caching, never framed.
# Each header costs the server time on every answer, and the balance query is the hot path.
_API_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
_PAGE_HEADERS = (*_COMMON, (b"content-security-policy", PAGE_CSP.encode()))
_DOCS_HEADERS = (*_COMMON, (b"content-security-policy", DOCS_CSP.encode()))
_HSTS = ((b"strict-transport-security", b"max-age=31536000"),)
_GZIPPED = ((b"content-encoding", b"gzip"), (b"vary", b"Accept-Encoding"))

# gzip framing (16 +) with a 4 KiB window and a small memory level: zlib's defaults
# allocate ~256 KiB per stream, which costs ~100 µs per answer, ten times the work of
# compressing a balance answer; for our answers (JSON, mostly under 4 KiB) the output is
# the same size.
_GZIP_WBITS = 16 + 12
_MEM_LEVEL = 4
_GZIP_LEVEL = 6


# Answers that repeat byte for byte (refusals, /api/status, a balance polled while it does
# not change) are compressed once; 1,024 bodies of at most 4 KiB is at most ~8 MiB.
_REPEATED_MAX = 4096


@functools.lru_cache(maxsize=1024)
def _gzip_repeated(body: bytes) -> bytes:
    return _gzip(body)


def _gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS, _MEM_LEVEL)
    return compressor.compress(body) + compressor.flush()


def gzip_body(body: bytes) -> bytes:
    """gzip `body`. Answers of the API repeat (refusals, status, prices, a balance that did
    not change since the last poll): those are compressed once and remembered, so junk
    requests and idle polls cost no compression at all."""
    return _gzip_repeated(body) if len(body) <= _REPEATED_MAX else _gzip(body)


@functools.lru_cache(maxsize=64)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether `Accept-Encoding` admits gzip (`gzip;q=0` refuses it). Clients send a
    handful of distinct values: each is parsed once."""
    for part in accept_encoding.lower().split(","):
        coding, _, params = part.strip().partition(";")
        if coding.strip() in ("gzip", "x-gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


def security_headers(path: str) -> tuple[tuple[bytes, bytes], ...]:
    if path.startswith("/api/"):
        return _API_HEADERS
    return _DOCS_HEADERS if path in ("/docs", "/redoc") else _PAGE_HEADERS


class ResponseFinisher:
    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        trusted_proxies: tuple[Network, ...] = (),
        always_gzip_api: bool = False,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.trusted_proxies = trusted_proxies
        self.always_gzip_api = always_gzip_api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = security_headers(path)
        if is_https(scope, self.trusted_proxies):
            headers = (*headers, *_HSTS)
        gzip = accepts_gzip(_header(scope, b"accept-encoding")) or (
            self.always_gzip_api and path.startswith("/api/")
        )
        answer = _Answer(send, headers, gzip, self.metrics, scope["method"])
        try:
            await self.app(scope, receive, answer.send)
        except Exception:
            if answer.started:
                raise
            log.exception("unexpected error on %s %s", scope["method"], path)
            await send_envelope(answer.send, 500, "internal server error")


def finish_json(
    body: bytes, headers: list[tuple[bytes, bytes]], *, gzip: bool, https: bool
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body of a complete JSON answer from the API, finished as `_Answer`
    finishes any other: for handlers that answer in plain ASGI (`HotRoutes`)."""
    headers = [(b"content-type", b"application/json"), *headers, *_API_HEADERS]
    if https:
        headers += _HSTS
    if gzip:
        body = gzip_body(body)
        headers += _GZIPPED
    headers.append((b"content-length", b"%d" % len(body)))
    return headers, body


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return ""


class _Answer:
    """One answer on its way out: headers added, body gzipped, status counted."""

    __slots__ = ("chunks", "extra", "gzip", "method", "metrics", "raw_send", "start", "started")

    def __init__(
        self,
        send: Send,
        extra: tuple[tuple[bytes, bytes], ...],
        gzip: bool,
        metrics: Metrics,
        method: str,
    ) -> None:
        self.raw_send, self.extra, self.gzip = send, extra, gzip
        self.metrics, self.method = metrics, method
        self.start: Message | None = None
        self.chunks: list[bytes] = []
        self.started = False

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.metrics.count_response(self.method, message["status"])
            message["headers"] = [*message.get("headers", ()), *self.extra]
            if not self.gzip:
                await self.raw_send(message)
                return
            self.start = message  # held until the body is complete
            return
        if kind != "http.response.body" or self.start is None:
            await self.raw_send(message)
            return
        self.chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            await self._send_gzipped(b"".join(self.chunks))

    async def _send_gzipped(self, body: bytes) -> None:
        start = self.start
        assert start is not None
        headers: list[tuple[bytes, bytes]] = start["headers"]
        names = {name.lower() for name, _ in headers}
        if b"content-encoding" not in names and start["status"] not in (204, 304):
            body = gzip_body(body)
            headers = [(n, v) for n, v in headers if n.lower() != b"content-length"]
            headers += [(b"content-encoding", b"gzip"), (b"content-length", b"%d" % len(body))]
        if b"vary" in names:
            headers = [
                (n, v + b", Accept-Encoding" if n.lower() == b"vary" else v) for n, v in headers
            ]
        else:
            headers.append((b"vary", b"Accept-Encoding"))
        start["headers"] = headers
        await self.raw_send(start)
        await self.raw_send({"type": "http.response.body", "body": body})
