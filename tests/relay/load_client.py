"""An asyncio client for the relay's load and fault tests: many chat completions at once,
streamed or not, optionally leaving a stream after a few events, each answer reduced to
what the assertions need (status, the relay's request id, events read, how it ended)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from relay_live import MESSAGES, MODEL


@dataclass(frozen=True)
class Ask:
    """One request: where, with which key, streamed or not, and how the client behaves."""

    base_url: str  # an instance's root, e.g. http://127.0.0.1:8000
    key: str
    stream: bool = False
    leave_after: int | None = None  # events read before the client hangs up (streams)
    leave_after_s: float | None = None  # or seconds after the answer's head, then hangs up
    max_tokens: int | None = 64


@dataclass(frozen=True)
class Answer:
    status: int  # 0: the client left, or the connection failed before a status
    request_id: str | None
    events: int
    left: bool  # the client hung up on purpose
    error: str | None = None


def _body(ask: Ask) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES}
    if ask.max_tokens is not None:
        body["max_tokens"] = ask.max_tokens
    if ask.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


async def one(session: aiohttp.ClientSession, ask: Ask) -> Answer:
    headers = {"Authorization": f"Bearer {ask.key}"}
    url = ask.base_url + "/v1/chat/completions"
    try:
        async with session.post(url, json=_body(ask), headers=headers) as response:
            request_id = response.headers.get("x-request-id")
            # Counted from the head, not from the request: on a loaded machine the relay may
            # take longer than `leave_after_s` to answer, and a client that left before the
            # head left a request that was perhaps never reserved, whatever the test meant.
            try:
                async with asyncio.timeout(ask.leave_after_s):
                    return await _read(response, ask, request_id)
            except TimeoutError:
                response.close()  # hang up
                return Answer(response.status, request_id, 0, left=True)
    except aiohttp.ClientError as exc:
        return Answer(0, None, 0, left=False, error=type(exc).__name__)


async def _read(response: aiohttp.ClientResponse, ask: Ask, request_id: str | None) -> Answer:
    events = 0
    if ask.stream and response.status == 200:
        async for line in response.content:
            if line.startswith(b"data:"):
                events += 1
                if ask.leave_after is not None and events >= ask.leave_after:
                    response.close()  # hang up mid-stream
                    return Answer(200, request_id, events, left=True)
    else:
        await response.read()
    return Answer(response.status, request_id, events, left=False)


async def run_all(asks: Sequence[Ask], concurrency: int) -> list[Answer]:
    """Every ask, `concurrency` at a time, in the given order; answers in the same order."""
    answers: list[Answer | None] = [None] * len(asks)
    pending = iter(enumerate(asks))
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=120)
    ) as session:

        async def worker() -> None:
            for index, ask in pending:
                answers[index] = await one(session, ask)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return [a for a in answers if a is not None]


def mixed(
    base_urls: Sequence[str], key: str, count: int, *, leave_share: float, seed: int = 15
) -> list[Ask]:
    """`count` asks spread over the instances in turn, half of them streamed; `leave_share`
    of the streams hang up after their second event."""
    rng = random.Random(seed)
    asks = []
    for index in range(count):
        stream = rng.random() < 0.5
        leave = 2 if stream and rng.random() < leave_share else None
        asks.append(Ask(base_urls[index % len(base_urls)], key, stream, leave))
    return asks
