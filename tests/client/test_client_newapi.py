"""The newapi provider against a live server speaking quotaledger / one-api / new-api."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from client_payloads import (
    INVALID_ACCESS_TOKEN,
    NEWAPI_STATUS,
    NO_USER_HEADER,
    ONE_API_SELF,
    QUOTALEDGER_SELF,
    TOKEN,
    USER_BANNED,
    USER_ID,
    Answer,
    json_answer,
)
from client_server import FakeProvider

from quotaledger.client import (
    AuthenticationError,
    Balance,
    BalanceClient,
    PermissionDeniedError,
    ProviderError,
)


def fetch(server: FakeProvider, **kwargs: Any) -> Balance:
    with BalanceClient(server.url, TOKEN, **kwargs) as client:
        return client.balance()


def with_data(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = QUOTALEDGER_SELF["data"]  # type: ignore[assignment]
    return {**QUOTALEDGER_SELF, "data": {**data, **changes}}


def test_quotaledger_answer_becomes_a_typed_balance(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    balance = fetch(server)
    assert balance.quota == 24_997_909
    assert balance.used_quota == 2091
    assert balance.request_count == 12
    assert balance.group == "default"
    assert balance.currency == "USD"
    assert balance.raw == QUOTALEDGER_SELF


def test_usd_is_quota_over_500000_exactly(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    balance = fetch(server)
    assert balance.usd == Decimal("49.995818")
    assert balance.used_usd == Decimal("0.004182")
    assert balance.format_amount() == "$49.99"


def test_one_api_answer_with_empty_message_and_extra_fields_is_accepted(
    server: FakeProvider,
) -> None:
    server.route("/api/user/self", json_answer(ONE_API_SELF))
    balance = fetch(server)
    assert (balance.usd, balance.group) == (Decimal(20), "vip")


@pytest.mark.parametrize(
    "model_fixed_price",
    [[], {}, {"gpt-4": 0.1}, {"m": {"price": "0.02", "unit": "call"}}, None, "n/a"],
)
def test_model_fixed_price_of_any_shape_is_ignored(
    server: FakeProvider, model_fixed_price: object
) -> None:
    server.route("/api/user/self", json_answer(with_data(ModelFixedPrice=model_fixed_price)))
    assert fetch(server).quota == 24_997_909


def test_negative_quota_gives_a_negative_balance(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(with_data(quota=-250_000)))
    balance = fetch(server)
    assert balance.usd == Decimal("-0.5")
    assert balance.format_amount() == "-$0.50"


def test_always_gzip_answer_is_decoded(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF, gzip=True))
    assert fetch(server).quota == 24_997_909


def test_gzip_without_content_encoding_is_decoded(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF, gzip_unlabelled=True))
    assert fetch(server).quota == 24_997_909


def test_token_is_sent_raw_in_authorization(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    fetch(server)
    assert server.requests[0].headers["authorization"] == TOKEN


def test_user_id_is_sent_as_new_api_user(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    fetch(server, user_id=int(USER_ID))
    assert server.requests[0].headers["new-api-user"] == USER_ID


def test_no_new_api_user_header_without_a_user_id(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    fetch(server)
    assert "new-api-user" not in server.requests[0].headers


def test_401_naming_new_api_user_explains_the_user_id(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(NO_USER_HEADER, 401))
    with pytest.raises(AuthenticationError, match="--user-id") as caught:
        fetch(server)
    assert "New-Api-User" in str(caught.value)


def test_mismatched_user_id_is_named_in_the_error(server: FakeProvider) -> None:
    mismatch = {"success": False, "message": "无权进行此操作，New-Api-User 与登录用户不匹配"}  # noqa: RUF001
    server.route("/api/user/self", json_answer(mismatch, 401))
    with pytest.raises(AuthenticationError, match="user id 42 is not the owner"):
        fetch(server, user_id=USER_ID)


def test_http_200_with_refused_token_is_an_authentication_error(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(INVALID_ACCESS_TOKEN))
    with pytest.raises(AuthenticationError, match="System Token"):
        fetch(server)


def test_http_200_with_banned_user_is_permission_denied(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(USER_BANNED))
    with pytest.raises(PermissionDeniedError, match="用户已被封禁"):
        fetch(server)


def test_http_200_with_other_refusal_is_a_provider_error(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer({"success": False, "message": "维护中"}))
    with pytest.raises(ProviderError, match="维护中"):
        fetch(server)


def test_answer_without_quota_is_a_provider_error(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer({"success": True, "data": {"name": "x"}}))
    with pytest.raises(ProviderError, match=r"data\.quota"):
        fetch(server)


def test_published_quota_per_unit_is_used(server: FakeProvider) -> None:
    status = {**NEWAPI_STATUS, "data": {"quota_per_unit": 1_000_000}}
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route("/api/status", json_answer(status))
    balance = fetch(server)
    assert (balance.quota_per_unit, balance.usd) == (1_000_000, Decimal("24.997909"))


def test_status_is_asked_without_the_token(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route("/api/status", json_answer(NEWAPI_STATUS))
    fetch(server)
    assert "authorization" not in server.requests[1].headers


def test_status_is_asked_once_per_client(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route("/api/status", json_answer(NEWAPI_STATUS))
    with BalanceClient(server.url, TOKEN) as client:
        client.balance()
        client.balance()
    assert (server.count("/api/user/self"), server.count("/api/status")) == (2, 1)


@pytest.mark.parametrize(
    "status_answer",
    [
        json_answer({"success": False, "message": "not found"}, 404),
        Answer(body="<html>Just a moment...</html>", headers={"Content-Type": "text/html"}),
        json_answer({"success": True, "data": {"quota_per_unit": "lots"}}),
        json_answer({"success": True, "data": {"quota_per_unit": 0}}),
        Answer(hang_up=True),
    ],
    ids=["404", "html", "not-a-number", "zero", "hang-up"],
)
def test_unusable_status_falls_back_to_500000(server: FakeProvider, status_answer: Answer) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route("/api/status", status_answer)
    assert fetch(server, retries=2).quota_per_unit == 500_000


def test_unusable_status_is_not_retried(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route("/api/status", json_answer({}, 503))
    fetch(server, retries=2)
    assert server.count("/api/status") == 1


def test_pasted_openai_base_url_is_reduced_to_the_site_root(server: FakeProvider) -> None:
    server.route("/api/user/self", json_answer(QUOTALEDGER_SELF))
    with BalanceClient(server.url + "/v1/", TOKEN) as client:
        assert client.base_url == server.url
        assert client.balance().quota == 24_997_909
