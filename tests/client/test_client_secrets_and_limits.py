"""What a server can send that must not leak the token or break the client: tokens in the
payload, a token echoed across the cut of a long message, short tokens, absurd numbers,
absurd `Retry-After`s, unusable user ids; and `/api/status` asked once."""

from __future__ import annotations

import time
from typing import Any

import pytest
from client_payloads import ONE_API_SELF, QUOTALEDGER_SELF, TOKEN, Answer, json_answer
from client_server import FakeProvider

from quotaledger.client import (
    AsyncBalanceClient,
    AuthenticationError,
    BalanceClient,
    ConfigurationError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.redaction import is_secret_key, redact, scrub

SELF = "/api/user/self"
STATUS = "/api/status"


def with_data(base: dict[str, Any] = QUOTALEDGER_SELF, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = base["data"]
    return {**base, "data": {**data, **changes}}


# A one-api/new-api fork that hands the token back in `data`, and other credentials besides.
LEAKY_SELF = with_data(
    ONE_API_SELF,
    access_token=TOKEN,
    setting={"apiKey": "sk-upstream-1234567890", "smtp": {"Password": "hunter2hunter2"}},
    channels=[{"name": "default", "key": "sk-other-0987654321"}, TOKEN],
    tokens=[{"name": "default", "key": "sk-other-0987654321"}],
    note=f"issued {TOKEN}",
    is_management_key=False,
    token_hint="…x7Qa",
)


def test_the_raw_payload_keeps_no_token_and_no_secret_looking_key(server: FakeProvider) -> None:
    server.route(SELF, json_answer(LEAKY_SELF))
    with BalanceClient(server.url, TOKEN) as client:
        raw = client.balance().raw
    data = raw["data"]
    assert "access_token" not in data
    assert data["setting"] == {"smtp": {}}
    assert data["channels"] == [{"name": "default"}]
    assert "tokens" not in data
    assert data["note"] == "issued ***"
    assert data["is_management_key"] is False and data["token_hint"] == "…x7Qa"
    assert data["quota"] == 10_000_000 and data["group"] == "vip"
    text = repr(raw)
    assert TOKEN not in text and "sk-" not in text and "hunter2" not in text


async def test_the_async_client_scrubs_the_raw_payload_too(server: FakeProvider) -> None:
    server.route(SELF, json_answer(LEAKY_SELF))
    async with AsyncBalanceClient(server.url, TOKEN) as client:
        raw = (await client.balance()).raw
    assert TOKEN not in repr(raw) and "access_token" not in raw["data"]


async def test_a_redirect_to_another_origin_never_carries_the_token(
    server: FakeProvider, other_server: FakeProvider
) -> None:
    other_server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(SELF, Answer(status=302, headers={"Location": other_server.url + SELF}))

    with BalanceClient(server.url, TOKEN) as client:
        client.balance()
    async with AsyncBalanceClient(server.url, TOKEN) as async_client:
        await async_client.balance()

    def tokens_seen(provider: FakeProvider) -> list[str | None]:
        asked = [seen for seen in provider.requests if seen.path == SELF]
        return [seen.headers.get("authorization") for seen in asked]

    assert tokens_seen(server) == [TOKEN, TOKEN]
    assert tokens_seen(other_server) == [None, None]


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("access_token", True), ("accessToken", True), ("TOKEN", True), ("key", True),
        ("api_key", True), ("client-secret", True), ("Password", True), ("secret", True),
        ("token_hint", False), ("used_quota", False), ("keyboard", False), ("monkey", False),
    ],
)  # fmt: skip
def test_secret_looking_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_scrub_reaches_any_depth() -> None:
    assert scrub({"a": [{"b": {"Secret": "x", "c": ["tok12345", 1]}}]}, "tok12345") == {
        "a": [{"b": {"c": [1]}}]
    }


def test_a_token_straddling_the_cut_of_a_long_message_does_not_survive_in_part(
    server: FakeProvider,
) -> None:
    message = "x" * 180 + f" {TOKEN} is not valid here " + "y" * 100  # the cut is at 199
    server.route(SELF, json_answer({"success": False, "message": message}, 401))
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(AuthenticationError) as caught:
        client.balance()
    assert TOKEN[:8] not in str(caught.value)
    assert "x *** is not valid" in str(caught.value)


def test_a_short_token_is_removed_only_where_it_stands_alone(server: FakeProvider) -> None:
    short = "ab12"
    server.route(SELF, json_answer({"success": False, "message": "bad token ab12 (ab123x)"}, 401))
    with BalanceClient(server.url, short) as client, pytest.raises(AuthenticationError) as caught:
        client.balance()
    assert "bad token *** (ab123x)" in str(caught.value)


