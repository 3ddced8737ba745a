"""Issue 26, item 1: a user's alert URL cannot make the server call internal hosts. Each way
of naming loopback is sent to a real listener on loopback that must see no connection at
all; the same URL with the operator's allowance reaches it (so each test can fail). The test
call answers the same for an open and a closed port, and is rate-limited."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from alert_inbox import Inbox, running_inbox
from quotaledger.alerting import egress
from quotaledger.alerting.egress import BlockedAddress, EgressPolicy
from quotaledger.alerting.targets import DEFAULT_SCHEMES, AlertPolicy
from quotaledger.monitor.messages import Message
from quotaledger.monitor.state import State
from quotaledger.server.alert_sender import AlertSender
from quotaledger.settings import Secret, Settings
from support import ADMIN_PASSWORD, issue_token

MESSAGE = Message("quotaledger: test notification", "hello", State.OK)
SECRET_KEY = "alert-ssrf-tests-secret-key-of-enough-length"


def sender(*allowed_hosts: str) -> AlertSender:
    return AlertSender(AlertPolicy.of(DEFAULT_SCHEMES, allowed_hosts))


# Each: the listener's address, the URL's host part, the allowance that lets it through.
SPELLINGS = {
    "ipv4-loopback": ("127.0.0.1", "127.0.0.1", "127.0.0.1"),
    "localhost": ("127.0.0.1", "localhost", "localhost"),
    "ipv6-loopback": ("::1", "[::1]", "::1"),
    "unspecified": ("127.0.0.1", "0.0.0.0", "0.0.0.0"),
    "decimal": ("127.0.0.1", "2130706433", "127.0.0.0/8"),
    "hex": ("127.0.0.1", "0x7f000001", "127.0.0.0/8"),
}
# Redirect targets (Apprise reads no IPv4-mapped host in a URL; requests follows one).
REDIRECTS = {
    "ipv4-loopback": ("127.0.0.1", "127.0.0.1"),
    "localhost": ("localhost", "localhost"),
    "ipv4-mapped-ipv6": ("[::ffff:127.0.0.1]", "::ffff:127.0.0.0/104"),
}


@pytest.mark.parametrize(("listen", "host", "allowance"), SPELLINGS.values(), ids=SPELLINGS)
async def test_no_spelling_of_loopback_reaches_a_listener_on_it(
    listen: str, host: str, allowance: str
) -> None:
    with running_inbox(listen) as inbox:
        url = f"json://{host}:{inbox.port}/hook"

        assert await sender().send([url], MESSAGE) is False

    assert not inbox.reached, inbox.requests


@pytest.mark.parametrize(("listen", "host", "allowance"), SPELLINGS.values(), ids=SPELLINGS)
async def test_the_operators_allowance_lets_the_same_url_through(
    listen: str, host: str, allowance: str
) -> None:
    with running_inbox(listen) as inbox:
        url = f"json://{host}:{inbox.port}/hook"

        assert await sender(allowance).send([url], MESSAGE) is True

        assert inbox.titles() == [MESSAGE.title]


@pytest.fixture
def redirector() -> Iterator[Inbox]:
    """An allowed host (127.0.0.2) that answers every request with a redirect."""
    with running_inbox("127.0.0.2") as running:
        yield running


@pytest.mark.parametrize(("host", "allowance"), REDIRECTS.values(), ids=REDIRECTS)
async def test_a_redirect_to_loopback_is_not_followed_there(
    redirector: Inbox, host: str, allowance: str
) -> None:
    with running_inbox() as inbox:
        redirector.redirect_to = f"http://{host}:{inbox.port}/hook"

        assert await sender("127.0.0.2").send([redirector.url], MESSAGE) is False

        assert redirector.requests  # the allowed host was asked

    assert not inbox.reached, inbox.requests


@pytest.mark.parametrize(("host", "allowance"), REDIRECTS.values(), ids=REDIRECTS)
async def test_a_redirect_to_an_allowed_host_is_followed(
    redirector: Inbox, host: str, allowance: str
) -> None:
    with running_inbox() as inbox:
        redirector.redirect_to = f"http://{host}:{inbox.port}/hook"

        assert await sender("127.0.0.2", allowance).send([redirector.url], MESSAGE) is True

        assert inbox.titles() == [MESSAGE.title]


@pytest.mark.parametrize(
    "address",
    ["10.1.2.3", "172.16.0.1", "192.168.0.1", "169.254.169.254", "100.64.0.1", "fd00:ec2::254",
     "fe80::1", "224.0.0.1", "::", "64:ff9b::a9fe:a9fe"],
)  # fmt: skip
def test_internal_addresses_are_refused_before_any_connection(address: str) -> None:
    with egress.guarded(EgressPolicy()), pytest.raises(BlockedAddress):
        socket.create_connection((address, 80), timeout=5)


def test_outside_the_guard_connections_are_untouched() -> None:
    with running_inbox() as inbox:
        socket.create_connection(("127.0.0.1", inbox.port), timeout=5).close()

    assert inbox.connections == 1


def test_public_addresses_pass_the_policy() -> None:
    assert EgressPolicy().permits("example.com", "93.184.215.14")
    assert EgressPolicy().permits("example.com", "2606:4700::1111")
    assert not EgressPolicy().permits("example.com", "::ffff:10.0.0.1")


@pytest.mark.parametrize(
    "query",
    ["?method=DELETE", "?+Metadata-Flavor=Google", "?%2BMetadata-Flavor=Google",
     "?-action=drop", "?:message=x", "?METHOD=get"],
)  # fmt: skip
async def test_a_url_choosing_the_method_or_headers_is_not_sent(query: str) -> None:
    with running_inbox() as inbox:
        url = f"{inbox.url}{query}"

        assert await sender("127.0.0.1").send([url], MESSAGE) is False

    assert not inbox.reached


# ------------------------------------------------------------------ through the API


@pytest.fixture
def settings(database_url: str) -> Settings:
    """Users' alerts with the defaults (nothing internal allowed); two test calls a minute."""
    return Settings.from_env({}, database_url=database_url, admin_password=None).with_overrides(
        admin_password=Secret(ADMIN_PASSWORD), secret_key=Secret(SECRET_KEY),
        rate_limit_alert_test="2/minute",
    )  # fmt: skip


