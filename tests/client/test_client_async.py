"""`AsyncBalanceClient` behaves as `BalanceClient` does, without blocking."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from client_payloads import (
    INVALID_ACCESS_TOKEN,
    NEWAPI_STATUS,
    OPENROUTER_KEY,
    OPENROUTER_MANAGEMENT_ONLY,
    QUOTALEDGER_SELF,
    TOKEN,
    USER_ID,
    Answer,
    json_answer,
)
from client_server import FakeProvider

from quotaledger.client import (
    AsyncBalanceClient,
    AuthenticationError,
    BalanceClient,
    ConfigurationError,
    NetworkError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.async_client import http_session

SELF = "/api/user/self"


async def test_async_balance_reads_quota_and_published_unit(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, gzip=True))
    server.route("/api/status", json_answer(NEWAPI_STATUS))
    async with AsyncBalanceClient(server.url, TOKEN, user_id=USER_ID) as client:
        balance = await client.balance()
    assert (balance.usd, balance.quota_per_unit) == (Decimal("49.995818"), 500_000)
    assert server.requests[0].headers["new-api-user"] == USER_ID


async def test_async_openrouter_fallback_to_key(server: FakeProvider) -> None:
    server.route("/api/v1/credits", json_answer(OPENROUTER_MANAGEMENT_ONLY, 403))
    server.route("/api/v1/key", json_answer(OPENROUTER_KEY))
    async with AsyncBalanceClient(server.url, TOKEN, provider="openrouter") as client:
        assert (await client.balance()).usd == Decimal("74.5")


async def test_async_5xx_is_retried_until_success(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 500), json_answer(QUOTALEDGER_SELF))
    async with AsyncBalanceClient(server.url, TOKEN, retries=2) as client:
        assert (await client.balance()).quota == 24_997_909
    assert server.count(SELF) == 2


async def test_async_5xx_after_all_retries_is_a_provider_error(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 503))
    async with AsyncBalanceClient(server.url, TOKEN, retries=2) as client:
        with pytest.raises(ProviderError, match="HTTP 503"):
            await client.balance()
    assert server.count(SELF) == 3


async def test_async_refused_token_on_http_200_is_authentication(server: FakeProvider) -> None:
    server.route(SELF, json_answer(INVALID_ACCESS_TOKEN))
    async with AsyncBalanceClient(server.url, TOKEN) as client:
        with pytest.raises(AuthenticationError):
            await client.balance()


async def test_async_429_is_not_retried(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 429, headers={"Retry-After": "5"}))
    async with AsyncBalanceClient(server.url, TOKEN, retries=2) as client:
        with pytest.raises(RateLimitedError):
            await client.balance()
    assert server.count(SELF) == 1


async def test_async_timeout_is_retried_then_a_network_error(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, delay=0.5))
    async with AsyncBalanceClient(server.url, TOKEN, timeout=0.1, retries=1) as client:
        with pytest.raises(NetworkError, match=r"within 0.1 s \(2 attempts\)"):
            await client.balance()
    assert server.count(SELF) == 2


async def test_async_refused_connection_is_a_network_error(closed_port: int) -> None:
    async with AsyncBalanceClient(f"http://127.0.0.1:{closed_port}", TOKEN, retries=0) as client:
        with pytest.raises(NetworkError, match="connection refused"):
            await client.balance()


async def test_async_retry_waits_at_least_half_the_backoff(server: FakeProvider) -> None:
    # aiohttp itself re-sends a GET once, at once, on a connection closed without an answer
    # (RFC 9112 9.3.1: the server may have closed an idle keep-alive connection just then);
    # our own retries, with their backoff, come on top of that.
    hang_up = Answer(hang_up=True)
    server.route(SELF, hang_up, hang_up, json_answer(QUOTALEDGER_SELF))
    async with AsyncBalanceClient(server.url, TOKEN, retries=1, backoff=0.2) as client:
        started = time.monotonic()
        assert (await client.balance()).quota == 24_997_909
    assert time.monotonic() - started >= 0.1
    assert server.count(SELF) == 3


async def test_async_network_errors_read_as_the_sync_clients_do(
    server: FakeProvider,
) -> None:
    server.route(SELF, Answer(hang_up=True))
    async with AsyncBalanceClient(server.url, TOKEN, retries=0) as client:
        with pytest.raises(NetworkError, match="closed the connection without an answer"):
            await client.balance()
    async with AsyncBalanceClient("http://nowhere.invalid", TOKEN, retries=0) as client:
        with pytest.raises(NetworkError, match=r"cannot find the host nowhere\.invalid \(DNS\)"):
            await client.balance()


async def test_async_garbled_gzip_is_a_provider_error_not_retried(server: FakeProvider) -> None:
    server.route(SELF, Answer(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    async with AsyncBalanceClient(server.url, TOKEN, retries=2) as client:
        with pytest.raises(ProviderError, match="garbled compressed body"):
            await client.balance()
    assert server.count(SELF) == 1


async def test_async_aclose_closes_the_client(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    client = AsyncBalanceClient(server.url, TOKEN)
    await client.aclose()
    with pytest.raises(RuntimeError):
        await client.balance()


async def test_clients_can_share_one_http_pool_which_they_leave_open(
    server: FakeProvider,
) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    async with http_session() as shared:
        for _ in range(2):
            async with AsyncBalanceClient(server.url, TOKEN, http_client=shared) as client:
                assert (await client.balance()).quota == 24_997_909
        assert not shared.closed  # owned by the caller, not by the balance clients
    assert server.requests[0].headers["authorization"] == TOKEN
    assert server.requests[0].headers["user-agent"].startswith("quotaledger/")


async def test_a_body_cut_short_is_a_network_failure_and_retried(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, cut_short=True), json_answer(QUOTALEDGER_SELF))
    async with AsyncBalanceClient(server.url, TOKEN, retries=1) as client:
        assert (await client.balance()).quota == 24_997_909
    assert server.count(SELF) == 2

    server.route(SELF, json_answer(QUOTALEDGER_SELF, cut_short=True))
    async with AsyncBalanceClient(server.url, TOKEN, retries=0) as client:
        with pytest.raises(NetworkError):
            await client.balance()


@pytest.mark.parametrize("url", ["http://relay.example:99999", f"http://{'a' * 64}.example"])
def test_an_unusable_base_url_is_a_configuration_error(url: str) -> None:
    for make in (BalanceClient, AsyncBalanceClient):
        with pytest.raises(ConfigurationError, match="not a usable URL"):
            make(url, TOKEN)
