"""Every failure becomes a typed error a person understands; retries only where they help."""

from __future__ import annotations

from typing import Any

import pytest
from client_payloads import QUOTALEDGER_SELF, TOKEN, Answer, json_answer
from client_server import FakeProvider

from quotaledger.client import (
    AuthenticationError,
    Balance,
    BalanceClient,
    BalanceError,
    NetworkError,
    PermissionDeniedError,
    ProviderError,
    RateLimitedError,
)
from quotaledger.client.async_client import AsyncBalanceClient
from quotaledger.client.errors import ConfigurationError, MistypedTokenError

SELF = "/api/user/self"


def fetch(url: str, **kwargs: Any) -> Balance:
    with BalanceClient(url, TOKEN, **kwargs) as client:
        return client.balance()


def test_401_is_an_authentication_error_saying_how_to_get_a_new_token(
    server: FakeProvider,
) -> None:
    server.route(SELF, json_answer({"success": False, "message": "invalid token"}, 401))
    with pytest.raises(AuthenticationError) as caught:
        fetch(server.url)
    assert "refused the token (HTTP 401: invalid token)" in str(caught.value)
    assert "Generate a new system token" in str(caught.value)


def test_403_is_permission_denied(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "account disabled"}, 403))
    with pytest.raises(PermissionDeniedError, match="account disabled"):
        fetch(server.url)


def test_429_is_rate_limited_with_retry_after(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 429, headers={"Retry-After": "30"}))
    with pytest.raises(RateLimitedError) as caught:
        fetch(server.url)
    assert caught.value.retry_after == 30.0
    assert "retry in 30 s" in str(caught.value)


def test_404_suggests_checking_base_url_and_provider(server: FakeProvider) -> None:
    with pytest.raises(ProviderError, match=r"site root.*provider 'newapi'"):
        fetch(server.url + "/wrong")


def test_html_instead_of_json_says_so(server: FakeProvider) -> None:
    login_page = Answer(
        body="<!DOCTYPE html><html>Login</html>", headers={"Content-Type": "text/html"}
    )
    server.route(SELF, login_page)
    with pytest.raises(ProviderError, match="HTML page instead of JSON"):
        fetch(server.url)


def test_garbage_body_is_a_provider_error(server: FakeProvider) -> None:
    server.route(SELF, Answer(body=b"\x00\xff\x13garbage", headers={"Content-Type": "x/y"}))
    with pytest.raises(ProviderError, match=r"not JSON.*x/y, 10 bytes"):
        fetch(server.url)


def test_json_that_is_not_an_object_is_a_provider_error(server: FakeProvider) -> None:
    server.route(SELF, json_answer([1, 2, 3]))
    with pytest.raises(ProviderError, match="not an object"):
        fetch(server.url)


def test_body_claiming_gzip_but_garbled_is_a_provider_error(server: FakeProvider) -> None:
    server.route(SELF, Answer(body=b"not gzip at all", headers={"Content-Encoding": "gzip"}))
    with pytest.raises(ProviderError, match="garbled compressed body"):
        fetch(server.url)


def test_slow_server_times_out_naming_host_and_seconds(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, delay=1.0))
    with pytest.raises(NetworkError) as caught:
        fetch(server.url, timeout=0.2, retries=0)
    assert str(caught.value) == f"{server.url[7:]} did not answer within 0.2 s."


def test_refused_connection_is_a_network_error(closed_port: int) -> None:
    with pytest.raises(NetworkError, match=f"127.0.0.1:{closed_port}: connection refused"):
        fetch(f"http://127.0.0.1:{closed_port}", retries=0)


def test_unknown_host_is_a_network_error_naming_dns() -> None:
    with pytest.raises(NetworkError, match=r"cannot find the host nowhere\.invalid \(DNS\)"):
        fetch("http://nowhere.invalid", retries=0)


def test_server_hanging_up_is_a_network_error(server: FakeProvider) -> None:
    server.route(SELF, Answer(hang_up=True))
    with pytest.raises(NetworkError, match="closed the connection"):
        fetch(server.url, retries=0)


