"""An answer's body, read within a cap on its decompressed size.

A balance answer is a few KB. A hostile or broken server can send one that never ends, or a
"gzip bomb" (2 MB that inflates to 2 GB): read whole, either took `quotaledger balance` to
gigabytes of memory. `BodyReader` is fed the body as it arrives and stops, with a
`ProviderError`, as soon as the decompressed bytes pass `limit`; it never holds more than
`limit` bytes plus one network chunk. It undoes `Content-Encoding` itself (httpx's decoders
inflate a whole network chunk at once, up to ~64 MB from 64 KiB), and also gzip sent without
saying so, as some one-api relays do.
"""

from __future__ import annotations

import zlib
from urllib.parse import urlsplit

from quotaledger.client.errors import ProviderError

MAX_BODY_BYTES = 1 << 20
"""1 MiB: a few hundred times the largest balance answer seen (new-api's, with its
`ModelFixedPrice` table)."""

GZIP_MAGIC = b"\x1f\x8b"
_GZIP, _ZLIB, _RAW_DEFLATE = 16 + zlib.MAX_WBITS, zlib.MAX_WBITS, -zlib.MAX_WBITS


class BodyReader:
    """Collects one body's bytes, decompressed, up to `limit`; then `finish()` gives them."""

    def __init__(self, content_encoding: str, url: str, limit: int = MAX_BODY_BYTES) -> None:
        self._url, self._limit = url, limit
        self._parts: list[bytes] = []
        self._size = 0
        self._inflater = _inflater(content_encoding, url)
        self._deflate = content_encoding.strip().lower() == "deflate"

    def feed(self, chunk: bytes) -> None:
        """Add the next chunk as it came off the wire; `ProviderError` once past the cap."""
        if self._inflater is None:
            self._keep(chunk)
            return
        try:
            self._keep(self._inflater.decompress(chunk, self._room()))
        except zlib.error as exc:
            if not self._deflate or self._size:
                raise self._garbled(exc) from None
            # "deflate" is raw deflate on some servers, zlib-wrapped on others (as httpx does).
            self._inflater, self._deflate = zlib.decompressobj(_RAW_DEFLATE), False
            self.feed(chunk)

    def finish(self) -> bytes:
        """The whole body, decompressed (also gzip that came without `Content-Encoding`)."""
        if self._inflater is not None:
            try:
                self._keep(self._inflater.flush())
            except zlib.error as exc:
                raise self._garbled(exc) from None
        body = b"".join(self._parts)
        if body[:2] == GZIP_MAGIC and self._inflater is None:
            return _gunzip_unlabelled(body, self._url, self._limit)
        return body

    def _room(self) -> int:
        # One byte more than allowed: getting it proves the body is too large, without
        # inflating the rest (what remains waits in the inflater's unconsumed tail).
        return self._limit - self._size + 1

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > self._limit:
            raise too_large(self._url, self._limit)
        if data:
            self._parts.append(data)

    def _garbled(self, exc: zlib.error) -> ProviderError:
        host = urlsplit(self._url).netloc
        return ProviderError(f"{host} sent a garbled compressed body ({self._url}): {exc}")


def too_large(url: str, limit: int) -> ProviderError:
    host = urlsplit(url).netloc
    return ProviderError(
        f"{host} sent an answer larger than {_size(limit)} ({url}), decompressed; a balance is "
        "a few KB. Stopped reading: is the base URL right?"
    )


def _inflater(content_encoding: str, url: str) -> zlib._Decompress | None:
    encodings = [e.strip().lower() for e in content_encoding.split(",") if e.strip()]
    encodings = [e for e in encodings if e != "identity"]
    if not encodings:
        return None
    if encodings in (["gzip"], ["x-gzip"]):
        return zlib.decompressobj(_GZIP)
    if encodings == ["deflate"]:
        return zlib.decompressobj(_ZLIB)
    host = urlsplit(url).netloc
    raise ProviderError(
        f"{host} answered in a compression we did not ask for ({url}): "
        f"Content-Encoding {content_encoding[:40]!r}"
    )


def _gunzip_unlabelled(body: bytes, url: str, limit: int) -> bytes:
    inflater = zlib.decompressobj(_GZIP)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error:
        return body  # not gzip after all: the caller says what it is
    if len(inflated) > limit:
        raise too_large(url, limit)
    return inflated if inflater.eof else body  # cut short: not a body we can use either way


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit % (1 << 20) == 0 else f"{limit:,} bytes"
