"""Edges found in review: overflowing amounts, oversized chunked bodies, 500s on the hot
routes, lockouts in the log, HSTS behind a proxy, gzip refused with q=0, forged tokens."""

from __future__ import annotations

import ipaddress
import logging

import pytest
from starlette.testclient import TestClient

from quotaledger import tokens
from quotaledger.billing import ledger, pricing
from quotaledger.money import MAX_QUOTA
from quotaledger.server.app import create_app
from quotaledger.settings import Settings
from quotaledger.store.database import Database
from support import check_invariant, issue_token


def test_a_top_up_past_the_largest_balance_is_422_and_changes_nothing(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice", quota=MAX_QUOTA - 10)

    response = client.post(
        "/api/user/alice/topup", json={"quota": 11}, headers={"Authorization": admin_token}
    )

    assert response.status_code == 422
    assert "largest amount" in response.json()["message"]
    assert (
        client.get(
            "/api/user/self",
            headers={"Authorization": issue_token(client, "alice", "alice-password-123")},
        ).json()["data"]["quota"]
        == MAX_QUOTA - 10
    )
    check_invariant(database)


def test_a_charge_costing_more_than_any_balance_is_422(
    client: TestClient, admin_token: str, make_user, database: Database
) -> None:
    make_user("alice")
    pricing.set_price(
        database,
        pricing.make_price("big", input_usd_per_mtok="1000000", output_usd_per_mtok="1000000"),
    )
    pricing.set_group_ratio(database, "default", "1000")

    response = client.post(
        "/api/usage",
        json={
            "username": "alice",
            "model": "big",
            "request_id": "r",
            "prompt_tokens": 10**12,
            "completion_tokens": 10**12,
        },
        headers={"Authorization": admin_token},
    )

    assert response.status_code == 422
    check_invariant(database)


def test_an_oversized_chunked_body_is_413(client: TestClient) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(10):
            yield b" " * 10_000

    response = client.post(
        "/api/user/login", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["success"] is False


def test_an_unexpected_error_on_a_hot_route_is_a_500_envelope_with_headers(
    settings: Settings, database: Database, make_user, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(settings, database)
    user = make_user("alice")

    async def broken() -> dict[str, str]:
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        token = issue_token(client, "alice", user.password)
        monkeypatch.setattr(app.services, "fixed_prices", broken)
        response = client.get("/api/user/self", headers={"Authorization": token})

    assert response.status_code == 500
    assert response.json() == {"success": False, "message": "internal server error", "data": None}
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def test_a_lockout_is_logged_as_a_security_event(
    settings: Settings, database: Database, make_user, caplog: pytest.LogCaptureFixture
) -> None:
    make_user("alice")
    app = create_app(settings.with_overrides(rate_limit_login="2/minute"), database)
    with TestClient(app) as client, caplog.at_level(logging.INFO, "quotaledger.security"):
        for _ in range(3):
            client.post("/api/user/login", json={"username": "alice", "password": "nope-nope"})

    assert "lockout user='alice'" in caplog.text
    assert "nope-nope" not in caplog.text


@pytest.mark.parametrize(
    "path, headers",
    [("/api/status", {}), ("/api/user/self", {"Authorization": "ql_x"})],  # the token lane
)
def test_hsts_is_sent_behind_a_trusted_tls_proxy(
    settings: Settings, database: Database, path: str, headers: dict[str, str]
) -> None:
    proxied = settings.with_overrides(trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),))
    with TestClient(create_app(proxied, database), client=("127.0.0.1", 9)) as client:
        secure = client.get(path, headers={**headers, "X-Forwarded-Proto": "https"})
        plain = client.get(path, headers=headers)

    assert secure.headers["strict-transport-security"].startswith("max-age=")
    assert "strict-transport-security" not in plain.headers


def test_gzip_refused_with_q_zero_gets_plain_json(client: TestClient) -> None:
    response = client.get("/api/status", headers={"Accept-Encoding": "gzip;q=0, identity"})

    assert "content-encoding" not in response.headers
    assert response.content.startswith(b'{"success":true')


def test_forged_tokens_from_one_address_are_limited(settings: Settings, database: Database) -> None:
    app = create_app(settings.with_overrides(rate_limit_balance="3/minute"), database)
    with TestClient(app) as client:
        codes = [
            client.get(
                "/api/user/self", headers={"Authorization": tokens.generate_token()}
            ).status_code
            for _ in range(5)
        ]

    assert codes == [401, 401, 401, 429, 429]


@pytest.mark.postgres
def test_a_replay_that_waited_on_the_first_charge_gets_its_answer_not_402(
    postgres_server_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    """Two transactions charge the same request_id; the balance covers one charge. The
    second waits on the first's row lock and must answer as a replay, not 402."""
    import threading

    from quotaledger.identity import accounts
    from quotaledger.identity.bootstrap import prepare_database
    from support import _empty_postgres

    _empty_postgres(postgres_server_url)
    database = prepare_database(
        Settings(database_url=postgres_server_url.replace("postgresql://", "postgresql+psycopg://"))
    )
    accounts.create_account(database, "alice", "password-123", quota=10_000)
    pricing.set_price(database, pricing.make_price("m", per_call_usd="0.02"))
    request = ledger.UsageRequest("alice", "m", "r1")
    second: list[object] = []

    with database.write() as first:
        ledger.charge_in(first, request)  # holds the row lock, not yet committed
        waiter = threading.Thread(target=lambda: second.append(ledger.charge(database, request)))
        waiter.start()
        waiter.join(timeout=1)
        assert waiter.is_alive()  # blocked on the lock
    waiter.join(timeout=30)

    assert isinstance(second[0], ledger.Charge)
    assert second[0].replayed and second[0].quota_remaining == 0
    check_invariant(database)
    database.dispose()
