"""`user disable` ends the account's browser sessions with 403 "this account is disabled"
(the credentials are valid, the account is not: README and `--help` say 403), and
enabling the account again does not bring those sessions back."""

from __future__ import annotations

from starlette.testclient import TestClient

from quotaledger.identity import accounts
from quotaledger.store.database import Database
from support import login

DISABLED = {"success": False, "message": "this account is disabled", "data": None}


def test_a_disabled_accounts_session_gets_403_not_session_expired(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    csrf = login(client, "alice", user.password)

    accounts.set_status(database, "alice", "disabled")

    balance = client.get("/api/user/self")
    log = client.get("/api/log/self")
    token = client.post(
        "/api/user/token", json={"password": user.password}, headers={"X-CSRF-Token": csrf}
    )
    assert [balance.status_code, log.status_code, token.status_code] == [403, 403, 403]
    assert balance.json() == DISABLED
    assert log.json() == DISABLED
    assert token.json() == DISABLED
    assert "www-authenticate" not in balance.headers


def test_the_account_page_of_a_disabled_session_shows_nothing(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)

    accounts.set_status(database, "alice", "disabled")
    page = client.get("/account", follow_redirects=False)

    assert page.status_code == 303
    assert page.headers["location"].startswith("/login")


def test_enabling_again_does_not_revive_the_sessions_of_before(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)
    accounts.set_status(database, "alice", "disabled")

    accounts.set_status(database, "alice", "enabled")

    assert client.get("/api/user/self").status_code == 401  # ended: log in again
    login(client, "alice", user.password)
    assert client.get("/api/user/self").status_code == 200


def test_enabling_an_enabled_account_keeps_its_sessions(
    client: TestClient, make_user, database: Database
) -> None:
    user = make_user("alice")
    login(client, "alice", user.password)

    accounts.set_status(database, "alice", "enabled")

    assert client.get("/api/user/self").status_code == 200
