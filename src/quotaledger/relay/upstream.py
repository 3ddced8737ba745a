"""Calls to upstream channels: one pooled aiohttp session per channel.

aiohttp rather than httpx: with many requests and streams in flight, httpx's async client
spends several times the CPU per request (its pool and anyio locks: encode/httpx#3215;
`benchmarks/relay_client.py` measures both on streams). A channel keeps its own session
(connection pool, TLS context) for the life of the server: a relay that reconnected per
request would add a TCP (and TLS) handshake to every model call.

What a caller gets back is an open 2xx `Reply` whose body it reads as it arrives, or an
`UpstreamFailure` raised before anything reached the client, which says whether another
channel may be tried (connect errors, timeouts, 429 and 5xx) and carries the upstream's own
status and body so that the last one can be passed through unmodified.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiohttp

log = logging.getLogger("quotaledger.relay")

# An upstream error body is read to pass it through; a hostile or broken upstream must not
# make us hold more than this of it.
MAX_ERROR_BODY = 64 * 1024
# Statuses after which another channel is tried (SPEC §8: 429 and 5xx before the first
# byte; 529 is Anthropic's "overloaded").
RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 521, 522, 524, 529})
# Hop-by-hop headers and what aiohttp sets itself: never copied to or from an upstream.
_NOT_FORWARDED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
    }
)


@dataclass(frozen=True)
class Target:
    """Where one attempt goes: a channel's API root and its own credential headers."""

    channel: str
    base_url: str  # the channel's API root, e.g. https://api.openai.com/v1 (`channels`)
    auth_headers: tuple[tuple[str, str], ...]