def test_5xx_is_retried_until_success(server: FakeProvider) -> None:
    server.route(SELF, json_answer({}, 502), json_answer({}, 503), json_answer(QUOTALEDGER_SELF))
    assert fetch(server.url, retries=2).quota == 24_997_909
    assert server.count(SELF) == 3


def test_5xx_after_all_retries_is_a_provider_error(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": "db down"}, 500))
    with pytest.raises(ProviderError, match=r"server error \(HTTP 500: db down\)"):
        fetch(server.url, retries=2)
    assert server.count(SELF) == 3


@pytest.mark.parametrize("status", [400, 401, 403, 404, 429])
def test_4xx_is_never_retried(server: FakeProvider, status: int) -> None:
    server.route(SELF, json_answer({"success": False, "message": "no"}, status))
    with pytest.raises(BalanceError):
        fetch(server.url, retries=2)
    assert server.count(SELF) == 1


def test_network_error_is_retried(server: FakeProvider) -> None:
    server.route(SELF, Answer(hang_up=True), json_answer(QUOTALEDGER_SELF))
    assert fetch(server.url, retries=1).quota == 24_997_909
    assert server.count(SELF) == 2


def test_timeouts_are_retried_and_counted(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF, delay=0.5))
    with pytest.raises(NetworkError, match=r"within 0.1 s \(2 attempts\)"):
        fetch(server.url, timeout=0.1, retries=1)
    assert server.count(SELF) == 2


def test_token_echoed_by_the_server_is_removed_from_the_message(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"success": False, "message": f"bad token {TOKEN}"}, 401))
    with pytest.raises(AuthenticationError) as caught:
        fetch(server.url)
    assert TOKEN not in str(caught.value)
    assert "bad token ***" in str(caught.value)


def test_missing_token_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="no token"):
        BalanceClient("https://api.example.com", "  ")


def test_token_from_environment_is_used(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QUOTALEDGER_TOKEN", TOKEN)
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    with BalanceClient(server.url) as client:
        client.balance()
    assert server.requests[0].headers["authorization"] == TOKEN


def test_token_with_a_line_break_is_refused_without_showing_it() -> None:
    with pytest.raises(ConfigurationError) as caught:
        BalanceClient("https://api.example.com", "ql_abc\ndef")
    assert "ql_abc" not in str(caught.value)


def test_newapi_without_base_url_asks_for_one() -> None:
    with pytest.raises(ConfigurationError, match="has no default site"):
        BalanceClient(None, TOKEN)


def test_unknown_provider_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="known: newapi, openrouter"):
        BalanceClient("https://api.example.com", TOKEN, provider="acme")


def test_client_repr_hides_the_token() -> None:
    with BalanceClient("https://api.example.com", TOKEN) as client:
        assert TOKEN not in repr(client)
        assert "api.example.com" in repr(client)


def test_token_pasted_with_bearer_is_sent_without_it(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    with BalanceClient(server.url, f"Bearer {TOKEN}") as client:
        client.balance()
    assert server.requests[0].headers["authorization"] == TOKEN


def test_mistyped_quotaledger_token_is_caught_before_sending() -> None:
    mistyped = TOKEN[:-1] + ("A" if TOKEN[-1] != "A" else "B")
    for make in (BalanceClient, AsyncBalanceClient):
        with pytest.raises(MistypedTokenError, match="mistyped or truncated") as caught:
            make("https://api.example.com", mistyped)
        # An authentication failure (the token is wrong), refused before anything was sent.
        assert isinstance(caught.value, AuthenticationError)
        assert isinstance(caught.value, ConfigurationError)


def test_tokens_of_other_servers_are_not_checksummed(server: FakeProvider) -> None:
    server.route(SELF, json_answer(QUOTALEDGER_SELF))
    with BalanceClient(server.url, "0123456789abcdefABCDEF0123456789") as client:
        assert client.balance().quota == 24_997_909


def test_error_messages_carry_no_escape_sequences_or_line_breaks(server: FakeProvider) -> None:
    server.route(SELF, json_answer({"message": "down\x1b]0;title\x07\r\nnow\x1b[2K"}, 502))
    with pytest.raises(ProviderError) as caught:
        fetch(server.url, retries=0)
    assert "down now" in str(caught.value)
    assert str(caught.value).isprintable()
