"""The body guard: a request body is read whole by the front door before any endpoint sees it
(ours are small JSON), so that an oversized one gets 413 whether it came with a
Content-Length or chunked, a body sent to the API that is not JSON gets 415, and a body
that does not arrive whole within `QUOTALEDGER_BODY_TIMEOUT` of its head gets 408 (a client
sending a byte at a time holds a request that long at most); every body is then checked for
what no endpoint takes (`plain_text.check_body`: too deep, not UTF-8, control characters);
then `parse_json` reads it into its model, or 422."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.types import Message, Receive

from quotaledger.server.calls import Head
from quotaledger.server.errors import HTTPError, describe_validation_errors
from quotaledger.server.plain_text import check_body

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


async def read_body(
    method: str, path: str, head: Head, receive: Receive, max_bytes: int, within: float
) -> bytes:
    """The whole request body (empty for a method that takes none), or `HTTPError`
    413/415, 408 when it is not all there `within` seconds (and `plain_text.check_body`'s
    400/422)."""
    if method not in BODY_METHODS:
        return b""
    length = head.content_length
    if length is not None and (not length.isdecimal() or int(length) > max_bytes):
        raise _too_large(max_bytes)
    has_body = length not in (None, "0") or head.chunked
    media_type = (head.content_type or "").split(";")[0].strip().lower()
    if has_body and path.startswith("/api/") and media_type != "application/json":
        raise HTTPError(415, "send the body as application/json")
    try:
        async with asyncio.timeout(within):
            body = await _read(receive, max_bytes)
    except TimeoutError:
        raise HTTPError(408, "request body not received in time") from None
    if body:
        check_body(path, body)
    return body


async def _read(receive: Receive, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:  # chunked, or longer than it said
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _too_large(max_bytes: int) -> HTTPError:
    return HTTPError(413, f"request body over {max_bytes} bytes")


def replay(body: bytes, receive: Receive) -> Receive:
    """`receive` for the framework, which reads the body again: the body already read."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()  # after the body: wait for the disconnect
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


Model = TypeVar("Model", bound=BaseModel)


def parse_json(model: type[Model], body: bytes) -> Model:
    """`body` as `model`, or 422 naming each field (bytes that are not UTF-8 or JSON
    included: pydantic's parser reads them, and bounds how deep the JSON may nest)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise HTTPError(422, describe_validation_errors(exc.errors())) from None
