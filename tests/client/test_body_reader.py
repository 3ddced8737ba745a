"""`BodyReader`: a body decompressed as it arrives, and refused one byte past the cap."""

from __future__ import annotations

import gzip
import zlib

import pytest

from quotaledger.client import ProviderError
from quotaledger.client.body import BodyReader

URL = "http://relay.example/api/user/self"
TEXT = b'{"success": true, "data": {"quota": 1}}' * 50


def read(encoding: str, data: bytes, limit: int = 1 << 20, chunk: int = 7) -> bytes:
    body = BodyReader(encoding, URL, limit)
    for start in range(0, len(data), chunk):
        body.feed(data[start : start + chunk])
    return body.finish()


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("encoding", "data"),
    [
        ("", TEXT),
        ("identity", TEXT),
        ("gzip", gzip.compress(TEXT, mtime=0)),
        ("x-gzip", gzip.compress(TEXT, mtime=0)),
        ("GZIP, identity", gzip.compress(TEXT, mtime=0)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", raw_deflate(TEXT)),  # as some servers send "deflate"
        ("", gzip.compress(TEXT, mtime=0)),  # gzip without saying so, as some relays do
    ],
)
def test_every_encoding_we_ask_for_is_undone(encoding: str, data: bytes) -> None:
    assert read(encoding, data) == TEXT


@pytest.mark.parametrize("encoding", ["", "gzip"])
def test_a_body_of_exactly_the_cap_passes_and_one_byte_more_is_refused(encoding: str) -> None:
    def encoded(data: bytes) -> bytes:
        return gzip.compress(data) if encoding else data

    assert read(encoding, encoded(b"x" * 1000), limit=1000) == b"x" * 1000
    with pytest.raises(ProviderError, match="larger than 1,000 bytes"):
        read(encoding, encoded(b"x" * 1001), limit=1000)


def test_an_unlabelled_gzip_bomb_is_refused_too() -> None:
    with pytest.raises(ProviderError, match="larger than 1,000 bytes"):
        read("", gzip.compress(b" " * 100_000), limit=1000)


def test_an_encoding_we_did_not_ask_for_is_refused() -> None:
    with pytest.raises(ProviderError, match="compression we did not ask for"):
        read("br", b"\x0b\x02\x80hello\x03")


def test_a_garbled_gzip_body_is_an_unusable_answer() -> None:
    with pytest.raises(ProviderError, match="garbled compressed body"):
        read("gzip", b"\x1f\x8bnot really gzip at all")