class UpstreamFailure(Exception):
    """An attempt failed before any byte reached the client."""

    def __init__(
        self,
        reason: str,
        *,
        status: int | None = None,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        retryable: bool = True,
        timed_out: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.body = body
        self.headers = headers
        self.retryable = retryable
        self.timed_out = timed_out


@dataclass(eq=False)  # hashed by identity: the idle watch keeps the open ones in a set
class Reply:
    """A 2xx answer whose head has arrived; the body is read with `chunks()` or `read()`."""

    status: int
    headers: tuple[tuple[str, str], ...]
    response: aiohttp.ClientResponse = field(repr=False)
    watch: _IdleWatch | None = field(default=None, repr=False)
    # Whole events the reader took from the body (`progressed`), what the idle watch last
    # saw of that count, and since when it is unchanged.
    events: int = field(default=0, repr=False)
    seen_events: int = field(default=0, repr=False)
    quiet_since: float = field(default=0.0, repr=False)

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives, each chunk everything buffered when it is read (a
        stream's events are not held back, and events that arrived together come out
        together). A silence longer than the idle timeout raises `asyncio.TimeoutError`.
        aiohttp's own iterator, not a generator around it: one hop less per chunk."""
        return self.response.content.iter_any()

    async def read(self, limit: int) -> bytes:
        """The whole body (non-streamed answers), refusing one over `limit` bytes."""
        body = bytearray()
        async for chunk in self.response.content.iter_chunked(65536):
            body += chunk
            if len(body) > limit:
                raise UpstreamFailure("upstream answer too large", retryable=False)
        return bytes(body)

    def progressed(self) -> None:
        """The reader took a whole event (or more) from the body: not idle. Bytes alone do
        not count, so an upstream trickling a byte a second still times out (SPEC §8: no
        *event* for the idle timeout)."""
        self.events += 1

    def close(self) -> None:
        """Drop the connection: the upstream sees the request cancelled."""
        self._unwatch()
        self.response.close()

    def release(self) -> None:
        """Give a fully read connection back to the pool."""
        self._unwatch()
        self.response.release()

    def _unwatch(self) -> None:
        if self.watch is not None:
            self.watch.replies.discard(self)
            self.watch = None


class _IdleWatch:
    """The idle timeout of every open reply, checked by one task every `tick` seconds
    rather than by aiohttp's `sock_read`, which cancels and re-arms a timer on every read:
    6 % of the relay's CPU with 1,000 streams open. A reply from which no whole event was
    taken (`Reply.progressed`) for `idle` seconds gets `asyncio.TimeoutError` (aiohttp's
    own `SocketTimeoutError`, as `sock_read` raised) in the read that waits on it; a whole
    answer (`read`) must arrive within `idle` of its head. The timeout fires between `idle`
    and `idle + tick` seconds without an event."""

    def __init__(self, idle: float) -> None:
        self.idle = idle
        self.tick = min(1.0, idle / 4)
        self.replies: set[Reply] = set()
        self.task: asyncio.Task[None] | None = None

    def add(self, reply: Reply) -> None:
        reply.watch = self
        reply.quiet_since = asyncio.get_running_loop().time()
        self.replies.add(reply)
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.replies:
            await asyncio.sleep(self.tick)
            now = loop.time()
            for reply in list(self.replies):
                content = reply.response.content
                if content.is_eof():
                    reply._unwatch()  # all arrived: nothing left to wait for
                elif reply.events != reply.seen_events:
                    reply.seen_events, reply.quiet_since = reply.events, now
                elif now - reply.quiet_since >= self.idle:
                    reply._unwatch()
                    content.set_exception(
                        aiohttp.SocketTimeoutError("Timeout on reading data from socket")
                    )

    async def close(self) -> None:
        self.replies.clear()
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


class Upstream:
    """The pooled sessions of every channel, and one attempt at a time on them."""

    def __init__(
        self,
        *,
        connect_timeout: float = 10.0,
        first_byte_timeout: float = 300.0,
        idle_timeout: float = 300.0,
        connections_per_channel: int = 1000,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.first_byte_timeout = first_byte_timeout
        self.idle_timeout = idle_timeout
        self.connections_per_channel = connections_per_channel
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self._idle = _IdleWatch(idle_timeout)

    def _session(self, target: Target) -> aiohttp.ClientSession:
        session = self._sessions.get(target.base_url)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections_per_channel, ttl_dns_cache=300, enable_cleanup_closed=True
            )
            session = aiohttp.ClientSession(
                connector=connector,
                # No total: a stream may last many minutes. No `sock_read` either: the head
                # is awaited under `first_byte_timeout`, the body under `_IdleWatch`.
                timeout=aiohttp.ClientTimeout(
                    total=None, sock_connect=self.connect_timeout, sock_read=None
                ),
                auto_decompress=True,
                # No cookies between users of one channel; no proxy variables read per call.
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[target.base_url] = session
        return session

    async def open(
        self,
        target: Target,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
    ) -> Reply:
        """POST `body` to `url` on `target`'s pool and wait for the answer's head (at most
        `first_byte_timeout`). A 2xx comes back as a `Reply`; anything else raises
        `UpstreamFailure` with the upstream's own status and (bounded) body. The URL comes
        from the channel's provider (`relay.providers`)."""
        return await self._request("POST", target, url, headers, body)

    async def get(self, target: Target, url: str, headers: Iterable[tuple[str, str]]) -> Reply:
        """A GET (listing models)."""
        return await self._request("GET", target, url, headers, None)

    async def _request(
        self,
        method: str,
        target: Target,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes | None,
    ) -> Reply:
        session = self._session(target)
        sent = [*forwardable(headers), *target.auth_headers]
        try:
            async with asyncio.timeout(self.first_byte_timeout):
                response = await session.request(method, url, data=body, headers=sent)
        except TimeoutError:
            raise UpstreamFailure("upstream timed out", timed_out=True) from None
        except aiohttp.ClientError as exc:
            raise UpstreamFailure(f"upstream unreachable ({type(exc).__name__})") from None
        if 200 <= response.status < 300:
            reply = Reply(response.status, _answer_headers(response), response)
            self._idle.add(reply)
            return reply
        try:
            async with asyncio.timeout(self.idle_timeout):  # an error body that stalls
                failure = await _failure(response)
        except TimeoutError:
            response.close()
            failure = _failed(response, b"")
        raise failure

    async def close(self) -> None:
        await self._idle.close()
        sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            await session.close()


def forwardable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers that may cross the relay (hop-by-hop ones and framing dropped)."""
    return [(k, v) for k, v in headers if k.lower() not in _NOT_FORWARDED]


def _answer_headers(response: aiohttp.ClientResponse) -> tuple[tuple[str, str], ...]:
    return tuple(forwardable(response.headers.items()))


async def _failure(response: aiohttp.ClientResponse) -> UpstreamFailure:
    try:
        body = await response.content.read(MAX_ERROR_BODY)
    except (aiohttp.ClientError, TimeoutError):
        body = b""
    finally:
        response.close()
    return _failed(response, body)


def _failed(response: aiohttp.ClientResponse, body: bytes) -> UpstreamFailure:
    return UpstreamFailure(
        f"upstream answered {response.status}",
        status=response.status,
        body=body,
        headers=_answer_headers(response),
        retryable=response.status in RETRYABLE_STATUSES,
    )
