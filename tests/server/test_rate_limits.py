"""429s: balance queries per token, login and password re-verification per account and
address and per address, with Retry-After and RateLimit-* headers."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from quotaledger.billing import pricing
from quotaledger.server.app import create_app
from quotaledger.server.calls import Call
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from quotaledger.tokens import generate_token
from support import ADMIN_PASSWORD, issue_token, login


@pytest.fixture
def limited(settings: Settings, database: Database) -> Iterator[TestClient]:
    tight = settings.with_overrides(
        rate_limit_balance="3/minute",
        rate_limit_login="5/minute",
        rate_limit_login_address="8/minute",
        # The waits after wrong passwords (test_login_throttle.py) out of the way.
        login_free_failures=100,
        login_address_free_failures=100,
    )
    with TestClient(create_app(tight, database)) as test_client:
        yield test_client


def test_the_fourth_balance_query_in_a_minute_is_429(limited: TestClient, make_user) -> None:
    user = make_user("alice")
    token = issue_token(limited, "alice", user.password)
    limited.cookies.clear()

    answers = [limited.get("/api/user/self", headers={"Authorization": token}) for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[2].headers["ratelimit-remaining"] == "0"
    refused = answers[3]
    assert refused.json()["success"] is False
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["ratelimit-limit"] == "3"


def test_balance_limits_are_per_token(limited: TestClient, make_user) -> None:
    alice, bob = make_user("alice"), make_user("bob")
    alice_token = issue_token(limited, "alice", alice.password)
    bob_token = issue_token(limited, "bob", bob.password)
    limited.cookies.clear()
    for _ in range(3):
        limited.get("/api/user/self", headers={"Authorization": alice_token})

    assert limited.get("/api/user/self", headers={"Authorization": bob_token}).status_code == 200


def test_the_sixth_login_attempt_for_one_account_is_429(limited: TestClient, make_user) -> None:
    make_user("alice")
    codes = [
        limited.post(
            "/api/user/login", json={"username": "alice", "password": "wrong-password"}
        ).status_code
        for _ in range(6)
    ]

    assert codes[:5] == [401] * 5
    assert codes[5] == 429


def test_the_login_limit_counts_a_right_password_too(limited: TestClient, make_user) -> None:
    user = make_user("alice")
    for _ in range(5):
        limited.post("/api/user/login", json={"username": "alice", "password": "wrong-password"})

    response = limited.post(
        "/api/user/login", json={"username": "alice", "password": user.password}
    )

    assert response.status_code == 429
    assert "retry-after" in response.headers


def test_one_address_trying_many_accounts_is_limited(limited: TestClient) -> None:
    codes = [
        limited.post(
            "/api/user/login", json={"username": f"user{i}", "password": "wrong-password"}
        ).status_code
        for i in range(9)
    ]

    assert codes[:8] == [401] * 8
    assert codes[8] == 429


def test_password_re_verification_is_throttled(limited: TestClient, make_user) -> None:
    user = make_user("alice")
    csrf = login(limited, "alice", user.password)  # one attempt of five used
    codes = [
        limited.post(
            "/api/user/token",
            json={"password": "wrong-password"},
            headers={"X-CSRF-Token": csrf},
        ).status_code
        for _ in range(5)
    ]

    assert codes == [401, 401, 401, 401, 429]


def test_an_address_sending_unknown_tokens_is_429_and_malformed_ones_cost_nothing(
    limited: TestClient,
) -> None:
    malformed = [
        limited.get("/api/user/self", headers={"Authorization": "ql_nope"}).status_code
        for _ in range(5)
    ]
    unknown = [
        limited.get("/api/user/self", headers={"Authorization": generate_token()}) for _ in range(4)
    ]

    assert malformed == [401] * 5  # refused before anything is counted
    assert [a.status_code for a in unknown] == [401, 401, 401, 429]
    assert unknown[3].json()["message"].startswith("too many refused tokens from this address")
    assert 1 <= int(unknown[3].headers["retry-after"]) <= 60


def test_junk_tokens_from_an_address_do_not_block_the_admins_charges_and_top_ups(
    limited: TestClient, make_user, database: Database
) -> None:
    """SPEC §4: the admin usage and top-up routes are not limited; a valid admin token must
    not be refused because others sent junk from its address (its own gateway's address)."""
    make_user("alice")
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    admin = {"Authorization": issue_token(limited, "admin", ADMIN_PASSWORD)}
    limited.cookies.clear()
    junk = [
        limited.get("/api/user/self", headers={"Authorization": generate_token()}).status_code
        for _ in range(4)
    ]
    charge = {"username": "alice", "model": "m", "request_id": "r-1"}

    assert junk == [401, 401, 401, 429]  # the address is blocked for balance queries
    assert limited.post("/api/usage", json=charge, headers=admin).status_code == 200
    topup = limited.post("/api/user/alice/topup", json={"quota": 10}, headers=admin)
    assert topup.status_code == 200
    # Junk sent to those routes from the blocked address is still refused, with the headers.
    refused = limited.post("/api/usage", json=charge, headers={"Authorization": generate_token()})
    assert refused.status_code == 429
    assert {"ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "retry-after"} <= set(
        refused.headers
    )


@pytest.mark.parametrize("route", ["balance", "address", "login"])
def test_every_429_carries_the_rate_limit_headers(
    limited: TestClient, make_user, route: str
) -> None:
    user = make_user("alice")
    if route == "balance":
        token = issue_token(limited, "alice", user.password)
        limited.cookies.clear()
        ask = lambda: limited.get("/api/user/self", headers={"Authorization": token})  # noqa: E731
    elif route == "address":
        ask = lambda: limited.get(  # noqa: E731
            "/api/user/self", headers={"Authorization": generate_token()}
        )
    else:
        ask = lambda: limited.post(  # noqa: E731
            "/api/user/login", json={"username": "alice", "password": "wrong-password"}
        )
    answers = [ask() for _ in range(10)]
    refused = [a for a in answers if a.status_code == 429]

    assert refused
    for answer in refused:
        assert int(answer.headers["ratelimit-limit"]) > 0
        assert answer.headers["ratelimit-remaining"] == "0"
        assert 1 <= int(answer.headers["ratelimit-reset"]) <= 60
        assert 1 <= int(answer.headers["retry-after"]) <= 60


def test_a_blocked_address_does_not_use_up_a_tokens_own_budget(
    settings: Settings, database: Database, make_user
) -> None:
    app = create_app(settings.with_overrides(rate_limit_balance="3/minute"), database)
    user = make_user("alice")
    with TestClient(app, client=("198.51.100.7", 1)) as owner:
        token = issue_token(owner, "alice", user.password)
    with TestClient(app, client=("203.0.113.9", 1)) as attacker:
        for _ in range(3):
            attacker.get("/api/user/self", headers={"Authorization": generate_token()})
        stolen = [
            attacker.get("/api/user/self", headers={"Authorization": token}).status_code
            for _ in range(5)
        ]
    with TestClient(app, client=("198.51.100.7", 1)) as owner:
        own = [
            owner.get("/api/user/self", headers={"Authorization": token}).status_code
            for _ in range(4)
        ]

    assert stolen == [429] * 5  # the address gate comes before the token's own counter
    assert own == [200, 200, 200, 429]


def test_rate_limits_can_be_switched_off(settings: Settings, database: Database, make_user) -> None:
    app = create_app(settings.with_overrides(rate_limit_balance="off"), database)
    user = make_user("alice")
    with TestClient(app) as client:
        token = issue_token(client, "alice", user.password)
        codes = {
            client.get("/api/user/self", headers={"Authorization": token}).status_code
            for _ in range(70)
        }

    assert codes == {200}


def client_address(request: Request) -> str:
    return Call.of(request).client_address()


def _request(peer: str, forwarded: str | None, settings: Settings) -> Request:
    class _App:
        class state:
            pass

    _App.state.ql = type("S", (), {"settings": settings})()  # type: ignore[attr-defined]
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    scope = {"type": "http", "client": (peer, 1234), "headers": headers, "app": _App}
    return Request(scope)


def test_x_forwarded_for_is_ignored_from_an_untrusted_peer() -> None:
    settings = Settings()

    assert client_address(_request("203.0.113.9", "198.51.100.1", settings)) == "203.0.113.9"


def test_x_forwarded_for_is_read_from_a_trusted_proxy() -> None:
    settings = Settings(trusted_proxies=(ipaddress.ip_network("10.0.0.0/8"),))

    address = client_address(_request("10.0.0.2", "6.6.6.6, 198.51.100.1, 10.0.0.3", settings))

    assert address == "198.51.100.1"  # the first hop from the right that is not a proxy
