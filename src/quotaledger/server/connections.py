"""Limits on a request's head (request line and headers), which uvicorn does not set.

uvicorn's httptools protocol (the one `uvicorn[standard]` picks) reads a head of any size
(eight connections sending 64 MiB of unfinished headers took the server from 85 MB to
609 MB) and waits for the end of a head for ever (1,500 half-open connections were all
still held after 31 s: slowloris). The protocols here add both limits, as common proxies
set them:

- a head over `QUOTALEDGER_MAX_HEADER_BYTES` (16 KiB) is answered 431 and the connection
  closed, before more of it is read;
- a head not complete `QUOTALEDGER_HEADER_TIMEOUT` (10 s) after the connection opened, or
  after its first byte on a kept-alive connection, gets 408 and the connection is closed
  (silently if not one byte of it came).

The deadline costs a request one clock read: a sweep per server, every second or so, drops
the connections past it (one timer per request would cost more on the hot routes).
`quotaledger serve` names one of them to uvicorn as `http=...` (an import string);
without httptools, uvicorn's h11 protocol bounds the head itself
(`h11_max_incomplete_event_size`, answered 400) and gets the same deadline.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from quotaledger.server.responses import envelope
from quotaledger.settings import Settings

_SWEEPER = "_quotaledger_head_sweeper"


@functools.lru_cache(maxsize=1)
def limits() -> tuple[int, float]:
    """(max head bytes, head timeout in seconds), from the settings of this process (a
    uvicorn worker reads them from the environment, as it reads every other setting)."""
    settings = Settings.from_env()
    return settings.max_header_bytes, settings.header_timeout


def _refusal(status: int, phrase: str, message: str) -> bytes:
    body = envelope(message=message, status_code=status)
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class _HeadDeadline:
    """The deadline half, shared by both protocols. `head_started` is the loop time at which
    the head now awaited began (None when no head is awaited: a request is being served, or
    the connection idles between requests under uvicorn's own keep-alive timeout)."""

    head_started: float | None = None
    head_bytes = 0
    read_size = 0
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    server_state: Any
    cycle: Any

    def _start_head(self) -> None:
        if self.head_started is None:
            self.head_started = self.loop.time()
            self.head_bytes = 0

    def _end_head(self) -> None:
        self.head_started = None
        self.head_bytes = 0

    def _watch(self) -> None:
        """Start the server's sweep if it is not running."""
        if getattr(self.server_state, _SWEEPER, None) is None:
            timeout = limits()[1]
            handle = self.loop.call_later(
                min(1.0, timeout / 4), _sweep, self.server_state, self.loop, timeout
            )
            setattr(self.server_state, _SWEEPER, handle)

    def head_timed_out(self) -> None:
        if self.transport.is_closing() or self._serving():
            return  # a pipelined head waits for the answer in progress
        if self.head_bytes:
            self.transport.write(
                _refusal(408, "Request Timeout", "request head not received in time")
            )
        self.transport.close()

    def _refuse_head(self) -> None:
        if self.transport.is_closing():
            return  # the parser refused the request already
        if not self._serving():
            message = f"request head over {limits()[0]} bytes"
            self.transport.write(_refusal(431, "Request Header Fields Too Large", message))
        self.transport.close()
        self._end_head()

    def _serving(self) -> bool:
        return self.cycle is not None and not self.cycle.response_complete


def _sweep(server_state: Any, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
    """Drop the connections whose head is late; come back while there are connections."""
    now = loop.time()
    for connection in list(server_state.connections):
        started = getattr(connection, "head_started", None)
        if started is not None and now - started > timeout:
            connection.head_timed_out()
    if server_state.connections:
        handle = loop.call_later(min(1.0, timeout / 4), _sweep, server_state, loop, timeout)
        setattr(server_state, _SWEEPER, handle)
    else:
        setattr(server_state, _SWEEPER, None)


if importlib.util.find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(_HeadDeadline, HttpToolsProtocol):
        """httptools with a bounded head size and a head deadline.

        httptools gathers a header inside the parser until it is complete, so the reads
        that arrive while a head is awaited are counted whole: past the limit with the head
        still incomplete, it is refused at once. A read can also hold a body, or the end of
        the previous request, so the count is only a hint: a head that completes is measured
        exactly when the hint says it might be too large (the common request pays one
        comparison). A head that begins inside a read, after the previous request, is
        counted from the next read on (memory stays bounded by the limit plus one read)."""

        head_refused = False
        began_mid_read = False
        uncounted = 0  # bytes of the read in which the head began, not in `head_bytes`

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._start_head()
            self._watch()

        def data_received(self, data: bytes) -> None:
            self.read_size = len(data)
            self.began_mid_read = False
            if self.head_started is not None or self._between_requests():
                self.head_bytes += len(data)
            super().data_received(data)
            if self.head_started is not None and self.head_bytes > limits()[0]:
                self._refuse_head()

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def on_message_begin(self) -> None:
            counted = self.head_bytes
            self._start_head()
            self.head_bytes = counted  # this read was counted already, if it was
            self.uncounted = self.read_size if self.began_mid_read else 0
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            limit = limits()[0]
            if self.head_bytes + self.uncounted > limit and self._head_size() > limit:
                self.head_refused = True
                self._refuse_head()
                return
            self._end_head()
            super().on_headers_complete()

        def _head_size(self) -> int:
            return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

        def on_body(self, body: bytes) -> None:
            if not self.head_refused:
                super().on_body(body)

        def on_message_complete(self) -> None:
            if self.head_refused:
                return
            self.head_bytes = 0
            self.began_mid_read = True  # the rest of this read is the next request's
            super().on_message_complete()


class BoundedH11Protocol(_HeadDeadline, H11Protocol):
    """h11 with a head deadline, and a bound on a head that arrives whole in one read
    (h11's own bound, `h11_max_incomplete_event_size`, is on incomplete heads only)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head()
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_length(data) > limits()[0]:
            self._refuse_head()
            return
        super().data_received(data)
        if self.conn.their_state is h11.IDLE:  # h11 holds a head that is not complete yet
            self._start_head()
            self.head_bytes += len(data)
        else:
            self._end_head()

    def _head_length(self, data: bytes) -> int:
        pending = bytes(self.conn.trailing_data[0]) + data
        end = pending.find(b"\r\n\r\n")
        return len(pending) if end < 0 else end + 4
