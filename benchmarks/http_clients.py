"""Why the watcher's client runs on aiohttp: 1,000 balance queries (1,000 accounts' tokens in
turn) at concurrency 4 against `quotaledger serve`, by wrk, by a bare `httpx.AsyncClient`,
by a bare `aiohttp.ClientSession`, and by `AsyncBalanceClient`s sharing one session (what
the watcher does, with the provider's parsing and the scrubbing of the payload). Median of
5 rounds each, interleaved; the client on core 1, the server on core 0.

    .venv/bin/python benchmarks/http_clients.py
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from fixtures import CLIENT_CORE, load_users, start_quotaledger
from loadgen import run_wrk

ACCOUNTS, CONCURRENCY, ROUNDS = 1000, 4, 5


async def _in_turn(tokens: list[str], ask: Callable[[str], Awaitable[None]]) -> float:
    """Seconds for one query per token, `CONCURRENCY` at a time."""
    pending = iter(tokens)

    async def worker() -> None:
        for token in pending:
            await ask(token)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return time.perf_counter() - started


async def bare_httpx(url: str, tokens: list[str]) -> float:
    import httpx

    async with httpx.AsyncClient() as http:

        async def ask(token: str) -> None:
            (await http.get(url + "/api/user/self", headers={"Authorization": token})).json()

        return await _in_turn(tokens, ask)


async def bare_aiohttp(url: str, tokens: list[str]) -> float:
    import aiohttp

    async with aiohttp.ClientSession() as http:

        async def ask(token: str) -> None:
            async with http.get(url + "/api/user/self", headers={"Authorization": token}) as r:
                await r.json()

        return await _in_turn(tokens, ask)


async def balance_clients(url: str, tokens: list[str]) -> float:
    from quotaledger.client import AsyncBalanceClient
    from quotaledger.client.async_client import http_session
    from quotaledger.client.shared import SharedReplies

    shared = SharedReplies()
    async with http_session(CONCURRENCY * 2) as http:
        clients = {
            token: AsyncBalanceClient(url, token, http_client=http, shared_replies=shared)
            for token in tokens
        }

        async def ask(token: str) -> None:
            await clients[token].balance()

        return await _in_turn(tokens, ask)


def main() -> None:
    import uvloop  # the loop `quotaledger watch` runs on

    with tempfile.TemporaryDirectory() as work:
        workdir = Path(work)
        database = load_users(workdir / "clients.db", ACCOUNTS, probes=ACCOUNTS)
        tokens = list(database.probe_tokens.values())
        (workdir / "tokens.txt").write_text("\n".join(tokens) + "\n")
        server = start_quotaledger("clients", database.url, workdir)
        try:
            if (os.cpu_count() or 1) > 1:
                os.sched_setaffinity(0, {int(CLIENT_CORE)})  # the server is on the other core
            times: dict[str, list[float]] = {}
            for _ in range(ROUNDS):
                wrk = run_wrk(
                    server.base_url + "/api/user/self",
                    "rotate.lua",
                    duration=2,
                    connections=CONCURRENCY,
                    env={"QLB_TOKENS_FILE": str(workdir / "tokens.txt")},
                )
                reference = ACCOUNTS / wrk.requests_per_s
                times.setdefault("wrk (1,000 / its req/s)", []).append(reference)
                for name, run in (
                    ("bare httpx.AsyncClient", bare_httpx),
                    ("bare aiohttp.ClientSession", bare_aiohttp),
                    ("AsyncBalanceClient x 1,000", balance_clients),
                ):
                    times.setdefault(name, []).append(uvloop.run(run(server.base_url, tokens)))
        finally:
            server.stop()
    wrk_median = statistics.median(times["wrk (1,000 / its req/s)"])
    print(f"1,000 balance queries at concurrency {CONCURRENCY}, median of {ROUNDS}:")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"  {name:28} {median * 1000:7.1f} ms  {median / wrk_median:5.2f}x wrk")


if __name__ == "__main__":
    main()
