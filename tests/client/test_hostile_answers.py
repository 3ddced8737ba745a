"""Hostile servers: answers that never end, gzip bombs, answers one byte at a time. Both
clients stop reading past 1 MiB decompressed, and keep `timeout` as a deadline for the whole
request; the CLI says so with its documented exit codes, in bounded memory."""

from __future__ import annotations

import os
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from client_payloads import TOKEN

from hostile_server import (
    Answer,
    HostileServer,
    bomb,
    drip,
    endless,
    endless_redirect,
    run_measured,
)
from quotaledger.cli.exits import Exit
from quotaledger.client import AsyncBalanceClient, BalanceClient, NetworkError, ProviderError
from quotaledger.client.sync_client import http_client_with_deadlines

MEMORY_BOUND_MIB = 200
"""Peak resident memory allowed to the CLI (it needs ~50 MB; the bomb inflates to ~2 GB)."""
TRACED_BOUND = 16 << 20
"""Python allocations allowed to a client reading a hostile answer in this process."""


@pytest.fixture
def hostile() -> Iterator[Any]:
    servers: list[HostileServer] = []

    def start(answer: Answer) -> HostileServer:
        servers.append(HostileServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def cli(*args: str) -> Any:
    env = {**os.environ, "QUOTALEDGER_TOKEN": TOKEN}
    return run_measured(args, env)


@pytest.mark.slow
@pytest.mark.parametrize(
    "answer", [bomb(), bomb(labelled=False), endless], ids=["bomb", "unlabelled-bomb", "endless"]
)
def test_balance_stops_reading_a_huge_answer_exits_7_in_bounded_memory(
    hostile: Any, answer: Answer
) -> None:
    server = hostile(answer)
    result = cli("balance", "--base-url", server.url, "--retries", "0")
    assert result.returncode == Exit.UNEXPECTED, result.stderr
    assert "larger than 1 MiB" in result.stderr
    assert result.peak_rss_mib < MEMORY_BOUND_MIB, result.peak_rss_mib


@pytest.mark.slow
@pytest.mark.parametrize("answer", [bomb(), endless], ids=["bomb", "endless"])
def test_check_says_unknown_for_a_huge_answer_in_bounded_memory(
    hostile: Any, answer: Answer
) -> None:
    server = hostile(answer)
    result = cli("check", "--base-url", server.url, "--warn-usd", "5", "--critical-usd", "1")
    assert result.returncode == 3, result.stdout
    assert result.stdout.startswith("BALANCE UNKNOWN - 127.0.0.1")
    assert "larger than 1 MiB" in result.stdout
    assert result.peak_rss_mib < MEMORY_BOUND_MIB, result.peak_rss_mib


@pytest.mark.slow
@pytest.mark.parametrize("command", ["balance", "check"])
def test_timeout_is_a_deadline_for_an_answer_sent_a_byte_every_2_s(
    hostile: Any, command: str
) -> None:
    server = hostile(drip(2.0))
    thresholds = ["--warn-usd", "5", "--critical-usd", "1"] if command == "check" else []
    result = cli(command, "--base-url", server.url, "--timeout", "3", "--retries", "0", *thresholds)
    assert result.returncode == (Exit.NETWORK if command == "balance" else 3)
    assert "did not answer within 3 s" in result.stdout + result.stderr
    # A byte every 2 s never trips a per-read timeout of 3 s: without a deadline the answer
    # (1 MiB) would take weeks. The bound is loose so that a loaded machine's slow Python
    # start cannot fail it; what it catches is a client that kept reading.
    assert result.seconds < 60


@pytest.mark.parametrize("head_too", [False, True], ids=["body", "status-line"])
@pytest.mark.parametrize("make", [BalanceClient, AsyncBalanceClient])
async def test_both_clients_keep_the_timeout_as_a_deadline(
    hostile: Any, make: Any, head_too: bool
) -> None:
    server = hostile(drip(0.2, head_too=head_too))
    client = make(server.url, TOKEN, timeout=1.0, retries=0)
    started = time.monotonic()
    with pytest.raises(NetworkError, match="did not answer within 1 s"):
        await _balance(client)
    assert time.monotonic() - started < 2.5  # each read alone is within the timeout


@pytest.mark.parametrize(
    "answer", [bomb(), bomb(labelled=False), endless], ids=["bomb", "unlabelled-bomb", "endless"]
)
@pytest.mark.parametrize("make", [BalanceClient, AsyncBalanceClient])
async def test_both_clients_stop_at_1_mib_in_bounded_memory(
    hostile: Any, make: Any, answer: Answer
) -> None:
    server = hostile(answer)
    client = make(server.url, TOKEN, retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError, match="larger than 1 MiB"):
            await _balance(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < TRACED_BOUND, peak


async def _balance(client: Any) -> Any:
    if isinstance(client, BalanceClient):
        with client:
            return client.balance()
    async with client:
        return await client.balance()


@pytest.mark.parametrize("make", [BalanceClient, AsyncBalanceClient])
async def test_a_redirect_whose_body_never_ends_is_not_read(hostile: Any, make: Any) -> None:
    server = hostile(endless_redirect)
    client = make(server.url, TOKEN, retries=0)
    tracemalloc.start()
    try:
        with pytest.raises(ProviderError, match="cannot follow"):
            await _balance(client)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < TRACED_BOUND, peak


def test_a_shared_http_client_keeps_each_clients_deadline(hostile: Any) -> None:
    server = hostile(drip(0.2, head_too=True))
    with http_client_with_deadlines() as http:
        client = BalanceClient(server.url, TOKEN, timeout=1.0, retries=0, http_client=http)
        started = time.monotonic()
        with pytest.raises(NetworkError, match="did not answer within 1 s"):
            client.balance()
    assert time.monotonic() - started < 2.5
