"""Both clients go through the proxy the environment names (`http_proxy`, `no_proxy`...),
here a live server playing a forward proxy: it receives the absolute URL."""

from __future__ import annotations

import pytest
from client_payloads import QUOTALEDGER_SELF, TOKEN, json_answer
from client_server import FakeProvider

from quotaledger.client import AsyncBalanceClient, BalanceClient, BalanceError
from quotaledger.client.async_client import env_proxy

SITE = "http://relay.example"  # never resolved: the proxy is asked for it


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


async def test_both_clients_ask_through_the_environments_proxy(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("http_proxy", server.url)
    server.route(f"{SITE}/api/user/self", json_answer(QUOTALEDGER_SELF))
    server.route(f"{SITE}/api/status", json_answer({}, 404))

    with BalanceClient(SITE, TOKEN) as client:
        synchronous = client.balance()
    async with AsyncBalanceClient(SITE, TOKEN) as async_client:
        asynchronous = await async_client.balance()

    assert synchronous.quota == asynchronous.quota == 24_997_909
    asked = [seen.path for seen in server.requests if seen.path.endswith("/self")]
    assert asked == [f"{SITE}/api/user/self"] * 2


@pytest.mark.parametrize(
    ("variables", "url", "expected"),
    [
        ({}, "https://api.example.com", None),
        ({"https_proxy": "http://p:3128"}, "https://api.example.com", "http://p:3128"),
        ({"HTTPS_PROXY": "http://P:3128"}, "https://api.example.com", "http://P:3128"),
        ({"https_proxy": "http://p:3128"}, "http://api.example.com", None),
        ({"all_proxy": "http://a:1"}, "http://api.example.com", "http://a:1"),
        ({"http_proxy": "http://p:1", "no_proxy": "example.com"}, "http://api.example.com", None),
        ({"http_proxy": "http://p:1", "no_proxy": ".example.com"}, "http://example.com", None),
        ({"http_proxy": "http://p:1", "no_proxy": "*"}, "http://anything.test", None),
        ({"http_proxy": "http://p:1", "no_proxy": "ample.com"}, "http://example.com", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, "http://a.example", None),
        ({"http_proxy": "proxy.corp:3128"}, "http://a.example", "http://proxy.corp:3128"),
        ({"http_proxy": "", "HTTP_PROXY": "http://p:1"}, "http://a.example", None),
        (
            {"http_proxy": "http://p:1", "no_proxy": "a.example:8080"},
            "http://a.example",
            "http://p:1",
        ),
        ({"http_proxy": "http://p:1", "no_proxy": "a.example:8080"}, "http://a.example:8080", None),
        (
            {"https_proxy": "http://p:1", "no_proxy": "*.example.com"},
            "https://api.example.com",
            None,
        ),
    ],
)
def test_env_proxy_reads_the_environment_as_urllib_does(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], url: str, expected: str | None
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    assert env_proxy(url) == expected


async def test_a_proxys_password_never_reaches_an_error_message(
    server: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake proxy refuses CONNECT (501): both libraries quote the proxy in their errors.
    proxy = server.url.replace("http://", "http://alice:s3cret-proxy-pw@")
    monkeypatch.setenv("https_proxy", proxy)
    messages = []
    with (
        pytest.raises(BalanceError) as caught,
        BalanceClient("https://relay.example", TOKEN, retries=0) as client,
    ):
        client.balance()
    messages.append(str(caught.value))
    async with AsyncBalanceClient("https://relay.example", TOKEN, retries=0) as async_client:
        with pytest.raises(BalanceError) as caught:
            await async_client.balance()
    messages.append(str(caught.value))

    assert all("relay.example" in message for message in messages), messages
    assert not any("s3cret-proxy-pw" in message or "alice" in message for message in messages)