def test_redact_replaces_long_tokens_everywhere_and_short_ones_alone() -> None:
    assert redact("a-TOKEN12345-b TOKEN12345", "TOKEN12345") == "a-***-b ***"
    assert redact("42 and 420 and x42", "42") == "*** and 420 and x42"
    assert redact("anything", "") == "anything"


def with_number(key: str, literal: str) -> Answer:
    """`QUOTALEDGER_SELF` with `data[key]` written as the JSON number `literal` (`1e40`)."""
    answer = json_answer(with_data(**{key: 0}))
    answer.body = answer.encoded().replace(f'"{key}": 0'.encode(), f'"{key}": {literal}'.encode())
    return answer


@pytest.mark.parametrize("quota", [str(10**40), str(-(10**40)), str(2**63), "1e40", "-1.0E+19"])
def test_a_quota_beyond_64_bits_is_a_provider_error(server: FakeProvider, quota: str) -> None:
    server.route(SELF, with_number("quota", quota))
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(ProviderError) as caught:
        client.balance()
    assert "data.quota out of range" in str(caught.value)


def test_the_64_bit_limits_themselves_are_accepted(server: FakeProvider) -> None:
    server.route(SELF, json_answer(with_data(quota=2**63 - 1, used_quota=-(2**63))))
    with BalanceClient(server.url, TOKEN) as client:
        balance = client.balance()
    assert (balance.quota, balance.used_quota) == (2**63 - 1, -(2**63))
    assert balance.format_amount() == "$18,446,744,073,709.55"


def test_an_absurd_exponent_is_refused_at_once(server: FakeProvider) -> None:
    # int(Decimal("1e999999")) takes half a minute of CPU: it must never be attempted.
    server.route(SELF, with_number("used_quota", "1e999999"))
    started = time.monotonic()
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(ProviderError, match="range"):
        client.balance()
    assert time.monotonic() - started < 5


def test_an_amount_beyond_any_balance_is_a_provider_error(server: FakeProvider) -> None:
    infos = [{"currency": "USD", "total_balance": "1e40"}]
    server.route("/user/balance", json_answer({"is_available": True, "balance_infos": infos}))
    client = BalanceClient(server.url, TOKEN, provider="deepseek")
    with client, pytest.raises(ProviderError, match="total_balance out of range"):
        client.balance()


@pytest.mark.parametrize("header", ["inf", "Infinity", "nan", "-5", "-inf"])
def test_a_retry_after_that_is_not_a_finite_wait_is_ignored(
    server: FakeProvider, header: str
) -> None:
    server.route(SELF, json_answer({}, 429, headers={"Retry-After": header}))
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(RateLimitedError) as caught:
        client.balance()
    assert caught.value.retry_after is None
    assert "wait a minute before retrying" in str(caught.value)


def test_a_huge_but_finite_retry_after_is_reported_as_sent(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 429, headers={"Retry-After": "1e12"}))
    with BalanceClient(server.url, TOKEN) as client, pytest.raises(RateLimitedError) as caught:
        client.balance()
    assert caught.value.retry_after == 1e12  # the watcher caps it (see the monitor tests)


@pytest.mark.parametrize("user_id", ["é", "4\n2", "42abc", "abc", "-1", "4 2", "٤٢"])
def test_a_user_id_that_is_not_digits_is_a_configuration_error(
    server: FakeProvider, user_id: str
) -> None:
    with pytest.raises(ConfigurationError, match="numeric user id"):
        BalanceClient(server.url, TOKEN, user_id=user_id)
    assert server.requests == []


@pytest.mark.parametrize("user_id", ["42", " 42 ", 42])
def test_a_numeric_user_id_is_sent(server: FakeProvider, user_id: str | int) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    with BalanceClient(server.url, TOKEN, user_id=user_id) as client:
        client.balance()
    assert server.requests[0].headers["new-api-user"] == "42"


def test_status_without_a_unit_is_not_asked_again(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer({"success": True, "data": {"version": "v0.0.1"}}))
    with BalanceClient(server.url, TOKEN) as client:
        for _ in range(3):
            assert client.balance().quota_per_unit == 500_000
    assert server.count(STATUS) == 1


def test_status_missing_on_the_server_is_not_asked_again(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))  # /api/status answers 404
    with BalanceClient(server.url, TOKEN) as client:
        client.balance()
        client.balance()
    assert server.count(STATUS) == 1


def test_status_that_failed_on_the_way_is_asked_again(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    server.route(STATUS, json_answer({}, 503), json_answer({"data": {"quota_per_unit": 1000}}))
    with BalanceClient(server.url, TOKEN) as client:
        assert client.balance().quota_per_unit == 500_000
        assert client.balance().quota_per_unit == 1000
        client.balance()
    assert server.count(STATUS) == 2
