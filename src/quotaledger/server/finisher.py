"""`Finish`: everything done to every answer, in one place, whoever made the answer.

- counts the answer for `/metrics`;
- adds the security headers (and HSTS when the client came over TLS);
- gzips the body whenever the client accepts gzip, whatever its size, and always for the
  API when `always_gzip` is set (what the reference page's provider does); streams never
  (each event must reach the client when it is made);
- writes refusals (in the envelope, or the route's own error format), each distinct one
  encoded, gzipped and given its headers once.

The front door makes one `Finish` per request: the endpoints it routes hand it an `Answer`
or a `Stream`, and framework routes send through `Finish.send` (one layer: each layer
wrapping `send` costs a few microseconds per message, a real share of a balance query).
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Callable

from starlette.types import Message, Receive, Send

from quotaledger.server.calls import Answer, Headers, Stream
from quotaledger.server.errors import Refusal
from quotaledger.server.metrics import Metrics

# Pages and the API serve only their own scripts and styles, and so does /docs (Swagger UI,
# served from this server: docs.py).
PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; "
    "object-src 'none'"
)
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'; object-src 'none'"
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
    if path.startswith(("/api/", "/v1/", "/v1beta/")):
        return _API_HEADERS
    return _DOCS_HEADERS if path in ("/docs", "/redoc") else _PAGE_HEADERS


def finish_json(
    body: bytes, headers: Headers | tuple[()], *, gzip: bool, https: bool
) -> tuple[Headers, bytes]:
    """The headers and body of a complete JSON answer."""
    finished = [(b"content-type", b"application/json"), *headers, *_API_HEADERS]
    if https:
        finished += _HSTS
    if gzip:
        body = gzip_body(body)
        finished += _GZIPPED
    finished.append((b"content-length", b"%d" % len(body)))
    return finished, body


WriteRefusal = Callable[[int, str], bytes]  # status, message -> the body, in a route's format


@functools.lru_cache(maxsize=256)
def _finished_refusal(
    status: int,
    message: str,
    said: tuple[tuple[str, str], ...],
    write: WriteRefusal,
    gzip: bool,
    https: bool,
) -> tuple[Headers, bytes]:
    # Refusals repeat word for word (junk tokens above all): each is finished once. (ASGI
    # servers copy the header list they are sent.)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in said]
    return finish_json(write(status, message), raw, gzip=gzip, https=https)


class Finish:
    """One request's answer on its way out."""

    __slots__ = (
        "chunks", "gzip", "https", "method", "metrics", "path", "raw_send", "start", "started"
    )  # fmt: skip

    def __init__(
        self, send: Send, method: str, path: str, gzip: bool, https: bool, metrics: Metrics
    ) -> None:
        self.raw_send, self.method, self.path = send, method, path
        self.gzip, self.https, self.metrics = gzip, https, metrics
        self.start: Message | None = None  # a framework answer's start, held for gzip
        self.chunks: list[bytes] = []
        self.started = False

    async def answer(self, answer: Answer) -> None:
        headers, body = finish_json(answer.body, answer.headers, gzip=self.gzip, https=self.https)
        await self._send(answer.status, headers, body)

    async def refuse(self, refusal: Refusal, write: WriteRefusal) -> None:
        status, message, said = refusal
        headers, body = _finished_refusal(status, message, said, write, self.gzip, self.https)
        await self._send(status, headers, body)

    async def stream(self, stream: Stream, receive: Receive) -> None:
        """Send `stream` as its chunks come. A client that leaves stops it: the chunks'
        generator is cancelled where it waits (the relay then cancels its upstream and
        settles), rather than running on for no one."""
        headers = [(b"content-type", stream.media_type), *stream.headers, *_API_HEADERS]
        if self.https:
            headers += _HSTS
        self.started = True
        self.metrics.count_response(self.method, stream.status)
        send = self.raw_send
        await send({"type": "http.response.start", "status": stream.status, "headers": headers})
        pump = asyncio.ensure_future(_pump(stream, send))
        gone = asyncio.ensure_future(disconnected(receive))
        try:
            await asyncio.wait((pump, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, gone):
                task.cancel()
            await asyncio.gather(pump, gone, return_exceptions=True)
        failed = pump.exception() if pump.done() and not pump.cancelled() else None
        if failed is not None:
            raise failed

    async def _send(self, status: int, headers: Headers, body: bytes) -> None:
        self.started = True
        self.metrics.count_response(self.method, status)
        await self.raw_send({"type": "http.response.start", "status": status, "headers": headers})
        await self.raw_send({"type": "http.response.body", "body": body})

    async def send(self, message: Message) -> None:
        """`send` for the answers the framework makes: the same headers, gzip and count."""
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            self.metrics.count_response(self.method, message["status"])
            extra = security_headers(self.path)
            if self.https:
                extra = (*extra, *_HSTS)
            message["headers"] = [*message.get("headers", ()), *extra]
            if not self.gzip or _streamed(message):
                await self.raw_send(message)
                return
            self.start = message  # held until the body is complete
            return
        if kind == "http.response.pathsend" and self.start is not None:
            # A file the engine sends itself (Granian's pathsend extension, which Starlette's
            # FileResponse uses): its held start goes out as it is, ungzipped.
            start, self.start = self.start, None
            await self.raw_send(start)
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


def _streamed(start: Message) -> bool:
    """A framework answer without a length (a `StreamingResponse`, such as the CSV export)
    goes out as it is made: holding it to gzip it whole would keep it all in memory."""
    return all(name.lower() != b"content-length" for name, _ in start.get("headers", ()))


async def _pump(stream: Stream, send: Send) -> None:
    chunks = stream.chunks
    try:
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()


async def disconnected(receive: Receive) -> None:
    """Returns when the client has gone (the body was read before: only the disconnect is
    left to receive)."""
    while (await receive())["type"] != "http.disconnect":
        pass
