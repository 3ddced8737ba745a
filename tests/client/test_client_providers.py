"""OpenRouter, DeepSeek, SiliconFlow and Moonshot, each against a live server speaking its
documented format (see client_payloads)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from client_payloads import (
    DEEPSEEK_BALANCE,
    MOONSHOT_BALANCE,
    MOONSHOT_INVALID_KEY,
    OPENROUTER_CREDITS,
    OPENROUTER_KEY,
    OPENROUTER_MANAGEMENT_ONLY,
    SILICONFLOW_USER_INFO,
    TOKEN,
    json_answer,
)
from client_server import FakeProvider

from quotaledger.client import (
    PROVIDERS,
    AuthenticationError,
    Balance,
    BalanceClient,
    ProviderError,
)
from quotaledger.client.exchange import Call, Reply

CREDITS, KEY = "/api/v1/credits", "/api/v1/key"


def fetch(server: FakeProvider, provider: str, **kwargs: Any) -> Balance:
    with BalanceClient(server.url, TOKEN, provider=provider, **kwargs) as client:
        return client.balance()


def with_key(**changes: Any) -> dict[str, Any]:
    return {"data": {**OPENROUTER_KEY["data"], **changes}}


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("openrouter", "https://openrouter.ai"),
        ("deepseek", "https://api.deepseek.com"),
        ("siliconflow", "https://api.siliconflow.cn"),
        ("moonshot", "https://api.moonshot.cn"),
    ],
)
def test_provider_default_site_is_its_documented_root(name: str, default: str) -> None:
    with BalanceClient(None, TOKEN, provider=name) as client:
        assert client.base_url == default


def test_other_providers_send_a_bearer_token(server: FakeProvider) -> None:
    server.route("/user/balance", json_answer(DEEPSEEK_BALANCE))
    fetch(server, "deepseek")
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN}"


def test_openrouter_balance_is_credits_minus_usage(server: FakeProvider) -> None:
    server.route(CREDITS, json_answer(OPENROUTER_CREDITS))
    balance = fetch(server, "openrouter")
    assert (balance.usd, balance.used_usd) == (Decimal("74.75"), Decimal("25.75"))


def test_openrouter_ordinary_key_falls_back_to_limit_remaining(server: FakeProvider) -> None:
    server.route(CREDITS, json_answer(OPENROUTER_MANAGEMENT_ONLY, 403))
    server.route(KEY, json_answer(OPENROUTER_KEY))
    balance = fetch(server, "openrouter")
    assert (balance.usd, balance.used_usd) == (Decimal("74.5"), Decimal("25.5"))


def test_openrouter_zero_credits_for_an_ordinary_key_asks_the_key(
    server: FakeProvider,
) -> None:
    server.route(CREDITS, json_answer({"data": {"total_credits": 0, "total_usage": 0}}))
    server.route(KEY, json_answer(OPENROUTER_KEY))
    assert fetch(server, "openrouter").usd == Decimal("74.5")


def test_openrouter_zero_credits_of_a_management_key_are_real(server: FakeProvider) -> None:
    server.route(CREDITS, json_answer({"data": {"total_credits": 0, "total_usage": 0}}))
    server.route(
        KEY, json_answer(with_key(limit=None, limit_remaining=None, is_management_key=True))
    )
    assert fetch(server, "openrouter").usd == 0


def test_openrouter_key_without_limit_explains_what_is_needed(server: FakeProvider) -> None:
    server.route(CREDITS, json_answer(OPENROUTER_MANAGEMENT_ONLY, 403))
    server.route(KEY, json_answer(with_key(limit=None, limit_remaining=None)))
    with pytest.raises(ProviderError, match="management key"):
        fetch(server, "openrouter")


def test_openrouter_401_points_to_the_keys_page(server: FakeProvider) -> None:
    refused = {"error": {"code": 401, "message": "No auth credentials found"}}
    server.route(CREDITS, json_answer(refused, 401))
    with pytest.raises(AuthenticationError, match=r"openrouter\.ai/settings/keys"):
        fetch(server, "openrouter")


def test_deepseek_balance_and_currency_come_from_balance_infos(server: FakeProvider) -> None:
    server.route("/user/balance", json_answer(DEEPSEEK_BALANCE))
    balance = fetch(server, "deepseek")
    assert (balance.amount, balance.currency, balance.usd) == (Decimal("110.00"), "CNY", None)


def test_deepseek_prefers_the_funded_currency(server: FakeProvider) -> None:
    usd = {"currency": "USD", "total_balance": "0.00"}
    cny = {"currency": "CNY", "total_balance": "5.00"}
    server.route("/user/balance", json_answer({"is_available": True, "balance_infos": [usd, cny]}))
    assert fetch(server, "deepseek").currency == "CNY"


def test_deepseek_without_balance_infos_is_a_provider_error(server: FakeProvider) -> None:
    server.route("/user/balance", json_answer({"is_available": False, "balance_infos": []}))
    with pytest.raises(ProviderError, match="balance_infos"):
        fetch(server, "deepseek")


def test_siliconflow_balance_is_total_balance_in_cny(server: FakeProvider) -> None:
    server.route("/v1/user/info", json_answer(SILICONFLOW_USER_INFO))
    balance = fetch(server, "siliconflow")
    assert (balance.amount, balance.currency) == (Decimal("88.88"), "CNY")


def test_siliconflow_status_false_is_an_error(server: FakeProvider) -> None:
    refused = {"code": 30001, "message": "Invalid token", "status": False, "data": None}
    server.route("/v1/user/info", json_answer(refused))
    with pytest.raises(AuthenticationError, match="Invalid token"):
        fetch(server, "siliconflow")


def test_moonshot_balance_is_available_balance_exactly(server: FakeProvider) -> None:
    server.route("/v1/users/me/balance", json_answer(MOONSHOT_BALANCE))
    balance = fetch(server, "moonshot")
    assert (balance.amount, balance.currency) == (Decimal("49.58894"), "CNY")


def test_moonshot_negative_cash_balance_is_accepted(server: FakeProvider) -> None:
    owing = {
        **MOONSHOT_BALANCE,
        "data": {"available_balance": 4.5, "voucher_balance": 4.5, "cash_balance": -2.25},
    }
    server.route("/v1/users/me/balance", json_answer(owing))
    assert fetch(server, "moonshot").amount == Decimal("4.5")


def test_moonshot_invalid_key_is_an_authentication_error(server: FakeProvider) -> None:
    server.route("/v1/users/me/balance", json_answer(MOONSHOT_INVALID_KEY, 401))
    with pytest.raises(AuthenticationError, match="Invalid Authentication"):
        fetch(server, "moonshot")


@pytest.mark.parametrize(
    ("name", "site", "currency"),
    [
        ("moonshot", "https://api.moonshot.ai", "USD"),
        ("moonshot", "https://api.moonshot.cn", "CNY"),
        ("siliconflow", "https://api.siliconflow.com", "USD"),
        ("siliconflow", "https://api.siliconflow.cn", "CNY"),
    ],
)
def test_currency_follows_the_site(name: str, site: str, currency: str) -> None:
    # Public hosts cannot be served locally; the provider's plan does no I/O, so drive it.
    provider = PROVIDERS[name]()
    plan = provider.plan(provider.site(site))
    call: Call = next(plan)
    body = MOONSHOT_BALANCE if name == "moonshot" else SILICONFLOW_USER_INFO
    content = json_answer(body).encoded()
    with pytest.raises(StopIteration) as done:
        plan.send(Reply(200, {}, content, site + call.path))
    assert done.value.value.currency == currency
