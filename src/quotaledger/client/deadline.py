"""One deadline for a whole request over httpx: connecting, sending, waiting and reading.

httpx's timeouts bound each network operation, not the request: a server sending one byte
every 2 s never trips a 10 s read timeout, and kept `quotaledger balance --timeout 10`
running past 90 s (encode/httpx#1450). aiohttp's `ClientTimeout(total=...)` is a deadline
already; this gives `BalanceClient` the same. `DeadlineBackend` is the network layer under
httpx (httpcore's): each read, write and connect may wait only what is left until the
deadline that `deadline()` set for the current request, then fails as httpx's own timeouts
do. The deadline lives in a context variable, so that one client may serve several threads.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from ssl import SSLContext
from typing import Any

import httpcore
import httpx

_END: ContextVar[float | None] = ContextVar("quotaledger_request_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Within this block, network I/O through a `DeadlineBackend` ends `seconds` from now."""
    token = _END.set(time.monotonic() + seconds)
    try:
        yield
    finally:
        _END.reset(token)


def check() -> None:
    """`httpx.ReadTimeout` if the deadline has passed (between chunks of a body, for an HTTP
    client without a `DeadlineBackend`: one a caller built)."""
    end = _END.get()
    if end is not None and time.monotonic() >= end:
        raise httpx.ReadTimeout("the request's deadline passed")


def _left(timeout: float | None, expired: type[Exception]) -> float | None:
    """`timeout`, shortened to what is left of the deadline; `expired` if nothing is."""
    end = _END.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every wait is bounded by the current request's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._stream.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own synchronous backend, with `DeadlineStream` connections."""

    def __init__(self) -> None:
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        stream = self._backend.connect_tcp(host, port, left, local_address, socket_options)
        return DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _left(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._backend.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


def keep_deadlines(client: httpx.Client) -> httpx.Client:
    """`client`, its connections (direct, and through the proxies httpx read from the
    environment) made by a `DeadlineBackend`.

    httpx has no public way to choose httpcore's network backend: it is an attribute of each
    transport's connection pool, read for every new connection. Should a future httpx move
    it, the client still works, and `check()` between a body's chunks still bounds a slow
    answer (to the deadline plus one read timeout)."""
    mounted = getattr(client, "_mounts", {})
    for transport in (getattr(client, "_transport", None), *mounted.values()):
        pool = getattr(transport, "_pool", None)
        if hasattr(pool, "_network_backend"):
            pool._network_backend = DeadlineBackend()  # type: ignore[union-attr]
    return client
