"""Server-sent events, parsed incrementally from the bytes an upstream sends.

The relay passes events through unchanged, so each `SSEEvent` keeps the exact bytes it was
read from (`raw`, up to and including the blank line that ends it) besides its parsed fields.
Parsing follows the WHATWG rules: lines end in `\\r\\n`, `\\n` or `\\r` (a `\\r` at the end of
a chunk waits for the next one, which may start with its `\\n`); `data` lines join with
`\\n`; one space after the colon is dropped; lines starting with `:` are comments. A block of
comments only (a keep-alive such as `: ping`) is returned too, with `has_data` false, so that
the relay can forward keep-alives; an event with no data is not one per the spec, and
consumers skip it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

_LINE_END = re.compile(rb"\r\n|\r|\n")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 µs more per event
class SSEEvent:
    event: str | None  # the `event:` field; None means the default type, "message"
    data: str  # the `data:` lines joined by "\n"
    has_data: bool  # at least one `data:` line (a `data:` with nothing after counts)
    raw: bytes  # the bytes of the whole block, as received
    id: str | None = None
    retry: int | None = None

    def json(self) -> Any:
        """The data parsed as JSON (raises `orjson.JSONDecodeError`, a ValueError)."""
        return orjson.loads(self.data)


class SSEParser:
    """Feed it the chunks of a stream; it returns the events each chunk completed."""

    __slots__ = ("_buffer", "_data", "_event", "_id", "_retry", "_scan", "_started")

    def __init__(self) -> None:
        self._buffer = b""  # the bytes of the unfinished event
        self._scan = 0  # where its lines not parsed yet start, in _buffer
        self._started = False  # a UTF-8 byte-order mark is dropped once, at the start
        self._reset_fields()

    def _reset_fields(self) -> None:
        self._event: str | None = None
        self._data: list[str] | None = None
        self._id: str | None = None
        self._retry: int | None = None

    @property
    def pending(self) -> bytes:
        """Bytes of an event not finished yet (what a stream cut short leaves behind)."""
        return self._buffer

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started and buffer:
            self._started = True
            buffer = buffer.removeprefix(b"\xef\xbb\xbf")
        if self._scan == 0 and b"\r" not in buffer:
            return self._feed_newlines(buffer)
        events: list[SSEEvent] = []
        block_start, position, end = 0, self._scan, len(buffer)
        while True:
            match = _LINE_END.search(buffer, position)
            if match is None or (match.end() == end and match.group() == b"\r"):
                break  # no whole line left (a final "\r" may have its "\n" in the next chunk)
            line = buffer[position : match.start()]
            position = match.end()
            if line:
                self._field(line.decode("utf-8", "replace"))
                continue
            event = self._dispatch(buffer[block_start:position])
            block_start = position
            if event is not None:
                events.append(event)
        self._buffer = buffer[block_start:]
        self._scan = position - block_start
        return events

    def _feed_newlines(self, buffer: bytes) -> list[SSEEvent]:
        """The common case, lines ending in "\\n" only: whole blocks at once (2x faster)."""
        events: list[SSEEvent] = []
        start = 0
        while (end := buffer.find(b"\n\n", start)) >= 0:
            end += 2
            raw = buffer[start:end]
            start = end
            # One `data: ` line, maybe after one `event: ` line: the shape of nearly every
            # event of every provider, whose fields are known without parsing them (the
            # fields are clean here: every block before this one was dispatched).
            last = len(raw) - 2  # where the block's last line ends
            if raw.startswith(b"data: ") and raw.find(b"\n") == last:
                events.append(SSEEvent(None, raw[6:-2].decode("utf-8", "replace"), True, raw))
                continue
            if raw.startswith(b"event: "):
                line_end = raw.find(b"\n")
                if (
                    raw.startswith(b"data: ", line_end + 1)
                    and raw.find(b"\n", line_end + 1) == last
                ):
                    kind = raw[7:line_end].decode("utf-8", "replace")
                    data = raw[line_end + 7 : -2].decode("utf-8", "replace")
                    events.append(SSEEvent(kind, data, True, raw))
                    continue
            for line in raw.decode("utf-8", "replace").split("\n"):
                if line:
                    self._field(line)
            event = self._dispatch(raw)
            if event is not None:
                events.append(event)
        self._buffer = buffer[start:]
        return events

    def _field(self, text: str) -> None:
        if text[0] == ":":
            return
        name, _, value = text.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if name == "data":
            if self._data is None:
                self._data = [value]
            else:
                self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isdecimal():
            self._retry = int(value)

    def _dispatch(self, raw: bytes) -> SSEEvent | None:
        if raw.strip(b"\r\n") == b"":
            self._reset_fields()
            return None  # a stray blank line: nothing to pass on
        data = self._data
        event = SSEEvent(
            event=self._event,
            data="\n".join(data) if data is not None else "",
            has_data=data is not None,
            raw=raw,
            id=self._id,
            retry=self._retry,
        )
        self._reset_fields()
        return event