def token_of(client: TestClient, make_user: Any, name: str) -> dict[str, str]:
    user = make_user(name)
    return {"Authorization": issue_token(client, name, user.password)}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_url_choosing_the_method_and_headers_is_refused_when_saved(
    client: TestClient, make_user: Any
) -> None:
    alice = token_of(client, make_user, "alice")
    url = "json://127.0.0.1:9/x?method=DELETE&+Metadata-Flavor=Google"

    answer = client.post("/api/user/alerts/urls", json={"url": url}, headers=alice)

    assert answer.status_code == 422
    assert "may not choose the HTTP method, headers" in answer.json()["message"]
    assert "Metadata-Flavor" not in answer.text


def test_a_scheme_off_the_servers_list_is_refused_when_saved(
    client: TestClient, make_user: Any
) -> None:
    alice = token_of(client, make_user, "alice")

    answer = client.post("/api/user/alerts/urls", json={"url": "xml://example.com/x"},
                         headers=alice)  # fmt: skip

    assert answer.status_code == 422
    assert "xml:// is not allowed on this server" in answer.json()["message"]


def test_an_open_and_a_closed_internal_port_get_the_same_answer(
    client: TestClient, make_user: Any
) -> None:
    answers = []
    with running_inbox() as inbox:
        for name, port in (("alice", inbox.port), ("bob", closed_port())):
            who = token_of(client, make_user, name)
            url = f"json://127.0.0.1:{port}/hook"
            assert client.post("/api/user/alerts/urls", json={"url": url}, headers=who).is_success
            answers.append(client.post("/api/user/alerts/test", headers=who))
    assert not inbox.reached
    open_answer, closed_answer = answers
    assert open_answer.status_code == closed_answer.status_code == 502
    assert open_answer.content == closed_answer.content
    assert (
        open_answer.json()["message"] == "the test notification was not delivered: check the URLs"
    )


def test_a_refused_test_call_is_answered_no_sooner_than_a_slow_service_would_be(
    client: TestClient, make_user: Any
) -> None:
    alice = token_of(client, make_user, "alice")
    client.post("/api/user/alerts/urls", json={"url": "json://127.0.0.1:9/x"}, headers=alice)
    floor = client.app.services.alerts.test_answer_seconds  # type: ignore[attr-defined]

    started = time.monotonic()
    answer = client.post("/api/user/alerts/test", headers=alice)

    assert answer.status_code == 502
    assert time.monotonic() - started >= floor > 0  # a lower bound: load only adds to it


def test_the_test_call_is_rate_limited_per_account(client: TestClient, make_user: Any) -> None:
    client.app.services.alerts.test_answer_seconds = 0  # type: ignore[attr-defined]
    alice, bob = token_of(client, make_user, "alice"), token_of(client, make_user, "bob")
    for who in (alice, bob):
        client.post("/api/user/alerts/urls", json={"url": "json://127.0.0.1:9/x"}, headers=who)

    statuses = [client.post("/api/user/alerts/test", headers=alice).status_code for _ in range(3)]

    assert statuses == [502, 502, 429]
    assert client.post("/api/user/alerts/test", headers=bob).status_code == 502
