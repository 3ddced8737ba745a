"""Which HTTP client the relay should call upstreams with: aiohttp (one ClientSession per
channel) or httpx.AsyncClient, measured as the client process's CPU time (not wall time:
the fake upstream, in its own process on the other core, sets the pace).

Against examples/fake_upstream.py: non-stream chat completions (REQUESTS at concurrency
CONCURRENCY), and streamed ones (CONCURRENCY streams at once, each EVENTS SSE events, read
chunk by chunk and fed to the relay's SSE parser, as the relay will). Rounds alternate between
the clients; medians of ROUNDS. On uvloop, as `quotaledger serve` runs.

    .venv/bin/python benchmarks/relay_client.py
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from fixtures import CLIENT_CORE, PYTHON, ROOT, SERVER_CORE, free_port, pinned

from quotaledger.wire.sse import SSEParser

REQUESTS, CONCURRENCY, EVENTS, ROUNDS = 2000, 200, 50, 5
BODY = {"model": "fake-gpt", "messages": [{"role": "user", "content": "Hi"}]}
# EVENTS events: role chunk, EVENTS - 4 words, finish chunk, usage chunk, [DONE].
STREAM_HEADERS = {"X-Fake-Scenario": json.dumps({"text": "word " * (EVENTS - 4)})}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}

Ask = Callable[[], Awaitable[int]]  # one request; returns the events it read (0: non-stream)


def aiohttp_client(url: str) -> tuple[Callable[[], Awaitable[None]], Ask, Ask]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def plain() -> int:
        async with session.post(url, json=BODY) as response:
            await response.read()
        return 0

    async def stream() -> int:
        parser, events = SSEParser(), 0
        async with session.post(url, json=STREAM_BODY, headers=STREAM_HEADERS) as response:
            async for chunk in response.content.iter_any():
                events += len(parser.feed(chunk))
        return events

    return session.close, plain, stream


def httpx_client(url: str) -> tuple[Callable[[], Awaitable[None]], Ask, Ask]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=CONCURRENCY * 2)
    client = httpx.AsyncClient(limits=limits, timeout=60)

    async def plain() -> int:
        (await client.post(url, json=BODY)).read()
        return 0

    async def stream() -> int:
        parser, events = SSEParser(), 0
        async with client.stream("POST", url, json=STREAM_BODY, headers=STREAM_HEADERS) as response:
            async for chunk in response.aiter_raw():
                events += len(parser.feed(chunk))
        return events

    return client.aclose, plain, stream


async def _cpu_of(ask: Ask, total: int) -> tuple[float, int]:
    """Client CPU seconds for `total` calls of `ask`, CONCURRENCY at a time; events read."""
    pending = iter(range(total))
    events = 0

    async def worker() -> None:
        nonlocal events
        for _ in pending:
            read = await ask()  # (not `events += await ask()`: that reads `events` first)
            events += read

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.process_time() - started, events


async def measure(
    build: Callable[[str], tuple[Callable[[], Awaitable[None]], Ask, Ask]], url: str
) -> dict[str, float]:
    close, plain, stream = build(url)
    try:
        await _cpu_of(plain, CONCURRENCY)  # warm: connections open, code paths loaded
        plain_cpu, _ = await _cpu_of(plain, REQUESTS)
        stream_cpu, events = await _cpu_of(stream, CONCURRENCY)
    finally:
        await close()
    assert events == CONCURRENCY * EVENTS, events
    return {
        "request": plain_cpu / REQUESTS * 1e6,
        "stream": stream_cpu / CONCURRENCY * 1e6,
        "event": stream_cpu / events * 1e6,
    }


def start_upstream() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = pinned(
        SERVER_CORE, [PYTHON, str(ROOT / "examples" / "fake_upstream.py"), "--port", str(port)]
    )
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            httpx.get(base + "/v1/models")
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return process, base + "/v1/chat/completions"


def main() -> None:
    import uvloop

    process, url = start_upstream()
    try:
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {int(CLIENT_CORE)})
        runs: dict[str, list[dict[str, float]]] = {
            "aiohttp.ClientSession": [],
            "httpx.AsyncClient": [],
        }
        for _ in range(ROUNDS):
            runs["aiohttp.ClientSession"].append(uvloop.run(measure(aiohttp_client, url)))
            runs["httpx.AsyncClient"].append(uvloop.run(measure(httpx_client, url)))
    finally:
        process.terminate()
        process.wait(10)
    medians = {
        name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()
    }
    base = medians["aiohttp.ClientSession"]
    print(
        f"Client CPU, median of {ROUNDS} alternating rounds: {REQUESTS} non-stream requests and "
        f"{CONCURRENCY} streams of {EVENTS} events, {CONCURRENCY} at a time, SSE parsed"
    )
    header = f"  {'client':24} {'µs/request':>11} {'µs/stream':>10} {'µs/event':>9}"
    print(header + "  ratio (request, event)")
    for name, m in medians.items():
        ratios = f"{m['request'] / base['request']:.2f}x, {m['event'] / base['event']:.2f}x"
        print(f"  {name:24} {m['request']:11.0f} {m['stream']:10.0f} {m['event']:9.1f}  {ratios}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
