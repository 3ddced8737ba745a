"""The `newapi-key` provider: one API key's own balance from `GET /api/usage/token`, against a
live server answering as new-api and as quotaledger do (the recorded answers in `fixtures/`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from client_payloads import (
    NEWAPI_KEY,
    NEWAPI_STATUS,
    NEWAPI_USAGE,
    QL_KEY,
    QUOTALEDGER_USAGE,
    TOKEN,
    Answer,
    json_answer,
)
from client_payloads import key_usage as usage
from client_server import FakeProvider

from quotaledger.client import (
    AsyncBalanceClient,
    AuthenticationError,
    BalanceClient,
    ConfigurationError,
    KeyBalance,
    MistypedTokenError,
    ProviderError,
)

USAGE = "/api/usage/token"


def key_balance(server: FakeProvider, key: str = NEWAPI_KEY) -> KeyBalance:
    with BalanceClient(server.url, key, provider="newapi-key") as client:
        return client.key_balance()


def test_a_new_api_answer_becomes_a_typed_key_balance(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE))
    balance = key_balance(server)
    assert balance.name == "laptop"
    assert (balance.quota, balance.used_quota) == (2_100_000, 400_000)
    assert balance.granted_quota == 2_500_000
    assert (balance.usd, balance.used_usd) == (Decimal("4.2"), Decimal("0.8"))
    assert balance.unlimited is False
    assert balance.models == ("claude-3-5-haiku", "gpt-4o-mini")
    assert balance.expires_at == datetime(2027, 1, 1, tzinfo=UTC)
    assert balance.provider == "newapi-key"


def test_the_key_goes_as_a_bearer_credential_and_nothing_else(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE))
    key_balance(server)
    asked = server.requests[0]
    assert asked.path == USAGE
    assert asked.headers["authorization"] == f"Bearer {NEWAPI_KEY}"
    assert "new-api-user" not in asked.headers


def test_a_quotaledger_answer_reads_the_same(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(QUOTALEDGER_USAGE))
    balance = key_balance(server, QL_KEY)
    assert (balance.quota, balance.used_quota) == (2_100_000, 400_000)
    assert balance.granted_quota == 2_500_000
    assert balance.expires_at is None
    assert balance.models == ()


def test_new_apis_redirect_to_the_trailing_slash_is_followed_with_the_key(
    server: FakeProvider,
) -> None:
    # gin serves the route as /api/usage/token/ and redirects the bare path there.
    server.route(USAGE, Answer(status=301, headers={"Location": USAGE + "/"}))
    server.route(USAGE + "/", json_answer(NEWAPI_USAGE))
    assert key_balance(server).quota == 2_100_000
    assert server.requests[1].headers["authorization"] == f"Bearer {NEWAPI_KEY}"


def test_an_unlimited_key_says_so(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(usage(NEWAPI_USAGE, unlimited_quota=True, total_available=0)))
    balance = key_balance(server)
    assert balance.unlimited is True
    assert balance.used_quota == 400_000


def test_a_published_quota_per_unit_is_used(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE))
    server.route("/api/status", json_answer(NEWAPI_STATUS))
    unit = NEWAPI_STATUS["data"]["quota_per_unit"]  # type: ignore[index]
    assert key_balance(server).amount == Decimal(2_100_000) / unit


def test_total_granted_missing_is_available_plus_used(server: FakeProvider) -> None:
    data = {k: v for k, v in NEWAPI_USAGE["data"].items() if k != "total_granted"}
    server.route(USAGE, json_answer({**NEWAPI_USAGE, "data": data}))
    assert key_balance(server).granted_quota == 2_500_000


def test_an_unknown_key_is_an_authentication_error_that_says_where_to_get_one(
    server: FakeProvider,
) -> None:
    server.route(USAGE, json_answer({"success": False, "message": "无效的令牌"}, 401))
    with pytest.raises(AuthenticationError, match="API keys") as caught:
        key_balance(server)
    assert NEWAPI_KEY not in str(caught.value)


@pytest.mark.parametrize("flag", ["success", "code"])
def test_a_refusal_with_http_200_is_an_error(server: FakeProvider, flag: str) -> None:
    server.route(USAGE, json_answer({flag: False, "message": "token disabled " + NEWAPI_KEY}))
    with pytest.raises(AuthenticationError) as caught:
        key_balance(server)
    assert NEWAPI_KEY not in str(caught.value)


def test_an_answer_without_the_usage_fields_is_a_provider_error(server: FakeProvider) -> None:
    server.route(USAGE, json_answer({"success": True, "data": {"object": "token_usage"}}))
    with pytest.raises(ProviderError, match="total_available"):
        key_balance(server)


def test_an_answer_over_one_mib_is_refused(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(usage(NEWAPI_USAGE, name="x" * (1 << 20))))
    with pytest.raises(ProviderError, match="larger than 1 MiB"):
        key_balance(server)


def test_a_system_token_given_as_a_key_is_refused_before_sending(server: FakeProvider) -> None:
    with pytest.raises(ConfigurationError, match="system token"):
        key_balance(server, TOKEN)
    assert server.requests == []


def test_a_mistyped_quotaledger_key_is_refused_before_sending(server: FakeProvider) -> None:
    with pytest.raises(MistypedTokenError, match="key looks mistyped"):
        key_balance(server, QL_KEY[:-1] + ("A" if QL_KEY[-1] != "A" else "B"))
    assert server.requests == []


def test_a_quotaledger_key_given_as_the_account_token_is_refused(server: FakeProvider) -> None:
    with pytest.raises(ConfigurationError, match="--key-env"):
        BalanceClient(server.url, QL_KEY)
    assert server.requests == []


def test_key_balance_of_an_account_provider_is_a_configuration_error(
    server: FakeProvider,
) -> None:
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(ConfigurationError):
        client.key_balance()
    assert server.requests == []


async def test_the_async_client_reads_a_key_balance_too(server: FakeProvider) -> None:
    server.route(USAGE, json_answer(NEWAPI_USAGE, gzip=True))
    async with AsyncBalanceClient(server.url, NEWAPI_KEY, provider="newapi-key") as client:
        balance = await client.key_balance()
    assert (balance.name, balance.quota, balance.used_quota) == ("laptop", 2_100_000, 400_000)
    assert server.requests[0].headers["authorization"] == f"Bearer {NEWAPI_KEY}"


async def test_the_async_client_refuses_key_balance_for_an_account_provider(
    server: FakeProvider,
) -> None:
    async with AsyncBalanceClient(server.url, TOKEN) as client:
        with pytest.raises(ConfigurationError):
            await client.key_balance()


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (0, None),
        (-1, None),
        (None, None),
        ("garbage", None),
        ("2027-01-01T08:00:00+08:00", datetime(2027, 1, 1, tzinfo=UTC)),
        ("2027-01-01T00:00:00", None),  # no offset: which zone would it be?
        (10**30, None),
    ],
)
def test_an_expiry_is_a_utc_time_or_never(
    server: FakeProvider, sent: object, read: datetime | None
) -> None:
    server.route(USAGE, json_answer(usage(QUOTALEDGER_USAGE, expires_at=sent)))
    assert key_balance(server, QL_KEY).expires_at == read
